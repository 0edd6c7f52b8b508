//go:build linux

package launch

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/exechelper"
)

// preparedTouch starts, through Prepare, the helper of a command that
// creates marker; the helper's stderr is collected.
func preparedTouch(t *testing.T) (h *Helper, marker string, stderr *strings.Builder) {
	t.Helper()
	marker = filepath.Join(t.TempDir(), "ran")
	stderr = &strings.Builder{}
	cmd := exec.Command("/bin/sh", "-c", "touch "+marker)
	cmd.Stderr = stderr
	h, err := Prepare(cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Abort)
	return h, marker, stderr
}

func notRan(t *testing.T, marker, when string) {
	t.Helper()
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Fatalf("%s: the command ran (%v)", when, err)
	}
}

// TestPreparedHelperWaits: a helper started before its sandbox exists
// runs nothing of the command while it waits, and exits without exec'ing
// when it is aborted (the create was refused, the client gave up).
func TestPreparedHelperWaits(t *testing.T) {
	h, marker, _ := preparedTouch(t)
	time.Sleep(300 * time.Millisecond) // long enough for a helper that did not wait to have run it
	notRan(t, marker, "before any go-ahead")
	h.Abort()
	code, err := h.child.Wait()
	if err != nil || code != exechelper.ExitNoGo {
		t.Fatalf("aborted helper: exit %d (%v), want %d", code, err, exechelper.ExitNoGo)
	}
	notRan(t, marker, "after the abort")
}

// TestHelperBadGoAhead: a go-ahead that is not exactly exechelper.GoByte and the
// settings (the client died writing it, or wrote something else) runs
// nothing: the helper cannot apply settings it did not get.
func TestHelperBadGoAhead(t *testing.T) {
	for _, msg := range []string{"g", "g{\"landlock\":", "x{}", "g{} trailing"} {
		h, marker, stderr := preparedTouch(t)
		w := h.w
		h.w = nil
		if _, err := w.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		w.Close()
		code, err := h.child.Wait()
		if err != nil || code != exechelper.ExitNoGo {
			t.Fatalf("go-ahead %q: exit %d (%v), want %d; stderr %s", msg, code, err, exechelper.ExitNoGo, stderr)
		}
		notRan(t, marker, "go-ahead "+msg)
	}
}
