//go:build linux

package api

import (
	"fmt"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/sandbox"
)

// Bounds on the strings a client sends, far above real use.
const (
	maxPath        = 4096
	maxCommandArgs = 64
	maxCommandLen  = 4096 // bytes over all arguments
)

// RecordedCommand is argv as a create request records it (the command of
// a sandbox, for list and status output only): within the bounds the
// agent accepts, invalid UTF-8 replaced, the cut marked with "…". A run of
// a long command (claude -p with a long prompt) is never refused for it.
func RecordedCommand(argv []string) []string {
	const mark = "…"
	out := make([]string, 0, min(len(argv), maxCommandArgs))
	n := 0
	for i, a := range argv {
		a = strings.ToValidUTF8(a, "\uFFFD")
		last := i == maxCommandArgs-1 && i < len(argv)-1
		if n+len(a) > maxCommandLen || last {
			room := maxCommandLen - n - len(mark)
			if room < 0 {
				room = 0
			}
			a = a[:min(room, len(a))]
			for len(a) > 0 && !utf8.ValidString(a) {
				a = a[:len(a)-1] // a cut inside a character
			}
			return append(out, a+mark)
		}
		out = append(out, a)
		n += len(a)
	}
	return out
}

// Validate checks everything about r that does not depend on who sent it:
// version, exactly one body matching Op, and sane fields. The agent checks
// permissions afterwards.
func (r *Request) Validate() *Error {
	if r.V < MinVersion || r.V > Version {
		return &Error{CodeVersion, fmt.Sprintf("protocol version %d, the agent speaks %d to %d: use the aigate binary that matches the running agent, or restart the agent", r.V, MinVersion, Version)}
	}
	set := 0
	for _, b := range []bool{r.Create != nil, r.Place != nil, r.End != nil, r.Watch != nil, r.Trust != nil, r.Policy != nil} {
		if b {
			set++
		}
	}
	var bodyOK bool
	switch r.Op {
	case OpStatus, OpList:
		bodyOK = set == 0
	case OpCreate:
		bodyOK = set == 1 && r.Create != nil
	case OpPlace:
		bodyOK = set == 1 && r.Place != nil
	case OpEnd:
		bodyOK = set == 1 && r.End != nil
	case OpWatch:
		bodyOK = set == 0 || (set == 1 && r.Watch != nil)
	case OpTrust:
		bodyOK = set == 1 && r.Trust != nil
	case OpPolicy:
		bodyOK = set == 1 && r.Policy != nil
	default:
		return badf("unknown op %q", r.Op)
	}
	if !bodyOK {
		return badf("op %q with the wrong request body", r.Op)
	}
	switch r.Op {
	case OpCreate:
		if r.Create.Place != nil && !PlacesAtCreate(r.V) {
			return badf("create: place needs protocol version 3, the request is version %d", r.V)
		}
		return r.Create.validate()
	case OpPlace:
		if r.Place.PID <= 0 {
			return badf("place: pid %d is not a process id", r.Place.PID)
		}
	case OpEnd:
		return validName(r.End.Sandbox, false)
	case OpTrust:
		return r.Trust.validate()
	case OpPolicy:
		return r.Policy.validate()
	case OpWatch:
		if r.Watch != nil {
			if err := validName(r.Watch.Sandbox, true); err != nil {
				return err
			}
			switch r.Watch.Kind {
			case "", events.KindFile, events.KindExec, events.KindNet:
			default:
				return badf("watch: kind %q: want file, exec or net", r.Watch.Kind)
			}
		}
	}
	return nil
}

func (c *CreateRequest) validate() *Error {
	for _, f := range []*File{c.Global, c.Project} {
		if f == nil {
			continue
		}
		if err := absPath("config file", f.Path); err != nil {
			return err
		}
	}
	if c.Place != nil && c.Place.PID <= 0 {
		return badf("create: place: pid %d is not a process id", c.Place.PID)
	}
	if c.IDELocks != nil {
		for _, d := range c.IDELocks.Dirs {
			if err := absPath("IDE lock directory", d); err != nil {
				return err
			}
		}
		for _, l := range c.IDELocks.Locks {
			if l.Port == 0 {
				return badf("create: IDE lock %s: port 0", l.Path)
			}
		}
	}
	if err := absPath("home", c.Home); err != nil {
		return err
	}
	if err := absPath("project root", c.ProjectRoot); err != nil {
		return err
	}
	switch c.Trust {
	case "", "trusted", "changed", "untrusted":
	default:
		return badf("create: trust %q: want trusted, changed or untrusted", c.Trust)
	}
	switch c.Mode {
	case "", policy.ModeEnforce, policy.ModeAudit:
	default:
		return badf("create: mode %q: want enforce or audit", c.Mode)
	}
	if len(c.Command) > maxCommandArgs {
		return badf("create: command has %d arguments, at most %d are recorded", len(c.Command), maxCommandArgs)
	}
	n := 0
	for _, a := range c.Command {
		n += len(a)
		if !utf8.ValidString(a) {
			return badf("create: command argument is not valid UTF-8")
		}
	}
	if n > maxCommandLen {
		return badf("create: command is %d bytes long, at most %d are recorded", n, maxCommandLen)
	}
	return nil
}

func (t *TrustRequest) validate() *Error {
	switch t.Action {
	case TrustGet:
		return nil
	case TrustSet:
		if len(t.SHA256) != 64 || strings.Trim(t.SHA256, "0123456789abcdef") != "" {
			return badf("trust: sha256 %q is not a lowercase hex SHA-256", t.SHA256)
		}
	case TrustRevoke:
	default:
		return badf("trust: action %q: want get, set or revoke", t.Action)
	}
	return absPath("project file", t.Path)
}

func (p *PolicyRequest) validate() *Error {
	switch p.Action {
	case PolicyCheck, PolicyAccept:
	default:
		return badf("policy: action %q: want check or accept", p.Action)
	}
	if p.Base != nil && !p.Edit {
		return badf("policy: a base without edit")
	}
	for _, f := range []*File{p.Global, p.Base} {
		if f == nil {
			continue
		}
		if err := absPath("config file", f.Path); err != nil {
			return err
		}
	}
	return absPath("home", p.Home)
}

func absPath(what, p string) *Error {
	if p == "" || len(p) > maxPath || !filepath.IsAbs(p) || filepath.Clean(p) != p || strings.ContainsRune(p, 0) {
		return badf("%s %q is not a clean absolute path", what, p)
	}
	return nil
}

func validName(name string, empty bool) *Error {
	if name == "" && empty {
		return nil
	}
	if _, _, ok := sandbox.ParseName(name); !ok {
		return badf("%q is not a sandbox name (like s1-p1234; see aigate status)", name)
	}
	return nil
}

func badf(format string, args ...any) *Error {
	return &Error{CodeBadRequest, fmt.Sprintf(format, args...)}
}
