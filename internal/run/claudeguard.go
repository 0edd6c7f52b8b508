//go:build linux

package run

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/claudejson"
	"github.com/aigate-dev/aigate/internal/claudestate"
	"github.com/aigate-dev/aigate/internal/config"
	"github.com/aigate-dev/aigate/internal/landlock"
	"github.com/aigate-dev/aigate/internal/policy"
)

// makeToolDirs makes the tool-state directories aigate creates when
// missing (landlock.DefaultCreate) before the sandbox exists, as the
// user: among them are the protected ones of ~/.claude (plugins/cache,
// skills, ...), which the LSM backend would refuse to the command's own
// start inside, and which the fanotify backend watches only if they exist
// when it marks the home. Best effort, as the command's start inside is.
// Only as the user (aigate run as the user, or under sudo acting as the
// user): directories root made would be root's, and claude could not
// write them; the command's start inside still makes them then.
func makeToolDirs(home string, uid int, u *config.User) {
	if home == "" || (os.Geteuid() != uid && (u == nil || !u.Sudo)) {
		return
	}
	_ = u.Do(func() error {
		for _, d := range landlock.DefaultCreate {
			_ = landlock.CreateMissing(landlock.Options{Home: home, Create: []string{d}})
		}
		return nil
	})
}

// claudeGuard puts back, once the sandbox is gone, the entries of Claude
// Code's ~/.claude.json that make a later claude outside start programs or
// run commands (package claudejson): the sandbox may write that file,
// which Claude Code rewrites all the time, so deny_write cannot protect
// it. aigate run records the file before the command starts, outside the
// sandbox, as the user.
type claudeGuard struct {
	path string
	data []byte               // the file at start; nil when there was none
	snap *claudejson.Snapshot // its guarded entries; nil when it was not JSON
	keep []string             // folders whose trust the user may answer inside
	user *config.User
}

// maxClaudeJSON bounds what is read: the file grows with every project,
// a few hundred kilobytes on a busy machine.
const maxClaudeJSON = 64 << 20

func guardClaudeJSON(home string, paths *config.Paths) *claudeGuard {
	g := &claudeGuard{path: filepath.Join(home, ".claude.json"), user: paths.User,
		keep: []string{paths.WorkDir, paths.ProjectRoot}}
	if home == "" {
		return nil
	}
	_ = g.user.Do(func() error {
		if p, err := filepath.EvalSymlinks(g.path); err == nil {
			g.path = p
		}
		data, err := readBounded(g.path)
		if err != nil {
			return nil
		}
		g.data = data
		g.snap, _ = claudejson.Record(data)
		return nil
	})
	return g
}

func readBounded(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() || fi.Size() > maxClaudeJSON {
		return nil, fmt.Errorf("%s: not a regular file of at most %d bytes", path, maxClaudeJSON)
	}
	return os.ReadFile(path)
}

// restore checks the file after the sandbox ended; it returns "" when
// nothing was put back, else what it did, for a warning. A file that is
// no longer JSON (Claude Code would fall back to a backup the sandbox could
// have written) gets the recorded file back whole, the broken one kept
// beside it: claude's own changes of the run are lost, nothing it would run
// is let through.
func (g *claudeGuard) restore(now time.Time) (string, error) {
	if g == nil {
		return "", nil
	}
	var cur []byte
	err := g.user.Do(func() error {
		var err error
		cur, err = readBounded(g.path)
		return err
	})
	switch {
	case errors.Is(err, fs.ErrNotExist) && g.data == nil:
		return "", nil
	case errors.Is(err, fs.ErrNotExist):
		if err := config.WriteFileAtomic(g.path, g.data, 0o600, g.user); err != nil {
			return "", err
		}
		return fmt.Sprintf("%s disappeared while the sandbox ran; aigate put it back as it was before the run", g.path), nil
	case err != nil:
		return "", err
	}
	snap := g.snap
	if snap == nil {
		// No file, or none claude could read, at start: nothing in it
		// named a command then.
		snap, _ = claudejson.Record([]byte("{}"))
	}
	out, changed, perr := snap.Restore(cur, g.keep)
	if perr != nil {
		if g.snap == nil {
			return "", nil // not JSON before either: claude reads nothing there
		}
		aside := fmt.Sprintf("%s.replaced-%s", g.path, now.UTC().Format("20060102T150405"))
		if err := g.user.Do(func() error { return os.Rename(g.path, aside) }); err != nil {
			return "", fmt.Errorf("move the broken %s aside: %w", g.path, err)
		}
		if err := config.WriteFileAtomic(g.path, g.data, 0o600, g.user); err != nil {
			return "", err
		}
		return fmt.Sprintf("%s is no longer valid JSON after the sandbox ran (%v); aigate put back the file as it was "+
			"before the run and kept the broken one as %s", g.path, perr, aside), nil
	}
	if len(changed) == 0 {
		return "", nil
	}
	if err := config.WriteFileAtomic(g.path, out, 0o600, g.user); err != nil {
		return "", err
	}
	return fmt.Sprintf("aigate undid what the sandbox changed in %s that a claude outside it would run or allow: %s; "+
		"to keep an MCP server, add it outside aigate (`claude mcp add ...` in a plain shell)",
		g.path, strings.Join(changed, ", ")), nil
}

