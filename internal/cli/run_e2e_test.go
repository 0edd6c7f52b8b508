//go:build linux

package cli

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/sandbox"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// These tests build the aigate binary and run it for real, as root, with
// the fanotify backend, which works on every host kernel aigate supports.

// aigateBinary builds aigate into the test's temporary directory (the build
// cache makes every build after the first a link only).
func aigateBinary(t *testing.T) string {
	t.Helper()
	testutil.RequireRoot(t)
	if _, err := cgroup.Mountpoint(); err != nil {
		testutil.SkipUnlessKernel(t, err.Error())
	}
	bin := filepath.Join(t.TempDir(), "aigate")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/aigate").CombinedOutput(); err != nil {
		t.Fatalf("build aigate: %v\n%s", err, out)
	}
	return bin
}

// e2eProject makes a home with a project holding a .env, and an
// environment for aigate in which that home is the invoking user's.
func e2eProject(t *testing.T) (proj string, env []string) {
	t.Helper()
	home := t.TempDir()
	proj = filepath.Join(home, "proj")
	if err := os.MkdirAll(proj, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(proj, ".env"), []byte("API_KEY=secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "SUDO_") || strings.HasPrefix(kv, "HOME=") || strings.HasPrefix(kv, "AIGATE_") {
			continue
		}
		env = append(env, kv)
	}
	// An agent of the test's own, embedded in the run: never the
	// machine's (a service agent would otherwise serve these runs).
	return proj, append(env, "HOME="+home, "NO_COLOR=1", api.SocketEnv+"="+filepath.Join(t.TempDir(), "aigate.sock"))
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	if err == nil {
		return 0
	}
	if !errors.As(err, &ee) {
		t.Fatalf("run aigate: %v", err)
	}
	return ee.ExitCode()
}

// assertNoSandboxOf checks that the run with the given aigate pid left no
// cgroup behind.
func assertNoSandboxOf(t *testing.T, pid int) {
	t.Helper()
	root, _ := cgroup.Mountpoint()
	entries, _ := os.ReadDir(filepath.Join(root, sandbox.DefaultParent))
	for _, e := range entries {
		if _, owner, ok := sandbox.ParseName(e.Name()); ok && owner == pid {
			t.Errorf("sandbox cgroup %s left behind", e.Name())
		}
	}
}

func TestE2ERunCatEnvBlocked(t *testing.T) {
	bin := aigateBinary(t)
	proj, env := e2eProject(t)
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, "run", "--backend", "fanotify", "--", "cat", ".env")
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = proj, env, &stdout, &stderr
	code := exitCode(t, runBounded(cmd))
	if code != 1 {
		t.Fatalf("exit %d, want cat's 1\nstdout: %s\nstderr: %s", code, stdout.String(), stderr.String())
	}
	if strings.Contains(stdout.String(), "secret") {
		t.Fatalf("the secret leaked: %q", stdout.String())
	}
	for _, want := range []string{
		// cat and aigate share stderr and cat writes its message in
		// pieces, so aigate's line may land inside cat's: match the tail.
		".env: Operation not permitted",
		"aigate: blocked read " + filepath.Join(proj, ".env") + " (cat, pid ",
		"rule .env)",
		"aigate: 1 operation blocked (1 read)",
	} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
	assertNoSandboxOf(t, cmd.Process.Pid)
}

func TestE2ERunExitStatusAndUnprotected(t *testing.T) {
	bin := aigateBinary(t)
	proj, env := e2eProject(t)
	if err := os.WriteFile(filepath.Join(proj, "README"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, "run", "--backend", "fanotify", "--", "sh", "-c", "cat README; exit 9")
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = proj, env, &stdout, &stderr
	if code := exitCode(t, runBounded(cmd)); code != 9 || stdout.String() != "hello\n" {
		t.Fatalf("exit %d, stdout %q, stderr %s", code, stdout.String(), stderr.String())
	}
	if strings.Contains(stderr.String(), "blocked") {
		t.Fatalf("unexpected block: %s", stderr.String())
	}
}

// TestE2ERunSignals: SIGINT sent to aigate alone is ignored (at the
// terminal it reaches the command directly); SIGTERM is passed to the
// command, whose exit status becomes aigate's.
func TestE2ERunSignals(t *testing.T) {
	bin := aigateBinary(t)
	proj, env := e2eProject(t)
	marker, ready := filepath.Join(proj, "got-term"), filepath.Join(proj, "ready")
	script := `trap 'echo term > ` + marker + `; exit 42' TERM; touch ` + ready + `; while :; do sleep 0.05; done`
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "run", "--backend", "fanotify", "--", "sh", "-c", script)
	cmd.Dir, cmd.Env, cmd.Stderr = proj, env, &stderr
	cmd.WaitDelay = 5 * time.Second
	// Its own process group, so that nothing aimed at the test's group
	// reaches it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	waitForFile(t, ready, waited, &stderr)

	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-waited:
		t.Fatalf("aigate exited on SIGINT sent to it alone: %v\n%s", err, stderr.String())
	case <-time.After(300 * time.Millisecond):
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-waited:
		if code := exitCode(t, err); code != 42 {
			t.Fatalf("exit %d, want 42 from the command's trap\n%s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("SIGTERM did not end the run")
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("SIGTERM did not reach the command: %v", err)
	}
	assertNoSandboxOf(t, cmd.Process.Pid)
}

// TestE2ERunPTY runs aigate on a pseudo-terminal, as an interactive shell
// would: the denial is reported and the terminal (here its size) reaches
// the command untouched.
func TestE2ERunPTY(t *testing.T) {
	bin := aigateBinary(t)
	proj, env := e2eProject(t)
	cmd := exec.Command(bin, "run", "--backend", "fanotify", "--", "sh", "-c", "cat .env; stty size")
	cmd.Dir, cmd.Env = proj, env
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 33, Cols: 101})
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	t.Cleanup(func() { cmd.Process.Kill() })
	var out bytes.Buffer
	copied := make(chan struct{})
	go func() {
		// Reading the master ends with EIO once every slave is closed.
		io.Copy(&out, tty)
		close(copied)
	}()
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		if code := exitCode(t, err); code != 0 {
			t.Fatalf("exit %d, want 0 (stty succeeds)\n%s", code, out.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("aigate on a pty did not finish")
	}
	select {
	case <-copied:
	case <-time.After(5 * time.Second):
	}
	got := out.String()
	for _, want := range []string{"Operation not permitted", "aigate: blocked read " + filepath.Join(proj, ".env"), "33 101"} {
		if !strings.Contains(got, want) {
			t.Errorf("terminal output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "secret") {
		t.Fatalf("the secret leaked:\n%s", got)
	}
}

// runBounded runs an aigate process with a deadline: a process that
// outlives it holding its output pipes (the fanotify guard inherits
// stderr) or a run that never ends must fail the test, not stall the
// package until go test's own timeout.
func runBounded(cmd *exec.Cmd) error {
	cmd.WaitDelay = 5 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	return runWithContext(ctx, cmd)
}

func waitForFile(t *testing.T, path string, exited <-chan error, log *bytes.Buffer) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		select {
		case err := <-exited:
			t.Fatalf("aigate exited early (%v):\n%s", err, log.String())
		case <-deadline:
			t.Fatalf("%s did not appear:\n%s", path, log.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
