package run

import (
	"path/filepath"
	"strings"

	"github.com/aigate-dev/aigate/internal/events"
)

// muxHint is said once at the end of a run in which a connect to a
// terminal multiplexer's server was refused. Claude Code, run in a tmux
// pane, asks tmux about its pane at every start; the refusal is on
// purpose (a client that reaches the server can type into the user's
// other panes, which run outside the sandbox), and the bare event line
// would leave the user wondering whether to allow it.
const muxHint = "the sandbox cannot reach your tmux or screen server: a client there could type into your other panes, " +
	"which run outside the sandbox, so this refusal is on purpose; the tool works without it (only its questions to tmux fail)"

// muxSocket tells whether e is a refused connect to a tmux or screen
// server: by the client's name, or by the socket's usual place
// (/tmp/tmux-UID/NAME, /run/screen/S-USER/PID.NAME, ~/.screen).
func muxSocket(e events.Event) bool {
	if e.Audit || e.Op != events.OpUnix {
		return false
	}
	switch e.Comm {
	case "tmux", "tmux: client", "screen":
		return true
	}
	dir := filepath.Base(filepath.Dir(e.Path))
	parent := filepath.Base(filepath.Dir(filepath.Dir(e.Path)))
	return strings.HasPrefix(dir, "tmux-") || (strings.HasPrefix(dir, "S-") && parent == "screen") || dir == ".screen"
}
