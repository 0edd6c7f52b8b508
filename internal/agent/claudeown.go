//go:build linux

package agent

import (
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/claudestate"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/refused"
)

// Claude Code inside a sandbox fails, at every start and turn, on its own
// state in the read-only home and carries on without it: the lock and
// temporary files through which it rewrites .claude.json, a lock beside
// history.jsonl, its new session's directory in session-env, removals in
// its own project directory. Once Landlock's refusals became events on
// every kernel (refused.go) that was 60-70 events per short session,
// printed on run's terminal, streamed to watch and counted in
// aigate_landlock_refusals_total: noise that said, wrongly, that
// something was under attack. The kernel still refuses them; the agent
// neither prints, streams, records nor counts them, as it does with unix
// names that reach no socket (unreachable.go). Which refusals these are
// is claudestate.Own.OwnRefusal, by exact name shape; every other stays
// a violation.

// newClaudeOwn is the Claude Code state of a sandbox made by req at
// created: its home, the state directory $CLAUDE_CONFIG_DIR moved, and
// its own project directories (the exceptions of the run's rule on
// projects/, which only run adds).
func newClaudeOwn(req api.CreateRequest, created time.Time) *claudestate.Own {
	o := &claudestate.Own{Home: req.Home}
	if req.ClaudeJSON != nil {
		o.Dir = req.ClaudeJSON.ConfigDir
		o.DataHome = req.ClaudeJSON.DataHome
	}
	for _, r := range req.DenyWrite {
		for _, e := range r.Except {
			if filepath.Base(filepath.Dir(e)) == "projects" {
				o.Projects = append(o.Projects, filepath.Clean(e))
			}
		}
	}
	o.Resumable = claudestate.SessionExists(created.UnixNano(), func(p string) (int64, bool) {
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return 0, false
		}
		return st.Mtim.Nano(), true
	})
	return o
}

// claudeOwnRefusal reports whether out, the Landlock event that candidate
// e stands for, is Claude Code's refusal of its own state in box b.
func claudeOwnRefusal(b *box, e, out events.Event) bool {
	if b == nil || b.own == nil || out.Kind != events.KindFile {
		return false
	}
	var call claudestate.Call
	switch refused.ChangeOf(e) {
	case refused.ChangeCreate:
		call = claudestate.CallCreate
	case refused.ChangeMkdir:
		call = claudestate.CallMkdir
	case refused.ChangeRemove:
		call = claudestate.CallRemove
	default:
		return false
	}
	return b.own.OwnRefusal(call, out.Path)
}

// Where the kernel's audit reports Landlock's refusals, a made or removed
// name's record names only its directory, and the refused call's report
// (the candidate, which has the name) is judged for this alone: the
// audit reader holds an event in a directory where Claude Code's own
// refusals are (claudestate.Own.Parent) for up to ownWait, and drops it
// when the call's report showed it was one (ownJoin); every other is
// handed on as before, ownWait later.

// ownWait bounds how long an audit event waits for its call's report,
// which the pump reads from the backend's ring buffer meanwhile. It is
// well below llSettleMax: the end of a sandbox waits that long for the
// reader to go quiet (none held), and an event handed on after the run
// left would reach none of its reports (with 2 s, the refused renames of
// TestE2EClaudeCodeConfigDir went missing from run's events). A report
// later than this leaves Claude Code's own refusal reported: noise, never
// a violation lost.
const ownWait = 250 * time.Millisecond

// ownKeep is how long a call's report waits for its audit event.
const ownKeep = 2 * time.Second

type ownKey struct {
	tgid uint32
	dir  string
}

// ownJoin are the refusals of Claude Code's own state judged from the
// refused calls while the audit reader reports Landlock's refusals.
type ownJoin struct {
	mu   sync.Mutex
	seen map[ownKey][]time.Time
}

// add notes that n refusals of task tgid in dir (a candidate's count:
// the backend folds repeated ones) were Claude Code's own.
func (j *ownJoin) add(tgid uint32, dir string, n uint64, now time.Time) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.seen == nil {
		j.seen = map[ownKey][]time.Time{}
	}
	k := ownKey{tgid, dir}
	for ; n > 0 && len(j.seen[k]) < 4096; n-- {
		j.seen[k] = append(j.seen[k], now)
	}
	if len(j.seen) > 4096 {
		j.prune(now)
	}
}

// take consumes one such refusal of tgid in dir, if noted.
func (j *ownJoin) take(tgid uint32, dir string, now time.Time) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.prune(now)
	k := ownKey{tgid, dir}
	if len(j.seen[k]) == 0 {
		return false
	}
	j.seen[k] = j.seen[k][1:]
	if len(j.seen[k]) == 0 {
		delete(j.seen, k)
	}
	return true
}

func (j *ownJoin) prune(now time.Time) {
	for k, ts := range j.seen {
		i := 0
		for i < len(ts) && now.Sub(ts[i]) > ownKeep {
			i++
		}
		if i == len(ts) {
			delete(j.seen, k)
		} else {
			j.seen[k] = ts[i:]
		}
	}
}

type heldEvent struct {
	e     events.Event
	until time.Time
}

// holdOwn takes the audit reader's new events evs: those that may be
// Claude Code's own refusals join held; it returns what is still held and
// the events to hand on, without the held ones found to be its own.
func (a *Agent) holdOwn(held []heldEvent, evs []events.Event, now time.Time) ([]heldEvent, []events.Event) {
	var out []events.Event
	for _, e := range evs {
		switch a.ownParent(e) {
		case ownProject:
		case ownMaybe:
			held = append(held, heldEvent{e, now.Add(ownWait)})
		default:
			out = append(out, e)
		}
	}
	keep := held[:0]
	for _, h := range held {
		switch {
		case a.own.take(h.e.TGID, h.e.Path, now):
		case now.After(h.until):
			out = append(out, h.e)
		default:
			keep = append(keep, h)
		}
	}
	return keep, out
}

const (
	ownNot     = iota
	ownMaybe   // a made or removed name's directory: wait for the call's report
	ownProject // in the run's own project directory
)

// ownParent: may e, an audit event, be a refusal OwnRefusal keeps quiet?
// One in the run's own project directory is: the sandbox may write
// there, so the domain refuses only removals, renames and links of its
// own files (which Claude Code makes through a temporary file; a rename
// or link has no refused call's report).
func (a *Agent) ownParent(e events.Event) int {
	if e.Kind != events.KindFile || e.TGID == 0 {
		return ownNot
	}
	a.mu.Lock()
	b := a.byCgroup[e.CgroupID]
	a.mu.Unlock()
	switch {
	case b == nil || b.own == nil:
		return ownNot
	case b.own.InProject(e.Path):
		return ownProject
	case b.own.Parent(e.Path):
		return ownMaybe
	}
	return ownNot
}
