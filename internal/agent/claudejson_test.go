//go:build linux

package agent

import (
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/zap"

	"github.com/aigate-dev/aigate/internal/claudejson"
	"github.com/aigate-dev/aigate/internal/events"
)

// TestReplayJournals: at its start the agent puts back what a dead
// agent's sandbox changed in ~/.claude.json (its cgroup gone), reports it
// to watchers and counts it, and leaves the journal of a live sandbox
// (its cgroup still there) to that sandbox's end.
func TestReplayJournals(t *testing.T) {
	home, dir := t.TempDir(), t.TempDir()
	path := filepath.Join(home, ".claude.json")
	const before = "{\n  \"mcpServers\": {}\n}\n"
	if err := os.WriteFile(path, []byte(before), 0o600); err != nil {
		t.Fatal(err)
	}
	g := claudejson.Read(path, nil)
	if err := os.WriteFile(path, []byte("{\n  \"mcpServers\": {\"e\": {\"command\": \"id\"}}\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := &Agent{cfg: Config{Journal: dir}, log: zap.NewNop(), fan: newFanout(), be: newFake()}
	live := t.TempDir() // a cgroup that still exists
	for _, j := range []*claudeJournal{
		{V: journalVersion, Sandbox: "s1-dead", CgroupPath: filepath.Join(dir, "gone"), Owner: uint32(os.Getuid()), Guard: *g},
		{V: journalVersion, Sandbox: "s2-live", CgroupPath: live, Owner: uint32(os.Getuid()), Guard: *g},
	} {
		if err := writeJournal(a.journalPath(j.Sandbox), j); err != nil {
			t.Fatal(err)
		}
	}
	s := &sub{root: true}
	a.fan.add(s)
	a.replayJournals()
	if got, _ := os.ReadFile(path); string(got) != before {
		t.Errorf("~/.claude.json not put back:\n%s", got)
	}
	e, ok := s.pop()
	if !ok || e.Op != events.OpChange || e.Sandbox != "s1-dead" || e.Path != path || e.RuleText != "mcpServers" || !e.Restored {
		t.Errorf("event %+v, %v", e, ok)
	}
	if n := a.undone.Load(); n != 1 {
		t.Errorf("counted %d undos, want 1", n)
	}
	if _, err := os.Stat(a.journalPath("s1-dead")); !os.IsNotExist(err) {
		t.Errorf("the replayed journal is still there: %v", err)
	}
	if _, err := os.Stat(a.journalPath("s2-live")); err != nil {
		t.Errorf("the live sandbox's journal went: %v", err)
	}
}
