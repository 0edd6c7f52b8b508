//go:build linux

package agent

import (
	"path/filepath"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/landlock"
	"github.com/aigate-dev/aigate/internal/llaudit"
	"github.com/aigate-dev/aigate/internal/refused"
)

// refusals turns the backend's candidates (events.Event.Refused: a call of
// a sandboxed task that failed with the errno of a Landlock refusal,
// bpf/include/refused.h) into Landlock events, where package refused
// shows that the sandbox's domain refused it, and drops the rest. It is
// the report of Landlock's refusals where the kernel's audit does not
// give one (before Linux 6.15, or audit off); where it does, the audit
// reader (landlockaudit.go) reports them and the candidates are dropped,
// so that no refusal is reported twice.
type refusals struct {
	host refused.Host // nil: none judged (no Landlock, or the agent's namespaces unread)
	// enabled asks whether the kernel's audit is enabled (llaudit.Enabled).
	enabled func() (bool, error)

	mu      sync.Mutex
	counts  map[events.Op]uint64
	dropped uint64
	audit   bool      // the kernel's audit was enabled when last asked
	asked   time.Time // when
}

// boxLandlock is the Landlock domain of a box's command on this kernel,
// as its client planned it for this backend (api.CreateRequest.Landlock).
// The agent lists no directory of the home to make it: the pump judges
// the refused calls, and an open of a directory the fanotify backend
// marks waits for that backend's answer, which may wait for the pump.
type boxLandlock struct {
	rs landlock.Ruleset
}

// ruleset is the domain; false when the client named none (or a zero one:
// the command runs without Landlock).
func (l *boxLandlock) ruleset() (landlock.Ruleset, bool) {
	if l == nil || l.rs.HandledFS == 0 && l.rs.Scoped == 0 {
		return landlock.Ruleset{}, false
	}
	return l.rs, true
}

func newBoxLandlock(byBackend map[string]landlock.Ruleset, backend string) *boxLandlock {
	rs, ok := byBackend[backend]
	if !ok {
		return nil
	}
	return &boxLandlock{rs: rs}
}

func (a *Agent) startRefusals() {
	a.refused.counts = make(map[events.Op]uint64)
	a.refused.enabled = llaudit.Enabled
	if landlock.ABI() == 0 {
		return
	}
	mnt, err := cgroup.Mountpoint()
	var h *refused.OSHost
	if err == nil {
		h, err = refused.NewOSHost(mnt)
	}
	if err != nil {
		a.log.Warn("Landlock refusals will not be reported from failed system calls", zap.Error(err))
		return
	}
	a.refused.host = h
}

// judgeRefused hands on the Landlock event candidate e stands for, if any,
// and counts it.
func (a *Agent) judgeRefused(e events.Event) {
	out, ok := a.refusedEvent(e)
	r := &a.refused
	r.mu.Lock()
	if ok {
		r.counts[out.Op]++
	} else {
		r.dropped++
	}
	r.mu.Unlock()
	if ok {
		a.handle(out)
	}
}

// refusedEvent is the Landlock event candidate e stands for: none where
// the audit reader reports Landlock's refusals (no refusal twice), or
// where package refused cannot show that the sandbox's domain refused it.
func (a *Agent) refusedEvent(e events.Event) (events.Event, bool) {
	r := &a.refused
	if r.host == nil {
		return events.Event{}, false
	}
	audit := a.auditReports()
	a.mu.Lock()
	b := a.byCgroup[e.CgroupID]
	a.mu.Unlock()
	if b == nil || audit && (b.own == nil || refused.ChangeOf(e) == refused.ChangeOther) {
		return events.Event{}, false
	}
	rs, ok := b.landlock.ruleset()
	sb := refused.Sandbox{Domain: rs, Confined: ok, Cgroup: b.sb.Path()}
	out, err := refused.Attribute(e, sb, r.host)
	if err != nil {
		return events.Event{}, false
	}
	if claudeOwnRefusal(b, e, out) {
		a.log.Debug("Claude Code's refusal of its own state, not reported", zap.String("path", out.Path), zap.String("sandbox", b.info.Name))
		if a.ll != nil {
			// Its audit event, which names only the directory, waits
			// for this (claudeown.go); noted also while audit seemed
			// off: that answer is up to auditAsk old.
			a.own.add(out.TGID, filepath.Dir(out.Path), out.N(), time.Now())
		}
		return events.Event{}, false
	}
	return out, !audit
}

// auditReports tells whether the audit reader reports Landlock's refusals
// now: it reads them and the kernel's audit is enabled (asked at most
// every auditAsk: a netlink round trip, which a flood of refusals would
// otherwise pay for each).
func (a *Agent) auditReports() bool {
	if a.ll == nil {
		return false
	}
	r := &a.refused
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.asked) > auditAsk {
		on, err := r.enabled()
		r.audit, r.asked = err == nil && on, time.Now()
	}
	return r.audit
}

// auditAsk bounds how long after audit is enabled or disabled a refusal
// may still be reported by the other way (twice, or not at all).
const auditAsk = 50 * time.Millisecond

// refusedCounts adds the refusals judged here to counts (by operation).
func (a *Agent) refusedCounts(counts map[events.Op]uint64) {
	a.refused.mu.Lock()
	defer a.refused.mu.Unlock()
	for op, n := range a.refused.counts {
		counts[op] += n
	}
}
