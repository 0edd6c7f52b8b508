//go:build linux

package fanotify

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/testutil"
	"golang.org/x/sys/unix"
)

func TestDenyReadByPath(t *testing.T) {
	e := newEnv(t, nil)
	secret := e.write(filepath.Join(e.project, "config", "secret.txt"), "s3cret")
	other := e.write(filepath.Join(e.project, "config", "other.txt"), "fine")
	s := e.sandbox(policy.Policy{DenyRead: rules("config/secret.txt")})

	if got := e.run(s, "open", secret, "r"); got != "EPERM" {
		t.Fatalf("sandboxed read of %s: %s, want EPERM", secret, got)
	}
	ev := e.event()
	if ev.Kind != events.KindFile || ev.Op != events.OpRead || ev.Path != secret || ev.Backend != "fanotify" ||
		ev.CgroupID != s.CgroupID || ev.PID == 0 || ev.TGID == 0 || ev.Rule != 1 || ruleText(s, ev) != "config/secret.txt" {
		t.Fatalf("event %+v", ev)
	}
	// The same file outside the sandbox, and another file inside it.
	openHere(t, secret, unix.O_RDONLY)
	if got := e.run(nil, "open", secret, "r"); got != "ok" {
		t.Fatalf("read outside the sandbox: %s", got)
	}
	if got := e.run(s, "open", other, "r"); got != "ok" {
		t.Fatalf("sandboxed read of %s: %s", other, got)
	}
	e.noEvent()
	if n := e.count(events.KindFile, events.OpRead, false); n != 1 {
		t.Fatalf("read counter %d, want 1", n)
	}
}

func TestDenyNamesAtDepth(t *testing.T) {
	e := newEnv(t, nil)
	deep := filepath.Join(e.project, "a", "b", "c")
	denied := []string{
		e.write(filepath.Join(deep, ".env"), "K=v"),
		e.write(filepath.Join(e.project, "x", "server.pem"), "pem"),
		e.write(filepath.Join(e.home, ".ssh", "id_rsa"), "key"),
		e.write(filepath.Join(e.project, "secrets", "d", "e", "f.txt"), "s"),
	}
	fine := e.write(filepath.Join(deep, "main.go"), "package main")
	s := e.sandbox(policy.Policy{DenyRead: rules(".env", "*.pem", "id_rsa*", "secrets")})
	for _, p := range denied {
		if got := e.run(s, "open", p, "r"); got != "EPERM" {
			t.Errorf("sandboxed read of %s: %s, want EPERM", p, got)
			continue
		}
		if ev := e.event(); ev.Path != p || ev.Op != events.OpRead {
			t.Errorf("event %+v for %s", ev, p)
		}
		openHere(t, p, unix.O_RDONLY)
	}
	if got := e.run(s, "open", fine, "r"); got != "ok" {
		t.Fatalf("sandboxed read of %s: %s", fine, got)
	}
	// A matching file created after Add in a directory that was marked.
	later := e.write(filepath.Join(deep, "later.pem"), "new")
	if got := e.run(s, "open", later, "r"); got != "EPERM" {
		t.Fatalf("file created later in a marked directory %s: %s, want EPERM", later, got)
	}
	e.event()
	e.noEvent()
}

func TestDenyWrite(t *testing.T) {
	e := newEnv(t, nil)
	cfg := e.write(filepath.Join(e.project, "ci.yaml"), "x")
	lock := e.write(filepath.Join(e.project, "sub", "go.lock"), "x")
	s := e.sandbox(policy.Policy{DenyWrite: rules("ci.yaml", "*.lock")})
	for _, p := range []string{cfg, lock} {
		if got := e.run(s, "open", p, "r"); got != "ok" {
			t.Errorf("read-only open of deny_write %s: %s, want ok", p, got)
		}
		for _, mode := range []string{"w", "a", "rw", "trunc"} {
			if got := e.run(s, "open", p, mode); got != "EPERM" {
				t.Errorf("open %s of deny_write %s: %s, want EPERM", mode, p, got)
				continue
			}
			if ev := e.event(); ev.Op != events.OpWrite || ev.Path != p {
				t.Errorf("event %+v", ev)
			}
		}
		openHere(t, p, unix.O_WRONLY)
	}
	e.noEvent()
	if n := e.count(events.KindFile, events.OpWrite, false); n != 8 {
		t.Fatalf("write counter %d, want 8", n)
	}
}

