package darwin

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
)

func link(target string) *fstest.MapFile {
	return &fstest.MapFile{Data: []byte(target), Mode: fs.ModeSymlink | 0o777}
}

// linkFS is testFS with the links a project collects, by accident or
// planted by an earlier session: to files and directories outside the
// project (an interpreter, /etc), relative ones, a dangling one, and links
// inside the write-denied .git/hooks.
func linkFS() fstest.MapFS {
	f := testFS()
	for p, target := range map[string]string{
		"home/alice/src/proj/.venv/bin/python":       "/usr/local/bin/python3",
		"home/alice/src/proj/sub/etc":                "/etc",
		"home/alice/src/proj/sub/up":                 "../../..",
		"home/alice/src/proj/dangling":               "/nonexistent/file",
		"home/alice/src/proj/.git/hooks/post-commit": "/home/alice/bin/hook",
		"home/alice/src/proj/prod.pem":               "/Library/LaunchDaemons/x.plist",
		// A .env that is a link: the secret is its target.
		"home/alice/src/proj/app/.env": "../../../real.env",
	} {
		f[p] = link(target)
	}
	// Homebrew's bin holds links into its Cellar: yours, followed.
	f["opt/homebrew/bin/curl"] = link("../Cellar/curl/8.11/bin/curl")
	for _, p := range []string{"opt/homebrew/Cellar/curl/8.11/bin/curl", "usr/local/bin/python3", "etc/sudoers", "home/alice/bin/hook", "home/alice/real.env", "Library/LaunchDaemons/x.plist"} {
		f[p] = &fstest.MapFile{Data: []byte("x"), Mode: 0o644}
	}
	return f
}

// chmodPaths returns, for every chmod call, its entry text and paths.
func chmodPaths(cs []Command) (texts []string, paths [][]string) {
	for _, c := range cs {
		if c.Name != "chmod" {
			continue
		}
		texts = append(texts, c.Args[2])
		paths = append(paths, c.Args[3:])
	}
	return texts, paths
}

// checkNoLinkTargets fails when a chmod names a link (the -h form would
// then change the link, but no plan should contain one), when an allow
// entry lands outside the project or home traversal, or when a known link
// target gets any entry it should not.
func checkNoLinkTargets(t *testing.T, f fstest.MapFS, env Env, cs []Command) {
	t.Helper()
	texts, paths := chmodPaths(cs)
	for i, ps := range paths {
		for _, p := range ps {
			if fi, err := fs.Lstat(f, rel(p)); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
				t.Errorf("chmod %q names the link %s", texts[i], p)
			}
			allow := strings.Contains(texts[i], " allow ")
			inProject := p == env.ProjectRoot || strings.HasPrefix(p, env.ProjectRoot+"/")
			if allow && !inProject && p != env.Home && p != "/home/alice/src" {
				t.Errorf("allow entry %q on %s, outside the project", texts[i], p)
			}
			for _, target := range []string{"/usr/local/bin/python3", "/etc", "/etc/sudoers", "/home/alice/bin/hook", "/Library/LaunchDaemons/x.plist", "/nonexistent/file"} {
				if p == target || strings.HasPrefix(p, target+"/") {
					t.Errorf("chmod %q reached the link target %s", texts[i], p)
				}
			}
		}
	}
}

