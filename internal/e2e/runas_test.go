//go:build linux

package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/testutil"
)

// Root acting for another user (sudo, or --user) applies that user's
// policy, and says why --events cannot be a file only root may write
// (issue 13, items 6 and 8).
func TestE2ERunForAnotherUser(t *testing.T) {
	testutil.HostOnly(t) // useradd
	testutil.RequireRoot(t)
	requireSandboxes(t)
	bin := binary(t)
	usr := newTestUser(t)
	uid, _ := strconv.Atoi(usr.Uid)
	gid, _ := strconv.Atoi(usr.Gid)
	proj := filepath.Join(usr.HomeDir, "proj")
	write := func(p, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		for d := p; strings.HasPrefix(d, usr.HomeDir+"/"); d = filepath.Dir(d) {
			os.Lchown(d, uid, gid)
		}
	}
	write(filepath.Join(usr.HomeDir, ".aigate/config.yaml"), "deny_read:\n  - README.md\n")
	readme := filepath.Join(proj, "README.md")
	write(readme, "hello from the user's project\n")
	rootDir := t.TempDir() // root's, mode 0700
	os.Chmod(rootDir, 0o700)
	sock := filepath.Join(t.TempDir(), "aigate.sock")
	// The embedded agent's policy records: not the machine's.
	trust := t.TempDir()
	os.Chmod(trust, 0o700)
	base := append(CleanEnv(os.Environ()), "HOME=/root", "NO_COLOR=1", "AIGATE_SOCKET="+sock)

	for _, tc := range []struct {
		name string
		env  []string
		args []string
	}{
		{"--user", base, []string{"run", "--metrics-addr", "", "--trust-dir", trust, "--user", usr.Username}},
		{"sudo", append(base, "SUDO_USER="+usr.Username, "SUDO_UID="+usr.Uid, "SUDO_GID="+usr.Gid), []string{"run", "--metrics-addr", "", "--trust-dir", trust}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, code := runAigateIn(t, bin, tc.env, nil, proj, append(tc.args, "--", "cat", "README.md")...)
			if code != 1 || strings.Contains(out, "hello from") || !strings.Contains(out, "blocked read "+readme) {
				t.Errorf("the user's deny_read README.md did not apply (exit %d):\n%s", code, out)
			}
			events := filepath.Join(rootDir, "events.jsonl")
			out, code = runAigateIn(t, bin, tc.env, nil, proj, append(tc.args, "--events", events, "--", "true")...)
			if code != 5 || !strings.Contains(out, "acts for "+usr.Username) || !strings.Contains(out, "choose a file "+usr.Username+" may write") {
				t.Errorf("--events in a root-only directory: exit %d, want 5 saying why:\n%s", code, out)
			}
		})
	}
}
