//go:build linux

package fanotify

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/forksafe"
	"github.com/aigate-dev/aigate/internal/testutil"
	"golang.org/x/sys/unix"
)

// The "stallbackend" helper: aigate with one sandbox denying args[1], the
// watchdog bounds args[2..4] (reader stall, guard stall, guard release) and
// a reader that, once ready, holds its next batch for args[5] (0: for
// ever), as a reader stuck in dispatch would. With args[6] == "holder" it
// also starts a process outside every sandbox that holds the group, as a
// child aigate forked holds it until it executes. It prints "ready
// GUARDPID HOLDERPID" (0: no holder).
var _ = registerHelper("stallbackend", func(args []string) string {
	// args[5] "each:D": every read takes D longer, the reader never stops.
	each := strings.HasPrefix(args[5], "each:")
	args[5] = strings.TrimPrefix(args[5], "each:")
	var d [4]time.Duration
	for i := range d {
		v, err := time.ParseDuration(args[2+i])
		if err != nil {
			return err.Error()
		}
		d[i] = v
	}
	var armed atomic.Bool
	b, err := Open(Options{readerStall: d[0], guardStall: d[1], guardRelease: d[2], beforeBatch: func() {
		if each && armed.Load() {
			time.Sleep(d[3])
			return
		}
		if !armed.Swap(false) {
			return
		}
		if d[3] == 0 {
			select {}
		}
		time.Sleep(d[3])
	}})
	if err != nil {
		return err.Error()
	}
	if err := addHelperSandbox(b, args[0], args[1]); err != nil {
		return err.Error()
	}
	holder := 0
	if args[6] == "holder" {
		dup, err := unix.Dup(b.group) // the same open file, as fork gives it
		if err != nil {
			return err.Error()
		}
		group := os.NewFile(uintptr(dup), "fanotify")
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), helperEnv+"=sleep")
		cmd.ExtraFiles = []*os.File{group}
		if err := forksafe.Start(cmd); err != nil {
			return err.Error()
		}
		holder = cmd.Process.Pid
	}
	armed.Store(true)
	fmt.Printf("ready %d %d\n", b.guard.cmd.Process.Pid, holder)
	select {}
})

// stallWorld is a backend in a helper process whose reader stalls, a
// sandbox with a sleeping process in it, and the protected file.
type stallWorld struct {
	e       *env
	secret  string
	g       *cgroup.Group
	helper  *exec.Cmd
	helperW chan struct{} // closed once the helper has exited
	stderr  *testutil.SyncBuffer
	guard   int // pidfd of the guard
	holder  int // pidfd of the extra holder of the group, or -1
	sleeper *exec.Cmd
	sleepW  chan struct{}
}