// claudeRunRules are the deny_write rules of this run alone (package
// claudestate): the scripts Claude Code's settings name and the projects'
// auto memory, read as the user before the sandbox exists, without those
// a deny_write rule already covers or that are no valid pattern. It
// makes the run's own auto-memory directory first, as makeToolDirs does
// the others: the fanotify backend watches only what exists at start.
func claudeRunRules(p *runPlan) ([]api.RunRule, []string) {
	mkdir := os.Geteuid() == p.id.uid || (p.loaded.Paths.User != nil && p.loaded.Paths.User.Sudo)
	return claudeRules(p.loaded, p.compiled, p.id.home, mkdir)
}

// ClaudeRules are the rules claudeRunRules adds to a run from here, and
// what it cannot protect, for aigate status (which makes no directory).
func ClaudeRules(l *config.Loaded) ([]api.RunRule, []string) {
	pol, _ := l.Policy()
	c, err := policy.Compile(pol, l.PolicyEnv())
	if err != nil {
		return nil, nil
	}
	return claudeRules(l, c, l.Paths.User.Home, false)
}

func claudeRules(l *config.Loaded, compiled *policy.Compiled, home string, mkdir bool) ([]api.RunRule, []string) {
	if home == "" {
		return nil, nil
	}
	paths := l.Paths
	var res claudestate.Result
	_ = paths.User.Do(func() error {
		o := claudestate.Options{Home: home, ProjectRoot: paths.ProjectRoot, WorkDir: paths.WorkDir, Managed: claudestate.ManagedSettings}
		if own := o.OwnMemory(); own != "" && mkdir {
			_ = os.MkdirAll(own, 0o700)
		}
		res = claudestate.Scan(o)
		return nil
	})
	var rules []api.RunRule
	notes := res.Uncovered
	for _, e := range res.Entries {
		abs := e.Pattern
		if rest, ok := strings.CutPrefix(abs, "~/"); ok {
			abs = filepath.Join(home, rest)
		}
		if _, ok := compiled.Write.Match(abs); ok {
			continue
		}
		if err := policy.CheckPattern(e.Pattern); err != nil {
			notes = append(notes, fmt.Sprintf("%s (%s): %v", e.Pattern, e.By, err))
			continue
		}
		rules = append(rules, api.RunRule{Pattern: e.Pattern, By: e.By})
	}
	return rules, notes
}

// describeRunRules is run's line about the scripts: the auto memory,
// protected in every run, is listed by status only.
func describeRunRules(rules []api.RunRule) string {
	var named []string
	for _, r := range rules {
		if !strings.HasPrefix(r.By, "auto memory") {
			named = append(named, fmt.Sprintf("%s (%s)", r.Pattern, r.By))
		}
	}
	if len(named) == 0 {
		return ""
	}
	return "read-only for this run, because a claude outside the sandbox runs them: " + strings.Join(named, ", ")
}
