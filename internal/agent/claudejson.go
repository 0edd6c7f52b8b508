//go:build linux

package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/claudejson"
	"github.com/aigate-dev/aigate/internal/claudestate"
	"github.com/aigate-dev/aigate/internal/config"
	"github.com/aigate-dev/aigate/internal/events"
)

// DefaultJournal is where the agent keeps, for each sandbox it guards
// ~/.claude.json for, the file as it was before the sandbox's command
// started: /run is a tmpfs, and a journal outlives the agent (and the
// `aigate run` that embeds it) until the next agent puts back what the
// dead one could not.
const DefaultJournal = "/run/aigate/claude-json"

// journalVersion changes when a journal's meaning does; one of another
// version is dropped, with a warning, not replayed.
const journalVersion = 1

// claudeJournal is one sandbox's guard of its owner's ~/.claude.json
// (package claudejson): recorded at create with the owner's file-system
// identity, checked and put back once the sandbox's processes are dead
// (end), or by the next agent when this one died first.
type claudeJournal struct {
	V          int              `json:"v"`
	Sandbox    string           `json:"sandbox"`
	CgroupPath string           `json:"cgroup_path"`
	Owner      uint32           `json:"owner"`
	Guard      claudejson.Guard `json:"guard"`
	// Moved guards the .claude.json of the state directory
	// $CLAUDE_CONFIG_DIR moved (api.ClaudeJSONGuard.ConfigDir); nil when
	// none. A journal of an older agent has none.
	Moved *claudejson.Guard `json:"moved,omitempty"`
}

// guards are j's guards: ~/.claude.json, then the moved one.
func (j *claudeJournal) guards() []*claudejson.Guard {
	out := []*claudejson.Guard{&j.Guard}
	if j.Moved != nil {
		out = append(out, j.Moved)
	}
	return out
}

func (a *Agent) journalPath(name string) string {
	return filepath.Join(a.cfg.Journal, name+".json")
}

// guardClaudeJSON records the owner's ~/.claude.json for b, before its
// command starts (create is asked before place). The journal on disk is
// what makes the undo survive a kill -9 of run or of this agent; when it
// cannot be written the guard still holds for this agent's life. It
// returns a warning for the run when there is no guard at all.
func (a *Agent) guardClaudeJSON(b *box, req *api.CreateRequest) string {
	if req.ClaudeJSON == nil || req.Home == "" {
		return ""
	}
	u, err := ownerUser(b.info.Owner)
	if err != nil {
		a.log.Warn("~/.claude.json not guarded", zap.String("sandbox", b.info.Name), zap.Error(err))
		return fmt.Sprintf("~/.claude.json is not guarded in this run (%v): after it, look for MCP servers you did not add (`claude mcp list`)", err)
	}
	var g, moved *claudejson.Guard
	_ = u.Do(func() error {
		g = claudejson.Read(claudestate.ClaudeJSON(req.Home, ""), req.ClaudeJSON.Keep)
		// Only an absolute directory: a relative one would be the
		// agent's working directory's.
		if d := req.ClaudeJSON.ConfigDir; filepath.IsAbs(d) {
			moved = claudejson.Read(claudestate.ClaudeJSON(req.Home, filepath.Clean(d)), req.ClaudeJSON.Keep)
		}
		return nil
	})
	j := &claudeJournal{V: journalVersion, Sandbox: b.info.Name, CgroupPath: b.sb.Info.CgroupPath, Owner: b.info.Owner, Guard: *g, Moved: moved}
	b.cj = j
	if err := writeJournal(a.journalPath(j.Sandbox), j); err != nil {
		a.log.Warn("~/.claude.json journal not written: a kill -9 of this agent would skip its undo",
			zap.String("sandbox", j.Sandbox), zap.Error(err))
	}
	return ""
}

func writeJournal(path string, j *claudeJournal) error {
	return writeJSON(path, "journal", j)
}

// ownerUser is uid as a config.User whose identity Do takes.
func ownerUser(uid uint32) (*config.User, error) {
	pu, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return nil, fmt.Errorf("look up uid %d: %w", uid, err)
	}
	gid, err := strconv.Atoi(pu.Gid)
	if err != nil {
		return nil, fmt.Errorf("uid %d: group %q: %w", uid, pu.Gid, err)
	}
	return &config.User{Name: pu.Username, Home: pu.HomeDir, UID: int(uid), GID: gid, Sudo: true}, nil
}

