//go:build linux

package fanotify

import (
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/forksafe"
	"github.com/aigate-dev/aigate/internal/policy"
)

// TestTerminalOpenKillsSandbox: a deny_read terminal (the user's other
// terminal, which aigate run adds) opened from inside kills the sandbox
// with an open event; the same open outside is nothing, and a terminal of
// the sandbox's own (its session led inside) is opened inside without
// one. No permission mark: the agent never opens the terminal itself
// (terminal.go).
func TestTerminalOpenKillsSandbox(t *testing.T) {
	e := newEnv(t, nil)
	other, otherSlave, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	defer otherSlave.Close()
	free, freeSlave, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer free.Close()
	defer freeSlave.Close()
	s := e.sandbox(policy.Policy{DenyRead: rules(otherSlave.Name())})
	if e.b.marks.mask(otherSlave.Name()) != 0 {
		t.Fatalf("%s has a permission mark: the agent would open the terminal for each event", otherSlave.Name())
	}

	sleeper := e.cmd(s, "sleep")
	if err := forksafe.Start(sleeper); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sleeper.Wait() }()
	t.Cleanup(func() { _ = sleeper.Process.Kill() })
	leader := e.cmd(s, "sleep")
	leader.Stdin = freeSlave
	leader.SysProcAttr.Setsid, leader.SysProcAttr.Setctty = true, true
	if err := forksafe.Start(leader); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = leader.Process.Kill(); _ = leader.Wait() })

	openHere(t, otherSlave.Name(), unix.O_RDWR)
	if got := e.run(s, "open", freeSlave.Name(), "rw"); got != "ok" {
		t.Fatalf("open of a terminal of the sandbox's own inside: %s", got)
	}
	select {
	case err := <-done:
		t.Fatalf("the sandbox was killed for opens of an unnamed terminal, or outside: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	e.noEvent()

	// Opened and held: the test backend has no exit records to place a
	// process that is gone by the time the watcher reads its event (the
	// agent has: RecordExits).
	holder := e.cmd(s, "openhold", otherSlave.Name())
	if err := forksafe.Start(holder); err != nil {
		t.Fatal(err)
	}
	held := make(chan error, 1)
	go func() { held <- holder.Wait() }()
	t.Cleanup(func() { _ = holder.Process.Kill() })
	ev := e.event()
	if ev.Op != events.OpOpen || ev.Path != otherSlave.Name() || ev.Sandbox != s.Name {
		t.Fatalf("event %+v, want an open of %s by sandbox %s", ev, otherSlave.Name(), s.Name)
	}
	for _, c := range []chan error{done, held} {
		select {
		case <-c:
		case <-time.After(5 * time.Second):
			t.Fatal("the sandbox's processes live on after it opened another terminal")
		}
	}
}

var _ = registerHelper("openhold", func(args []string) string { // openhold PATH: open it, then wait to be killed
	if _, err := unix.Open(args[0], unix.O_RDWR|unix.O_NOCTTY, 0); err != nil {
		return errnoName(err)
	}
	time.Sleep(time.Hour)
	return "ok"
})

var _ = registerHelper("ptyopen", func(args []string) string { // ptyopen: make a pty, open its name, exit
	master, slave, err := pty.Open()
	if err != nil {
		return err.Error()
	}
	if _, err := unix.Open(slave.Name(), unix.O_RDWR|unix.O_NOCTTY, 0); err != nil {
		return errnoName(err)
	}
	slave.Close()
	master.Close()
	return "ok"
})

var _ = registerHelper("ptyhold", func(args []string) string { // ptyhold: make a pty, open its name, wait to be killed
	master, slave, err := pty.Open()
	if err != nil {
		return err.Error()
	}
	defer master.Close()
	defer slave.Close()
	if _, err := unix.Open(slave.Name(), unix.O_RDWR|unix.O_NOCTTY, 0); err != nil {
		return errnoName(err)
	}
	time.Sleep(time.Hour)
	return "ok"
})

// ptyinflight: make a pty, put its master in flight (sent on a socket
// pair, never received: no process's descriptor table holds it, as when
// its maker exits and the kernel has not yet torn it down), open its name,
// wait to be killed. A pty in that state is the sandbox's own (masterHeld).
var _ = registerHelper("ptyinflight", func(args []string) string {
	master, slave, err := pty.Open()
	if err != nil {
		return err.Error()
	}
	defer slave.Close()
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err.Error()
	}
	if err := unix.Sendmsg(sp[0], []byte{0}, unix.UnixRights(int(master.Fd())), nil, 0); err != nil {
		return err.Error()
	}
	master.Close()
	if _, err := unix.Open(slave.Name(), unix.O_RDWR|unix.O_NOCTTY, 0); err != nil {
		return errnoName(err)
	}
	time.Sleep(time.Hour)
	return "ok"
})

