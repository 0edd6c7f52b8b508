package darwin

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"strings"
	"time"

	"github.com/aigate-dev/aigate/internal/policy"
)

// Resolver turns allowed domain names into addresses; *net.Resolver
// satisfies it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Env is what Apply needs to know about the machine and the session.
type Env struct {
	User        SandboxUser
	ProjectRoot string
	Home        string
	// Owner is the account of the person who ran aigate (SUDO_USER): the
	// project's directories give it an inheritable allow entry so that
	// what the tool creates stays usable. Empty leaves it out.
	Owner      string
	StateFile  string // Machine.StateFile: root-owned, one per machine
	FS         fs.FS  // rooted at "/"
	ExecDirs   []string
	MaxEntries int
	Resolver   Resolver
	// PID identifies this session in the state file. Alive reports whether
	// the process that wrote a leftover state file still runs; nil means
	// "assume it does", the safe answer.
	PID   int
	Alive func(pid int) bool
	// Warn receives Run's warnings (rules macOS cannot enforce, missing
	// events) as soon as they are known, before the tool starts; nil drops
	// them.
	Warn func(string)
}

// Step is one change in an apply plan.
type Step struct {
	What string
	Do   Command
	Undo []Command
	// enable marks the pfctl -E step, whose undo needs the token the
	// command prints.
	enable bool
}

// Applied describes a session's applied policy.
type Applied struct {
	Expansion *Expansion
	Anchor    Anchor
	Steps     []Step
	Warnings  []string
	refresher *Refresher
}

// Refresher returns the session's domain refresher, or nil when the policy
// allows no domains (or allows all traffic).
func (a *Applied) Refresher() *Refresher { return a.refresher }

// ErrBusy means another live session holds the state file.
var ErrBusy = errors.New("another aigate session is running on this machine")

// Plan returns the ordered changes for compiled policy c: deny entries first
// (so there is never a moment in which the project is shared but a secret in
// it is not yet denied), then the project allow entries, then pf. Entries
// with the same text are batched into as few chmod processes as the
// argument limit allows, one step (and one state-file write) per process.
func Plan(c *policy.Compiled, exp *Expansion, env Env, anchor Anchor) ([]Step, []string) {
	var steps []Step
	var warns []string
	user := env.User.Name
	add := func(what string, a ACE) {
		for _, b := range batches(a.Paths, MaxBatchBytes) {
			one := ACE{Text: a.Text, Paths: b}
			steps = append(steps, Step{
				What: what + " " + describePaths(b),
				Do:   one.AddCommands()[0],
				Undo: one.RemoveCommands(),
			})
		}
	}
	readDenied := map[string]bool{}
	if c.Mode == policy.ModeAudit {
		warns = append(warns, "audit mode: file rules are not applied on macOS, because an ACL can only refuse, not report")
	} else {
		g := newGrouper()
		for _, t := range exp.Targets {
			if OnSealedVolume(t.Path) {
				warns = append(warns, fmt.Sprintf("deny_%s %s: on the read-only system volume, no ACL can be added; not enforced", t.Access, t.Path))
				continue
			}
			label := "deny " + t.Access.String()
			if !t.Dir || t.Access == policy.AccessRead {
				if t.Dir {
					readDenied[t.Path] = true
				}
				text, _ := DenyText(user, t.Access, t.Dir)
				g.add(label, text, t.Path)
			} else {
				// What is already inside a write- or exec-denied
				// directory gets its own entry; links in it are not
				// followed.
				tree := WalkTree(env.FS, t.Path, nil)
				dirText, _ := DenyText(user, t.Access, true)
				fileText, _ := DenyText(user, t.Access, false)
				for _, d := range tree.Dirs {
					g.add(label, dirText, d)
				}
				for _, f := range tree.Files {
					g.add(label, fileText, f)
				}
			}
			if t.Access == policy.AccessWrite {
				for _, d := range ancestorsBelow(env.ProjectRoot, t.Path) {
					g.add("deny rename", RenameDenyText(user), d)
				}
			}
		}
		for _, k := range g.order {
			add(k.label, ACE{Text: k.text, Paths: g.paths[k]})
		}
	}
	tree := WalkTree(env.FS, env.ProjectRoot, func(d string) bool { return readDenied[d] })
	for _, d := range tree.Unreadable {
		warns = append(warns, fmt.Sprintf("share %s: cannot list it; what is inside is not shared with %s", d, user))
	}
	add("share", ACE{Text: ShareText(user), Paths: append(append([]string(nil), tree.Dirs...), tree.Files...)})
	if env.Owner != "" && env.Owner != user {
		add("keep new files usable by "+env.Owner+" in", ACE{Text: OwnerText(env.Owner), Paths: tree.Dirs})
	}
	add("share", ACE{Text: TraversalText(user), Paths: TraversalPaths(env.ProjectRoot, env.Home)})
	if needsPF(c.Net) {
		steps = append(steps,
			Step{What: "enable pf", Do: EnableCommand(), enable: true},
			Step{What: "load pf anchor " + AnchorName, Do: LoadAnchorCommand(anchor.Text), Undo: FlushAnchorCommands()},
		)
	}
	return steps, warns
}