// undoClaudeJSON puts back what b's sandbox changed in the guarded keys
// of ~/.claude.json, once nothing runs in it, and reports it as an event
// of the sandbox (its session, aigate watch, the metrics). Then the
// journal goes.
func (a *Agent) undoClaudeJSON(b *box) {
	j := b.cj
	if j == nil {
		return
	}
	undos, err := a.replay(j)
	if err != nil {
		a.log.Error("~/.claude.json: the sandbox's changes could not be checked", zap.String("sandbox", j.Sandbox),
			zap.Error(err))
	}
	for _, undo := range undos {
		b.events.Add(1)
		a.fan.publish(undoEvent(undo, j, b.sb.Info.CgroupID, a.be.Name()), j.Owner, true)
	}
	a.dropJournal(j.Sandbox)
}

// replay restores one journal's files as their owner: what it put back,
// and the first error (each file is tried).
func (a *Agent) replay(j *claudeJournal) ([]*claudejson.Undo, error) {
	u, err := ownerUser(j.Owner)
	if err != nil {
		return nil, err
	}
	var undos []*claudejson.Undo
	var first error
	for _, g := range j.guards() {
		var undo *claudejson.Undo
		err := u.Do(func() error {
			var err error
			undo, err = g.Restore(time.Now(), func(path string, data []byte, unchanged func() error) error {
				return config.WriteFileAtomicIf(path, data, 0o600, u, unchanged)
			})
			return err
		})
		if err != nil && first == nil {
			first = fmt.Errorf("%s: %w", g.Path, err)
		}
		if undo != nil {
			undos = append(undos, undo)
			a.undone.Add(1)
			a.log.Warn("put back what a sandbox changed in a .claude.json", zap.String("sandbox", j.Sandbox),
				zap.String("path", undo.Path), zap.String("what", undo.What()))
		}
	}
	return undos, first
}

func undoEvent(u *claudejson.Undo, j *claudeJournal, cgroup uint64, backend string) events.Event {
	return events.Event{
		Time: time.Now(), Sandbox: j.Sandbox, CgroupID: cgroup, UID: j.Owner,
		Kind: events.KindFile, Op: events.OpChange, Path: u.Path, RuleText: u.What(),
		Restored: true, Backend: backend,
	}
}

func (a *Agent) dropJournal(name string) {
	if err := os.Remove(a.journalPath(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		a.log.Warn("remove ~/.claude.json journal", zap.String("sandbox", name), zap.Error(err))
	}
}

// loadJournal is b's journal on disk, for a sandbox this agent adopted.
func (a *Agent) loadJournal(name string) *claudeJournal {
	data, err := os.ReadFile(a.journalPath(name))
	if err != nil {
		return nil
	}
	var j claudeJournal
	if json.Unmarshal(data, &j) != nil || j.V != journalVersion {
		return nil
	}
	return &j
}

// replayJournals puts back, at the agent's start, what the sandboxes of a
// dead agent (or of a killed `aigate run` that embedded it) changed in
// ~/.claude.json: each journal whose sandbox's cgroup is gone (Sweep
// removed it, or it never outlived its agent). A journal whose cgroup
// still exists belongs to a live sandbox (adopted here, or another
// agent's) and is left to its end.
func (a *Agent) replayJournals() {
	eachEnded(a, a.cfg.Journal, "~/.claude.json journal", a.loadJournal,
		func(j *claudeJournal) string { return j.CgroupPath }, a.dropJournal,
		func(name string, j *claudeJournal) {
			undos, err := a.replay(j)
			for _, undo := range undos {
				a.fan.publish(undoEvent(undo, j, 0, a.be.Name()), j.Owner, false)
			}
			if err != nil {
				a.log.Error("~/.claude.json of an ended sandbox could not be checked: its journal is kept for the next start",
					zap.String("sandbox", j.Sandbox), zap.Error(err))
				return
			}
			a.dropJournal(name)
		})
}