// TestNewTerminalOpenKillsSandbox: a pseudo-terminal no rule names (the
// user's window opened after the sandbox was made), opened from inside,
// kills the sandbox with an open event (ptsopen.go): one whose session is
// led from outside, and one made outside that has no session yet (a new
// window between its pty's unlock and its shell's setsid). Opened outside
// it is nothing; inside, a pty the sandbox made (it holds the master) and
// one whose session the sandbox leads are its own.
func TestNewTerminalOpenKillsSandbox(t *testing.T) {
	e := newEnv(t, nil)
	newTerm := func(leader *exec.Cmd) string {
		t.Helper()
		master, slave, err := pty.Open()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { master.Close(); slave.Close() })
		if leader != nil {
			if leader.SysProcAttr == nil {
				leader.SysProcAttr = &syscall.SysProcAttr{}
			}
			leader.Stdin = slave
			leader.SysProcAttr.Setsid, leader.SysProcAttr.Setctty = true, true
			if err := forksafe.Start(leader); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = leader.Process.Kill(); _ = leader.Wait() })
		}
		return slave.Name()
	}
	// start starts a helper inside s (a process gone before the watcher
	// reads its event is not placed by the test backend) and returns its
	// end.
	start := func(s *sbox, op string, args ...string) chan error {
		t.Helper()
		c := e.cmd(s, op, args...)
		if err := forksafe.Start(c); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- c.Wait() }()
		t.Cleanup(func() { _ = c.Process.Kill() })
		return done
	}
	for _, c := range []struct{ name, target string }{
		{"session-outside", newTerm(exec.Command("sleep", "60"))},
		{"no-session-yet", newTerm(nil)},
	} {
		target := c.target
		t.Run(c.name, func(t *testing.T) {
			s := e.sandbox(policy.Policy{})
			done := start(s, "sleep")
			openHere(t, target, unix.O_RDWR|unix.O_NOCTTY)
			start(s, "ptyhold")
			start(s, "openhold", newTerm(e.cmd(s, "sleep")))
			// A pty the sandbox made, opened by name and closed at once,
			// whose maker is gone when the watcher reads the open (its
			// number then free, or the next one's): without masterHeld,
			// 3 of 5 runs of 5 were killed.
			for range 20 {
				if err := <-start(s, "ptyopen"); err != nil {
					t.Fatalf("ptyopen: %v", err)
				}
			}
			// The same state made to last: a master no process holds.
			start(s, "ptyinflight")
			select {
			case err := <-done:
				t.Fatalf("the sandbox was killed for opens of its own ptys, or of another outside: %v", err)
			case <-time.After(300 * time.Millisecond):
			}
			e.noEvent()

			held := start(s, "openhold", target)
			ev := e.event()
			if ev.Op != events.OpOpen || ev.Path != target || ev.Sandbox != s.Name {
				t.Fatalf("event %+v, want an open of %s by sandbox %s", ev, target, s.Name)
			}
			for _, c := range []chan error{done, held} {
				select {
				case <-c:
				case <-time.After(5 * time.Second):
					t.Fatal("the sandbox's processes live on after it opened a terminal not its own")
				}
			}
		})
	}
}

// TestTerminalWatchAfterFlush: the last sandbox's removal flushes the
// watcher's marks (FlushWhenEmpty, an embedded run); the next sandbox's
// terminals are watched again, the named one and the new ones.
func TestTerminalWatchAfterFlush(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.FlushWhenEmpty = true })
	other, otherSlave, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	defer otherSlave.Close()
	first := e.sandbox(policy.Policy{DenyRead: rules(otherSlave.Name())})
	if err := e.b.Remove(first.ID); err != nil {
		t.Fatal(err)
	}
	s := e.sandbox(policy.Policy{DenyRead: rules(otherSlave.Name())})
	e.b.watch.mu.Lock()
	refs, named := e.b.watch.pts.refs, 0
	for _, o := range e.b.watch.opens {
		named += o.refs
	}
	e.b.watch.mu.Unlock()
	if refs != 1 || named != 1 {
		t.Errorf("after the flush, %d references to the /dev/pts mark and %d to the named terminal's, want 1 and 1 (a stale one is no mark)", refs, named)
	}
	c := e.cmd(s, "openhold", otherSlave.Name())
	if err := forksafe.Start(c); err != nil {
		t.Fatal(err)
	}
	held := make(chan error, 1)
	go func() { held <- c.Wait() }()
	t.Cleanup(func() { _ = c.Process.Kill() })
	if ev := e.event(); ev.Op != events.OpOpen || ev.Path != otherSlave.Name() || ev.Sandbox != s.Name {
		t.Fatalf("event %+v, want an open of %s by sandbox %s", ev, otherSlave.Name(), s.Name)
	}
	select {
	case <-held:
	case <-time.After(5 * time.Second):
		t.Fatal("the sandbox lives on after it opened a terminal its rule names")
	}
}
