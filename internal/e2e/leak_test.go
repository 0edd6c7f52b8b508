//go:build linux

package e2e

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/testutil"
)

// TestE2ENoDescriptorLeaks: the sandboxed command holds stdin, stdout and
// stderr and nothing else. aigate run as root starts the agent inside
// itself, so its fanotify group, BPF map, program and link descriptors,
// ring buffer epoll, inotify, DNS proxy sockets and the agent's listener
// live in the process that forks the command: any of them inherited would
// let the tool answer its own permission events, rewrite the policy maps
// or detach the programs.
func TestE2ENoDescriptorLeaks(t *testing.T) {
	eachBackend(t, func(t *testing.T, w *world) {
		w.embedded() // the agent's descriptors must be in the forking process
		w.defaults()
		// ls, not a Go helper: a Go program's runtime opens descriptors
		// of its own (cgroup CPU files, epoll) before main.
		// aigate itself inherits a descriptor (fd 9, not close-on-exec)
		// from whoever starts it, as from a shell's "exec 9<file": the
		// command must not get it, it would read around the policy.
		secret := w.write(".env", "API_KEY=inherited\n")
		sf, err := os.Open(secret)
		if err != nil {
			t.Fatal(err)
		}
		defer sf.Close()
		os.Remove(w.events)
		cmd := w.runCmd(nil, "ls", "-l", "/proc/self/fd/")
		// fd 9, clear of the exec helper's pipe, which aigate puts at 3.
		cmd.ExtraFiles = []*os.File{nil, nil, nil, nil, nil, nil, sf}
		var stdout, stderr testutil.SyncBuffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		code, err := ExitCode(RunBounded(cmd, runLimit))
		if err != nil || code != 0 {
			t.Fatalf("aigate run ls: exit %d, %v\n%s", code, err, stderr.String())
		}
		w.assertClean(cmd.Process.Pid, w.readEvents())
		var fds []string
		for _, line := range strings.Split(stdout.String(), "\n") {
			f := strings.Fields(line)
			if len(f) >= 3 && f[len(f)-2] == "->" {
				num, target := f[len(f)-3], f[len(f)-1]
				if strings.HasPrefix(target, "/proc/") && strings.HasSuffix(target, "/fd") {
					continue // ls's own directory
				}
				fds = append(fds, num+" -> "+target)
			}
		}
		var extra bytes.Buffer
		seen := map[int]bool{}
		for _, f := range fds {
			num, target, _ := strings.Cut(f, " -> ")
			n, _ := strconv.Atoi(num)
			seen[n] = true
			if n > 2 {
				fmt.Fprintf(&extra, "  fd %s -> %s\n", num, target)
			}
		}
		if extra.Len() > 0 {
			t.Errorf("the sandboxed command inherited descriptors beyond 0, 1, 2:\n%s", extra.String())
		}
		for n := range 3 {
			if !seen[n] {
				t.Errorf("fd %d missing in the command: %v", n, fds)
			}
		}
	})
}
