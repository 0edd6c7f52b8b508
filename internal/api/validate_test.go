//go:build linux

package api

import (
	"strings"
	"testing"
)

// Validate is the agent's first line against a client it does not trust:
// every request shape it must refuse, one case per check, and a valid
// request of each op as the control. A check that is dropped lets its case
// through and fails here.
func TestValidate(t *testing.T) {
	create := func(edit func(*CreateRequest)) *CreateRequest {
		c := &CreateRequest{Home: "/home/u", ProjectRoot: "/home/u/proj", Command: []string{"claude"}}
		if edit != nil {
			edit(c)
		}
		return c
	}
	policyReq := func(edit func(*PolicyRequest)) *PolicyRequest {
		p := &PolicyRequest{Action: PolicyAccept, Home: "/home/u", Global: &File{Path: "/home/u/.aigate/config.yaml"}}
		if edit != nil {
			edit(p)
		}
		return p
	}
	for _, c := range []struct {
		name string
		req  Request
		want string // "" valid, else part of the message
	}{
		{"status", Request{V: Version, Op: OpStatus}, ""},
		{"list", Request{V: Version, Op: OpList}, ""},
		{"create", Request{V: Version, Op: OpCreate, Create: create(nil)}, ""},
		{"place", Request{V: Version, Op: OpPlace, Place: &PlaceRequest{PID: 42}}, ""},
		{"end", Request{V: Version, Op: OpEnd, End: &EndRequest{Sandbox: "s3-p4242"}}, ""},
		{"watch all", Request{V: Version, Op: OpWatch}, ""},
		{"watch one", Request{V: Version, Op: OpWatch, Watch: &WatchRequest{Sandbox: "s3-p4242", Kind: "net"}}, ""},
		{"policy", Request{V: Version, Op: OpPolicy, Policy: policyReq(nil)}, ""},

		{"version 1 still answered", Request{V: 1, Op: OpWatch}, ""},
		{"before version 1", Request{V: MinVersion - 1, Op: OpStatus}, "protocol version"},
		{"a newer version", Request{V: Version + 1, Op: OpStatus}, "protocol version"},
		{"unknown op", Request{V: Version, Op: "exec"}, `unknown op "exec"`},
		{"status with a body", Request{V: Version, Op: OpStatus, Place: &PlaceRequest{PID: 1}}, "wrong request body"},
		{"create without its body", Request{V: Version, Op: OpCreate}, "wrong request body"},
		{"create with a place body", Request{V: Version, Op: OpCreate, Place: &PlaceRequest{PID: 1}}, "wrong request body"},
		{"two bodies", Request{V: Version, Op: OpCreate, Create: create(nil), Place: &PlaceRequest{PID: 1}}, "wrong request body"},
		{"watch with an end body", Request{V: Version, Op: OpWatch, End: &EndRequest{Sandbox: "s3-p4242"}}, "wrong request body"},
		{"policy without its body", Request{V: Version, Op: OpPolicy}, "wrong request body"},

		{"place pid 0", Request{V: Version, Op: OpPlace, Place: &PlaceRequest{PID: 0}}, "not a process id"},
		{"place pid -1", Request{V: Version, Op: OpPlace, Place: &PlaceRequest{PID: -1}}, "not a process id"},
		{"end without a name", Request{V: Version, Op: OpEnd, End: &EndRequest{}}, "not a sandbox name"},
		{"end of a path", Request{V: Version, Op: OpEnd, End: &EndRequest{Sandbox: "../s3-p4242"}}, "not a sandbox name"},
		{"end of s0", Request{V: Version, Op: OpEnd, End: &EndRequest{Sandbox: "s0-p4242"}}, "not a sandbox name"},
		{"watch a bad name", Request{V: Version, Op: OpWatch, Watch: &WatchRequest{Sandbox: "s3-p04242"}}, "not a sandbox name"},
		{"watch a bad kind", Request{V: Version, Op: OpWatch, Watch: &WatchRequest{Kind: "ptrace"}}, "want file, exec or net"},

		{"relative home", Request{V: Version, Op: OpCreate, Create: create(func(c *CreateRequest) { c.Home = "home/u" })}, "home"},
		{"empty home", Request{V: Version, Op: OpCreate, Create: create(func(c *CreateRequest) { c.Home = "" })}, "home"},
		{"unclean project root", Request{V: Version, Op: OpCreate, Create: create(func(c *CreateRequest) { c.ProjectRoot = "/home/u/../../etc" })}, "project root"},
		{"project root with a NUL", Request{V: Version, Op: OpCreate, Create: create(func(c *CreateRequest) { c.ProjectRoot = "/home/u/p\x00" })}, "project root"},
		{"overlong home", Request{V: Version, Op: OpCreate, Create: create(func(c *CreateRequest) { c.Home = "/" + strings.Repeat("a", maxPath) })}, "home"},
		{"relative global file", Request{V: Version, Op: OpCreate, Create: create(func(c *CreateRequest) { c.Global = &File{Path: ".aigate/config.yaml"} })}, "config file"},
		{"unclean project file", Request{V: Version, Op: OpCreate, Create: create(func(c *CreateRequest) { c.Project = &File{Path: "/p//.aigate.yaml"} })}, "config file"},
		{"made-up trust", Request{V: Version, Op: OpCreate, Create: create(func(c *CreateRequest) { c.Trust = "yes" })}, "want trusted, changed or untrusted"},
		{"made-up mode", Request{V: Version, Op: OpCreate, Create: create(func(c *CreateRequest) { c.Mode = "off" })}, "want enforce or audit"},
		{"too many arguments", Request{V: Version, Op: OpCreate, Create: create(func(c *CreateRequest) { c.Command = make([]string, maxCommandArgs+1) })}, "arguments"},
		{"too long a command", Request{V: Version, Op: OpCreate, Create: create(func(c *CreateRequest) { c.Command = []string{strings.Repeat("x", maxCommandLen+1)} })}, "bytes long"},
		{"a command that is not UTF-8", Request{V: Version, Op: OpCreate, Create: create(func(c *CreateRequest) { c.Command = []string{"\xff"} })}, "UTF-8"},

		{"made-up policy action", Request{V: Version, Op: OpPolicy, Policy: policyReq(func(p *PolicyRequest) { p.Action = "forget" })}, "want check or accept"},
		{"a base without edit", Request{V: Version, Op: OpPolicy, Policy: policyReq(func(p *PolicyRequest) { p.Base = &File{Path: "/home/u/.aigate/config.yaml"} })}, "base without edit"},
		{"relative base", Request{V: Version, Op: OpPolicy, Policy: policyReq(func(p *PolicyRequest) { p.Edit, p.Base = true, &File{Path: "config.yaml"} })}, "config file"},
		{"relative policy home", Request{V: Version, Op: OpPolicy, Policy: policyReq(func(p *PolicyRequest) { p.Home = "~" })}, "home"},
	} {
		err := c.req.Validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: refused: %v", c.name, err)
		case c.want != "" && err == nil:
			t.Errorf("%s: accepted, want a bad request saying %q", c.name, c.want)
		case c.want != "" && !strings.Contains(err.Message, c.want):
			t.Errorf("%s: %q, want it to say %q", c.name, err.Message, c.want)
		case c.want != "" && c.req.V == Version && err.Code != CodeBadRequest:
			t.Errorf("%s: code %q, want %q", c.name, err.Code, CodeBadRequest)
		}
	}
}