type groupKey struct{ label, text string }

// grouper collects paths per entry text, in the order texts first appear,
// each path once.
type grouper struct {
	order []groupKey
	paths map[groupKey][]string
	seen  map[groupKey]map[string]bool
}

func newGrouper() *grouper {
	return &grouper{paths: map[groupKey][]string{}, seen: map[groupKey]map[string]bool{}}
}

func (g *grouper) add(label, text, p string) {
	k := groupKey{label, text}
	if g.seen[k] == nil {
		g.seen[k] = map[string]bool{}
		g.order = append(g.order, k)
	}
	if !g.seen[k][p] {
		g.seen[k][p] = true
		g.paths[k] = append(g.paths[k], p)
	}
}

func needsPF(n policy.NetPolicy) bool {
	return n.Mode != policy.NetAllow || len(n.Deny) > 0
}

// Apply applies c for one session. Each change is recorded in the state file
// before it is made; if any step fails, everything done so far is undone and
// the error names the step. A state file left by a dead session is undone
// first.
func Apply(ctx context.Context, r Runner, c *policy.Compiled, env Env) (*Applied, error) {
	if env.User.Name == "" || env.StateFile == "" || env.FS == nil || env.ProjectRoot == "" {
		return nil, errors.New("apply: env needs User, StateFile, FS and ProjectRoot")
	}
	if err := recoverLeftover(ctx, r, env); err != nil {
		return nil, err
	}
	// The walk never enters a link, so a project reached through one
	// (cd ~/proj, a link to ~/code/proj) is shared at its real path.
	for _, p := range []*string{&env.ProjectRoot, &env.Home} {
		if *p == "" {
			continue
		}
		if real, dir, err := ResolvePath(env.FS, *p); err == nil && dir {
			*p = real
		}
	}
	exp, err := Expand(env.FS, c, ExpandOptions{
		ProjectRoot: env.ProjectRoot, Home: env.Home, ExecDirs: env.ExecDirs, MaxEntries: env.MaxEntries,
	})
	if err != nil {
		return nil, fmt.Errorf("expand file rules: %w", err)
	}
	a := &Applied{Expansion: exp}
	if exp.Truncated {
		a.Warnings = append(a.Warnings, fmt.Sprintf("name rules: stopped after %d entries (first unread directory %s); files beyond were not searched", exp.Visited, exp.SkippedAt))
	}
	for _, l := range exp.LinksOut {
		a.Warnings = append(a.Warnings, fmt.Sprintf("%s: a link in the project matched by a rule leads outside your home and the project; no entry is put there, not enforced", l))
	}
	var resolved map[uint16][]netip.Addr
	if c.Net.Mode != policy.NetAllow {
		f := newRefresher(r, env.Resolver, c.Net)
		for _, d := range c.Net.Domains {
			if d.Wildcard {
				a.Warnings = append(a.Warnings, fmt.Sprintf("allow_net *.%s: pf matches addresses, not names, and a wildcard cannot be resolved ahead; not reachable on macOS (list the names you need)", d.Name))
			}
		}
		var warns []string
		resolved, warns = f.resolve(ctx)
		a.Warnings = append(a.Warnings, warns...)
		f.merge(resolved)
		if len(f.domains) > 0 {
			a.refresher = f
		}
	}
	a.Anchor = BuildAnchor(AnchorSpec{User: env.User.Name, Net: c.Net, Audit: c.Mode == policy.ModeAudit, Resolved: resolved})
	steps, warns := Plan(c, exp, env, a.Anchor)
	a.Steps = steps
	a.Warnings = append(a.Warnings, warns...)

	// Every record goes down in one write, before any change: a crash
	// leaves records whose undo finds nothing to remove (for the steps not
	// made yet), never a change nobody knows about. One write, not one per
	// step: the share of a large project lists hundreds of thousands of
	// paths, and rewriting that list (with F_FULLFSYNC) per step would be
	// quadratic.
	st := &State{Version: stateVersion, PID: env.PID, Started: time.Now().UTC(), User: env.User.Name}
	for _, s := range steps {
		st.Records = append(st.Records, Record{What: s.What, Undo: s.Undo})
	}
	if err := WriteState(env.StateFile, st); err != nil {
		return nil, err
	}
	for i, s := range steps {
		out, err := s.Do.run(ctx, r)
		if err != nil {
			failed, ok := perPathFailures(s.Do, out)
			if !ok {
				// The steps after this one never happened: only what
				// was (or may have half been) done is undone.
				st.Records = st.Records[:i+1]
				_ = WriteState(env.StateFile, st)
				return nil, rollback(ctx, r, env.StateFile, runError(s.What, s.Do, out, err))
			}
			// A file deleted meanwhile, on a read-only volume, or
			// immutable: the others got their entry; the run goes on.
			for _, f := range failed {
				what, _, _ := strings.Cut(s.What, " ")
				if what == "deny" {
					a.Warnings = append(a.Warnings, fmt.Sprintf("%s: %s: %s; the rule is NOT enforced on it", s.What, f.path, f.reason))
				} else {
					a.Warnings = append(a.Warnings, fmt.Sprintf("%s: %s: %s; not applied there", s.What, f.path, f.reason))
				}
			}
			st.Records[i].Undo = withoutPaths(s.Undo, failed)
			if err := WriteState(env.StateFile, st); err != nil {
				return nil, rollback(ctx, r, env.StateFile, err)
			}
			continue
		}
		if s.enable {
			tok, err := ParseEnableToken(string(out))
			if err != nil {
				// pf is on; without a token we cannot release our
				// reference, which leaves pf enabled, not open.
				a.Warnings = append(a.Warnings, err.Error())
				continue
			}
			st.Records[i].Undo = []Command{ReleaseCommand(tok)}
			if err := WriteState(env.StateFile, st); err != nil {
				return nil, rollback(ctx, r, env.StateFile, err)
			}
		}
	}
	return a, nil
}

