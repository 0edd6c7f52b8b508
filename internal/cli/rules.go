package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/aigate-dev/aigate/internal/cmdutil"
	"github.com/aigate-dev/aigate/internal/policy"
)

// fileKinds are the file rule kinds of deny and allow.
var fileKinds = map[string]policy.Access{"read": policy.AccessRead, "write": policy.AccessWrite, "exec": policy.AccessExec}

// kindArg checks the first argument of deny and allow.
func kindArg(cmd string, args []string) (string, error) {
	if len(args) == 0 {
		return "", cmdutil.UsageErrorf("%s what? want read, write, exec or net", cmd)
	}
	if _, ok := fileKinds[args[0]]; !ok && args[0] != "net" {
		return "", cmdutil.UsageErrorf("%s %q: want read, write, exec or net", cmd, args[0])
	}
	return args[0], nil
}

// addRuleCommands gives deny or allow (cmd, named verb) what they share:
// the --project and --dry-run flags, a check of the kind when it is run
// without a subcommand, and the read, write and exec subcommands, which
// call run with their kind and patterns. short says what each does to
// deny_KIND.
func addRuleCommands(cmd *cobra.Command, verb string, project, dryRun *bool, short string, run func(kind string, args []string) error) {
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		_, err := kindArg(verb, args)
		return err
	}
	cmd.PersistentFlags().BoolVar(project, "project", false, "edit the project's .aigate.yaml instead of the global config")
	cmd.PersistentFlags().BoolVar(dryRun, "dry-run", false, "show the change as a diff and write nothing")
	for _, kind := range []string{"read", "write", "exec"} {
		cmd.AddCommand(&cobra.Command{
			Use:   kind + " PATTERN...",
			Short: fmt.Sprintf(short, kind),
			Args:  cobra.MinimumNArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return run(kind, args)
			},
		})
	}
}

// checkPatterns validates every pattern before anything is edited, so that
// one bad argument changes nothing.
func checkPatterns(patterns []string) error {
	if len(patterns) == 0 {
		return cmdutil.UsageErrorf("no pattern given, e.g. .env, \"*.pem\" or ~/.ssh/")
	}
	var errs []error
	for _, p := range patterns {
		if err := policy.CheckPattern(p); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return &cmdutil.UsageError{Err: errors.Join(errs...)}
	}
	return nil
}

// checkEndpoints validates allow_net entries the same way.
func checkEndpoints(entries []string) error {
	var errs []error
	for _, e := range entries {
		if _, err := policy.ParseEndpoint(e); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return &cmdutil.UsageError{Err: errors.Join(errs...)}
	}
	return nil
}

// samePattern reports whether two file patterns mean the same thing
// ("secrets/" and "secrets"), by asking policy.Merge whether an allow entry
// written as b cancels a deny entry written as a: that is exactly the
// equivalence the policy applies, without restating it here.
func samePattern(a, b string) bool {
	if a == b {
		return true
	}
	p, _ := policy.Merge(
		&policy.Config{DenyRead: []policy.PathRule{{Pattern: a}}},
		&policy.Config{AllowRead: []policy.PathRule{{Pattern: b}}},
		true)
	return len(p.DenyRead) == 0
}

// sameEndpoint reports whether two allow_net entries are the same
// destination ("GitHub.com." and "github.com").
func sameEndpoint(a, b string) bool {
	if a == b {
		return true
	}
	x, err1 := policy.ParseEndpoint(a)
	y, err2 := policy.ParseEndpoint(b)
	return err1 == nil && err2 == nil &&
		x.Domain == y.Domain && x.Wildcard == y.Wildcard && x.Prefix == y.Prefix && x.Port == y.Port
}

// denied returns the rule of rules that a pattern names, if any.
func denied(rules []policy.PathRule, pattern string) (policy.PathRule, bool) {
	for _, r := range rules {
		if samePattern(r.Pattern, pattern) {
			return r, true
		}
	}
	return policy.PathRule{}, false
}

// denyList is the list of a kind in a merged policy or config.
func denyList(p *policy.Policy, kind string) []policy.PathRule {
	switch kind {
	case "read":
		return p.DenyRead
	case "write":
		return p.DenyWrite
	case "exec":
		return p.DenyExec
	}
	panic(fmt.Sprintf("cli: unknown kind %q", kind))
}

func configList(c *policy.Config, key string) []policy.PathRule {
	if c == nil {
		return nil
	}
	switch key {
	case "deny_read":
		return c.DenyRead
	case "deny_write":
		return c.DenyWrite
	case "deny_exec":
		return c.DenyExec
	case "allow_read":
		return c.AllowRead
	case "allow_write":
		return c.AllowWrite
	case "allow_exec":
		return c.AllowExec
	}
	panic(fmt.Sprintf("cli: unknown key %q", key))
}
