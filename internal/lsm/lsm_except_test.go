//go:build linux

package lsm

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/policy"
)

// withExcept adds exceptions to c's read set, one rule each, ids after c's.
func withExcept(c *policy.Compiled, specs ...ruleSpec) *policy.Compiled {
	ex := &policy.FileSet{}
	for _, s := range specs {
		id := policy.RuleID(len(c.Rules) + 1)
		c.Rules = append(c.Rules, policy.Rule{ID: id, Access: policy.AccessRead, Pattern: "except " + s.kind + ":" + s.value})
		e := policy.Entry{Value: s.value, Rule: id}
		switch s.kind {
		case "paths":
			ex.Paths = append(ex.Paths, e)
		case "names":
			ex.Names = append(ex.Names, e)
		case "prefix":
			ex.NamePrefix = append(ex.NamePrefix, e)
		case "suffix":
			ex.NameSuffix = append(ex.NameSuffix, e)
		}
	}
	c.Read.Except = ex
	return c
}

// except_read cancels name and glob matches, never path ones, in the kernel
// exactly as in the reference matcher.
func TestLSMExceptionsMatchPolicy(t *testing.T) {
	dir := tempDir(t)
	p := withExcept(compiled(
		ruleSpec{policy.AccessRead, "paths", dir + "/home/.ssh"},
		ruleSpec{policy.AccessRead, "names", "credentials"},
		ruleSpec{policy.AccessRead, "names", ".env"},
		ruleSpec{policy.AccessRead, "prefix", "id_rsa"},
		ruleSpec{policy.AccessRead, "suffix", ".pem"},
		ruleSpec{policy.AccessWrite, "names", "locked"},
	),
		ruleSpec{policy.AccessRead, "paths", dir + "/home/go/pkg/mod"},
		ruleSpec{policy.AccessRead, "names", "site-packages"},
		ruleSpec{policy.AccessRead, "names", "node_modules"},
		ruleSpec{policy.AccessRead, "suffix", ".pub"},
		ruleSpec{policy.AccessRead, "suffix", "cert.pem"},
	)
	var paths []string
	for _, rel := range []string{
		// excepted
		"home/go/pkg/mod/google.golang.org/grpc@v1/credentials/tls.go",
		"proj/.venv/lib/python3.11/site-packages/certifi/cacert.pem",
		"proj/node_modules/x/.env",
		"proj/node_modules/a/b/c/d/e/server.pem",
		"proj/keys/id_rsa.pub",
		"proj/tls/client-cert.pem",
		// still denied
		"home/.ssh/id_rsa.pub",
		"home/.ssh/node_modules/x",
		"home/.ssh/known_hosts",
		"proj/keys/id_rsa",
		"proj/.env",
		"proj/credentials/a.go",
		"proj/tls/server.pem",
		"home/go/pkg/modx/credentials/a.go",
		"proj/site-packagesx/certifi/cacert2.pem",
		// write rules have no exceptions
		"proj/node_modules/locked/f",
	} {
		paths = append(paths, touch(t, dir+"/"+rel))
	}
	l := openLSM(t)
	sb := addSandbox(t, l, p, policy.ModeEnforce)
	for _, path := range paths {
		for _, write := range []bool{false, true} {
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
			if deny {
				if ev := nextEvent(t, l); ev.Rule != uint32(want) {
					t.Errorf("open(%s, %s): kernel reported rule %d, policy %d", path, mode, ev.Rule, want)
				}
			}
		}
	}
	noEvent(t, l)
}

// An exception never cancels a directory protected by inode: a name rule
// cancelled by an exception is followed by a walk for directory inodes,
// which catches ~/.ssh reached through a bind mount.
func TestLSMExceptionKeepsDirectoryInodes(t *testing.T) {
	dir := tempDir(t)
	secret := touch(t, dir+"/vault/node_modules/k.pem")
	p := withExcept(compiled(
		ruleSpec{policy.AccessRead, "paths", dir + "/vault"},
		ruleSpec{policy.AccessRead, "suffix", ".pem"},
	), ruleSpec{policy.AccessRead, "names", "node_modules"})
	allowed := touch(t, dir+"/other/node_modules/k.pem")
	bind := dir + "/bind"
	if err := os.Mkdir(bind, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(dir+"/vault", bind, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind mount: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(bind, unix.MNT_DETACH) })
	_ = secret

	l := openLSM(t)
	sb := addSandbox(t, l, p, policy.ModeEnforce)
	expectAllowed(t, sb, "open", allowed, "r")
	code, _ := run(t, sb, "open", bind+"/node_modules/k.pem", "r")
	if code != exitEPERM {
		t.Fatalf("open through a bind mount of a protected directory: exit %d, want EPERM", code)
	}
	if ev := nextEvent(t, l); ev.Rule != 1 {
		t.Errorf("reported rule %d, want 1 (the directory's inode rule)", ev.Rule)
	}
	noEvent(t, l)
}
