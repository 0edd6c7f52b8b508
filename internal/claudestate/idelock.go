package claudestate

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// IDELockDir is the directory of Claude Code's IDE lock files beneath its
// state directory (~/.claude, or $CLAUDE_CONFIG_DIR): each <port>.lock
// names the loopback port of an IDE's MCP server, which a claude started
// with --ide or autoConnectIde connects to (docs/threat-model.md, "A stale
// IDE lock").
const IDELockDir = "ide"

// IDELockPort returns the port a lock file's name <port>.lock names; false
// for any other name (a temporary file, a port out of range or written
// other than in plain decimal, which claude would not read as that port).
func IDELockPort(name string) (uint16, bool) {
	digits, ok := strings.CutSuffix(name, ".lock")
	if !ok || digits == "" || len(digits) > 5 || (len(digits) > 1 && digits[0] == '0') {
		return 0, false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(digits, 10, 16)
	if err != nil || n == 0 {
		return 0, false
	}
	return uint16(n), true
}

// IDELock is one lock file found in an ide/ directory.
type IDELock struct {
	Port uint16
	Path string
}

// IDELocks lists the lock files in dir by name (nothing is opened). A
// missing directory has none.
func IDELocks(dir string) ([]IDELock, error) {
	ents, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	var out []IDELock
	for _, e := range ents {
		if p, ok := IDELockPort(e.Name()); ok {
			out = append(out, IDELock{Port: p, Path: filepath.Join(dir, e.Name())})
		}
	}
	return out, err
}
