//go:build linux

package agent

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/aigate-dev/aigate/internal/api"
)

// TestReplayAfterRun: at its start the agent defuses the git directory a
// dead agent's sandbox made (its cgroup gone), keeping the original
// config aside, and leaves the journal of a live sandbox (its cgroup
// still there), and the git directories there at that sandbox's start,
// alone.
func TestReplayAfterRun(t *testing.T) {
	home, dir := t.TempDir(), t.TempDir()
	proj := filepath.Join(home, "proj")
	const planted = "[core]\n\tbare = false\n\tfsmonitor = id\n"
	for p, data := range map[string]string{
		"proj/.git/HEAD": "ref: refs/heads/main\n", "proj/.git/config": planted,
		"proj/.git/modules/new/HEAD": "ref: refs/heads/main\n", "proj/.git/modules/new/config": planted,
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(home, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(home, p), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	known := []string{filepath.Join(proj, ".git")}
	a := &Agent{cfg: Config{AfterRun: dir}, log: zap.NewNop(), fan: newFanout(), be: newFake()}
	live := t.TempDir()
	req := api.CreateRequest{Home: home, ProjectRoot: proj, AfterRun: &api.AfterRun{Git: &api.GitCheck{Known: known}}}
	for _, j := range []*afterRunJournal{
		{V: afterRunVersion, Sandbox: "s1-dead", CgroupPath: filepath.Join(dir, "gone"), Owner: uint32(os.Getuid()), Request: req},
		{V: afterRunVersion, Sandbox: "s2-live", CgroupPath: live, Owner: uint32(os.Getuid()), Request: req},
	} {
		if err := writeJSON(a.afterRunPath(j.Sandbox), "journal", j); err != nil {
			t.Fatal(err)
		}
	}
	a.replayAfterRun()
	if got, _ := os.ReadFile(filepath.Join(proj, ".git/modules/new/config")); string(got) != "[core]\n\tbare = false\n" {
		t.Errorf("the new git directory's config: %q", got)
	}
	if aside, _ := filepath.Glob(filepath.Join(proj, ".git/modules/new/config.aigate-*")); len(aside) != 1 {
		t.Errorf("the original config is not kept aside: %q", aside)
	}
	if got, _ := os.ReadFile(filepath.Join(proj, ".git/config")); string(got) != planted {
		t.Errorf("a git directory there at the start was changed: %q", got)
	}
	if _, err := os.Stat(a.afterRunPath("s1-dead")); !os.IsNotExist(err) {
		t.Errorf("the replayed journal is still there: %v", err)
	}
	if _, err := os.Stat(a.afterRunPath("s2-live")); err != nil {
		t.Errorf("the live sandbox's journal went: %v", err)
	}
	notes := defuseGit(proj, home, known, os.Getuid(), nil, time.Now())
	if len(notes) != 0 {
		t.Errorf("a second check found more: %q", notes)
	}
}
