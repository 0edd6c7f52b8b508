//go:build linux

package e2e

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The test binary doubles as the program that runs inside the sandboxes:
// started with helperEnv set, it performs the operations named on its
// command line and prints one line per operation with the errno it got, so
// the tests assert errnos, not the wording of some tool's message. It is a
// static Go binary, so the same helper works on the host and in the VM
// (whose busybox nc would itself be a deny_exec default).
const (
	helperEnv = "AIGATE_E2E_HELPER"
	// readyEnv and goEnv make the helper hold the sandbox open after its
	// operations: it creates the ready file, then waits for the go file,
	// while the test repeats the operations outside the sandbox.
	readyEnv = "AIGATE_E2E_READY"
	goEnv    = "AIGATE_E2E_GO"
)

var (
	aigateBin   string
	aigateErr   error
	aigateOnce  sync.Once
	aigateBuilt string // temporary directory of a build, removed at exit
)

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
	case "probe":
		os.Exit(probe(os.Args[1:]))
	case "true":
		os.Exit(0)
	default:
		fmt.Fprintf(os.Stderr, "unknown %s=%q\n", helperEnv, os.Getenv(helperEnv))
		os.Exit(2)
	}
	cleanKept := KeptSets()
	code := m.Run()
	stopSharedAgent()
	cleanKept()
	if aigateBuilt != "" {
		os.RemoveAll(aigateBuilt)
	}
	os.Exit(code)
}

// binary returns the aigate binary under test, building it on first use
// (tests that skip never pay for the build).
func binary(t *testing.T) string {
	t.Helper()
	aigateOnce.Do(func() {
		dir, err := os.MkdirTemp("", "aigate-e2e-bin-")
		if err != nil {
			aigateErr = err
			return
		}
		// Runs for another user start the exec helper, a copy of this
		// binary, as that user: the directory must let them reach it.
		if err := os.Chmod(dir, 0o755); err != nil {
			aigateErr = err
			return
		}
		var built bool
		aigateBin, built, aigateErr = Binary(dir)
		if built {
			aigateBuilt = dir
		} else {
			os.RemoveAll(dir)
		}
	})
	if aigateErr != nil {
		t.Fatal(aigateErr)
	}
	return aigateBin
}

// probe performs each "op:target" of args and prints "op target result".
func probe(args []string) int {
	fmt.Printf("pid %d\n", os.Getpid())
	for _, a := range args {
		op, target, _ := strings.Cut(a, ":")
		fmt.Printf("%s %s %s\n", op, target, outcome(do(op, target)))
	}
	if ready := os.Getenv(readyEnv); ready != "" {
		if err := os.WriteFile(ready, nil, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 3
		}
		deadline := time.Now().Add(2 * time.Minute)
		for {
			if _, err := os.Stat(os.Getenv(goEnv)); err == nil {
				break
			}
			if time.Now().After(deadline) {
				fmt.Fprintln(os.Stderr, "probe: the go file never appeared")
				return 3
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return 0
}

// do performs one operation, the same way inside and outside a sandbox.
func do(op, target string) error {
	switch op {
	case "read":
		f, err := os.Open(target)
		if err != nil {
			return err
		}
		return f.Close()
	case "write":
		f, err := os.OpenFile(target, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return err
		}
		return f.Close()
	case "exec":
		cmd := exec.Command(target)
		cmd.Env = append(os.Environ(), helperEnv+"=true")
		return cmd.Run()
	case "unix":
		c, err := net.DialTimeout("unix", target, 10*time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	case "connect":
		c, err := net.DialTimeout("tcp", target, 10*time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	}
	return fmt.Errorf("unknown operation %q", op)
}

// outcome names the result of do: "ok", an errno name such as "EPERM", or
// the error text.
func outcome(err error) string {
	var errno syscall.Errno
	var ee *exec.ExitError
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &errno):
		return unix.ErrnoName(errno)
	case errors.As(err, &ee):
		return fmt.Sprintf("exit-%d", ee.ExitCode())
	}
	return strings.ReplaceAll(err.Error(), " ", "_")
}

// helperComm is the process name the kernel reports for the helper.
func helperComm(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c := filepath.Base(exe)
	if len(c) > 15 {
		c = c[:15]
	}
	return c
}
