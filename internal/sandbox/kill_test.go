//go:build linux

package sandbox

import (
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"
)

// threadsEnv makes the test binary a multi-threaded process that runs
// until killed: a Go program like aigate's own exec helper or a tool.
const threadsEnv = "AIGATE_SANDBOX_TEST_THREADS"

func TestMain(m *testing.M) {
	if os.Getenv(threadsEnv) != "" {
		runThreads()
	}
	os.Exit(m.Run())
}

func runThreads() {
	for range 4 {
		go func() {
			runtime.LockOSThread()
			for {
				time.Sleep(time.Millisecond)
			}
		}()
	}
	os.Stdout.WriteString("ready\n")
	time.Sleep(time.Minute)
	os.Exit(1)
}

// TestCloseMultiThreaded: a killed multi-threaded process leaves
// cgroup.procs as soon as all its threads have begun to exit, but the
// cgroup stays populated until each thread is through exiting, and rmdir
// fails with EBUSY until then. Close must wait for the kernel's
// "populated 0", not for an empty cgroup.procs (measured on 6.18: about
// one Close in five failed when it did).
func TestCloseMultiThreaded(t *testing.T) {
	parent, _ := testParent(t)
	for i := range 30 {
		sb, err := Create(t.Context(), Config{Backend: &fakeBackend{}, Policy: testPolicy(), Parent: parent})
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), threadsEnv+"=1")
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		c, err := sb.Start(cmd)
		if err != nil {
			sb.Close()
			t.Fatal(err)
		}
		var b [6]byte
		if _, err := out.Read(b[:]); err != nil || string(b[:]) != "ready\n" {
			sb.Close()
			t.Fatalf("threads helper: %q, %v", b, err)
		}
		path := sb.Path()
		if err := sb.Close(); err != nil {
			t.Fatalf("close %d: %v", i, err)
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Fatalf("close %d: cgroup %s still exists (%v)", i, path, err)
		}
		if code, _ := c.Wait(); code != 128+9 {
			t.Fatalf("close %d: helper exited %d, want 137", i, code)
		}
	}
}
