//go:build linux

package run

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/aigate-dev/aigate/internal/e2e"
	"github.com/aigate-dev/aigate/internal/testutil"
)

const maskTestKey = "sk-abcdefghijklmnopqrstuvwxyz123456"

// maskProject is e2eProject with a global config that masks sk- keys.
func maskProject(t *testing.T) (proj string, env []string) {
	t.Helper()
	proj, env = e2eProject(t)
	dir := filepath.Join(filepath.Dir(proj), ".aigate")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := "mask_output:\n  - \"sk-[A-Za-z0-9]{20,}\"\n"
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return proj, env
}

// On pipes, both output streams are masked with the marker, the exit
// status is the command's, and run says once that masking is on.
func TestE2ERunMaskPipes(t *testing.T) {
	bin := aigateBinary(t)
	proj, env := maskProject(t)
	var stdout, stderr bytes.Buffer
	cmd := fanotifyRun(t, bin, "sh", "-c",
		"echo token="+maskTestKey+"; echo also "+maskTestKey+" >&2; printf 'no newline sk-'; exit 7")
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = proj, env, &stdout, &stderr
	if code := e2e.ExitCodeOf(t, runBounded(cmd)); code != 7 {
		t.Fatalf("exit %d, want 7\nstdout: %s\nstderr: %s", code, stdout.String(), stderr.String())
	}
	if want := "token=[masked by aigate]\nno newline sk-"; stdout.String() != want {
		t.Errorf("stdout %q, want %q", stdout.String(), want)
	}
	if !strings.Contains(stderr.String(), "also [masked by aigate]\n") {
		t.Errorf("stderr not masked:\n%s", stderr.String())
	}
	if n := strings.Count(stderr.String(), "output masking is on"); n != 1 {
		t.Errorf("masking announced %d times, want once:\n%s", n, stderr.String())
	}
	if strings.Contains(stdout.String()+stderr.String(), "abcdefghijklmnop") {
		t.Error("the key leaked")
	}
	assertNoSandboxOf(t, cmd.Process.Pid)
}

// Without mask_output nothing changes: no announcement, the key shows.
func TestE2ERunNoMask(t *testing.T) {
	bin := aigateBinary(t)
	proj, env := e2eProject(t)
	var stdout, stderr bytes.Buffer
	cmd := fanotifyRun(t, bin, "echo", maskTestKey)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = proj, env, &stdout, &stderr
	if code := e2e.ExitCodeOf(t, runBounded(cmd)); code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr.String())
	}
	if stdout.String() != maskTestKey+"\n" || strings.Contains(stderr.String(), "masking") {
		t.Errorf("stdout %q, stderr %q", stdout.String(), stderr.String())
	}
}

// sttyG is the mode of the terminal tty as stty -g prints it.
func sttyG(t *testing.T, tty *os.File) string {
	t.Helper()
	c := exec.Command("stty", "-g")
	c.Stdin = tty
	out, err := c.Output()
	if err != nil {
		t.Fatalf("stty -g: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// On a terminal the command runs on a pty of aigate's: its output is
// masked keeping the width, it sees the terminal's size, what is typed
// reaches it, its exit status is kept, and the terminal's mode is the
// same afterwards.
func TestE2ERunMaskPTY(t *testing.T) {
	bin := aigateBinary(t)
	proj, env := maskProject(t)
	master, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	defer tty.Close()
	if err := pty.Setsize(master, &pty.Winsize{Rows: 33, Cols: 101}); err != nil {
		t.Fatal(err)
	}
	before := sttyG(t, tty)

	cmd := fanotifyRun(t, bin, "sh", "-c",
		"echo token="+maskTestKey+"; stty size; [ -t 1 ] && echo stdout-is-a-tty; read x; echo got=$x; exit 3")
	cmd.Dir, cmd.Env = proj, env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	out := &testutil.SyncBuffer{}
	copied := make(chan struct{})
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			out.Write(buf[:n])
			if err != nil {
				close(copied)
				return
			}
		}
	}()
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()

	testutil.WaitUntil(t, 20*time.Second, "the command's prompt", func() bool { return strings.Contains(out.String(), "stdout-is-a-tty") })
	// The terminal is raw meanwhile: aigate passes every byte on.
	if during := sttyG(t, tty); during == before {
		t.Errorf("terminal not in raw mode while the command runs: %s", during)
	}
	if _, err := master.Write([]byte("hello\r")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-waited:
		if code := e2e.ExitCodeOf(t, err); code != 3 {
			t.Fatalf("exit %d, want 3\n%s", code, out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("aigate on a pty did not finish:\n%s", out.String())
	}
	if after := sttyG(t, tty); after != before {
		t.Errorf("terminal mode not restored:\nbefore %s\nafter  %s", before, after)
	}
	tty.Close()
	select {
	case <-copied:
	case <-time.After(5 * time.Second):
	}
	got := out.String()
	for _, want := range []string{
		"token=" + strings.Repeat("*", len(maskTestKey)) + "\r\n",
		"33 101",
		"got=hello",
		"output masking is on",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("terminal output lacks %q:\n%q", want, got)
		}
	}
	if strings.Contains(got, "abcdefghijklmnop") {
		t.Errorf("the key leaked:\n%q", got)
	}
	assertNoSandboxOf(t, cmd.Process.Pid)
}
