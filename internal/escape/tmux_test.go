//go:build linux

package escape

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/aigate-dev/aigate/internal/events"
)

// TestEscapeTmuxServerInside: tmux starts its own server inside a sandbox
// and its clients reach it (new-session, send-keys, kill-server), on both
// backends. Its first connect finds no server: the fanotify backend's
// cgroup program cannot ask whether the name exists and used to refuse it
// with EPERM, which tmux takes as final ("error connecting to
// /tmp/tmux-UID/default (Operation not permitted)"); it now fails with
// ENOENT, as on the LSM backend, and reports nothing (no socket was
// there). The sandbox's server listens in a directory of the run's own
// (TMUX_TMPDIR), not at /tmp/tmux-UID/default, where the user's tmux
// outside would look for the user's server and hand it the keystrokes.
func TestEscapeTmuxServerInside(t *testing.T) {
	const tmux = "tmux" // the CI host has it; vmtest copies it in (--host-tool tmux)
	eachBackend(t, func(t *testing.T, b *box) {
		shared := filepath.Join("/tmp", fmt.Sprintf("tmux-%d", machine.uid))
		t.Cleanup(func() { os.RemoveAll(shared) })
		r := b.sh(fmt.Sprintf(`export LC_ALL=C.UTF-8
%[1]s new-session -d -s work 'read line; echo "$line" > typed; sleep 60' || { echo "new-session failed"; exit 1; }
%[1]s send-keys -t work typed-inside Enter || echo "send-keys failed"
i=0; while [ ! -s typed ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
echo "typed: $(cat typed)"
echo "server at: $(%[1]s display-message -p -t work '#{socket_path}')"
%[1]s kill-server && echo "killed"`, tmux))
		if !strings.Contains(r.stdout, "typed: typed-inside") || !strings.Contains(r.stdout, "killed") {
			t.Errorf("tmux did not work inside the sandbox:\n%s", r)
		}
		if e, ok := r.denied(events.OpUnix, "tmux"); ok {
			t.Errorf("tmux's own socket was reported: %+v\n%s", e, r)
		}
		if strings.Contains(r.stdout, "server at: "+shared+"/") || strings.Contains(r.stdout, "server at: \n") {
			t.Errorf("the sandbox's tmux server listened where the user's tmux looks (%s):\n%s", shared, r)
		}
		if _, err := os.Stat(filepath.Join(shared, "default")); err == nil {
			t.Errorf("%s/default exists after the run", shared)
		}
		// The run's own directory is gone with the run.
		left, _ := filepath.Glob("/tmp/aigate-tmux-*")
		for _, d := range left {
			if st, err := os.Stat(d); err == nil && st.Sys().(*syscall.Stat_t).Uid == machine.uid {
				t.Errorf("the run's tmux directory %s is left after the run", d)
			}
		}
	})
}
