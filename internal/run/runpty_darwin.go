package run

import (
	"github.com/aigate-dev/aigate/internal/cmdutil"
	"github.com/aigate-dev/aigate/internal/mask"
)

// ptyTerm is Linux only: on macOS darwin.Run starts the command with
// aigate's own stdio and no controlling terminal of its own, so masking
// there uses pipes (see runstdio.go).
type ptyTerm struct{}

func openPTY(*cmdutil.Factory, *mask.Matcher, *runStdio, bool) (*ptyTerm, error) {
	return nil, errNoPTY
}

func (*ptyTerm) started(int)     {}
func (*ptyTerm) activate() error { return nil }
func (*ptyTerm) input() bool     { return false }
func (*ptyTerm) restore()        {}

// keepRunning: no pty here, nothing to keep from stopping.
func (t *ptyTerm) keepRunning() {}
