package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/aigate-dev/aigate/internal/cmdutil"
	"github.com/aigate-dev/aigate/internal/policy"
)

type helpAIOptions struct {
	f *cmdutil.Factory
}

func newHelpAICmd(f *cmdutil.Factory) *cobra.Command {
	opts := &helpAIOptions{f: f}
	return &cobra.Command{
		Use:   "help-ai",
		Short: "Explain the sandbox to an AI assistant: what is blocked and how to ask for more",
		Long: `Print plain text written for an AI coding assistant running inside aigate:
what this policy blocks, what a blocked operation looks like, how to ask
the user for access, and what not to try. Add it to the assistant's
instructions (CLAUDE.md, .cursorrules, ...) or let it run this command.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runHelpAI(opts) },
	}
}

func runHelpAI(o *helpAIOptions) error {
	l, err := o.f.Load()
	if err != nil {
		return err
	}
	pol, _ := l.Policy()
	writeHelpAI(o.f.Out, pol)
	return nil
}

func writeHelpAI(w io.Writer, pol *policy.Policy) {
	list := func(rules []policy.PathRule) string {
		if len(rules) == 0 {
			return "nothing"
		}
		s := make([]string, len(rules))
		for i, r := range rules {
			s[i] = r.Pattern
		}
		return strings.Join(s, ", ")
	}
	net := "every destination is allowed (except cloud metadata addresses)"
	if pol.Net == policy.NetDeny {
		var eps []string
		for _, ep := range pol.AllowNet {
			eps = append(eps, ep.Raw)
		}
		if len(eps) == 0 {
			eps = []string{"none"}
		}
		net = "denied, except: " + strings.Join(eps, ", ")
	}
	switch pol.Loopback {
	case policy.LoopbackAll:
		net += "; every local server on loopback (127.0.0.1, ::1) is reachable"
	case policy.LoopbackOwn:
		net += "; on loopback (127.0.0.1, ::1) only the servers you start yourself in this sandbox " +
			"(and ports listed above) are reachable, not the user's other local services"
	default:
		net += "; loopback (127.0.0.1, ::1) is closed except for ports listed above"
	}
	var other []string
	if !pol.Userns {
		other = append(other, "new user namespaces (unshare -U, bubblewrap, Chromium's own sandbox; "+
			"the user can set allow_userns: true)")
	}
	if !pol.IOUring {
		other = append(other, "io_uring on the fanotify backend (libraries fall back to ordinary calls)")
	}
	if len(other) == 0 {
		other = []string{"none"}
	}
	fmt.Fprintf(w, `You are running inside aigate, a sandbox that the Linux kernel enforces for
the user. It is deliberate: the user chose these rules to keep their
secrets and their machine safe while you work.

WHAT IS BLOCKED
  Reading (any open): %s
  Writing:            %s
  Running programs:   %s
  Network:            %s
  Other:              %s

Patterns without a slash match that name anywhere; a trailing / means a
directory and everything in it; ~/ is the user's home; other patterns with
a slash are relative to the project root.

WHAT A BLOCKED OPERATION LOOKS LIKE
  The open, exec or connect fails with "Operation not permitted" (EPERM), or
  a connection is refused. This is the policy, not a bug, a flaky network
  or a permissions problem to debug. Trying again fails the same way, and
  the user sees every denial.

WHAT TO DO WHEN YOU ARE BLOCKED
  Carry on without it if you can (use an example file such as .env.example,
  mock the secret, ask for the value you need instead of the file). If the
  task really needs the access, stop and ask the user. Say exactly which
  file, program or domain, and why. The user can grant it with, e.g.:
    aigate allow read --project config/dev.env
    aigate allow exec --project curl
    aigate allow net --project registry.example.com
    aigate trust        (approves the project file's allow entries)
  Only the user can run these: the config files are write-protected for you.

WHAT NOT TO TRY
  Do not work around a denial. In particular do not: copy, move, rename,
  symlink or hard-link a blocked file; read it through another program
  (cat, python, git show, base64, an editor, ...); fetch a URL with another
  tool or language when one is blocked; connect by IP address or another
  DNS server to reach a blocked domain; edit aigate's config, the shell's
  startup files or git hooks; disable, kill or reinstall aigate, or ask
  for sudo to do so. Attempts are logged, and they cost the user's trust.
`, list(pol.DenyRead), list(pol.DenyWrite), list(pol.DenyExec), net, strings.Join(other, "; "))
}