func newStallWorld(t *testing.T, name string, readerStall, stall, release time.Duration, hold string, holder bool) *stallWorld {
	e := newEnv(t, nil) // for the temp tree and the skip checks only
	w := &stallWorld{e: e, secret: e.write(filepath.Join(e.project, "token"), "t"), stderr: &testutil.SyncBuffer{}, guard: -1, holder: -1}
	g, err := cgroup.Create("aigate-test", fmt.Sprintf("%s%d", name, os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	w.g = g
	// Cleanups run last first: this one runs after every process is dead.
	t.Cleanup(func() {
		killCgroup(g.Path)
		if err := g.Remove(); err != nil {
			t.Error(err)
		}
	})
	extra := "-"
	if holder {
		extra = "holder"
	}
	w.helper = e.cmd(nil, "stallbackend", g.Path, w.secret, readerStall.String(), stall.String(), release.String(), hold, extra)
	out, err := w.helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	w.helper.Stderr = io.MultiWriter(os.Stderr, w.stderr)
	w.helper.WaitDelay = 5 * time.Second
	if err := forksafe.Start(w.helper); err != nil {
		t.Fatal(err)
	}
	w.helperW = make(chan struct{})
	go func() { _ = w.helper.Wait(); close(w.helperW) }()
	// Never leave a group behind that nobody answers: kill aigate, then
	// its guard (which, seeing aigate gone, would kill the sandbox and
	// release the group anyway).
	t.Cleanup(func() {
		_ = w.helper.Process.Kill()
		for _, pidfd := range []int{w.holder, w.guard} {
			if pidfd >= 0 {
				if pidfd == w.guard {
					waitPidfd(pidfd, 10*time.Second)
				}
				_ = unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0)
				waitPidfd(pidfd, 5*time.Second)
				unix.Close(pidfd)
			}
		}
		select {
		case <-w.helperW:
		case <-time.After(15 * time.Second):
			t.Error("helper backend did not exit")
		}
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	var pid, hpid int
	if _, serr := fmt.Sscanf(line, "ready %d %d", &pid, &hpid); err != nil || serr != nil {
		t.Fatalf("helper backend: %q, %v", line, err)
	}
	if w.guard, err = unix.PidfdOpen(pid, 0); err != nil {
		t.Fatalf("pidfd of the guard %d: %v", pid, err)
	}
	if hpid != 0 {
		if w.holder, err = unix.PidfdOpen(hpid, 0); err != nil {
			t.Fatalf("pidfd of the holder %d: %v", hpid, err)
		}
	}
	w.sleeper = e.cmd(&sbox{Sandbox: &enforce.Sandbox{CgroupPath: g.Path}, g: g}, "sleep")
	if err := forksafe.Start(w.sleeper); err != nil {
		t.Fatal(err)
	}
	w.sleepW = make(chan struct{})
	go func() { _ = w.sleeper.Wait(); close(w.sleepW) }()
	t.Cleanup(func() { _ = w.sleeper.Process.Kill(); <-w.sleepW })
	return w
}

// outsideOpen opens the protected file from a process outside every
// sandbox, in the background; the channel gets its answer and how long it
// took. A hung open is killed after limit (the wait is killable).
func (w *stallWorld) outsideOpen(limit time.Duration) <-chan string {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	cmd := exec.CommandContext(ctx, os.Args[0], w.secret, "r")
	cmd.Env = append(os.Environ(), helperEnv+"=open")
	res := make(chan string, 1)
	start := time.Now()
	go func() {
		defer cancel()
		out, err := output(cmd)
		if err != nil {
			res <- fmt.Sprintf("failed after %s: %v", time.Since(start).Round(time.Millisecond), err)
			return
		}
		res <- fmt.Sprintf("%s after %s", out, time.Since(start).Round(time.Millisecond))
	}()
	return res
}

func (w *stallWorld) frozen() bool {
	data, _ := os.ReadFile(filepath.Join(w.g.Path, "cgroup.events"))
	return strings.Contains(string(data), "frozen 1")
}

// TestStuckReaderReleasesGroup: aigate's reader stops answering (stuck in
// dispatch). Every process on the machine that opens a marked file waits
// for it; the watchdog bounds that wait: the reaper withholds the
// heartbeat, the guard freezes the sandbox and, past its release bound,
// kills it and aigate, and exits, so that the kernel allows the outsider's
// open. Another holder of the group outside the sandbox (a child aigate
// forked that has not executed yet) is killed too: while it held the group
// the kernel would still wait.
func TestStuckReaderReleasesGroup(t *testing.T) {
	for _, holder := range []bool{false, true} {
		t.Run(fmt.Sprintf("holder=%v", holder), func(t *testing.T) { testStuckReader(t, holder) })
	}
}

func testStuckReader(t *testing.T, holder bool) {
	const readerStall, stall, release = 500 * time.Millisecond, 500 * time.Millisecond, 2 * time.Second
	w := newStallWorld(t, "fanwatchdog", readerStall, stall, release, "0s", holder)
	bound := 3 * (readerStall + release)
	start := time.Now()
	res := <-w.outsideOpen(bound + 10*time.Second)
	took := time.Since(start)
	t.Logf("outsider's open with a stuck reader: %s", res)
	if !strings.HasPrefix(res, "ok after") {
		t.Fatalf("outsider's open of a marked file with aigate's reader stuck: %s, want ok", res)
	}
	if took > bound {
		t.Fatalf("outsider's open waited %s, want under %s", took, bound)
	}
	select {
	case <-w.sleepW:
	case <-time.After(5 * time.Second):
		t.Fatal("the sandboxed process survived the release")
	}
	select {
	case <-w.helperW:
	case <-time.After(5 * time.Second):
		t.Fatal("aigate (the helper) survived the release")
	}
	if ws, ok := w.helper.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("helper ended with %v, want killed by SIGKILL", w.helper.ProcessState)
	}
	waitPidfd(w.guard, 5*time.Second)
	if n, _ := unix.Poll([]unix.PollFd{{Fd: int32(w.guard), Events: unix.POLLIN}}, 0); n != 1 {
		t.Fatal("the guard is still running after the release")
	}
	if holder {
		if n, _ := unix.Poll([]unix.PollFd{{Fd: int32(w.holder), Events: unix.POLLIN}}, 0); n != 1 {
			t.Fatal("the other holder of the group is still running after the release")
		}
	}
	if msg := w.stderr.String(); !strings.Contains(msg, "stopped answering the kernel for 2s; killed its sandboxes (1), aigate and") {
		t.Fatalf("stderr does not say why: %q", msg)
	}
}

// TestShortReaderStallFreezesThenThaws: a reader that holds one batch for
// a while (but less than the release bound) only freezes the sandbox,
// which is thawed when the reader goes back; aigate and the sandbox live.
func TestShortReaderStallFreezesThenThaws(t *testing.T) {
	const readerStall, stall, release, hold = 300 * time.Millisecond, 300 * time.Millisecond, 30 * time.Second, 4 * time.Second
	w := newStallWorld(t, "fanshortstall", readerStall, stall, release, hold.String(), false)
	if w.frozen() {
		t.Fatal("frozen before any stall")
	}
	res := w.outsideOpen(release)
	deadline := time.Now().Add(hold)
	for !w.frozen() {
		if time.Now().After(deadline) {
			t.Fatalf("the sandbox was not frozen within %s of a stuck reader", hold)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := <-res; !strings.HasPrefix(got, "ok after") {
		t.Fatalf("outsider's open: %s, want ok after about %s", got, hold)
	}
	deadline = time.Now().Add(5 * time.Second)
	for w.frozen() {
		if time.Now().After(deadline) {
			t.Fatal("the sandbox stayed frozen after the reader resumed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case <-w.sleepW:
		t.Fatal("the sandboxed process died in a short stall")
	case <-w.helperW:
		t.Fatal("aigate (the helper) died in a short stall")
	default:
	}
}

// TestBusyReaderKeepsHeartbeat: a reader that never goes back to poll
// because events keep coming (outsiders opening marked files in a loop,
// each read slowed down), but answers all the while, is not a stall:
// the heartbeat attests progress per read, and nothing is frozen.
//
// The reader goes back to poll after a read that left room in its buffer
// (64 events): more openers than that keep every read full, else the
// test would pass with the heartbeat attested per wakeup only. The bounds
// are four heartbeats (guardHeartbeat, 250 ms) and ten slowed reads: with
// 300 ms, one heartbeat 50 ms late on a loaded machine froze the sandbox.
func TestBusyReaderKeepsHeartbeat(t *testing.T) {
	const readerStall, stall, release, perRead = time.Second, time.Second, 30 * time.Second, 100 * time.Millisecond
	const openers = 2 * 64
	w := newStallWorld(t, "fanbusy", readerStall, stall, release, "each:"+perRead.String(), false)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var opens atomic.Int64
	for range openers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if fd, err := unix.Open(w.secret, unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
					unix.Close(fd)
					opens.Add(1)
				}
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	end := time.Now().Add(readerStall + stall + 2*time.Second)
	for time.Now().Before(end) {
		if w.frozen() {
			t.Fatalf("sandbox frozen while the reader answered (%d opens)", opens.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := opens.Load(); n < 10*64 {
		t.Fatalf("only %d opens answered: the reader's reads were not full", n)
	}
	t.Logf("%d outsider opens answered in a reader that never went back to poll", opens.Load())
}
