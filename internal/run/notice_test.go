package run

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/aigate-dev/aigate/internal/cmdutil"
)

// The fanotify fallback is said once per boot on root's runs, not on
// every run; with --log-level info it is said every time.
func TestNoticeOnce(t *testing.T) {
	noticeDir = t.TempDir()
	t.Cleanup(func() { noticeDir = "/run/aigate-notices" })
	var errb bytes.Buffer
	f := &cmdutil.Factory{Err: &errb, Log: zap.NewNop()}
	const msg = "using the fanotify backend: test"
	noticeOnce(f, msg)
	noticeOnce(f, msg)
	want := 1
	if os.Geteuid() != 0 {
		want = 2 // a user's run has no place of root's to remember it
	}
	if got := strings.Count(errb.String(), msg); got != want {
		t.Errorf("said %d times, want %d:\n%s", got, want, errb.String())
	}
	errb.Reset()
	f.Log = zap.NewExample() // debug level: always
	noticeOnce(f, msg)
	if !strings.Contains(errb.String(), msg) {
		t.Errorf("with a verbose log level the notice must be said: %q", errb.String())
	}
}
