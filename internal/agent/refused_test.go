//go:build linux

package agent

import (
	"errors"
	"io/fs"
	"testing"

	"github.com/aigate-dev/aigate/internal/claudestate"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/landlock"
	"github.com/aigate-dev/aigate/internal/refused"
	"github.com/aigate-dev/aigate/internal/sandbox"
)

// outsideHost has one process, outside the sandbox, the caller's own.
type outsideHost struct{}

func (outsideHost) Lstat(string) (landlock.Inode, error) { return landlock.Inode{}, errors.New("none") }
func (outsideHost) HasACL(string) bool                   { return true }
func (outsideHost) Resolve(string) (string, error)       { return "", errors.New("none") }
func (outsideHost) Dir(uint32, int32) (string, error)    { return "", errors.New("none") }
func (outsideHost) MntNS() uint32                        { return 1 }
func (outsideHost) Process(pid int32) (refused.Process, error) {
	if pid != 77 {
		return refused.Process{}, errors.New("none")
	}
	ids := [4]uint32{1000, 1000, 1000, 1000}
	return refused.Process{UIDs: ids, GIDs: ids, OwnerUID: 1000, InitUserNS: true, Cgroup: "/cg/user", Comm: "bash"}, nil
}

// TestRefusedNotTwice: a signal refused by the sandbox's domain becomes a
// Landlock event from the failed call, unless the audit reader reports
// Landlock's refusals (it reads them and audit is enabled): then only its
// record does, so that no refusal is reported twice.
func TestRefusedNotTwice(t *testing.T) {
	b := &box{sb: &sandbox.Sandbox{Info: enforce.Sandbox{CgroupPath: "/cg/s1"}}, landlock: &boxLandlock{rs: landlock.Ruleset{Scoped: landlock.ScopeSignal}}}
	a := &Agent{byCgroup: map[uint64]*box{9: b}}
	a.refused.host = outsideHost{}
	e := events.Event{PID: 5, TGID: 5, UID: 1000, CgroupID: 9, Kind: events.KindProc, Op: events.OpSignal,
		Refused: &events.Refused{Nr: 62, Target: 77, GID: 1000}}
	for _, c := range []struct {
		name    string
		reader  bool
		enabled bool
		want    bool
	}{
		{"no audit reader", false, true, true},
		{"audit reader, audit off", true, false, true},
		{"audit reader, audit on", true, true, false},
	} {
		a.ll = nil
		if c.reader {
			a.ll = &landlockAudit{}
		}
		a.refused.asked = a.refused.asked.AddDate(-1, 0, 0) // ask again
		a.refused.enabled = func() (bool, error) { return c.enabled, nil }
		out, ok := a.refusedEvent(e)
		if ok != c.want {
			t.Errorf("%s: kept %t, want %t", c.name, ok, c.want)
		}
		if ok && (out.Path != "pid 77 (bash)" || out.Backend != refused.Backend || out.Refused != nil) {
			t.Errorf("%s: %+v", c.name, out)
		}
	}
}

// homeHost is a home /home/u of uid 1000 with nothing in it.
type homeHost struct{ outsideHost }

func (homeHost) Lstat(p string) (landlock.Inode, error) {
	switch p {
	case "/", "/home":
		return landlock.Inode{Mode: fs.ModeDir | 0o755}, nil
	case "/home/u":
		return landlock.Inode{Mode: fs.ModeDir | 0o755, UID: 1000, GID: 1000}, nil
	}
	return landlock.Inode{}, fs.ErrNotExist
}
func (homeHost) HasACL(string) bool { return false }
func (h homeHost) Resolve(p string) (string, error) {
	if _, err := h.Lstat(p); err != nil {
		return "", err
	}
	return p, nil
}

// TestRefusedNotTwiceClaude: in a sandbox of Claude Code's (whose own
// refusals are looked at even while audit reports), a refused mkdir in
// the home that is not Claude Code's own is still left to the audit
// reader, and reported from the call only without it.
func TestRefusedNotTwiceClaude(t *testing.T) {
	b := &box{sb: &sandbox.Sandbox{Info: enforce.Sandbox{CgroupPath: "/cg/s1"}},
		landlock: &boxLandlock{rs: landlock.Ruleset{HandledFS: landlock.AccessWrite}},
		own:      &claudestate.Own{Home: "/home/u"}}
	a := &Agent{byCgroup: map[uint64]*box{9: b}}
	a.refused.host = homeHost{}
	e := events.Event{PID: 5, TGID: 5, UID: 1000, CgroupID: 9, Kind: events.KindFile, Op: events.OpWrite,
		Path: "/home/u/bin", Refused: &events.Refused{Nr: 83, GID: 1000, MntNS: 1}}
	for _, audit := range []bool{false, true} {
		a.ll = &landlockAudit{}
		a.refused.asked = a.refused.asked.AddDate(-1, 0, 0) // ask again
		a.refused.enabled = func() (bool, error) { return audit, nil }
		out, ok := a.refusedEvent(e)
		if ok == audit {
			t.Errorf("audit on %t: kept %t, want %t", audit, ok, !audit)
		}
		if ok && out.Path != "/home/u/bin" {
			t.Errorf("audit on %t: %+v", audit, out)
		}
	}
}