// The bounds of a create request are inclusive: the longest command and
// path that fit are accepted.
func TestValidateBounds(t *testing.T) {
	home := "/" + strings.Repeat("a", maxPath-1)
	args := make([]string, maxCommandArgs)
	args[0] = strings.Repeat("x", maxCommandLen)
	r := Request{V: Version, Op: OpCreate, Create: &CreateRequest{Home: home, ProjectRoot: home, Command: args}}
	if err := r.Validate(); err != nil {
		t.Fatalf("a request at every bound: %v", err)
	}
}

// TestRecordedCommand: a command of any length or encoding is recorded
// within the bounds a create must keep, cut with a mark, never refused.
func TestRecordedCommand(t *testing.T) {
	long := strings.Repeat("é", maxCommandLen) // 2 bytes each: cut inside one
	many := make([]string, 3*maxCommandArgs)
	for i := range many {
		many[i] = "arg"
	}
	for _, argv := range [][]string{
		{"claude", "-p", long},
		many,
		{"ls", "\xff\xfename"},
		{"true"},
	} {
		rec := RecordedCommand(argv)
		r := Request{V: Version, Op: OpCreate, Create: &CreateRequest{Home: "/home/u", ProjectRoot: "/home/u/proj", Command: rec}}
		if err := r.Validate(); err != nil {
			t.Errorf("RecordedCommand(%.40q...) = a command the agent refuses: %v", argv, err)
		}
		if len(argv) == 1 && (len(rec) != 1 || rec[0] != "true") {
			t.Errorf("a short command was changed: %q", rec)
		}
	}
	if rec := RecordedCommand([]string{"claude", "-p", long}); !strings.HasSuffix(rec[2], "…") || rec[0] != "claude" {
		t.Errorf("the cut is not marked: %.60q", rec)
	}
}
