//go:build linux

package escape

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/loader"
)

// TestEscapeTmuxServerInside: tmux starts its own server inside a sandbox
// and its clients reach it (new-session, send-keys, kill-server), on both
// backends. Its first connect finds no server: the fanotify backend's
// cgroup program cannot ask whether the name exists and used to refuse it
// with EPERM, which tmux takes as final ("error connecting to
// /tmp/tmux-UID/default (Operation not permitted)"); it now fails with
// ENOENT, as on the LSM backend, and reports nothing: no socket was
// there, and the one the agent finds when it reads the event is the
// sandbox's own (tmux's server binds the name at once). The sandbox's server listens in a directory of the run's own
// (TMUX_TMPDIR), not at /tmp/tmux-UID/default, where the user's tmux
// outside would look for the user's server and hand it the keystrokes.
func TestEscapeTmuxServerInside(t *testing.T) {
	const tmux = "tmux" // the CI host has it; vmtest copies it in (--host-tool tmux)
	eachBackend(t, func(t *testing.T, b *box) {
		shared := filepath.Join("/tmp", fmt.Sprintf("tmux-%d", machine.uid))
		t.Cleanup(func() { os.RemoveAll(shared) })
		r := b.sh(fmt.Sprintf(`export LC_ALL=C.UTF-8
echo "TMUX_TMPDIR=$TMUX_TMPDIR"
%[1]s new-session -d -s work 'read line; echo "$line" > typed; sleep 60' || { echo "new-session failed"; exit 1; }
%[1]s send-keys -t work typed-inside Enter || echo "send-keys failed"
i=0; while [ ! -s typed ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
echo "typed: $(cat typed)"
echo "server at: $(%[1]s display-message -p -t work '#{socket_path}')"
%[1]s kill-server && echo "killed"`, tmux))
		if !strings.Contains(r.stdout, "typed: typed-inside") || !strings.Contains(r.stdout, "killed") {
			t.Errorf("tmux did not work inside the sandbox:\n%s", r)
		}
		_, own, _ := strings.Cut(r.stdout, "TMUX_TMPDIR=")
		own, _, _ = strings.Cut(own, "\n")
		if e, ok := r.denied(events.OpUnix, "tmux"); ok {
			// On fanotify the agent looks the refused name up after the
			// fact and finds tmux's server, started at once: the
			// sandbox's own socket, which it does not report.
			t.Errorf("tmux's own socket was reported: %+v\n%s", e, r)
		}
		if strings.Contains(r.stdout, "server at: "+shared+"/") || strings.Contains(r.stdout, "server at: \n") {
			t.Errorf("the sandbox's tmux server listened where the user's tmux looks (%s):\n%s", shared, r)
		}
		if _, err := os.Stat(filepath.Join(shared, "default")); err == nil {
			t.Errorf("%s/default exists after the run", shared)
		}
		// The run's own directory is gone with the run.
		if !strings.HasPrefix(own, "/tmp/aigate-tmux-") {
			t.Errorf("TMUX_TMPDIR inside: %q, want a directory of the run's own\n%s", own, r)
		} else if _, err := os.Stat(own); !os.IsNotExist(err) {
			t.Errorf("the run's tmux directory %s after the run: %v", own, err)
		}
	})
}

// TestEscapeTmuxUsersServer: the user's own tmux server outside, at its
// default socket, stays out of reach of a tmux client inside (which would
// type into the user's panes): refused and reported on both backends
// (fanotify: ENOENT since the name is led nowhere, "no server running";
// LSM: EPERM), the keys never arrive, and the user's server lives on.
// tmux inside, at its own TMUX_TMPDIR, sees no server of the user's.
func TestEscapeTmuxUsersServer(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *box) {
		if s := loader.UnixSocketEnforcement(); b.backend == "fanotify" && strings.HasPrefix(s, "none: ") {
			t.Logf("fanotify backend on this kernel: unix sockets are not confined at all (%s)", s)
			return
		}
		shared := filepath.Join("/tmp", fmt.Sprintf("tmux-%d", machine.uid))
		sock := filepath.Join(shared, "default")
		typed := b.path("~/outside-typed")
		if out, err := b.outsideRun(fmt.Sprintf(`export LC_ALL=C.UTF-8; tmux new-session -d -s outside 'cat > %s'`, typed)); err != nil {
			t.Fatalf("the user's tmux outside: %v\n%s", err, out)
		}
		t.Cleanup(func() {
			_, _ = b.outsideRun("tmux kill-server")
			os.RemoveAll(shared)
		})
		r := b.sh(fmt.Sprintf(`export LC_ALL=C.UTF-8
tmux -S %[1]s send-keys -t outside typed-from-inside Enter && echo "send-keys reached"
tmux ls 2>&1 | grep -q outside && echo "ls reached"
echo done`, sock))
		if !strings.Contains(r.stdout, "done") || strings.Contains(r.stdout, "reached") {
			t.Errorf("tmux inside reached the user's server:\n%s", r)
		}
		if _, ok := r.denied(events.OpUnix, sock); !ok {
			t.Errorf("no unix event for %s:\n%s", sock, r)
		}
		if out, err := b.outsideRun("export LC_ALL=C.UTF-8; tmux send-keys -t outside typed-from-outside Enter && sleep 0.3 && tmux ls"); err != nil || !strings.Contains(out, "outside") {
			t.Errorf("the user's server after the run: %v\n%s", err, out)
		}
		if got := b.read("~/outside-typed"); strings.Contains(got, "inside") {
			t.Errorf("the keys from inside arrived in the user's pane: %q", got)
		}
	})
}
