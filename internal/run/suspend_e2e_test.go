//go:build linux

package run

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// TestE2ERunSuspendResume: a command on run's pseudo-terminal, started
// from an interactive shell. Through an agent, Ctrl-Z stops it (the shell
// shows the job stopped), fg continues it, and Ctrl-C then ends it (exit
// 130): the terminal is back in raw mode after fg. It was left in line
// mode when raw mode was taken before the stop had reached aigate, and
// Ctrl-C then signalled aigate, not the command. With the fanotify agent
// embedded, aigate must not stop (it answers the kernel for the marked
// files, the shell's opens too): Ctrl-Z stops nothing and says why, and
// Ctrl-C ends the command.
func TestE2ERunSuspendResume(t *testing.T) {
	bin := aigateBinary(t)
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		testutil.SkipUnlessKernel(t, "no tmux to drive a terminal")
	}
	for _, embedded := range []bool{false, true} {
		name := "agent"
		if embedded {
			name = "embedded"
		}
		t.Run(name, func(t *testing.T) {
			proj, env := e2eProject(t)
			trust := filepath.Join(t.TempDir(), "trust")
			if err := os.Mkdir(trust, 0o700); err != nil {
				t.Fatal(err)
			}
			if !embedded {
				startTestAgent(t, bin, env, trust)
			}
			tm, screen := shellOnTmux(t, tmux, proj, env)
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
			// The command line says ti%sk: only the command prints tick.
			tm("send-keys", "-l", bin+" run --backend fanotify --trust-dir "+trust+" -- sh -c 'while :; do printf \"ti%sk\\n\" c; sleep 0.2; done'")
			tm("send-keys", "Enter")
			waitFor("tick", 0)
			tm("send-keys", "C-z")
			if embedded {
				waitFor("not suspended", 0)
				waitFor("tick", strings.Count(screen(), "tick")+2) // running on
				if strings.Contains(screen(), "Stopped") {
					t.Fatalf("the run with the embedded fanotify agent stopped:\n%s", screen())
				}
			} else {
				waitFor("Stopped", 0)
				tm("send-keys", "-l", "fg")
				tm("send-keys", "Enter")
				waitFor("tick", strings.Count(screen(), "tick")+2) // running again
			}
			tm("send-keys", "C-c")
			time.Sleep(time.Second)
			tm("send-keys", "-l", "echo RC=$?")
			tm("send-keys", "Enter")
			waitFor("RC=130", 0)
		})
	}
}

// shellOnTmux starts an interactive bash in proj with env on a tmux of
// its own; tm runs a tmux command there, screen is what it shows (with
// the scrollback).
func shellOnTmux(t *testing.T, tmux, proj string, env []string) (tm func(args ...string) string, screen func() string) {
	t.Helper()
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
	tm = func(args ...string) string {
		t.Helper()
		out, err := exec.Command(tmux, append([]string{"-S", sock}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	tm("new-session", "-d", "-x", "100", "-y", "30", "bash", "--noprofile", "--rcfile", rc, "-i")
	t.Cleanup(func() { exec.Command(tmux, "-S", sock, "kill-server").Run() })
	return tm, func() string { return tm("capture-pane", "-p", "-J", "-S", "-100") }
}

// startTestAgent starts an agent of the test's own on env's socket
// (api.SocketEnv), stopped when the test ends.
func startTestAgent(t *testing.T, bin string, env []string, trust string) {
	t.Helper()
	var sock string
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, api.SocketEnv+"="); ok {
			sock = v
		}
	}
	log := &testutil.SyncBuffer{}
	cmd := exec.Command(bin, "agent", "--socket", sock, "--metrics-addr", "", "--backend", "fanotify", "--trust-dir", trust)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() })
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent did not listen on %s:\n%s", sock, log)
		}
	}
}
