//go:build linux

package escape

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/e2e"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// freePort returns a loopback TCP port nothing listens on now.
func freePort(t *testing.T) uint16 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

// dialIDE connects from outside every sandbox, as a claude with --ide
// does, and reads the server's greeting: nil when it was read.
func dialIDE(port uint16) error {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
		return fmt.Errorf("connected, but no greeting: %w", err)
	}
	return nil
}

// ideServerOutside is an IDE's server outside every sandbox on loopback:
// it greets each client as the sandbox's test servers do.
func ideServerOutside(t *testing.T) uint16 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("hi\n"))
			c.Close()
		}
	}()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

// timedOut reports whether err is a connect whose SYN went unanswered:
// what the ingress program's drop looks like to the client (a refused
// connection, ECONNREFUSED, would mean no listener at all).
func timedOut(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestEscapeIDELock: a server of the sandbox listening on the loopback
// port that an IDE lock file names (~/.claude/ide/<port>.lock, a lock
// whose IDE server is gone) is not reached by a client outside, which
// --ide and autoConnectIde would be, and each attempt is reported with the
// lock file as the rule; the same for a lock written while the sandbox
// runs (the agent watches the directory). A server of the sandbox on a
// port no lock names stays reachable, and so does a server outside the
// sandbox on a lock's port (the IDE's own: nothing outside a sandbox is
// touched).
func TestEscapeIDELock(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *box) {
		stale, free, later := freePort(t), freePort(t), freePort(t)
		ide := ideServerOutside(t)
		staleLock := b.write(fmt.Sprintf("~/.claude/ide/%d.lock", stale), `{"pid":1,"transport":"ws"}`)
		b.write(fmt.Sprintf("~/.claude/ide/%d.lock", ide), `{"pid":1,"transport":"ws"}`)
		done := filepath.Join(b.proj, "ide-done")
		serve := func(port uint16) string {
			return fmt.Sprintf("AIGATE_ESCAPE_PORT_FILE=%s %s >/dev/null & pids=\"$pids $!\"", filepath.Join(b.proj, fmt.Sprintf("port-%d", port)), b.tool(fmt.Sprintf("serve tcp 127.0.0.1:%d", port)))
		}
		script := serve(stale) + "\n" + serve(free) + "\n" + serve(later) + "\n" +
			fmt.Sprintf("i=0; while [ ! -e %s ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done\nkill $pids 2>/dev/null; wait", done)
		os.Remove(b.events)
		cmd := b.asUser(exec.Command(machine.bin, "run", "--events", b.events, "--", "sh", "-c", script))
		var out testutil.SyncBuffer
		cmd.Stdout, cmd.Stderr = &out, &out
		runDone := make(chan error, 1)
		go func() {
			_, err := e2e.ExitCode(e2e.RunBounded(cmd, runLimit))
			runDone <- err
		}()
		finished := false
		defer func() {
			if !finished {
				// Also when the run ended first (WaitForFile took its end).
				_ = os.WriteFile(done, nil, 0o644)
				select {
				case <-runDone:
				case <-time.After(runLimit):
				}
			}
		}()
		for _, p := range []uint16{stale, free, later} {
			testutil.WaitForFile(t, filepath.Join(b.proj, fmt.Sprintf("port-%d", p)), runLimit, runDone, &out)
		}

		if err := dialIDE(stale); !timedOut(err) {
			t.Errorf("a client outside reached the sandbox's server on the port of %s: %v", staleLock, err)
		}
		if err := dialIDE(free); err != nil {
			t.Errorf("the sandbox's server on a port no lock names: %v", err)
		}
		if err := dialIDE(ide); err != nil {
			t.Errorf("the IDE's own server outside the sandbox on its lock's port: %v", err)
		}
		// Written during the run: covered once the agent has seen it
		// (inotify, milliseconds); a few tries allow for that.
		laterLock := b.write(fmt.Sprintf("~/.claude/ide/%d.lock", later), `{"pid":1,"transport":"ws"}`)
		var err error
		for try := 0; try < 3; try++ {
			if err = dialIDE(later); timedOut(err) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if !timedOut(err) {
			t.Errorf("a client outside reached the sandbox's server on the port of %s, written during the run: %v", laterLock, err)
		}

		if err := os.WriteFile(done, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		finished = true
		if err := <-runDone; err != nil {
			t.Fatalf("aigate run: %v\n%s", err, out.String())
		}
		r := result{stdout: out.String(), events: b.readEvents()}
		want := map[uint16]string{stale: staleLock, later: laterLock}
		seen := map[uint16]bool{}
		for _, e := range r.events {
			if e.Kind != events.KindNet {
				continue
			}
			lock, ok := want[e.Addr.Port()]
			if !ok || e.Op != events.OpConnect || e.RuleText != lock || !e.Addr.Addr().IsLoopback() {
				t.Errorf("unexpected event %+v", e)
				continue
			}
			seen[e.Addr.Port()] = true
		}
		for p, lock := range want {
			if !seen[p] {
				t.Errorf("no net event naming %s:\n%s", lock, r)
			}
		}
		if !strings.Contains(b.read(fmt.Sprintf("~/.claude/ide/%d.lock", stale)), "pid") {
			t.Errorf("the lock file changed")
		}
	})
}
