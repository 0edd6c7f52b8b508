//go:build linux

package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/claudestate"
	"github.com/aigate-dev/aigate/internal/gitdirs"
	"github.com/aigate-dev/aigate/internal/policy"
)

// DefaultAfterRun is where the agent keeps, for each sandbox that asked
// for them (api.AfterRun), the checks to make once it ended: /run is a
// tmpfs, and a journal outlives the agent (and the `aigate run` that
// embeds it) until the next agent makes them.
const DefaultAfterRun = "/run/aigate/after-run"

// afterRunVersion changes when a journal's meaning does.
const afterRunVersion = 1

// afterRunJournal is one sandbox's api.AfterRun and the request it came
// with (its policy, so that the check changes no file a deny_write rule
// covers, and its home and project).
type afterRunJournal struct {
	V          int               `json:"v"`
	Sandbox    string            `json:"sandbox"`
	CgroupPath string            `json:"cgroup_path"`
	Owner      uint32            `json:"owner"`
	Request    api.CreateRequest `json:"request"`
}

func (a *Agent) afterRunPath(name string) string {
	return filepath.Join(a.cfg.AfterRun, name+".json")
}

// guardAfterRun records req's checks for b before its command starts
// (req as compiled: with the agent's trust decision). Without the
// journal on disk the checks still happen at b's end in this agent.
func (a *Agent) guardAfterRun(b *box, req *api.CreateRequest) {
	if req.AfterRun == nil {
		return
	}
	j := &afterRunJournal{V: afterRunVersion, Sandbox: b.info.Name, CgroupPath: b.sb.Info.CgroupPath, Owner: b.info.Owner, Request: *req}
	b.after = j
	if err := writeJSON(a.afterRunPath(j.Sandbox), "after-run journal", j); err != nil {
		a.log.Warn("after-run journal not written: a kill -9 of this agent would skip the check of the git directories made in the run",
			zap.String("sandbox", j.Sandbox), zap.Error(err))
	}
}

// afterRun makes b's checks once nothing runs in it, whether its client
// asked for the end, its command exited or its client died (a kill -9 of
// `aigate run` skips nothing then), and keeps what it did for the
// session's Ended.
func (a *Agent) afterRun(b *box) {
	if b.after == nil {
		return
	}
	b.notes = a.runChecks(b.after, b.compiled)
	a.dropAfterRun(b.after.Sandbox)
}

// runChecks defuses the git directories j's sandbox made and moves aside
// the marketplace clones it changed, as the owner; compiled is the
// sandbox's policy (nil: compiled again from the journal). It returns
// what to tell the user, each also logged.
func (a *Agent) runChecks(j *afterRunJournal, compiled *policy.Compiled) []string {
	u, err := ownerUser(j.Owner)
	if err != nil {
		msg := fmt.Sprintf("the git directories and plugin clones the sandbox may have changed were not checked (%v): look at them before you run git or claude in %s", err, j.Request.ProjectRoot)
		a.log.Error("after-run check", zap.String("sandbox", j.Sandbox), zap.Error(err))
		return []string{msg}
	}
	if compiled == nil {
		if compiled, _, err = compile(&j.Request); err != nil {
			compiled = nil // no policy: every file counts as protected below
		}
	}
	protected := func(p string) bool {
		if compiled == nil {
			return true
		}
		_, ok := compiled.Write.Match(p)
		return ok
	}
	ar, home, now := j.Request.AfterRun, j.Request.Home, time.Now()
	var notes []string
	_ = u.Do(func() error {
		if ar.Git != nil && j.Request.ProjectRoot != "" {
			notes = append(notes, defuseGit(j.Request.ProjectRoot, home, ar.Git.Known, u.UID, protected, now)...)
		}
		if len(ar.Clones) > 0 {
			clones := make([]claudestate.Clone, 0, len(ar.Clones))
			sums := make([]string, 0, len(ar.Clones))
			for _, c := range ar.Clones {
				clones = append(clones, claudestate.Clone{Marketplace: c.Marketplace, Dir: c.Dir, Plugins: c.Plugins})
				sums = append(sums, c.Sum)
			}
			notes = append(notes, claudestate.CheckClones(clones, sums, home, now)...)
		}
		return nil
	})
	for _, n := range notes {
		a.log.Warn("after a sandbox ended", zap.String("sandbox", j.Sandbox), zap.String("what", n))
	}
	return notes
}

// defuseGit is gitdirs.DefuseNew for one project, told as run says it.
func defuseGit(project, home string, known []string, uid int, protected func(string) bool, now time.Time) []string {
	k := make(map[string]bool, len(known))
	for _, g := range known {
		k[g] = true
	}
	acts, err := gitdirs.DefuseNew(gitdirs.Options{ProjectRoot: project, Home: home},
		gitdirs.DefuseOptions{UID: uid, Known: k, Protected: protected, Now: now})
	var notes []string
	byDir := map[string][]gitdirs.Action{}
	var order []string
	for _, a := range acts {
		d := filepath.Dir(a.Path)
		if filepath.Base(d) == "hooks" {
			d = filepath.Dir(d)
		}
		if _, ok := byDir[d]; !ok {
			order = append(order, d)
		}
		byDir[d] = append(byDir[d], a)
	}
	for _, d := range order {
		var what, undo []string
		for _, a := range byDir[d] {
			what = append(what, fmt.Sprintf("%s: %s, the original is %s", tilde(a.Path, home), a.What, tilde(a.Aside, home)))
			undo = append(undo, a.Restore())
		}
		notes = append(notes, fmt.Sprintf("the sandbox made the git directory %s, with what would make git outside run a program, so aigate defused it: %s. To keep what it had, check it, then: %s (docs/threat-model.md, \"Git directories\")",
			tilde(d, home), strings.Join(what, "; "), strings.Join(undo, "; ")))
	}
	if err != nil {
		notes = append(notes, fmt.Sprintf("git directories made in the sandbox not defused: %v; look at them before you run git in %s", err, project))
	}
	return notes
}

// tilde shows path beneath home as ~/...
func tilde(path, home string) string {
	if rest, ok := strings.CutPrefix(path, home+"/"); ok && home != "" {
		return "~/" + rest
	}
	return path
}

func (a *Agent) dropAfterRun(name string) {
	if err := os.Remove(a.afterRunPath(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		a.log.Warn("remove after-run journal", zap.String("sandbox", name), zap.Error(err))
	}
}

// loadAfterRun is the journal of a sandbox this agent adopted.
func (a *Agent) loadAfterRun(name string) *afterRunJournal {
	data, err := os.ReadFile(a.afterRunPath(name))
	if err != nil {
		return nil
	}
	var j afterRunJournal
	if json.Unmarshal(data, &j) != nil || j.V != afterRunVersion || j.Request.AfterRun == nil {
		return nil
	}
	return &j
}

// replayAfterRun makes, at the agent's start, the checks of the
// sandboxes of a dead agent (or of a killed `aigate run` that embedded
// it): each journal whose cgroup is gone. Nobody waits for the notes:
// they are logged.
func (a *Agent) replayAfterRun() {
	eachEnded(a, a.cfg.AfterRun, "after-run journal", a.loadAfterRun,
		func(j *afterRunJournal) string { return j.CgroupPath }, a.dropAfterRun,
		func(name string, j *afterRunJournal) {
			a.runChecks(j, nil)
			a.dropAfterRun(name)
		})
}
