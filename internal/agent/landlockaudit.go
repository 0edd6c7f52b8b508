//go:build linux

package agent

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/landlock"
	"github.com/aigate-dev/aigate/internal/llaudit"
)

// landlockAudit is the agent's reader of Landlock's audit records: the
// kernel's only report of a refusal by a sandbox's Landlock domain (a
// write to the read-only home, ptrace or a signal of a process outside).
// Each refusal by a sandbox's domain becomes an event on the path every
// other denial takes (handle), and is counted for the metrics.
type landlockAudit struct {
	stop, done chan struct{}
	mnt        string // the cgroup v2 mount

	mu     sync.Mutex
	counts map[events.Op]uint64
	lost   uint64    // overflows of the socket: records lost
	quiet  time.Time // the last read that found nothing, with nothing pending
}

// startLandlockAudit joins the audit read-log group. The kernel sends it
// records only while audit is enabled (Linux 6.15+ for Landlock's); when
// the group cannot be joined the agent goes on without these events, and
// LandlockEvents says why.
func (a *Agent) startLandlockAudit() {
	if landlock.ABI() < 7 {
		return
	}
	mnt, err := cgroup.Mountpoint()
	if err != nil {
		a.log.Warn("Landlock refusals will not be reported", zap.Error(err))
		return
	}
	if a.cfg.EnableAudit {
		if was, err := llaudit.SetEnabled(true); err != nil {
			a.log.Warn("could not enable the kernel's audit: Landlock refusals will not be reported", zap.Error(err))
		} else if !was {
			a.log.Info("enabled the kernel's audit, so that Landlock refusals are reported (--landlock-audit)")
		}
	}
	r, err := llaudit.OpenReader()
	if err != nil {
		a.log.Warn("Landlock refusals will not be reported", zap.Error(err))
		return
	}
	a.log.Debug("reading Landlock's audit records")
	a.ll = &landlockAudit{stop: make(chan struct{}), done: make(chan struct{}), mnt: mnt, counts: make(map[events.Op]uint64)}
	go a.readLandlockAudit(r)
}

// stopLandlockAudit ends the reader and waits for it.
func (a *Agent) stopLandlockAudit() {
	if a.ll == nil {
		return
	}
	close(a.ll.stop)
	<-a.ll.done
}

func (a *Agent) readLandlockAudit(r *llaudit.Reader) {
	defer close(a.ll.done)
	defer r.Close()
	c := llaudit.NewCollector(a.landlockOwner)
	var held []heldEvent // those that may be Claude Code's own (claudeown.go)
	for {
		select {
		case <-a.ll.stop:
			return
		default:
		}
		rec, ok, lost, err := r.Read(llRead)
		if err != nil {
			a.log.Warn("Landlock refusals are no longer reported", zap.Error(err))
			return
		}
		var evs []events.Event
		if ok {
			evs = c.Add(rec, time.Now())
		} else {
			evs = c.Expire(time.Now())
		}
		held, evs = a.holdOwn(held, evs, time.Now())
		a.ll.mu.Lock()
		if lost {
			a.ll.lost++
			if n := a.ll.lost; n&(n-1) == 0 { // 1, 2, 4, ...: a flood logs a few lines
				a.log.Warn("Landlock audit records lost: the socket overflowed", zap.Uint64("times", n))
			}
		}
		if !ok && !lost && c.Pending() == 0 && len(held) == 0 {
			a.ll.quiet = time.Now()
		}
		for _, e := range evs {
			a.ll.counts[e.Op]++
		}
		a.ll.mu.Unlock()
		for _, e := range evs {
			a.handle(e)
		}
	}
}

// llRead bounds one wait for a record: how often the reader hands on
// the events that waited for their end, and notes that it is quiet.
const llRead = 50 * time.Millisecond

// landlockAuditOn asks whether the kernel's audit is enabled, which
// settleLandlock needs, while the caller removes the sandbox: the answer
// is a netlink round trip to the audit subsystem (0.2 ms on a quiet
// machine, about 1 ms of the agent's 3.6 ms end on a busy one), which the
// end of every sandbox paid after the removal. The returned function
// waits for the answer; false without an audit reader or on an error.
func (a *Agent) landlockAuditOn() func() bool {
	if a.ll == nil {
		return func() bool { return false }
	}
	ch := make(chan bool, 1)
	go func() {
		on, err := llaudit.Enabled()
		ch <- err == nil && on
	}()
	return func() bool { return <-ch }
}

