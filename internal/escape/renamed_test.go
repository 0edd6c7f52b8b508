//go:build linux

package escape

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/events"
)

// TestEscapeReadAgainAfterRename: a sandbox reads two files it may read,
// then the user, outside, renames their directory to a protected name
// (`secrets/`) and the other file to `.env`; reading them again by their
// new names is refused with an event. On BPF LSM the first reads leave
// allowed verdicts in file_open's per-inode cache (bpf/include/verdict.h):
// the renames must make them stale, though the inodes and the sandbox are
// the same. On fanotify they leave ignore masks on the inodes, which must
// go when the file gets a protected name (before that, both reads went
// through: 3 of 3 runs).
func TestEscapeReadAgainAfterRename(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *box) {
		b.write("stash/token.txt", "sk-escape-renamed-dir\n")
		b.write("conf/settings", "sk-escape-renamed-file\n")
		started := b.path("started")
		go func() { // the user, outside, once the sandbox has read both
			for i := 0; i < 1200; i++ {
				if _, err := os.Stat(started); err == nil {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			out, err := b.outsideRun("mv stash secrets && mv conf/settings conf/.env && touch moved")
			if err != nil {
				t.Errorf("the user's renames: %v: %s", err, out)
			}
		}()
		r := b.sh(`cat stash/token.txt conf/settings >/dev/null && cat stash/token.txt conf/settings >/dev/null || exit 3
touch started; i=0; while [ ! -e moved ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done
[ -e moved ] || exit 4
cat secrets/token.txt; cat conf/.env; exit 0`)
		if r.code == 3 || r.code == 4 {
			t.Fatalf("setup: the first reads failed or the renames did not happen:\n%s", r)
		}
		for _, s := range []string{"sk-escape-renamed-dir", "sk-escape-renamed-file"} {
			if strings.Contains(r.stdout, s) {
				t.Errorf("read after the rename (%s):\n%s", s, r)
			}
		}
		for _, target := range []string{"secrets/token.txt", "conf/.env"} {
			if _, ok := r.denied(events.OpRead, target); !ok {
				t.Errorf("no read event for %s:\n%s", target, r)
			}
		}
	})
}

// TestEscapeReadNewFileAgainAfterRename: as TestEscapeReadAgainAfterRename,
// for a file the user creates after the sandbox started. On fanotify the
// sandbox's first read of it, found unrelated to every rule, gives it an
// ignore mask (internal/fanotify/ignorenew.go), so that its later reads
// are no round trip; the user's rename of it to `.env` must take the mask
// off, and the sandbox's read by the new name is refused with an event.
func TestEscapeReadNewFileAgainAfterRename(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *box) {
		b.write("conf/keep", "x\n")
		started, read := b.path("started"), b.path("read")
		wait := func(path string) bool {
			for i := 0; i < 1200; i++ {
				if _, err := os.Stat(path); err == nil {
					return true
				}
				time.Sleep(50 * time.Millisecond)
			}
			return false
		}
		go func() { // the user, outside
			if !wait(started) {
				return
			}
			if out, err := b.outsideRun("printf 'sk-escape-new-renamed\\n' > conf/later.txt && touch written"); err != nil {
				t.Errorf("the user's new file: %v: %s", err, out)
				return
			}
			if !wait(read) {
				return
			}
			if out, err := b.outsideRun("mv conf/later.txt conf/.env && touch moved"); err != nil {
				t.Errorf("the user's rename: %v: %s", err, out)
			}
		}()
		r := b.sh(`touch started; i=0; while [ ! -e written ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done
[ -e written ] || exit 4
for n in 1 2 3; do cat conf/later.txt >/dev/null || exit 3; done
touch read; i=0; while [ ! -e moved ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done
[ -e moved ] || exit 4
cat conf/.env; exit 0`)
		if r.code == 3 || r.code == 4 {
			t.Fatalf("setup: the first reads failed or the rename did not happen:\n%s", r)
		}
		if strings.Contains(r.stdout, "sk-escape-new-renamed") {
			t.Errorf("read after the rename:\n%s", r)
		}
		if _, ok := r.denied(events.OpRead, "conf/.env"); !ok {
			t.Errorf("no read event for conf/.env:\n%s", r)
		}
	})
}
