//go:build linux

package agent

import (
	"errors"
	"fmt"
	"os"

	"go.uber.org/zap"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/metrics"
	"github.com/aigate-dev/aigate/internal/resolve"
	"github.com/aigate-dev/aigate/internal/sandbox"
)

// adoptPinned takes over the sandboxes that a previous agent left enforced
// in the backend's pins (it was killed or crashed): each one with a record
// gets its policy recompiled from the record's sources, claimed by the
// backend and registered like a sandbox this agent created (list, watch,
// end, removal when empty). One without a usable record cannot be served
// to its owner and is ended: its processes killed, then its enforcement
// and cgroup removed. It runs before the sweep, which then leaves the
// adopted cgroups alone (sandbox.Adopt marks them).
func (a *Agent) adoptPinned() {
	p, ok := a.be.(enforce.Pinner)
	if !ok {
		return
	}
	recs, bad, err := readRecords(a.cfg.Records)
	if err != nil {
		a.log.Warn("sandbox records unreadable: pinned sandboxes are ended", zap.Error(err))
	}
	for _, path := range bad {
		a.log.Warn("removing a malformed sandbox record", zap.String("path", path))
		_ = os.Remove(path)
	}
	for _, info := range p.Adopted() {
		r := recs[info.Name]
		delete(recs, info.Name)
		b, err := a.adoptOne(p, info, r)
		if err == nil {
			a.log.Info("sandbox adopted", zap.String("sandbox", b.info.Name), zap.Uint32("owner", b.info.Owner),
				zap.String("pins", p.PinDir()))
			continue
		}
		a.log.Warn("ending a sandbox left by the previous agent", zap.String("sandbox", info.Name), zap.Error(err))
		if err := a.endUnadopted(info); err != nil {
			a.log.Error("end sandbox", zap.String("sandbox", info.Name), zap.Error(err))
		}
		_ = os.Remove(a.recordPath(info.Name))
	}
	for name := range recs {
		// Its sandbox is no longer in the pins: it ended while no agent ran.
		_ = os.Remove(a.recordPath(name))
	}
}

// adoptOne recompiles the policy of the adopted sandbox info from its
// record r, claims it and registers it.
func (a *Agent) adoptOne(p enforce.Pinner, info enforce.Sandbox, r *record) (*box, error) {
	if r == nil {
		return nil, errors.New("no record of it (owner and policy unknown)")
	}
	if r.ID != info.ID || r.CgroupID != info.CgroupID || r.CgroupPath != info.CgroupPath {
		return nil, fmt.Errorf("its record names policy id %d, cgroup %d %s; the pins %d, %d %s",
			r.ID, r.CgroupID, r.CgroupPath, info.ID, info.CgroupID, info.CgroupPath)
	}
	compiled, _, err := compile(&r.Request)
	if err != nil {
		return nil, fmt.Errorf("recompile its policy: %w", err)
	}
	sb := info
	sb.Policy = compiled
	if sb.Mode == "" {
		sb.Mode = compiled.Mode
	}
	sb.Home, sb.ProjectRoot = r.Request.Home, r.Request.ProjectRoot
	sb.ExecDirs = resolve.DefaultExecDirs(r.Request.Path)
	sb.LandlockCovers = r.Request.LandlockCovers
	sb.UID = r.Owner
	if err := p.Claim(&sb); err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	s, err := sandbox.Adopt(sb, a.be)
	if err != nil {
		return nil, err
	}
	b := &box{
		sb:       s,
		compiled: compiled,
		rules:    metrics.RuleCounts(compiled),
		wd:       -1,
		gone:     make(chan struct{}),
		landlock: newBoxLandlock(r.Request.Landlock, a.be.Name()),
		own:      newClaudeOwn(r.Request, r.Created),
		cj:       a.loadJournal(sb.Name),
		after:    a.loadAfterRun(sb.Name),
		info: api.SandboxInfo{
			Name:       sb.Name,
			ID:         sb.ID,
			Owner:      r.Owner,
			Mode:       sb.Mode,
			Backend:    a.be.Name(),
			Created:    r.Created,
			Placed:     true, // its command runs, or ran: empty now means ended
			Rules:      len(compiled.Rules),
			Userns:     compiled.Userns,
			IOUring:    compiled.IOUring,
			UsernsHook: refusesUserns(a.be),
			Project:    r.Request.ProjectRoot,
			Command:    r.Request.Command,
		},
	}
	if err := a.register(b); err != nil {
		return nil, errors.Join(err, s.Close())
	}
	// Its last process may have exited while no agent ran.
	a.onEmpty(b)
	return b, nil
}

// endUnadopted kills what runs in a pinned sandbox and removes it.
func (a *Agent) endUnadopted(info enforce.Sandbox) error {
	s, err := sandbox.Adopt(info, a.be)
	if err != nil {
		// Its cgroup is gone: only the backend's entries are left.
		return errors.Join(err, a.be.Remove(info.ID))
	}
	return s.Close()
}

// closeAdopted undoes adoptPinned when New fails after it: the adopted
// sandboxes are forgotten, not ended (the backend still enforces them,
// and the next agent adopts them), and the watch is closed.
func (a *Agent) closeAdopted() {
	a.mu.Lock()
	for name, b := range a.boxes {
		a.empty.remove(b.wd)
		delete(a.boxes, name)
		delete(a.byCgroup, b.sb.Info.CgroupID)
	}
	a.mu.Unlock()
	a.empty.close()
	a.ide.close()
}
