package policy

import "testing"

// A run's deny_write of ~/.claude/projects/ with its own project's
// directory carved out: that directory is writable, its memory beneath it
// (a longer rule) is not, every other project, present or future, is; and
// a carve never uncovers what another rule denies.
func TestCarve(t *testing.T) {
	env := Env{Home: "/home/u", ProjectRoot: "/home/u/p"}
	own := "/home/u/.claude/projects/-home-u-p"
	p := &Policy{DenyWrite: []PathRule{
		{Pattern: "~/.claude/projects/", Except: []string{own}},
		{Pattern: "~/.claude/projects/-home-u-p/memory/"},
	}}
	c, err := Compile(p, env)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]bool{
		own:                        false,
		own + "/s.jsonl":           false,
		own + "/s/subagents/a.js":  false,
		own + "/memory":            true,
		own + "/memory/MEMORY.md":  true,
		own + "x/memory/MEMORY.md": true, // a sibling whose name starts alike
		"/home/u/.claude/projects/-home-u-q/memory/MEMORY.md": true,
		"/home/u/.claude/projects/-home-u-new":                true,
		"/home/u/.claude/projects":                            true,
	} {
		if _, got := c.Write.Match(path); got != want {
			t.Errorf("Write.Match(%s) = %v, want %v", path, got, want)
		}
	}

	// Another rule above the carve keeps it denied: the carve is dropped.
	p.DenyWrite = append(p.DenyWrite, PathRule{Pattern: "~/.claude/"})
	c, err = Compile(p, env)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Write.Match(own + "/s.jsonl"); !ok || len(c.Write.Carve) != 0 {
		t.Errorf("a carve beneath ~/.claude/ was kept: %v", c.Write.Carve)
	}

	for _, bad := range []PathRule{
		{Pattern: "~/.claude/projects/", Except: []string{"/home/u/other"}},
		{Pattern: "~/.claude/projects/", Except: []string{"/home/u/.claude/projects"}},
		{Pattern: "memory", Except: []string{"/home/u/x/memory/y"}},
	} {
		if _, err := Compile(&Policy{DenyWrite: []PathRule{bad}}, env); err == nil {
			t.Errorf("Compile accepted %+v", bad)
		}
	}
}
