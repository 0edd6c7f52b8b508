//go:build linux

package escape

import (
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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

	// One shell runs every attack, inside and outside alike: a sandbox
	// each costs seconds in the TCG guest.
	names := slices.Sorted(maps.Keys(attacks))
	var script strings.Builder
	for _, name := range names {
		fmt.Fprintf(&script, "echo '== %s'; %s 2>&1; echo \"rc=$?\"\n", name, attacks[name])
	}
	eachBackend(t, func(t *testing.T, b *box) {
		outside, _ := b.outsideRun(script.String())
		r := b.sh(script.String())
		inside, controls := splitAttacks(r.stdout), splitAttacks(outside)
		for _, name := range names {
			if out := controls[name]; !strings.Contains(out, "sk-root-") || !strings.HasSuffix(out, "rc=0") {
				t.Fatalf("%s: the control failed: outside the sandbox %q did not read the file:\n%s\n"+
					"the test proves nothing where the file system ignores these bits (nosuid)", name, attacks[name], outside)
			}
		}
		for _, name := range names {
			out, ok := inside[name]
			if !ok {
				t.Errorf("%s: did not run inside the sandbox:\n%s", name, r)
				continue
			}
			if strings.HasSuffix(out, "rc=0") || strings.Contains(out, "sk-root-") {
				t.Errorf("%s: %q read root's file inside the sandbox:\n%s", name, attacks[name], out)
			}
			if !strings.Contains(out, "Permission denied") {
				t.Errorf("%s: want cat's own EACCES (the exec ran, unprivileged):\n%s", name, out)
			}
		}
	})
}

// splitAttacks cuts the output of the attacks' script into each one's
// (its lines and its "rc=N"), by the "== name" lines.
func splitAttacks(out string) map[string]string {
	m := map[string]string{}
	var name string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if n, ok := strings.CutPrefix(line, "== "); ok {
			name = n
			continue
		}
		if name != "" {
			m[name] = strings.TrimSpace(m[name] + "\n" + line)
		}
	}
	return m
}
