package claudestate

import "testing"

func TestOwnRefusal(t *testing.T) {
	const (
		home = "/home/u"
		sid  = "0b5e7f2c-1111-4a4a-9c9c-222233334444"
		old  = "9a9a9a9a-2222-4b4b-8d8d-555566667777" // a session from before the sandbox
	)
	own := "/home/u/.claude/projects/-home-u-p"
	o := Own{Home: home, Projects: []string{own}, Resumable: func(sd, id string) bool { return id == old }}
	moved := o
	moved.Dir = "/home/u/.claude-work"
	moved.Projects = []string{"/home/u/.claude-work/projects/-home-u-p"}
	for _, c := range []struct {
		o    Own
		call Call
		path string
		want bool
	}{
		// Kept quiet: Claude Code 2.1.332's own housekeeping.
		{o, CallMkdir, "/home/u/.claude.json.lock", true},
		{o, CallCreate, "/home/u/.claude.json.tmp.4242.1796634790850", true},
		{o, CallCreate, "/home/u/.claude.json.tmp.4242.a1b2c3d4e5f6", true},
		{o, CallMkdir, "/home/u/.claude/history.jsonl.lock", true},
		{o, CallMkdir, "/home/u/.claude/session-env/" + sid, true},
		{o, CallRemove, own + "/" + sid + "/subagents/agent-1.jsonl", true},
		{o, CallRemove, own + "/" + sid, true},
		{moved, CallMkdir, "/home/u/.claude-work/.claude.json.lock", true},
		{moved, CallCreate, "/home/u/.claude-work/.claude.json.tmp.7.123", true},
		{moved, CallRemove, "/home/u/.claude-work/.claude.json.tmp.7.a1b2c3d4e5f6", true},
		{moved, CallMkdir, "/home/u/.claude-work/history.jsonl.lock", true},
		{moved, CallMkdir, "/home/u/.claude-work/session-env/" + sid, true},
		{moved, CallRemove, "/home/u/.claude-work/projects/-home-u-p/x.jsonl", true},
		{o, CallMkdir, "/home/u/.local", true},
		{o, CallMkdir, "/home/u/.local/share", true},
		{o, CallMkdir, "/home/u/.local/share/applications", true},
		{o, CallCreate, "/home/u/.local/share/applications/claude-code-url-handler.desktop", true},
		{o, CallOther, "/home/u/.local/share/applications/claude-code-url-handler.desktop", false}, // not a create: reported
		{moved, CallCreate, "/home/u/.local/share/applications/claude-code-url-handler.desktop", true},
		// Still reported: another session's environment, made or written.
		{o, CallMkdir, "/home/u/.claude/session-env/" + old, false},
		{o, CallCreate, "/home/u/.claude/session-env/" + sid + "/sessionstart-hook-0.sh", false},
		{o, CallOther, "/home/u/.claude/session-env/" + sid + "/sessionstart-hook-0.sh", false},
		{o, CallMkdir, "/home/u/.claude/session-env/not-a-session", false},
		{o, CallMkdir, "/home/u/.claude/session-env/0B5E7F2C-1111-4A4A-9C9C-222233334444", false},
		{o, CallMkdir, "/home/u/.claude/session-env/" + sid + "/x", false},
		{Own{Home: home}, CallMkdir, "/home/u/.claude/session-env/" + sid, false}, // unknown: reported
		// Another project's directory, or anything but a removal in one's own.
		{o, CallRemove, "/home/u/.claude/projects/-home-u-other/x.jsonl", false},
		{o, CallRemove, own + "x/y.jsonl", false},
		{o, CallRemove, own, true}, // its clean-up of an empty project directory
		{o, CallMkdir, own, false},
		{o, CallRemove, "/home/u/.claude/projects", false},
		{o, CallCreate, own + "/memory/MEMORY.md", false},
		{o, CallRemove, "/home/u/.claude/projects/-home-u-p/../-home-u-other/x", false},
		// Look-alike names and other calls.
		{o, CallCreate, "/home/u/.claude.json.lock", false},
		{o, CallMkdir, "/home/u/.claude.json.tmp.1.2", false},
		{o, CallOther, "/home/u/.claude.json", false},
		{o, CallCreate, "/home/u/.claude.json", false},
		{o, CallRemove, "/home/u/.claude.json", false},
		{o, CallRemove, "/home/u/.claude.json.bak", false},
		{o, CallCreate, "/home/u/.claude.json.tmp.1", false},
		{o, CallCreate, "/home/u/.claude.json.tmp.1.2.3", false},
		{o, CallCreate, "/home/u/.claude.json.tmp.x.2", false},
		{o, CallCreate, "/home/u/.claude.json.tmp..2", false},
		{o, CallCreate, "/home/u/.claude.json.tmp.1.xyz", false},
		{o, CallCreate, "/home/u/.bashrc.tmp.1.2", false},
		{o, CallCreate, "/home/u/.claude/.claude.json.tmp.1.2", false},
		{o, CallMkdir, "/home/u/.claude.jsonx.lock", false},
		{o, CallMkdir, "/home/u/.claude/history.jsonl.lockx", false},
		{o, CallMkdir, "/home/u/.claude/settings.json.lock", false},
		{o, CallCreate, "/home/u/.claude/history.jsonl.lock", false},
		{o, CallMkdir, "/home/u/.claude/plugins/history.jsonl.lock", false},
		{o, CallMkdir, "/home/u/x/.claude.json.lock", false},
		{o, CallRemove, "/home/u/.local/share/applications/claude-code-url-handler.desktop", false},
		{o, CallMkdir, "/home/u/.local/share/applications/claude-code-url-handler.desktop", false},
		{o, CallCreate, "/home/u/.local/share/applications/evil.desktop", false},
		{o, CallCreate, "/home/u/.local/share/applications/x/claude-code-url-handler.desktop", false},
		{o, CallCreate, "/home/u/.config/autostart/claude-code-url-handler.desktop", false},
		{o, CallMkdir, "/home/u/.local/share/systemd", false},
		{o, CallMkdir, "/home", false},
		{o, CallMkdir, "/home/u", false},
		{o, CallCreate, "/home/u/.local", false},
		{o, CallMkdir, "home/u/.claude.json.lock", false},
		{o, CallMkdir, "/home/u/./.claude.json.lock", false},
		// Moved: ~/.claude's own names are still Claude Code's (a claude
		// started without the variable), but not the moved directory's
		// without it.
		{moved, CallMkdir, "/home/u/.claude.json.lock", true},
		{o, CallMkdir, "/home/u/.claude-work/.claude.json.lock", false},
		{o, CallMkdir, "/home/u/.claude-work/session-env/" + sid, false},
	} {
		if got := c.o.OwnRefusal(c.call, c.path); got != c.want {
			t.Errorf("OwnRefusal(%d, %s) with dir %q = %t, want %t", c.call, c.path, c.o.Dir, got, c.want)
		}
	}
}

