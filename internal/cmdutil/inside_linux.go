package cmdutil

import (
	"fmt"
	"os"
	"strings"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/sandbox"
)

// An agent following `aigate help-ai` may run aigate from inside its own
// sandbox. There the agent's socket is out of reach and the kernel checks
// cannot be made, so run and watch would give advice meant for outside
// ("you are not in the aigate group: run sudo aigate setup") and status
// would describe the machine, not the sandbox. They say where they are
// instead.

// sandboxOf returns the name of the aigate sandbox whose cgroup holds cg
// (a cgroup v2 path), if any: a DefaultParent component followed by a
// sandbox name, at any depth (sub-cgroups of a sandbox stay in it).
func sandboxOf(cg string) (string, bool) {
	comps := strings.Split(strings.Trim(cg, "/"), "/")
	for i := 0; i+1 < len(comps); i++ {
		if comps[i] != sandbox.DefaultParent {
			continue
		}
		if _, _, ok := sandbox.ParseName(comps[i+1]); ok {
			return comps[i+1], true
		}
	}
	return "", false
}

// InsideSandbox returns the name of the sandbox this process runs in.
func InsideSandbox() (string, bool) {
	cg, err := cgroup.ProcessCgroup(os.Getpid())
	if err != nil {
		return "", false
	}
	return sandboxOf(cg)
}

// InsideError is what run and watch answer inside a sandbox.
func InsideError(what, name string) error {
	return &StatusError{Code: ExitNoEnforcement, Err: fmt.Errorf(
		"this process is inside the aigate sandbox %s. Everything started here is already confined by that sandbox's policy, "+
			"and from inside it the aigate agent cannot be reached, so %s cannot work here. "+
			"Nothing needs fixing: to %s, use a terminal outside the sandbox (if you are an AI agent, tell the user that)",
		name, what, map[string]string{"aigate run": "start another sandboxed command", "aigate watch": "watch blocked operations"}[what])}
}

// CheckOutside is InsideSandbox for what only a process outside every
// sandbox may do (accept a policy with no agent to ask): it fails closed
// when this process's cgroup cannot be read.
func CheckOutside(what string) error {
	cg, err := cgroup.ProcessCgroup(os.Getpid())
	if err != nil {
		return fmt.Errorf("%s: cannot tell whether this process runs inside an aigate sandbox (%w); nothing was changed", what, err)
	}
	if name, ok := sandboxOf(cg); ok {
		return fmt.Errorf("%s: this process is inside the aigate sandbox %s, and a sandboxed tool may not loosen its own policy; run it in a terminal outside `aigate run`", what, name)
	}
	return nil
}
