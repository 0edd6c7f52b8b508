//go:build linux

package agent

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/events"
)

func TestUnreachableUnix(t *testing.T) {
	dir, sock := liveSocket(t)
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	self := uint32(os.Getpid())
	wd, _ := os.Getwd()
	rel, err := filepath.Rel(wd, sock)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		e    events.Event
		want bool
	}{
		{"no such socket (nscd)", events.Event{Kind: events.KindNet, Op: events.OpUnix, Path: filepath.Join(dir, "nscd/socket"), TGID: self}, true},
		{"a regular file", events.Event{Kind: events.KindNet, Op: events.OpUnix, Path: file, TGID: self}, true},
		{"a listening socket", events.Event{Kind: events.KindNet, Op: events.OpUnix, Path: sock, TGID: self}, false},
		{"a listening socket, relative to the process's cwd", events.Event{Kind: events.KindNet, Op: events.OpUnix, Path: rel, TGID: self}, false},
		{"an abstract name", events.Event{Kind: events.KindNet, Op: events.OpUnix, Path: "@/tmp/.X11-unix/X0", TGID: self}, false},
		{"a relative name of a process that is gone", events.Event{Kind: events.KindNet, Op: events.OpUnix, Path: "nowhere.sock", TGID: 1 << 30}, false},
		{"an absolute name of a process that is gone", events.Event{Kind: events.KindNet, Op: events.OpUnix, Path: filepath.Join(dir, "nowhere"), TGID: 1 << 30}, true},
		{"a file read", events.Event{Kind: events.KindFile, Op: events.OpRead, Path: filepath.Join(dir, "nowhere"), TGID: self}, false},
	} {
		if got := unreachableUnix(&tc.e, nil); got != tc.want {
			t.Errorf("%s: unreachable = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestUnreachableUnixProcessExits: a process that exits between the
// agent's check that it is there and the lookup of the name from its root
// (the tool refused exits at once) leaves the name to be looked up from
// the agent's view: a socket there is a violation, not a quiet refusal
// (TestEscapeUnixDotDot lost its event that way in the 6.1 guest).
func TestUnreachableUnixProcessExits(t *testing.T) {
	dir, sock := liveSocket(t)
	for _, tc := range []struct {
		name, path string
		want       bool
	}{
		{"a listening socket", sock, false},
		{"no such socket", filepath.Join(dir, "nowhere"), true},
		{"a relative name", "live.sock", false},
	} {
		cmd := exec.Command("sleep", "60")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		afterRootCheck = func() {
			cmd.Process.Kill()
			cmd.Wait()
		}
		got := unreachableUnix(&events.Event{Kind: events.KindNet, Op: events.OpUnix, Path: tc.path, TGID: uint32(cmd.Process.Pid)}, nil)
		afterRootCheck = nil
		if got != tc.want {
			t.Errorf("%s: unreachable = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestUnreachableUnixOwnSocket: a refused name where, by the time the
// agent looks, a socket the sandbox bound itself is (tmux's server inside,
// started on its client's refusal) is quiet; the backend is asked about
// the file found there, so an outsider's socket put in its place is a
// violation, as is any socket when the backend cannot tell.
func TestUnreachableUnixOwnSocket(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "default")
	e := events.Event{Kind: events.KindNet, Op: events.OpUnix, Path: name, TGID: uint32(os.Getpid()), CgroupID: 42}
	// The sandbox's server binds the name after the refusal; the backend
	// knows the file its bind made.
	ln, err := net.Listen("unix", name)
	if err != nil {
		t.Fatal(err)
	}
	var bound unix.Stat_t
	if err := unix.Stat(name, &bound); err != nil {
		t.Fatal(err)
	}
	var asked []string
	own := func(ev *events.Event, dev, ino uint64) bool {
		asked = append(asked, ev.Path)
		return ev.CgroupID == 42 && dev == bound.Dev && ino == bound.Ino
	}
	if !unreachableUnix(&e, own) {
		t.Errorf("the sandbox's own socket, bound after the refusal: reported")
	}
	if unreachableUnix(&e, nil) {
		t.Errorf("a socket, with no backend to tell whose: quiet")
	}
	// An outsider's server takes the name; the sandbox's socket lives on
	// (bound to the unlinked file, whose inode number is not free yet).
	defer ln.Close()
	if err := os.Remove(name); err != nil {
		t.Fatal(err)
	}
	ln2, err := net.Listen("unix", name)
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	if unreachableUnix(&e, own) {
		t.Errorf("an outsider's socket in place of the sandbox's: quiet")
	}
	if len(asked) != 2 || asked[0] != name || asked[1] != name {
		t.Errorf("the backend was asked about %q, want %s twice", asked, name)
	}
	// Nothing there is quiet without asking.
	ln2.Close()
	if !unreachableUnix(&e, own) || len(asked) != 2 {
		t.Errorf("no socket: quiet %v, asked %q", unreachableUnix(&e, own), asked)
	}
}

func TestQuietCountsNeverGoDown(t *testing.T) {
	var q quietCounts
	st := func(v uint64) enforce.Stats {
		return enforce.Stats{Violations: []enforce.Counter{{Kind: events.KindNet, Op: events.OpUnix, Value: v}}}
	}
	// The kernel counted 3, one of them quiet, not yet seen by the agent.
	if got := q.adjust(st(3)).Violations[0].Value; got != 3 {
		t.Errorf("before the event: %d", got)
	}
	q.add(&events.Event{Kind: events.KindNet, Op: events.OpUnix})
	if got := q.adjust(st(3)).Violations[0].Value; got != 3 {
		t.Errorf("a counter went down: %d", got)
	}
	// Later quiet refusals come out.
	q.add(&events.Event{Kind: events.KindNet, Op: events.OpUnix})
	if got := q.adjust(st(5)).Violations[0].Value; got != 3 {
		t.Errorf("after a quiet refusal and a counted one: %d, want 3", got)
	}
}

// liveSocket is a listening unix socket in a directory of the test's own.
func liveSocket(t *testing.T) (dir, sock string) {
	t.Helper()
	dir = t.TempDir()
	sock = filepath.Join(dir, "live.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return dir, sock
}
