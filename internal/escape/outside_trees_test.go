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

// TestEscapeDenyWriteOutsideTrees: deny_write paths outside the project
// and the home (a user's directory in /tmp and in /var/tmp, a socket there
// like tmux's) are kept in place like those inside (issue #10, point 2).
// Before the fix, on fanotify, `rm` and `mv` of them went through with no
// event and nothing put back: the directory watcher watched only the
// marked trees. LSM refuses each with a write event. fanotify sees each
// after the fact: a held file is put back and the session goes on; the
// socket (nothing to put back) and the user's directory above a protected
// file (renamed within sticky /tmp) kill the sandbox.
func TestEscapeDenyWriteOutsideTrees(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *box) {
		mine := func(parent, suffix string) string {
			d := filepath.Join(parent, fmt.Sprintf("aigate-fanwatch-%d-%s%s", os.Getpid(), b.backend, suffix))
			os.RemoveAll(d)
			t.Cleanup(func() { os.RemoveAll(d); os.RemoveAll(d + ".away") })
			b.mkdir(d)
			return d
		}
		d1, d2, d3 := mine("/tmp", ""), mine("/var/tmp", ""), mine("/tmp", "-sock")
		f1, f2, sock := filepath.Join(d1, "file"), filepath.Join(d2, "file"), filepath.Join(d3, "srv")
		for _, f := range []string{f1, f2} {
			b.write(f, "kept "+f+"\n")
		}
		l, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		b.chown(sock)
		for _, p := range []string{f1, f2, sock} {
			b.aigate("deny", "write", p)
		}
		b.aigate("policy", "accept", "--yes")

		r := b.sh(fmt.Sprintf(`rm -f %s; echo "rm $?"; mv %s %s/moved; echo "mv $?"; echo continued`, f1, f2, d2))
		if !strings.Contains(r.stdout, "continued") {
			t.Errorf("the session did not go on:\n%s", r)
		}
		want := map[string]events.Op{f1: events.OpDelete, f2: events.OpRename}
		for _, f := range []string{f1, f2} {
			op := want[f]
			if b.backend == "lsm" {
				op = events.OpWrite // refused
			}
			if e, ok := r.denied(op, f); !ok {
				t.Errorf("no %s event for %s:\n%s", op, f, r)
			} else if b.backend == "fanotify" && !e.Restored {
				t.Errorf("the %s event of %s does not say restored: %+v", op, f, e)
			}
			if got := b.read(f); got != "kept "+f+"\n" {
				t.Errorf("%s after the run: %q\n%s", f, got, r)
			}
		}
		if b.backend == "lsm" && (!strings.Contains(r.stdout, "rm 1") || !strings.Contains(r.stdout, "mv 1")) {
			t.Errorf("rm or mv was not refused:\n%s", r)
		}

		// What cannot be put back: the socket, and the user's directory
		// above a protected file. The kill ends the wait at once; under
		// TCG the watcher can be seconds late.
		for _, c := range []struct {
			what, script, target string
			op                   events.Op
		}{
			{"rm of the socket", `rm -f ` + sock, sock, events.OpDelete},
			{"mv of the directory above", fmt.Sprintf(`mv %[1]s %[1]s.away`, d1), d1, events.OpRename},
		} {
			r := b.sh(c.script + `; echo "exit $?"; ` + b.afterKill(30))
			op := c.op
			if b.backend == "lsm" {
				op = events.OpWrite
				if !strings.Contains(r.stdout, "exit 1") {
					t.Errorf("%s was not refused:\n%s", c.what, r)
				}
			}
			if _, ok := r.denied(op, c.target); !ok {
				t.Errorf("%s: no %s event:\n%s", c.what, op, r)
			}
			if b.backend == "fanotify" && strings.Contains(r.stdout, "survived") {
				t.Errorf("%s: the sandbox outlived it:\n%s", c.what, r)
			}
		}
		if b.backend == "lsm" {
			if _, err := os.Lstat(sock); err != nil {
				t.Errorf("the socket after the runs: %v", err)
			}
			if got := b.read(f1); got != "kept "+f1+"\n" {
				t.Errorf("%s after the runs: %q", f1, got)
			}
		}
	})
}