func rollback(ctx context.Context, r Runner, statePath string, cause error) error {
	// Undo even when ctx was cancelled (Ctrl-C during apply): leaving deny
	// entries or a pf anchor behind is worse than a slower exit.
	if err := Revert(context.WithoutCancel(ctx), r, statePath); err != nil {
		return fmt.Errorf("%w; undoing the changes also failed: %v (run `sudo aigate reset`)", cause, err)
	}
	return cause
}

func recoverLeftover(ctx context.Context, r Runner, env Env) error {
	st, err := ReadState(env.StateFile)
	if err != nil {
		return err
	}
	if st != nil && st.PID != env.PID && (env.Alive == nil || env.Alive(st.PID)) {
		return fmt.Errorf("%w (pid %d, state %s): wait for it to end; if it is gone, run `sudo aigate reset`", ErrBusy, st.PID, env.StateFile)
	}
	// No session runs: whatever still runs as the sandbox user was left
	// by one that did not end cleanly, and must not outlive its rules.
	if err := EndUserProcesses(ctx, r, env.User); err != nil {
		return fmt.Errorf("end what an earlier session left running: %w", err)
	}
	if st == nil {
		return nil
	}
	if err := Revert(ctx, r, env.StateFile); err != nil {
		return fmt.Errorf("undo the changes of a session that did not clean up: %w", err)
	}
	return nil
}

