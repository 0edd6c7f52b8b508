//go:build linux

package escape

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/testutil"
)

// TestReapStale: a suite directory whose owner is gone (go test's timeout
// killed it) is removed with its user and what runs as that user; one
// whose owner runs is left alone.
func TestReapStale(t *testing.T) {
	testutil.RequireRoot(t)
	// The reaping is for the machine CI and developers run the suite on; a
	// guest and whatever a killed suite left in it go with its boot (and
	// under TCG the stale agent was once not found within the test's wait:
	// 1 of 2 runs in the 6.1 guest).
	testutil.HostOnly(t)
	if _, err := exec.LookPath("userdel"); err != nil {
		testutil.SkipUnlessKernel(t, "no userdel: the suite's users cannot be removed here")
	}
	tmp := t.TempDir()
	stale := filepath.Join(tmp, "aigate-escape-stale")
	live := filepath.Join(tmp, "aigate-escape-live")
	for _, d := range []string{stale, live} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	name := fmt.Sprintf("aiescr%d", os.Getpid()%10000)
	// The owner: a process that has exited.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	owner := fmt.Sprintf("%d %s %s\n", dead.Process.Pid, "1", name)
	if err := os.WriteFile(filepath.Join(stale, ownerFile), []byte(owner), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeOwner(live, "aiescnone"); err != nil {
		t.Fatal(err)
	}
	if err := addUser(name, stale); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = exec.Command("userdel", name).Run()
		_ = exec.Command("groupdel", name).Run()
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	// What a sandbox of the killed suite left running.
	left := exec.Command("sleep", "60")
	left.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	if err := left.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = left.Wait(); close(done) }()
	t.Cleanup(func() { _ = left.Process.Kill(); <-done })

	// An agent of the killed suite (root, its copy of aigate) that did
	// not end with it: here a shell that ignores SIGTERM and waits, with
	// no child, on a pipe that stays open.
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(stale, "aigate")
	if err := copyFile(bash, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	agent := exec.Command(bin, "-c", "trap '' TERM; read -t 60 x")
	stdin, err := agent.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	agentDone := make(chan struct{})
	go func() { _ = agent.Wait(); close(agentDone) }()
	t.Cleanup(func() { _ = agent.Process.Kill(); <-agentDone })

	reapStale(tmp)

	select {
	case <-agentDone:
	case <-time.After(10 * time.Second):
		t.Error("the stale suite's agent was not killed")
	}

	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Error("the stale suite's process was not killed")
	}
	if _, err := user.Lookup(name); err == nil {
		t.Errorf("user %s left", name)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("%s left: %v", stale, err)
	}
	if _, err := os.Stat(filepath.Join(live, ownerFile)); err != nil {
		t.Errorf("a running suite's directory was removed: %v", err)
	}
}
