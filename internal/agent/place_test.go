//go:build linux

package agent

import (
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// TestPlaceRacesEnd places a process while the sandbox is being ended
// (its client's other connection ends it, or the agent shuts down). Either
// the place is refused, or the process went in before the kill and died
// with the sandbox: never may it enter the cgroup after the kill, outlive
// enforcement and keep the cgroup from being removed.
func TestPlaceRacesEnd(t *testing.T) {
	testutil.HostOnly(t)
	oldGrace, oldMax := settleGrace, settleMax
	settleGrace, settleMax = 0, 0 // the fake has no trailing events
	t.Cleanup(func() { settleGrace, settleMax = oldGrace, oldMax })
	ta := startAgent(t, "", "")
	ta.be.removeDelay = 2 * time.Millisecond
	root := api.Peer{UID: 0, PID: os.Getpid()}
	placed, refused := 0, 0
	for i := range 100 {
		b, _, e := ta.create(context.Background(), root, func() *api.CreateRequest { r := createReq(t); return &r }())
		if e != nil {
			t.Fatal(e)
		}
		cmd := exec.Command("sleep", "60")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()

		// Spread the two over each other: the place lands before, during
		// or after the end's kill and rmdir.
		d := time.Duration(rand.IntN(1500)-300) * time.Microsecond
		ended := make(chan error, 1)
		go func() { time.Sleep(-d); ended <- ta.end(b, "ended") }()
		time.Sleep(d)
		perr := ta.place(root, b, cmd.Process.Pid)
		if err := <-ended; err != nil {
			cmd.Process.Kill()
			t.Fatalf("round %d: end with a place racing it: %v", i, err)
		}
		if perr == nil {
			placed++
			select {
			case <-exited:
			case <-time.After(5 * time.Second):
				cmd.Process.Kill()
				t.Fatalf("round %d: the placed process outlived its sandbox", i)
			}
		} else {
			refused++
			cmd.Process.Kill()
			<-exited
		}
		if _, err := os.Stat(b.sb.Path()); !os.IsNotExist(err) {
			t.Fatalf("round %d: cgroup %s still exists (%v)", i, b.sb.Path(), err)
		}
		if u := ta.be.unconfinedTasks(); len(u) > 0 {
			t.Fatalf("round %d: a process was in %v while its enforcement was removed", i, u)
		}
	}
	t.Logf("placed before the end %d times, refused %d times", placed, refused)
}

// TestPlaceReaped: a pid whose process has been reaped is refused with a
// clear message, also when it is reaped after the checks passed (the pid
// may name another process by the time it is written), and nothing enters
// the sandbox.
func TestPlaceReaped(t *testing.T) {
	testutil.HostOnly(t)
	ta := startAgent(t, "", "")
	root := api.Peer{UID: 0, PID: os.Getpid()}
	for _, c := range []struct {
		name    string
		reapMid bool
		want    string
	}{
		{"before", false, "no such process"},
		{"after the checks", true, "exited before it could be placed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, _, e := ta.create(context.Background(), root, func() *api.CreateRequest { r := createReq(t); return &r }())
			if e != nil {
				t.Fatal(e)
			}
			defer ta.end(b, "ended")
			cmd := exec.Command("sleep", "60")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			reap := func() { cmd.Process.Kill(); cmd.Wait() }
			if c.reapMid {
				placeChecked = func(int) { reap() }
				defer func() { placeChecked = func(int) {} }()
			} else {
				reap()
			}
			e = ta.place(root, b, cmd.Process.Pid)
			if e == nil || e.Code != api.CodeSandbox || !strings.Contains(e.Message, c.want) {
				t.Fatalf("placing pid %d: %v, want a %s error saying %q", cmd.Process.Pid, e, api.CodeSandbox, c.want)
			}
			if populated, err := b.sb.Populated(); err != nil || populated {
				t.Fatalf("sandbox populated %v, %v after a refused place", populated, err)
			}
		})
	}
}
