package run

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"

	"go.uber.org/zap/zapcore"

	"github.com/aigate-dev/aigate/internal/cmdutil"
)

// noticeDir remembers, until the next boot (/run is a tmpfs), which long
// notices root's runs have said already.
var noticeDir = "/run/aigate-notices"

// noticeOnce prints a warning that explains the machine rather than this
// run (the fanotify fallback): once per boot for root's runs, then only in
// the debug log, and every time with --log-level info or debug. `aigate
// doctor` says it again whenever asked.
func noticeOnce(f *cmdutil.Factory, msg string) {
	if f.Log.Core().Enabled(zapcore.InfoLevel) || os.Geteuid() != 0 {
		f.Warnf("%s", msg)
		return
	}
	sum := sha256.Sum256([]byte(msg))
	mark := filepath.Join(noticeDir, hex.EncodeToString(sum[:8]))
	if _, err := os.Stat(mark); err == nil {
		f.Log.Debug("said once already: " + msg)
		return
	}
	f.Warnf("%s; said once until the next boot", msg)
	if err := os.MkdirAll(noticeDir, 0o700); err == nil {
		_ = os.WriteFile(mark, nil, 0o600)
	}
}
