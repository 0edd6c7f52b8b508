//go:build linux

package fanotify

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/forksafe"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// cttyopen PATH: lead a session of its own (setsid by the caller), open
// the console without O_NOCTTY, which makes it the controlling terminal,
// then wait to be killed.
var _ = registerHelper("cttyopen", func(args []string) string {
	if _, err := unix.Open(args[0], unix.O_RDWR, 0); err != nil {
		return errnoName(err)
	}
	time.Sleep(time.Hour)
	return "ok"
})

// joinopen CGROUP PATH: move into the cgroup (a sandbox's), keeping the
// session and controlling terminal of its parent, then openhold PATH.
var _ = registerHelper("joinopen", func(args []string) string {
	if err := os.WriteFile(filepath.Join(args[0], "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
		return err.Error()
	}
	return helperOp("openhold", args[1:])
})

// leadjoin CGROUP PATH: the leader of a session outside (the caller's
// setsid, the console its controlling terminal), whose child joins the
// sandbox and opens the console by name (joinopen).
var _ = registerHelper("leadjoin", func(args []string) string {
	c := exec.Command(os.Args[0], args...)
	c.Env = append(os.Environ(), helperEnv+"=joinopen")
	if err := c.Run(); err != nil {
		return err.Error()
	}
	return "ok"
})

// TestConsoleOpenKillsSandbox: a virtual console opened from inside kills
// the sandbox with an open event (vtopen.go), whether or not a rule names
// it (run names the user's consoles of the start; one logged in on later
// is in no rule), and a process that makes the console its controlling
// terminal by that open (a session of its own, no O_NOCTTY) is killed
// too. The same open outside is nothing; the console that is the
// controlling terminal of the opener, of a session led outside (run
// --raw-terminal on a console), is the sandbox's own.
func TestConsoleOpenKillsSandbox(t *testing.T) {
	e := newEnv(t, nil)
	if err := CanWatchConsoles(); err != nil {
		// Linux 6.1's devtmpfs has no fsid: the warning instead.
		s := e.sandbox(policy.Policy{})
		if !containsLine(e.b.Unenforced(s.Sandbox), unwatchedConsoles) {
			t.Fatalf("the consoles cannot be watched here (%v) and the sandbox is not told: %q", err, e.b.Unenforced(s.Sandbox))
		}
		return
	}
	console := testutil.FreeConsole(t, 62)
	// start starts a helper inside s, or outside with s nil, and returns
	// its end.
	start := func(c *exec.Cmd) chan error {
		t.Helper()
		if err := forksafe.Start(c); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- c.Wait() }()
		t.Cleanup(func() { _ = c.Process.Kill() })
		return done
	}
	killed := func(s *sbox, why string, ends ...chan error) {
		t.Helper()
		ev := e.event()
		if ev.Op != events.OpOpen || ev.Path != console || ev.Sandbox != s.Name {
			t.Fatalf("event %+v, want an open of %s by sandbox %s", ev, console, s.Name)
		}
		for _, c := range ends {
			select {
			case <-c:
			case <-time.After(5 * time.Second):
				t.Fatalf("the sandbox's processes live on after %s", why)
			}
		}
	}
	t.Run("logged-in-later", func(t *testing.T) {
		s := e.sandbox(policy.Policy{})
		done := start(e.cmd(s, "sleep"))
		openHere(t, console, unix.O_RDWR|unix.O_NOCTTY)
		e.noEvent()
		held := start(e.cmd(s, "openhold", console))
		killed(s, "it opened a console not its own", done, held)
	})
	t.Run("rule", func(t *testing.T) {
		s := e.sandbox(policy.Policy{DenyRead: rules(console)})
		held := start(e.cmd(s, "openhold", console))
		ev := e.event()
		if ev.Op != events.OpOpen || ev.Path != console || ev.RuleText != console {
			t.Fatalf("event %+v, want an open of %s naming the rule for it", ev, console)
		}
		select {
		case <-held:
		case <-time.After(5 * time.Second):
			t.Fatal("the sandbox lives on after it opened a console its rule names")
		}
	})
	t.Run("made-its-ctty", func(t *testing.T) {
		s := e.sandbox(policy.Policy{})
		c := e.cmd(s, "cttyopen", console)
		c.SysProcAttr.Setsid = true
		held := start(c)
		killed(s, "it made a console its controlling terminal", held)
	})
	t.Run("own-ctty", func(t *testing.T) {
		s := e.sandbox(policy.Policy{})
		f, err := os.OpenFile(console, os.O_RDWR|syscall.O_NOCTTY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		leader := e.cmd(nil, "leadjoin", s.g.Path, console)
		leader.Stdin = f
		leader.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
		done := start(leader)
		select {
		case err := <-done:
			t.Fatalf("the sandbox was killed for an open of its controlling terminal: %v", err)
		case <-time.After(500 * time.Millisecond):
		}
		e.noEvent()
	})
}

func containsLine(lines []string, want string) bool {
	for _, l := range lines {
		if l == want {
			return true
		}
	}
	return false
}