func TestOwnParent(t *testing.T) {
	o := Own{Home: "/home/u", Dir: "/w", Projects: []string{"/home/u/.claude/projects/-p"}}
	for dir, want := range map[string]bool{
		"/home/u": true, "/home/u/.claude": true, "/home/u/.claude/session-env": true,
		"/w": true, "/w/session-env": true, "/home/u/.claude/projects/-p": true,
		"/home/u/.claude/projects/-p/s/subagents": true,
		"/home/u/.claude/projects":                true, "/home/u/.claude/projects/-q": false,
		"/home/u/.local": true, "/home/u/.local/share": true, "/home/u/.local/share/applications": true,
		"/home/u/.local/share/systemd": false, "/home": false,
		"/home/u/.ssh": false, "/home/u/.claude/session-env/x": false, "/": false, "home/u": false,
	} {
		if got := o.Parent(dir); got != want {
			t.Errorf("Parent(%s) = %t, want %t", dir, got, want)
		}
	}
}

func TestSessionExists(t *testing.T) {
	dir := t.TempDir()
	mtimes := map[string]int64{}
	write := func(rel string, mtime int64) {
		p := dir + "/" + rel
		writeFile(t, p, "{}\n")
		mtimes[p] = mtime
	}
	write("projects/-a/11111111-1111-1111-1111-111111111111.jsonl", 5)  // before the sandbox
	write("projects/-b/22222222-2222-2222-2222-222222222222.jsonl", 50) // made inside: its own
	exists := SessionExists(10, func(p string) (int64, bool) { m, ok := mtimes[p]; return m, ok })
	for id, want := range map[string]bool{
		"11111111-1111-1111-1111-111111111111": true,
		"22222222-2222-2222-2222-222222222222": false,
		"33333333-3333-3333-3333-333333333333": false,
	} {
		if got := exists(dir, id); got != want {
			t.Errorf("SessionExists(%s) = %t, want %t", id, got, want)
		}
	}
}

