//go:build linux

package run

import (
	"errors"
	"os"
	"os/exec"

	"github.com/aigate-dev/aigate/internal/cmdutil"
	"github.com/aigate-dev/aigate/internal/launch"
)

// The command's exec helper (a copy of aigate that waits on a pipe, see
// package launch) used to be started once the agent had created the
// sandbox; its start-up (fork, exec, the Go runtime) then added to the
// agent's. It is now started before the create request (launch.Prepare)
// and waits while the agent works; start has the agent place it and only
// then writes the go-ahead, with the Landlock and seccomp settings that
// depend on the sandbox. Until that go-ahead nothing of the command runs:
// a refused create, a failed check, a signal or a dead client closes the
// pipe first (end, abort, or the kernel), and the helper exits without
// exec'ing (launch's tests and TestRunEarlyHelperNeverRunsRefused).
//
// Masked output (mask_output) still starts the helper afterwards: its
// stdio are a pty or pipes set up with the sandbox's reporting. Output
// to a terminal is filtered (termfilter) on this path too: the helper
// gets the pty (or a filtering pipe) now, and the real terminal is the
// pty's only once start gives the go-ahead (runStdio.begin), so that run
// can still ask a question on it while the sandbox is made.

// earlyHelper is the command's helper started before the sandbox exists,
// and the joiner its output passes through (nil: not joined) or the
// stdio that filter it (nil: none).
type earlyHelper struct {
	h     *launch.Helper
	join  *lineJoiner
	stdio *runStdio
}

// prepareEarly starts the command's helper, with the stdio routeLines
// would give it; nil when the output is masked.
func prepareEarly(f *cmdutil.Factory, opts *runOptions, p *runPlan) (*earlyHelper, error) {
	if p.masker != nil {
		return nil, nil
	}
	cmd := commandOf(f, opts, p)
	e := &earlyHelper{}
	if filtersTerminal(f, opts) {
		stdio, err := newRunStdio(f, nil, p.lines, stdioOptions{pty: true, filter: true})
		if err != nil {
			return nil, refusing(cmdutil.ExitSandbox, opts.Args[0], err)
		}
		e.stdio = stdio
		useStdio(cmd, stdio)
	}
	if outFile, errFile, join := joinsLines(f, opts, e.stdio); join {
		j, stdout, stderr, err := newLineJoiner(outFile, errFile)
		if err != nil {
			return nil, refusing(cmdutil.ExitSandbox, opts.Args[0], err)
		}
		e.join = j
		cmd.Stdout, cmd.Stderr = stdout, stderr
	}
	h, err := launch.Prepare(cmd)
	if e.join != nil {
		e.join.started()
	}
	if err != nil {
		if e.join != nil {
			e.join.finish()
		}
		if e.stdio != nil {
			e.stdio.finish()
		}
		code := cmdutil.ExitSandbox
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			code = cmdutil.ExitNotFound
		}
		return nil, refusing(code, opts.Args[0], err)
	}
	e.h = h
	return e, nil
}

// abort ends a helper whose sandbox was never opened (nil: nothing to do).
func (e *earlyHelper) abort() {
	if e == nil {
		return
	}
	e.h.Abort()
	if e.join != nil {
		e.join.finish()
	}
	if e.stdio != nil {
		e.stdio.finish()
	}
}

// joinsLines reports whether run's own lines join the command's stderr
// (lineJoiner: stdout and stderr are files or pipes, not a terminal, the
// output is not masked, not --quiet), and the two files.
func joinsLines(f *cmdutil.Factory, opts *runOptions, stdio *runStdio) (out, errOut *os.File, join bool) {
	if opts.Quiet || isTerminal(f.Err) || stdio != nil {
		return nil, nil, false
	}
	errFile, errOK := f.Err.(*os.File)
	outFile, outOK := f.Out.(*os.File)
	return outFile, errFile, errOK && outOK
}