func TestShareNeverFollowsLinks(t *testing.T) {
	f := linkFS()
	env := testEnv(t)
	env.FS = f
	r := &fakeRunner{}
	a, err := Apply(context.Background(), r, testPolicy(), env)
	if err != nil {
		t.Fatalf("a tree with links (one dangling) failed the run: %v", err)
	}
	checkNoLinkTargets(t, f, env, r.calls)
	golden(t, "apply_links", renderCommands(r.calls))
	// The .env link's target is what the name reaches: it is denied.
	found := false
	for _, tg := range a.Expansion.Targets {
		found = found || tg.Path == "/home/alice/real.env"
	}
	if !found {
		t.Error("the target of a .env link was not denied")
	}
	for _, want := range []string{"/home/alice/real.env", "/opt/homebrew/Cellar/curl/8.11/bin/curl"} {
		found := false
		for _, tg := range a.Expansion.Targets {
			found = found || tg.Path == want
		}
		if !found {
			t.Errorf("%s, reached through a link of yours, not denied", want)
		}
	}
	if w := strings.Join(a.Warnings, "\n"); !strings.Contains(w, "prod.pem -> /Library/LaunchDaemons/x.plist") {
		t.Errorf("a *.pem link leading out of home is not reported:\n%s", w)
	}

	// The tool plants links during the session; the next session must not
	// follow them either.
	if err := Revert(context.Background(), r, env.StateFile); err != nil {
		t.Fatal(err)
	}
	f["home/alice/src/proj/planted"] = link("/etc/sudoers")
	f["home/alice/src/proj/newdir/sudoers"] = link("/etc/sudoers")
	f["home/alice/src/proj/newdir/daemons"] = link("/Library/LaunchDaemons")
	f["home/alice/src/proj/.aigate.yaml"] = link("/etc/sudoers") // a denied path replaced by a link
	r2 := &fakeRunner{}
	if _, err := Apply(context.Background(), r2, testPolicy(), env); err != nil {
		t.Fatal(err)
	}
	checkNoLinkTargets(t, f, env, r2.calls)
	golden(t, "apply_links_planted", renderCommands(r2.calls))
}

// TestApplyToleratesPerPathErrors: a file removed between the walk and
// chmod, a read-only volume, an immutable file: chmod changes the other
// paths and exits 1; the run goes on with a warning, and the undo leaves
// out the paths that got nothing.
func TestApplyToleratesPerPathErrors(t *testing.T) {
	env := testEnv(t)
	gone := "/home/alice/src/proj/main.go"
	r := &fakeRunner{failIf: func(c Command) ([]byte, bool) {
		if c.Name == "chmod" && c.Args[1] == "+a" && strings.Contains(c.Args[2], " allow read,") {
			return []byte("chmod: Failed to set ACL on file '" + gone + "': No such file or directory\nchmod: /home/alice/src/proj/.env: Operation not permitted\n"), true
		}
		return nil, false
	}}
	a, err := Apply(context.Background(), r, testPolicy(), env)
	if err != nil {
		t.Fatal(err)
	}
	w := strings.Join(a.Warnings, "\n")
	if !strings.Contains(w, gone+": No such file or directory") || !strings.Contains(w, ".env: Operation not permitted") {
		t.Errorf("warnings do not name the paths:\n%s", w)
	}
	st, _ := ReadState(env.StateFile)
	for _, rec := range st.Records {
		for _, u := range rec.Undo {
			if strings.Contains(u.Args[len(u.Args)-1], "allow read,") || strings.Contains(u.String(), " allow read,") {
				for _, p := range u.Args[3:] {
					if p == gone || p == "/home/alice/src/proj/.env" {
						t.Errorf("undo still names %s, which got no entry", p)
					}
				}
			}
		}
	}

	// Any other error still fails the run and rolls back.
	r = &fakeRunner{failIf: func(c Command) ([]byte, bool) {
		return []byte("chmod: Failed to set ACL on file '/x': Invalid argument\nchmod: /y: No such file or directory"), c.Name == "chmod" && c.Args[1] == "+a"
	}}
	env = testEnv(t)
	if _, err := Apply(context.Background(), r, testPolicy(), env); err == nil {
		t.Error("an EINVAL among tolerated errors passed")
	}
	if _, err := os.Stat(env.StateFile); !os.IsNotExist(err) {
		t.Error("state left after rollback")
	}
}