// copyBin copies /bin/true to path, executable.
func (e *env) copyBin(path string) string {
	e.t.Helper()
	data, err := os.ReadFile("/bin/true")
	if err != nil {
		testutil.SkipUnlessKernel(e.t, "no /bin/true to copy")
	}
	e.write(path, "")
	if err := os.WriteFile(path, data, 0o755); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Chmod(path, 0o755); err != nil {
		e.t.Fatal(err)
	}
	return path
}

func TestDenyExec(t *testing.T) {
	e := newEnv(t, nil)
	byName := e.copyBin(filepath.Join(e.bin, "mytool"))
	byPath := e.copyBin(filepath.Join(e.project, "tools", "runme"))
	// Another program: a copy would be refused as mytool (TestDenyExecCopy).
	allowed := e.copyBin(filepath.Join(e.project, "tools", "fine"))
	if err := appendByte(allowed); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(e.t.TempDir(), "innocent")
	if err := os.Symlink(byName, link); err != nil {
		t.Fatal(err)
	}
	s := e.sandbox(policy.Policy{DenyExec: rules("mytool", "tools/runme")})
	for _, c := range []struct{ run, path string }{{byName, byName}, {byPath, byPath}, {link, byName}} {
		if got := e.run(s, "exec", c.run); got != "EPERM" {
			t.Errorf("sandboxed exec of %s: %s, want EPERM", c.run, got)
			continue
		}
		if ev := e.event(); ev.Kind != events.KindExec || ev.Op != events.OpExec || ev.Path != c.path {
			t.Errorf("event %+v, want exec of %s", ev, c.path)
		}
		if got := e.run(nil, "exec", c.run); got != "ok" {
			t.Errorf("exec of %s outside the sandbox: %s", c.run, got)
		}
	}
	if got := e.run(s, "exec", allowed); got != "ok" {
		t.Errorf("sandboxed exec of %s: %s", allowed, got)
	}
	// Reading a deny_exec binary is allowed (running a copy is not:
	// TestDenyExecCopy).
	if got := e.run(s, "open", byName, "r"); got != "ok" {
		t.Errorf("read of deny_exec binary: %s", got)
	}
	e.noEvent()
	if n := e.count(events.KindExec, events.OpExec, false); n != 3 {
		t.Fatalf("exec counter %d, want 3", n)
	}
}

func TestAuditMode(t *testing.T) {
	e := newEnv(t, nil)
	secret := e.write(filepath.Join(e.project, ".env"), "K=v")
	s := e.sandbox(policy.Policy{DenyRead: rules(".env"), Mode: policy.ModeAudit})
	if got := e.run(s, "open", secret, "r"); got != "ok" {
		t.Fatalf("audit-mode read: %s, want ok", got)
	}
	if ev := e.event(); !ev.Audit || ev.Path != secret || ev.Op != events.OpRead {
		t.Fatalf("event %+v, want an audit read of %s", ev, secret)
	}
	if n, m := e.count(events.KindFile, events.OpRead, true), e.count(events.KindFile, events.OpRead, false); n != 1 || m != 0 {
		t.Fatalf("audit counter %d, enforce counter %d; want 1, 0", n, m)
	}
}

func TestTwoSandboxes(t *testing.T) {
	e := newEnv(t, nil)
	a := e.write(filepath.Join(e.project, "a.txt"), "a")
	b := e.write(filepath.Join(e.project, "b.txt"), "b")
	sa := e.sandbox(policy.Policy{DenyRead: rules("a.txt")})
	sb := e.sandbox(policy.Policy{DenyRead: rules("b.txt")})
	for _, c := range []struct {
		s    *sbox
		path string
		want string
	}{{sa, a, "EPERM"}, {sa, b, "ok"}, {sb, a, "ok"}, {sb, b, "EPERM"}} {
		if got := e.run(c.s, "open", c.path, "r"); got != c.want {
			t.Errorf("%s reads %s: %s, want %s", c.s.Name, c.path, got, c.want)
		}
		if c.want == "EPERM" {
			if ev := e.event(); ev.CgroupID != c.s.CgroupID || ev.Path != c.path {
				t.Errorf("event %+v", ev)
			}
		}
	}
	// Removing one sandbox leaves the other enforced.
	if err := e.b.Remove(sa.ID); err != nil {
		t.Fatal(err)
	}
	if got := e.run(sb, "open", b, "r"); got != "EPERM" {
		t.Fatalf("after removing %s, %s reads %s: %s", sa.Name, sb.Name, b, got)
	}
	e.event()
	e.noEvent()
}