// With $XDG_DATA_HOME set in the tool's environment, Claude Code 2.1.332
// registers its deep-link handler beneath it (`XDG_DATA_HOME ??
// ~/.local/share`): those refusals are its own, and the same names under
// ~/.local/share, where it does not write then, stay reported.
func TestOwnRefusalDataHome(t *testing.T) {
	const handler = "/applications/claude-code-url-handler.desktop"
	inHome := Own{Home: "/home/u", DataHome: "/home/u/.xdg/data"}
	outside := Own{Home: "/home/u", DataHome: "/srv/u/data"}
	for _, c := range []struct {
		o    Own
		call Call
		path string
		want bool
	}{
		{inHome, CallCreate, "/home/u/.xdg/data" + handler, true},
		{inHome, CallMkdir, "/home/u/.xdg/data/applications", true},
		{inHome, CallMkdir, "/home/u/.xdg/data", true},
		{inHome, CallMkdir, "/home/u/.xdg", true},
		{inHome, CallMkdir, "/home/u", false},
		{inHome, CallOther, "/home/u/.xdg/data" + handler, false},
		{inHome, CallCreate, "/home/u/.xdg/data/applications/evil.desktop", false},
		{inHome, CallCreate, "/home/u/.local/share" + handler, false},
		{inHome, CallMkdir, "/home/u/.local/share/applications", false},
		{inHome, CallMkdir, "/home/u/.local", false},
		{outside, CallCreate, "/srv/u/data" + handler, true},
		{outside, CallMkdir, "/srv/u/data/applications", true},
		{outside, CallMkdir, "/srv/u/data", true},
		{outside, CallMkdir, "/srv/u", false},
		{outside, CallMkdir, "/srv", false},
		{outside, CallCreate, "/home/u/.local/share" + handler, false},
		// A data home that is not absolute and clean (run sends none
		// such) names nothing.
		{Own{Home: "/home/u", DataHome: "data"}, CallCreate, "/home/u/data" + handler, false},
		{Own{Home: "/home/u", DataHome: "/srv/u/../x"}, CallMkdir, "/srv/x/applications", false},
	} {
		if got := c.o.OwnRefusal(c.call, c.path); got != c.want {
			t.Errorf("OwnRefusal(%d, %s) with data home %q = %t, want %t", c.call, c.path, c.o.DataHome, got, c.want)
		}
	}
	for dir, want := range map[string]bool{
		"/home/u/.xdg/data/applications": true, "/home/u/.xdg/data": true, "/home/u/.xdg": true, "/home/u": true,
		"/home/u/.local/share/applications": false, "/home/u/.local/share": false, "/home/u/.local": false,
	} {
		if got := inHome.Parent(dir); got != want {
			t.Errorf("Parent(%s) with data home %s = %t, want %t", dir, inHome.DataHome, got, want)
		}
	}
	for dir, want := range map[string]bool{
		"/srv/u/data/applications": true, "/srv/u/data": true, "/srv/u": true, "/srv": false,
		"/home/u/.local/share": false,
	} {
		if got := outside.Parent(dir); got != want {
			t.Errorf("Parent(%s) with data home %s = %t, want %t", dir, outside.DataHome, got, want)
		}
	}
}
