//go:build linux

package escape

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/loader"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// TestEscapeUnixPlantedLink (issue #11): on the fanotify backend the
// cgroup connect_unix check compares socket names, so an allow_unix
// directory the sandbox can write (in the project, its home or $TMPDIR)
// would let it plant `ln -s ~/.ssh/agent.sock allowed/x` and reach any
// socket of the user's. Such an entry is refused at run, naming the config
// line, before the command starts. Control: an exact socket path in a
// directory the sandbox cannot write is still reached. The BPF LSM backend
// checks the socket reached (unix_stream_connect), not names, and accepts
// such entries.
func TestEscapeUnixPlantedLink(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *box) {
		if b.backend != "fanotify" {
			t.Logf("%s: allow_unix is checked against the socket reached; not this test's route", b.backend)
			return
		}
		if s := loader.UnixSocketEnforcement(); strings.HasPrefix(s, "none: ") {
			t.Logf("fanotify backend on this kernel: unix sockets are not confined at all (%s)", s)
			return
		}
		// The user's ssh-agent: a socket in a directory of its own.
		b.mkdir(filepath.Join(b.home, ".ssh"))
		agentSock := filepath.Join(b.home, ".ssh", "agent.sock")
		l, err := net.Listen("unix", agentSock)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		testutil.AcceptAll(t, l)
		b.chown(agentSock)

		tmpdir, err := os.MkdirTemp(machine.dir, "tmpdir-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(tmpdir) })
		b.chown(tmpdir)

		// Without the refusal each of these reached the agent socket
		// (measured: the tool printed 0), hard links too.
		for _, c := range []struct{ name, dir, entry, ln string }{
			{"project", filepath.Join(b.proj, "sockets"), "./sockets/", "ln -s"},
			{"home", filepath.Join(b.home, "allowed"), "~/allowed/", "ln -s"},
			{"tmpdir", filepath.Join(tmpdir, "allowed"), filepath.Join(tmpdir, "allowed") + "/", "ln -s"},
			{"tmpdir-hardlink", filepath.Join(tmpdir, "allowed"), filepath.Join(tmpdir, "allowed") + "/", "ln"},
			{"tmpdir-exact", filepath.Join(tmpdir, "allowed"), filepath.Join(tmpdir, "allowed", "x"), "ln -s"},
		} {
			t.Run(c.name, func(t *testing.T) {
				b.mkdir(c.dir)
				entry := c.entry
				if strings.HasPrefix(entry, "./") {
					entry = filepath.Join(b.proj, entry) + "/"
				}
				b.config(fmt.Sprintf("net: deny\nallow_unix:\n  - %s\n", entry))
				marker := filepath.Join(tmpdir, "ran-"+c.name)
				planted := filepath.Join(c.dir, "x")
				script := fmt.Sprintf("touch %s; rm -f %s; %s %s %s; %s", marker, planted, c.ln, agentSock, planted,
					b.tool("unix "+planted))
				cmd := exec.Command(machine.bin, "run", "--", "sh", "-c", script)
				cmd.Env = []string{"TMPDIR=" + tmpdir}
				cmd = b.asUser(cmd)
				out, err := cmd.CombinedOutput()
				if _, statErr := os.Stat(marker); statErr == nil || err == nil {
					t.Fatalf("allow_unix %s (writable by the sandbox) was accepted; planted %s -> %s: %v\n%s",
						entry, planted, agentSock, err, out)
				}
				msg := string(out)
				for _, want := range []string{"config.yaml:3", "allow_unix", entry, "can write", "lsm backend"} {
					if !strings.Contains(msg, want) {
						t.Errorf("refusal does not say %q:\n%s", want, msg)
					}
				}
				if strings.HasPrefix(c.name, "tmpdir") { // status runs without the TMPDIR
					return
				}
				st := b.aigate("status")
				if !strings.Contains(st, "allow_unix "+entry) || !strings.Contains(st, "refuses it on the fanotify backend") {
					t.Errorf("status does not name the refused entry %s:\n%s", entry, st)
				}
			})
		}

		t.Run("control", func(t *testing.T) {
			bus := filepath.Join(b.rootDir("rootsock"), "bus")
			l, err := net.Listen("unix", bus)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			testutil.AcceptAll(t, l)
			if err := os.Chmod(bus, 0o777); err != nil {
				t.Fatal(err)
			}
			b.config(fmt.Sprintf("net: deny\nallow_unix:\n  - %s\n", bus))
			r := b.sh(b.tool("unix " + bus))
			if got := strings.Join(r.lines(), " "); r.code != 0 || got != "0" {
				t.Fatalf("exact socket %s in a directory the sandbox cannot write: %q\n%s", bus, got, r)
			}
		})
	})
}

// rootDir is a directory of root's (0755) in root's test directory under
// the sticky /tmp: the sandbox can neither add names in it nor rename it
// away, so an allow_unix entry may name it on the fanotify backend.
func (b *box) rootDir(prefix string) string {
	b.t.Helper()
	dir, err := os.MkdirTemp(machine.dir, prefix+"-")
	if err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		b.t.Fatal(err)
	}
	return dir
}
