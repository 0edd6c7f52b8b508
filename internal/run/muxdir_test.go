//go:build linux

package run

import (
	"os"
	"strings"
	"testing"
)

// TestMuxTmpEnv: the command gets a TMUX_TMPDIR of its own, a directory
// only the user can enter, in its temp directory, replacing the user's
// value; done removes it with what the sandbox left there.
func TestMuxTmpEnv(t *testing.T) {
	tmp := t.TempDir()
	env, done := muxTmpEnv([]string{"TMPDIR=" + tmp, "TMUX_TMPDIR=/tmp"}, os.Geteuid(), nil)
	dir := envValue(env, "TMUX_TMPDIR")
	if !strings.HasPrefix(dir, tmp+"/aigate-tmux-") {
		t.Fatalf("TMUX_TMPDIR=%q, want a directory in %s; env %q", dir, tmp, env)
	}
	if n := strings.Count(strings.Join(env, "\n"), "TMUX_TMPDIR="); n != 1 {
		t.Errorf("TMUX_TMPDIR set %d times: %q", n, env)
	}
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("the directory: %v, mode %v", err, st.Mode())
	}
	if err := os.MkdirAll(dir+"/tmux-1/x", 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(tmp, dir+"/tmux-1/link"); err != nil {
		t.Fatal(err)
	}
	done()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the directory after done: %v", err)
	}
	if _, err := os.Stat(tmp); err != nil {
		t.Errorf("done followed a symlink out: %v", err)
	}
}
