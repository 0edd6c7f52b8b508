//go:build linux

package loader

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
)

func script(t *testing.T, path string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func symlink(t *testing.T, target, link string) string {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	return link
}

// expectDenied runs the helper in sb and checks EPERM and the event.
func expectDenied(t *testing.T, l *LSM, sb *sandbox, kind events.Kind, path string, rule uint32, args ...string) {
	t.Helper()
	code, pid := run(t, sb, args...)
	if code != exitEPERM {
		t.Errorf("%v: exit %d, want EPERM", args, code)
		return
	}
	ev := nextEvent(t, l)
	if ev.Kind != kind || ev.Path != path || ev.Rule != rule || int(ev.TGID) != pid {
		t.Errorf("%v: event %+v, want %s path %s rule %d pid %d", args, ev, kind, path, rule, pid)
	}
}

func expectAllowed(t *testing.T, sb *sandbox, args ...string) {
	t.Helper()
	if code, _ := run(t, sb, args...); code != 0 {
		t.Errorf("%v: exit %d, want allowed", args, code)
	}
}

func TestLSMExecRules(t *testing.T) {
	dir := tempDir(t)
	tool := script(t, dir+"/bin/tool")
	curl := script(t, dir+"/bin2/curl")
	ncReal := script(t, dir+"/bin3/nc.openbsd")
	nc := symlink(t, ncReal, dir+"/bin3/nc")
	os.MkdirAll(dir+"/bin4", 0o755)
	myCurl := symlink(t, curl, dir+"/bin4/mycurl")
	wget := script(t, dir+"/bin5/wget")
	wgetLink := dir + "/other/renamed"
	os.MkdirAll(dir+"/other", 0o755)
	if err := os.Link(wget, wgetLink); err != nil {
		t.Fatal(err)
	}
	ok := script(t, dir+"/bin/fine")

	// bin5 is searched for name rules, so wget is denied by inode under
	// any name; the other dirs are not, so they test names and paths.
	l := openLSM(t, dir+"/bin5")
	p := compiled(
		ruleSpec{policy.AccessExec, "paths", tool},   // 1
		ruleSpec{policy.AccessExec, "names", "curl"}, // 2
		ruleSpec{policy.AccessExec, "names", "nc"},   // 3
		ruleSpec{policy.AccessExec, "names", "wget"}, // 4
	)
	sb := addSandbox(t, l, p, policy.ModeEnforce)

	expectDenied(t, l, sb, events.KindExec, tool, 1, "exec", tool)
	expectDenied(t, l, sb, events.KindExec, curl, 2, "exec", curl)
	// Symlink named nc -> nc.openbsd: caught by the name executed.
	expectDenied(t, l, sb, events.KindExec, ncReal, 3, "exec", nc)
	// Symlink mycurl -> curl: caught by the resolved file's name.
	expectDenied(t, l, sb, events.KindExec, curl, 2, "exec", myCurl)
	// Hard link under another name: caught by inode.
	expectDenied(t, l, sb, events.KindExec, wgetLink, 4, "exec", wgetLink)
	expectAllowed(t, sb, "exec", ok)
	// Reading a denied executable is not executing it.
	expectAllowed(t, sb, "open", tool, "r")
	expectAllowed(t, nil, "exec", tool)
	noEvent(t, l)
}

func TestLSMSecondPaths(t *testing.T) {
	dir := tempDir(t)
	secret := touch(t, dir+"/secret")
	key := touch(t, dir+"/vault/key")
	os.MkdirAll(dir+"/pub", 0o755)
	link := dir + "/pub/link"
	if err := os.Link(secret, link); err != nil {
		t.Fatal(err)
	}
	l := openLSM(t)
	p := compiled(
		ruleSpec{policy.AccessRead, "paths", secret},         // 1
		ruleSpec{policy.AccessRead, "paths", dir + "/vault"}, // 2
	)
	sb := addSandbox(t, l, p, policy.ModeEnforce)

	expectDenied(t, l, sb, events.KindFile, link, 1, "open", link, "r")
	// A bind mount of the protected directory: caught by the directory's inode.
	mnt := dir + "/mnt"
	os.Mkdir(mnt, 0o755)
	if err := unix.Mount(dir+"/vault", mnt, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind mount: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	expectDenied(t, l, sb, events.KindFile, mnt+"/key", 2, "open", mnt+"/key", "r")
	// /proc/PID/root leads to the same file.
	expectDenied(t, l, sb, events.KindFile, key, 2, "open", "/proc/self/root"+key, "r")
	noEvent(t, l)
}

func TestLSMSandboxes(t *testing.T) {
	dir := tempDir(t)
	a := touch(t, dir+"/a")
	b := touch(t, dir+"/b")
	l := openLSM(t)
	sbA := addSandbox(t, l, compiled(ruleSpec{policy.AccessRead, "paths", a}), policy.ModeEnforce)
	sbB := addSandbox(t, l, compiled(ruleSpec{policy.AccessRead, "paths", b}), policy.ModeEnforce)
	audit := addSandbox(t, l, compiled(ruleSpec{policy.AccessRead, "paths", a}), policy.ModeAudit)

	expectDenied(t, l, sbA, events.KindFile, a, 1, "open", a, "r")
	expectAllowed(t, sbA, "open", b, "r")
	expectDenied(t, l, sbB, events.KindFile, b, 1, "open", b, "r")
	expectAllowed(t, sbB, "open", a, "r")

	// A cgroup created below the sandbox stays confined.
	expectDenied(t, l, sbA, events.KindFile, a, 1, "mkcg", "open", a, "r")

	// Audit: allowed and reported.
	code, pid := run(t, audit, "open", a, "r")
	if code != 0 {
		t.Fatalf("open in audit sandbox: exit %d, want allowed", code)
	}
	ev := nextEvent(t, l)
	if !ev.Audit || ev.Path != a || int(ev.TGID) != pid || ev.CgroupID != audit.g.ID {
		t.Errorf("audit event %+v", ev)
	}
	noEvent(t, l)

	st, err := l.Stats()
	if err != nil {
		t.Fatal(err)
	}
	var enforced, audited uint64
	for _, c := range st.Violations {
		if c.Op == events.OpRead && c.Audit {
			audited += c.Value
		} else if c.Op == events.OpRead {
			enforced += c.Value
		}
	}
	if enforced != 3 || audited != 1 {
		t.Errorf("Stats: %d enforced and %d audited reads, want 3 and 1 (%+v)", enforced, audited, st)
	}

	// After Remove the cgroup is no longer confined.
	if err := l.Remove(sbB.id); err != nil {
		t.Fatal(err)
	}
	expectAllowed(t, sbB, "open", b, "r")
}

// The kernel and the policy package's reference matcher must agree.
func TestLSMMatchesPolicy(t *testing.T) {
	dir := tempDir(t)
	p := compiled(
		ruleSpec{policy.AccessRead, "paths", dir + "/s/secret"},
		ruleSpec{policy.AccessRead, "paths", dir + "/d"},
		ruleSpec{policy.AccessRead, "names", ".git"},
		ruleSpec{policy.AccessRead, "names", "credentials"},
		ruleSpec{policy.AccessRead, "prefix", ".env"},
		ruleSpec{policy.AccessRead, "suffix", ".key"},
		ruleSpec{policy.AccessWrite, "names", "locked"},
		ruleSpec{policy.AccessWrite, "suffix", ".lock"},
		ruleSpec{policy.AccessWrite, "paths", dir + "/w"},
	)
	var paths []string
	for _, rel := range []string{
		"s/secret", "s/secret2", "s/secre", "d/x", "d", "dd/x", "d.x",
		"p/.git/config", "p/.gitignore", "p/x.git", "a/b/c/d/e/credentials", "credentials/x/y",
		".env", ".env.local", "x.env", ".ENV", "a.key", "a.key.pub", "key", ".key",
		"locked/f", "f.lock", "w/x", "wx",
	} {
		paths = append(paths, dir+"/"+rel)
	}
	for _, path := range paths {
		if _, err := os.Stat(path); err != nil {
			touch(t, path)
		}
	}
	l := openLSM(t)
	sb := addSandbox(t, l, p, policy.ModeEnforce)
	for _, path := range paths {
		st, _ := os.Stat(path)
		for _, write := range []bool{false, true} {
			if write && st.IsDir() {
				continue
			}
			mode := "r"
			if write {
				mode = "w"
			}
			want, deny := p.MatchOpen(path, write)
			code, _ := run(t, sb, "open", path, mode)
			if got := code == exitEPERM; got != deny {
				t.Errorf("open(%s, %s): kernel denied=%v (exit %d), policy denied=%v (rule %d)", path, mode, got, code, deny, want)
				continue
			}
			if !deny {
				continue
			}
			ev := nextEvent(t, l)
			// Where several rules match, backends may report another one
			// of them; it must match on its own.
			if ev.Rule != uint32(want) {
				only := onlyRule(p, policy.RuleID(ev.Rule))
				if _, ok := only.MatchOpen(path, write); !ok {
					t.Errorf("open(%s, %s): kernel reported rule %d, which does not match", path, mode, ev.Rule)
				}
			}
		}
	}
	noEvent(t, l)
}

// onlyRule is c reduced to the entries of one rule.
func onlyRule(c *policy.Compiled, id policy.RuleID) *policy.Compiled {
	filter := func(es []policy.Entry) []policy.Entry {
		var out []policy.Entry
		for _, e := range es {
			if e.Rule == id {
				out = append(out, e)
			}
		}
		return out
	}
	set := func(fs policy.FileSet) policy.FileSet {
		return policy.FileSet{Paths: filter(fs.Paths), Names: filter(fs.Names), NamePrefix: filter(fs.NamePrefix), NameSuffix: filter(fs.NameSuffix)}
	}
	return &policy.Compiled{Rules: c.Rules, Read: set(c.Read), Write: set(c.Write), Exec: set(c.Exec)}
}