func TestChildCgroupConfined(t *testing.T) {
	e := newEnv(t, nil)
	secret := e.write(filepath.Join(e.project, "id_ed25519"), "k")
	s := e.sandbox(policy.Policy{DenyRead: rules("id_*")})
	if got := e.run(s, "subcg", "nested", secret); got != "EPERM" {
		t.Fatalf("read from a child cgroup: %s, want EPERM", got)
	}
	if ev := e.event(); ev.CgroupID != s.CgroupID {
		t.Fatalf("event %+v", ev)
	}
}

func TestHardLinkByInode(t *testing.T) {
	e := newEnv(t, nil)
	secret := e.write(filepath.Join(e.project, "creds.json"), "k")
	elsewhere := filepath.Join(t.TempDir(), "copy-of-nothing")
	if err := os.Link(secret, elsewhere); err != nil {
		t.Fatal(err)
	}
	s := e.sandbox(policy.Policy{DenyRead: rules("creds.json")})
	if got := e.run(s, "open", elsewhere, "r"); got != "EPERM" {
		t.Fatalf("read through hard link %s: %s, want EPERM", elsewhere, got)
	}
	if ev := e.event(); ev.Path != elsewhere || ev.Rule != 1 {
		t.Fatalf("event %+v", ev)
	}
	openHere(t, elsewhere, unix.O_RDONLY)
}

// appendByte makes a binary another program: ELF ignores trailing bytes.
func appendByte(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	if _, err := f.Write([]byte{0}); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// TestDenyExecCopy: a byte-for-byte copy of a deny_exec binary under
// another name is refused as that binary, in the project tree and directly
// in /tmp; reading the copy and running another program of the same size
// stay allowed, and nothing is refused outside the sandbox.
func TestDenyExecCopy(t *testing.T) {
	e := newEnv(t, nil)
	denied := e.copyBin(filepath.Join(e.bin, "mytool"))
	inProject := e.copyBin(filepath.Join(e.project, "sub", "renamed"))
	inTmp := e.copyBin(fmt.Sprintf("/tmp/aigate-fanotify-copy-%d", os.Getpid()))
	t.Cleanup(func() { os.Remove(inTmp) })
	// Same size, other content: hashed, then allowed.
	other := e.copyBin(filepath.Join(e.project, "sub", "other"))
	data, err := os.ReadFile(other)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-1] ^= 0xff
	if err := os.WriteFile(other, data, 0o755); err != nil {
		t.Fatal(err)
	}
	s := e.sandbox(policy.Policy{DenyExec: rules("mytool")})
	for _, c := range []string{inProject, inTmp} {
		if got := e.run(s, "exec", c); got != "EPERM" {
			t.Errorf("sandboxed exec of the copy %s: %s, want EPERM", c, got)
			continue
		}
		if ev := e.event(); ev.Kind != events.KindExec || ev.Path != c || ruleText(s, ev) != "mytool" {
			t.Errorf("event %+v, want exec of %s by rule mytool", ev, c)
		}
		if got := e.run(nil, "exec", c); got != "ok" {
			t.Errorf("exec of %s outside the sandbox: %s", c, got)
		}
		if got := e.run(s, "open", c, "r"); got != "ok" {
			t.Errorf("read of the copy %s: %s", c, got)
		}
	}
	if got := e.run(s, "exec", other); got != "ok" {
		t.Errorf("sandboxed exec of a same-size program: %s", got)
	}
	_ = denied
	e.noEvent()
}
