//go:build linux

package run

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/testutil"
)

// TestE2ERunSuspendResume: a command on run's pseudo-terminal, started
// from an interactive shell, stops with Ctrl-Z (the shell shows the job
// stopped), continues with fg, and Ctrl-C then ends it (exit 130): the
// terminal is back in raw mode after fg. It was left in line mode when
// raw mode was taken before the stop had reached aigate, and Ctrl-C then
// signalled aigate, not the command.
func TestE2ERunSuspendResume(t *testing.T) {
	bin := aigateBinary(t)
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		testutil.SkipUnlessKernel(t, "no tmux to drive a terminal")
	}
	proj, env := e2eProject(t)
	trust := filepath.Join(t.TempDir(), "trust")
	if err := os.Mkdir(trust, 0o700); err != nil {
		t.Fatal(err)
	}
	var script strings.Builder
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		if k == "TMUX" || k == "TMUX_PANE" || k == "TERM" || strings.ContainsAny(k, " -.%()") {
			continue
		}
		script.WriteString("export " + k + "='" + strings.ReplaceAll(v, "'", `'\''`) + "'\n")
	}
	script.WriteString("cd " + proj + "\nPS1='$ '\n")
	rc := filepath.Join(t.TempDir(), "rc")
	if err := os.WriteFile(rc, []byte(script.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "tmux")
	tm := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(tmux, append([]string{"-S", sock}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	tm("new-session", "-d", "-x", "100", "-y", "30", "bash", "--noprofile", "--rcfile", rc, "-i")
	t.Cleanup(func() { exec.Command(tmux, "-S", sock, "kill-server").Run() })
	screen := func() string { return tm("capture-pane", "-p", "-J", "-S", "-100") }
	waitFor := func(what string, since int) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			if strings.Count(screen(), what) > since {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the terminal never showed %q:\n%s", what, screen())
			}
		}
	}
	tm("send-keys", "-l", bin+" run --backend fanotify --trust-dir "+trust+" -- sh -c 'while :; do echo tick; sleep 0.2; done'")
	tm("send-keys", "Enter")
	waitFor("tick", 0)
	tm("send-keys", "C-z")
	waitFor("Stopped", 0)
	tm("send-keys", "-l", "fg")
	tm("send-keys", "Enter")
	ticks := strings.Count(screen(), "tick")
	waitFor("tick", ticks+2) // running again
	tm("send-keys", "C-c")
	time.Sleep(time.Second)
	tm("send-keys", "-l", "echo RC=$?")
	tm("send-keys", "Enter")
	waitFor("RC=130", 0)
}
