//go:build linux

package escape

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/events"
)

// TestEscapeUserSockets: the sockets of the user's services outside the
// sandbox (an ssh-agent's /tmp/ssh-XXXX/agent.N, here a listener of the
// user's in a directory of theirs in /tmp) are kept in place for each run
// without a rule of the user's: removing one to put a socket of the
// sandbox's own there (an ssh-add outside would hand that server the key)
// is refused with a write event on the LSM backend; on fanotify it is
// seen after the fact and kills the sandbox, so that no server of its
// outlives the attempt. The same for renaming the directory above. A
// socket the sandbox made itself stays its own to remove.
func TestEscapeUserSockets(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *box) {
		dir := filepath.Join("/tmp", fmt.Sprintf("ssh-aigate%d%s", os.Getpid(), b.backend))
		os.RemoveAll(dir)
		t.Cleanup(func() { os.RemoveAll(dir); os.RemoveAll(dir + ".away") })
		b.mkdir(dir)
		if err := os.Chmod(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		sock := filepath.Join(dir, "agent.1")
		// The user's server, listening again before each attempt: on
		// fanotify a removed socket stays gone.
		serve := func() {
			t.Helper()
			os.Remove(sock)
			l, err := net.Listen("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			b.chown(sock)
		}

		serve()
		// The control: a socket the sandbox binds and removes itself.
		own := filepath.Join(dir, "own.sock")
		r := b.sh(fmt.Sprintf(`python3 -c 'import socket; s = socket.socket(socket.AF_UNIX); s.bind(%q)' && rm %s && echo own-removed`, own, own))
		if !strings.Contains(r.stdout, "own-removed") {
			t.Errorf("the sandbox could not remove a socket it made:\n%s", r)
		}

		for _, c := range []struct {
			what, script, target string
			op                   events.Op
		}{
			{"replace the socket", fmt.Sprintf(`rm -f %[1]s; echo "exit $?"; python3 -c 'import socket; s = socket.socket(socket.AF_UNIX); s.bind(%[1]q); s.listen(1); print("bound", flush=True); import time; time.sleep(30)'`, sock), sock, events.OpDelete},
			{"rename the directory above", fmt.Sprintf(`mv %[1]s %[1]s.away; echo "exit $?"; `, dir) + b.afterKill(30), dir, events.OpRename},
		} {
			serve()
			r := b.sh(c.script)
			op := c.op
			if b.backend == "lsm" {
				op = events.OpWrite
				if !strings.Contains(r.stdout, "exit 1") {
					t.Errorf("%s was not refused:\n%s", c.what, r)
				}
			}
			if _, ok := r.denied(op, c.target); !ok {
				t.Errorf("%s: no %s event for %s:\n%s", c.what, op, c.target, r)
			}
			if b.backend == "fanotify" && (strings.Contains(r.stdout, "survived") || r.code == 0) {
				t.Errorf("%s: the sandbox outlived it:\n%s", c.what, r)
			}
		}
		if b.backend == "lsm" {
			// The user's client outside still reaches the user's server.
			c, err := net.Dial("unix", sock)
			if err != nil {
				t.Fatalf("the user's socket after the runs: %v", err)
			}
			c.Close()
		}
	})
}
