//go:build linux

package agent

import (
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
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