// settleLandlock waits, when audit is enabled (auditOn, from
// landlockAuditOn), until the audit reader has found the socket empty with
// nothing pending after the sandbox's processes died, so that their last
// refusals reach the session before it ends (as settle does for the
// backend's events); at most llSettleMax.
func (a *Agent) settleLandlock(auditOn bool) {
	if a.ll == nil || !auditOn {
		return
	}
	// kauditd sends the records from a thread of its own: a grace
	// period for it to catch up with the deaths.
	after := time.Now().Add(10 * time.Millisecond)
	for deadline := time.Now().Add(llSettleMax); time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
		a.ll.mu.Lock()
		quiet := a.ll.quiet
		a.ll.mu.Unlock()
		if quiet.After(after) {
			return
		}
	}
}

const llSettleMax = 500 * time.Millisecond

// landlockOwner is the sandbox that owns a Landlock domain whose
// creation record names pid and uid: the sandbox pid runs in now, when
// uid owns it (the exec helper the agent placed, since become the
// command, or a process inside that made a domain of its own); a process
// outside every sandbox owns nothing. A creator that has exited by the
// time the agent reads the record (a short command) is looked up among
// the pids the agent placed in each sandbox. The record's pid was the
// creator's when the kernel logged it; a pid reused within the
// milliseconds before the agent reads it is the one misattribution left
// (docs/backends.md).
func (a *Agent) landlockOwner(pid int, uid uint32) (llaudit.Owner, bool) {
	cg, err := cgroup.ProcessCgroup(pid)
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, b := range a.boxes {
		if b.info.Owner != uid {
			continue
		}
		in := err == nil && cgroup.Within(filepath.Join(a.ll.mnt, cg), b.sb.Path())
		if in || err != nil && slices.Contains(b.helpers, pid) {
			a.log.Debug("Landlock domain attributed", zap.Int("pid", pid), zap.String("sandbox", b.info.Name), zap.Bool("exited", err != nil))
			return llaudit.Owner{Sandbox: b.info.Name, CgroupID: b.sb.Info.CgroupID}, true
		}
	}
	a.log.Debug("Landlock domain made outside every sandbox: not attributed", zap.Int("pid", pid), zap.String("cgroup", cg), zap.Error(err))
	return llaudit.Owner{}, false
}

// landlockCounts is the refusals reported so far, by operation, for the
// metrics; nil when the agent does not read them.
func (a *Agent) landlockCounts() map[events.Op]uint64 {
	if a.ll == nil && a.refused.host == nil {
		return nil
	}
	out := make(map[events.Op]uint64)
	if a.ll != nil {
		a.ll.mu.Lock()
		for op, n := range a.ll.counts {
			out[op] = n
		}
		a.ll.mu.Unlock()
	}
	a.refusedCounts(out)
	return out
}

// LandlockEvents says whether the sandboxes' Landlock refusals are
// reported as events, and if not why, for status and doctor.
func (a *Agent) LandlockEvents() string {
	audit := ""
	if a.ll != nil {
		audit = llaudit.Reporting(true)
		if strings.HasPrefix(audit, "reported") {
			return audit
		}
	}
	if err := a.refusalsReported(); err != nil {
		if audit != "" {
			return audit + "; nor from the refused system calls: " + err.Error()
		}
		return landlockNotRead() + "; nor from the refused system calls: " + err.Error()
	}
	return "reported (from the refused system calls, tp_btf/sys_exit; docs/backends.md)"
}

// refusalsReported is nil when the agent judges the backend's refused
// calls (refused.go), else why it cannot.
func (a *Agent) refusalsReported() error {
	if a.refused.host == nil {
		return errors.New("the agent cannot judge them (no Landlock, or see its log)")
	}
	r, ok := a.be.(enforce.RefusalReporter)
	if !ok {
		return fmt.Errorf("the %s backend does not report them", a.be.Name())
	}
	return r.RefusalsReported()
}

func landlockNotRead() string {
	if abi := landlock.ABI(); abi < 7 {
		return fmt.Sprintf("not reported: the kernel's Landlock (ABI %d) reports refusals from ABI 7 (Linux 6.15) on", abi)
	}
	return "not reported: the agent cannot read the kernel's audit records (see its log)"
}
