//go:build linux

package escape

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/events"
)

// TestEscapeNewSecretByLink: a secret that appears after the sandbox
// started (a credential rotated or added while the tool runs) is read
// through a hard link outside every protected tree. The LSM backend
// refuses the link (a read-denied file may not be linked); fanotify
// protects the new file by inode once its watcher has handled the creation
// (tens of microseconds, internal/fanotify TestNewFileByInode) and refuses
// the read through the link. Both report it.
func TestEscapeNewSecretByLink(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *box) {
		b.mkdir(b.path("conf"))
		secret := b.path("conf/.env")
		var st syscall.Stat_t
		if err := syscall.Stat(b.proj, &st); err != nil {
			t.Fatal(err)
		}
		started := b.path("started")
		go func() { // the user's tool, outside, once the sandbox runs
			for i := 0; i < 1200; i++ {
				if _, err := os.Stat(started); err == nil {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if os.WriteFile(secret, []byte("K=sk-escape-new-secret\n"), 0o600) == nil {
				os.Chown(secret, int(st.Uid), int(st.Gid))
			}
		}()
		link := filepath.Join(os.TempDir(), "aigate-escape-link-"+filepath.Base(b.home))
		t.Cleanup(func() { os.Remove(link) })
		r := b.sh(`touch started; while [ ! -s conf/.env ]; do sleep 0.05; done; sleep 0.5
ln conf/.env ` + link + ` && cat ` + link)
		if strings.Contains(r.stdout, "sk-escape-new-secret") {
			t.Fatalf("the new secret was read through a hard link:\n%s", r)
		}
		target := link
		if b.backend == "lsm" {
			target = secret
		}
		if _, ok := r.denied(events.OpRead, target); !ok {
			if _, ok := r.denied(events.OpWrite, target); !ok {
				t.Errorf("no event for %s:\n%s", target, r)
			}
		}
	})
}