// Revert undoes every change recorded in the state file, newest first. A
// change whose undo fails stays recorded (so `aigate reset` can retry) and
// the others are still undone; the file is removed once it is empty.
// Reverting with no state file does nothing, so Revert is idempotent.
func Revert(ctx context.Context, r Runner, statePath string) error {
	st, err := ReadState(statePath)
	if err != nil || st == nil {
		return err
	}
	var errs []error
	for i := len(st.Records) - 1; i >= 0; i-- {
		rec := st.Records[i]
		var failed []Command
		for _, u := range rec.Undo {
			out, err := u.run(ctx, r)
			if err != nil && !alreadyUndone(u, out, err) {
				errs = append(errs, runError("undo "+rec.What, u, out, err))
				failed = append(failed, u)
			}
		}
		if len(failed) > 0 {
			st.Records[i].Undo = failed
		} else {
			st.Records = append(st.Records[:i], st.Records[i+1:]...)
		}
	}
	// One write at the end, not one per record (the lists can be long): a
	// crash before it leaves records whose undo finds nothing left, which
	// the next Revert counts as done.
	if len(st.Records) == 0 {
		if err := RemoveState(statePath); err != nil {
			errs = append(errs, err)
		}
	} else if err := WriteState(statePath, st); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// pathFailure is one path a chmod could not change.
type pathFailure struct{ path, reason string }

// tolerated are the per-path errors after which a batch is still good:
// the file went away (ENOENT, also a dangling name), it is on a read-only
// volume (EROFS), or the system or a file flag forbids it (EPERM: SIP,
// uchg). chmod goes on with the other paths and exits 1.
var tolerated = []string{"No such file or directory", "Read-only file system", "Operation not permitted"}

// perPathFailures reads a failed chmod's output: ok when every line is one
// of the tolerated per-path errors, in either form chmod prints them
// ("chmod: Failed to set ACL on file 'P': E" or "chmod: P: E"), and which
// paths they name.
func perPathFailures(c Command, out []byte) ([]pathFailure, bool) {
	if c.Name != "chmod" {
		return nil, false
	}
	var fs []pathFailure
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		var f pathFailure
		for _, t := range tolerated {
			if strings.HasSuffix(line, ": "+t) {
				f.reason = t
			}
		}
		if f.reason == "" {
			return nil, false
		}
		rest := strings.TrimSuffix(strings.TrimPrefix(line, "chmod: "), ": "+f.reason)
		if q, ok := strings.CutPrefix(rest, "Failed to set ACL on file "); ok {
			rest = strings.Trim(q, "'")
		}
		f.path = rest
		fs = append(fs, f)
	}
	return fs, len(fs) > 0
}

// withoutPaths drops the failed paths from chmod undo commands: nothing
// was added there, and an undo that fails on them would stay in the state
// file for ever.
func withoutPaths(undo []Command, failed []pathFailure) []Command {
	drop := map[string]bool{}
	for _, f := range failed {
		drop[f.path] = true
	}
	var out []Command
	for _, u := range undo {
		const fixed = 3 // -h, -a, text
		if u.Name != "chmod" || len(u.Args) <= fixed {
			out = append(out, u)
			continue
		}
		args := append([]string(nil), u.Args[:fixed]...)
		for _, p := range u.Args[fixed:] {
			if !drop[p] {
				args = append(args, p)
			}
		}
		if len(args) > fixed {
			out = append(out, Command{Name: u.Name, Args: args, Stdin: u.Stdin})
		}
	}
	return out
}

// goneMarkers are, per command, the messages with which it reports that
// there is nothing to remove: a record written just before a crash, a file
// deleted during the session, or a second reset. Treating them as success
// is what makes Revert finish instead of retrying forever. Every line of a
// chmod's output must be one of them: a chmod over many paths that failed
// on one for another reason has not undone it. Broad words such as "not
// found" or "Invalid argument" are not markers: they also describe an undo
// that failed.
var goneMarkers = map[string][]string{
	"chmod": {"No such file or directory", "No ACL present", "No matching"},
	"pfctl": {"does not exist"},
	"dscl":  {"eDSRecordNotFound"},
}

func alreadyUndone(c Command, out []byte, err error) bool {
	// pfctl -X with a token that was already released.
	if c.Name == "pfctl" && len(c.Args) > 0 && c.Args[0] == "-X" && strings.Contains(string(out)+err.Error(), "Invalid argument") {
		return true
	}
	markers := goneMarkers[c.Name]
	text := strings.TrimSpace(string(out))
	if text == "" {
		text = err.Error()
	}
	if c.Name != "chmod" {
		// dscl and pfctl report one thing per call, with lines around it.
		for _, m := range markers {
			if strings.Contains(text, m) {
				return true
			}
		}
		return false
	}
	n := 0
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		gone := false
		for _, m := range markers {
			gone = gone || strings.Contains(line, m)
		}
		if !gone {
			return false
		}
		n++
	}
	return n > 0
}
