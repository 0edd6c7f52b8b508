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
