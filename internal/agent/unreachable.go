//go:build linux

package agent

import (
	"errors"
	"path/filepath"
	"strconv"
	"sync"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/events"
)

// A refused connect to a unix socket name where no socket exists could not
// have reached anything: glibc tries /var/run/nscd/socket on every user or
// group lookup (ls -l, id, ps, git, ssh, Claude Code's own threads) whether
// nscd is installed or not, and on a machine without nscd those refusals
// were most of a session's events (issue 11). The kernel still refuses
// them; the agent neither prints, streams nor counts them as violations.
//
// Precisely: a KindNet/OpUnix event for a path name (not an abstract
// "@name") whose target, looked up from the refused process's root and
// working directory, does not exist, is not a socket, or is a socket file
// that a live socket of the refused process's own sandbox bound itself
// (enforce.UnixOwner). The last is a program that starts its own server
// when the connect finds none: tmux's server inside binds the name within
// milliseconds of its client's refused connect, before the agent reads
// the event (issue 10). The backend tells that by the file's device and
// inode, not by its name, so an outsider's socket at a name the sandbox
// bound before stays a violation. A socket file stays a violation even
// without a listener (it may get one), and so does every event whose
// process is gone before the lookup (nothing to look from but the agent's
// own view, used for absolute names only).

// afterRootCheck, when a test sets it, runs between the check that the
// refused process is still there and the lookup of the name from it.
var afterRootCheck func()

// ownSocket reports whether the socket file of device dev and inode ino,
// found at e's name, is one e's sandbox bound itself.
type ownSocket func(e *events.Event, dev, ino uint64) bool

// unreachableUnix reports whether e is such a refusal; own (nil: none is
// the sandbox's) is asked about a socket found.
func unreachableUnix(e *events.Event, own ownSocket) bool {
	if e.Kind != events.KindNet || e.Op != events.OpUnix || e.Path == "" || e.Path[0] == '@' {
		return false
	}
	proc := "/proc/" + strconv.FormatUint(uint64(e.TGID), 10)
	var base string
	switch {
	case e.TGID == 0:
	case filepath.IsAbs(e.Path):
		base = proc + "/root"
	default:
		base = proc + "/cwd"
	}
	if base != "" {
		if _, err := filepath.EvalSymlinks(proc + "/root"); err != nil {
			base = "" // gone: fall back below
		}
	}
	if base == "" && !filepath.IsAbs(e.Path) {
		return false
	}
	if afterRootCheck != nil {
		afterRootCheck()
	}
	var st unix.Stat_t
	// Not filepath.Join: it would clean "cwd/../x" lexically, to a path
	// beside /proc/PID instead of beside the process's directory. The
	// kernel resolves the name as the process did.
	err := unix.Stat(base+"/"+e.Path, &st)
	if base != "" && (errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR)) {
		if _, gone := filepath.EvalSymlinks(proc + "/root"); gone != nil {
			// The process exited between the check above and the
			// lookup (a tool that fails on the refusal does at once):
			// /proc/PID went, not the name.
			if !filepath.IsAbs(e.Path) {
				return false
			}
			base = ""
		}
	}
	if base == "" {
		err = unix.Stat(e.Path, &st)
	}
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return true
	}
	if err != nil {
		return false
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return true
	}
	return own != nil && own(e, st.Dev, st.Ino)
}

// ownUnix is the agent's ownSocket: the backend's answer
// (enforce.UnixOwner); a backend without one, or one that cannot tell,
// says no, and the refusal is reported.
func (a *Agent) ownUnix(e *events.Event, dev, ino uint64) bool {
	o, ok := a.be.(enforce.UnixOwner)
	if !ok {
		return false
	}
	own, err := o.SandboxBound(e.CgroupID, e.TGID, e.Path, dev, ino)
	if err != nil {
		a.log.Warn("unix refusal: cannot tell whether the socket found is the sandbox's own; reported",
			zap.String("path", e.Path), zap.Error(err))
		return false
	}
	return own
}

// quietCounts are the refusals the agent did not count as violations, to
// take out of the backend's exact counters.
type quietCounts struct {
	mu   sync.Mutex
	n    map[counterKey]uint64
	last map[counterKey]uint64 // what was reported, which never goes down
}

type counterKey struct {
	kind  events.Kind
	op    events.Op
	audit bool
}

func (q *quietCounts) add(e *events.Event) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.n == nil {
		q.n = map[counterKey]uint64{}
	}
	q.n[counterKey{e.Kind, e.Op, e.Audit}] += e.N()
}

// adjust takes the quiet refusals out of st. The kernel counts a refusal
// before the agent sees its event: a scrape in between counts it, and a
// counter must not go down afterwards, so such a refusal stays counted.
func (q *quietCounts) adjust(st enforce.Stats) enforce.Stats {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.last == nil {
		q.last = map[counterKey]uint64{}
	}
	for i, c := range st.Violations {
		k := counterKey{c.Kind, c.Op, c.Audit}
		v := c.Value - min(q.n[k], c.Value)
		if v < q.last[k] {
			v = q.last[k]
		}
		q.last[k] = v
		st.Violations[i].Value = v
	}
	return st
}