func TestAlreadyUndone(t *testing.T) {
	chmodA := cmd("chmod", "-h", "-a", "user:_aigate deny read", "/a", "/b")
	tests := []struct {
		c    Command
		out  string
		want bool
	}{
		{chmodA, "chmod: No matching ACL entry found\nchmod: /b: No such file or directory", true},
		// One path undone, the other refused: not done.
		{chmodA, "chmod: /a: No such file or directory\nchmod: Failed to set ACL on file '/b': Operation not permitted", false},
		{chmodA, "", false},
		{cmd("pfctl", "-X", "123"), "pfctl: DIOCSTOPREF: Invalid argument", true},
		// "Invalid argument" from anything but -X is a failure.
		{cmd("pfctl", "-a", "com.aigate", "-F", "rules"), "pfctl: Invalid argument", false},
		{cmd("pfctl", "-a", "com.aigate", "-F", "Tables"), "pfctl: Anchor 'com.aigate' does not exist", true},
		{cmd("dscl", ".", "-delete", "/Users/_aigate"), "<dscl_cmd> DS Error: -14136 (eDSRecordNotFound)", true},
		// "not found" alone is too broad: a missing command is not an undo.
		{cmd("dscl", ".", "-delete", "/Users/_aigate"), "dscl: command not found", false},
	}
	for _, tt := range tests {
		if got := alreadyUndone(tt.c, []byte(tt.out), errExit1); got != tt.want {
			t.Errorf("%s with %q: %v, want %v", tt.c.Short(), tt.out, got, tt.want)
		}
	}
}

// TestPlanBatchesManyTargets: a home full of *.pem and *.key (Go test
// data, certifi, a node_modules tree) took one chmod process and two
// state-file syncs per file; now the entries with the same text share a
// process, and a step (one state write) per process.
func TestPlanBatchesManyTargets(t *testing.T) {
	f := testFS()
	for i := 0; i < 3000; i++ {
		f[fmt.Sprintf("home/alice/go/src/x/testdata/%d/server.pem", i)] = &fstest.MapFile{Data: []byte("x"), Mode: 0o644}
	}
	env := testEnv(t)
	env.FS = f
	r := &fakeRunner{}
	a, err := Apply(context.Background(), r, testPolicy(), env)
	if err != nil {
		t.Fatal(err)
	}
	readFiles := 0
	for _, c := range r.calls {
		if c.Name == "chmod" && c.Args[2] == "user:_aigate deny read,readextattr" {
			readFiles++
		}
	}
	if len(a.Expansion.Targets) < 3000 || readFiles > 2 || len(a.Steps) > 15 {
		t.Errorf("%d targets: %d chmod processes for the read denies, %d steps in all", len(a.Expansion.Targets), readFiles, len(a.Steps))
	}
}

// TestShareProjectReachedThroughLink: the working directory may be a link
// to the project; the walk, which never enters links, starts at the real
// directory, and the link itself gets nothing.
func TestShareProjectReachedThroughLink(t *testing.T) {
	f := testFS()
	f["home/alice/proj"] = link("src/proj")
	env := testEnv(t)
	env.FS, env.ProjectRoot = f, "/home/alice/proj"
	r := &fakeRunner{}
	if _, err := Apply(context.Background(), r, testPolicy(), env); err != nil {
		t.Fatal(err)
	}
	shared := false
	for _, c := range r.calls {
		if c.Name != "chmod" || !strings.Contains(c.Args[2], "_aigate allow read,") {
			continue
		}
		shared = slices.Contains(c.Args[3:], "/home/alice/src/proj/main.go")
		if slices.Contains(c.Args[3:], "/home/alice/proj") {
			t.Error("share names the link")
		}
	}
	if !shared {
		t.Errorf("project behind a link not shared:\n%s", strings.Join(r.lines(), "\n"))
	}
}

// TestDenyFailureSaysNotEnforced: a deny entry chmod could not add (an
// immutable file) is a warning that says the rule is not enforced there.
func TestDenyFailureSaysNotEnforced(t *testing.T) {
	env := testEnv(t)
	r := &fakeRunner{failIf: func(c Command) ([]byte, bool) {
		return []byte("chmod: Failed to set ACL on file '/home/alice/src/proj/.env': Operation not permitted"),
			c.Name == "chmod" && c.Args[1] == "+a" && c.Args[2] == "user:_aigate deny read,readextattr"
	}}
	a, err := Apply(context.Background(), r, testPolicy(), env)
	if err != nil {
		t.Fatal(err)
	}
	if w := strings.Join(a.Warnings, "\n"); !strings.Contains(w, "/home/alice/src/proj/.env: Operation not permitted; the rule is NOT enforced") {
		t.Errorf("warnings:\n%s", w)
	}
}
