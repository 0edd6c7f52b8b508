//go:build linux

package escape

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestEscapeSetuidHelpers: nothing inside gains privileges by exec. A
// setuid-root program, a setgid one and one with a file capability read a
// root-only file when the user runs them outside (the control: the setup
// really elevates), and do not inside: the command runs with
// no_new_privs, so the kernel ignores those bits at execve. This is what
// keeps `sudo` (even passwordless), `crontab` and `at` (setgid/setuid
// helpers that would schedule code to run outside the sandbox) and
// `pkexec` powerless inside. No event: the exec is allowed, and the open
// it then attempts fails on the file's own permissions, which no aigate
// rule decides.
func TestEscapeSetuidHelpers(t *testing.T) {
	setup(t)
	dir, err := os.MkdirTemp(machine.dir, "privs-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(dir, "root-only")
	if err := os.WriteFile(secret, []byte("sk-root-only-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cat, err := exec.LookPath("cat")
	if err != nil {
		t.Fatal(err)
	}
	// The group-readable variant: root's file readable by group 0 only,
	// read through a setgid-root cat.
	gsecret := filepath.Join(dir, "root-group")
	if err := os.WriteFile(gsecret, []byte("sk-root-group-secret\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	tools := []struct{ name, file, mode string }{
		{"setuid", "suid-cat", "4755"},
		{"setgid", "sgid-cat", "2755"},
	}
	for _, tool := range tools {
		if err := copyFile(cat, filepath.Join(dir, tool.file), 0o755); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("chmod", tool.mode, filepath.Join(dir, tool.file)).CombinedOutput(); err != nil {
			t.Fatalf("chmod: %v\n%s", err, out)
		}
	}
	attacks := map[string]string{
		"setuid": filepath.Join(dir, "suid-cat") + " " + secret,
		"setgid": filepath.Join(dir, "sgid-cat") + " " + gsecret,
	}
	if setcap, err := exec.LookPath("setcap"); err == nil {
		capcat := filepath.Join(dir, "cap-cat")
		if err := copyFile(cat, capcat, 0o755); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(setcap, "cap_dac_read_search+ep", capcat).CombinedOutput(); err != nil {
			t.Fatalf("setcap: %v\n%s", err, out)
		}
		attacks["capability"] = capcat + " " + secret
	} else {
		t.Logf("no setcap here: the file capability case is not run (%v)", err)
	}

	eachBackend(t, func(t *testing.T, b *box) {
		for name, attack := range attacks {
			out, err := b.outsideRun(attack)
			if err != nil || !strings.Contains(out, "sk-root-") {
				t.Fatalf("%s: the control failed: outside the sandbox %q did not read the file (%v: %s); "+
					"the test proves nothing where the file system ignores these bits (nosuid)", name, attack, err, out)
			}
			r := b.sh(attack)
			if r.code == 0 || strings.Contains(r.stdout+r.stderr, "sk-root-") {
				t.Errorf("%s: %q read root's file inside the sandbox:\n%s", name, attack, r)
			}
			if !strings.Contains(r.stderr, "Permission denied") {
				t.Errorf("%s: want cat's own EACCES (the exec ran, unprivileged):\n%s", name, r)
			}
		}
	})
}
