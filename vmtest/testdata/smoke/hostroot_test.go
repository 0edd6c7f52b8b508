package smoke

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestHostRoot runs the host's programs in the guest (vmtest --host-root,
// SMOKE_HOST_DIR names a --host-dir holding hello.js), while the
// initramfs's busybox stays /bin/sh.
func TestHostRoot(t *testing.T) {
	dir := os.Getenv("SMOKE_HOST_DIR")
	if dir == "" {
		// skip-ok: only vmtest's TestSmokeHostRoot (make vmtest-smoke, run by CI) boots this with SMOKE_HOST_DIR set.
		t.Skip("no host root (SMOKE_HOST_DIR unset)")
	}
	for _, c := range [][]string{
		{"bash", "-c", "echo bash $BASH_VERSION"},
		{"python3", "-c", "import json, sqlite3; print('python3', json.dumps([1]))"},
		{"git", "--version"},
		{"tmux", "-V"},
		{"curl", "--version"},
		{"node", filepath.Join(dir, "hello.js")},
	} {
		out, err := exec.Command(c[0], c[1:]...).CombinedOutput()
		if err != nil {
			t.Errorf("%s: %v\n%s", strings.Join(c, " "), err, out)
			continue
		}
		t.Logf("%s: %s", c[0], strings.SplitN(string(out), "\n", 2)[0])
	}
	if target, _ := filepath.EvalSymlinks("/bin/sh"); target != "/bin/busybox" {
		t.Errorf("/bin/sh is %s, want busybox from the initramfs on top", target)
	}
	// Writes land in the overlay's tmpfs.
	if err := os.WriteFile("/usr/lib/written-by-guest", []byte("x"), 0o644); err != nil {
		t.Errorf("the overlay is not writable: %v", err)
	}
}
