package darwin

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/policy"
)

// inverse maps an applying command line to the command line that undoes it,
// as the real system would need: every chmod +a needs its chmod -a, every
// anchor load its flushes, pfctl -E its -X.
func undoneBy(l string) []string {
	switch {
	case strings.HasPrefix(l, "chmod -h +a "):
		return []string{"chmod -h -a " + strings.TrimPrefix(l, "chmod -h +a ")}
	case l == "pfctl -E":
		return []string{"pfctl -X 17368543127000"}
	case strings.HasPrefix(l, "pfctl -a com.aigate -f -"):
		return []string{"pfctl -a com.aigate -F rules", "pfctl -a com.aigate -F Tables"}
	}
	return nil
}

func isApply(l string) bool { return undoneBy(l) != nil }

func TestApplyRecordsAndReverts(t *testing.T) {
	env := testEnv(t)
	r := &fakeRunner{}
	a, err := Apply(context.Background(), r, testPolicy(), env)
	if err != nil {
		t.Fatal(err)
	}
	applied := r.lines()
	if len(applied) != len(a.Steps) {
		t.Fatalf("%d commands for %d steps", len(applied), len(a.Steps))
	}
	st, err := ReadState(env.StateFile)
	if err != nil || st == nil {
		t.Fatalf("state after apply: %v, %v", st, err)
	}
	if st.PID != env.PID || st.User != "_aigate" || len(st.Records) != len(a.Steps) {
		t.Fatalf("state pid=%d user=%q records=%d, want %d records", st.PID, st.User, len(st.Records), len(a.Steps))
	}
	// The recorded undo of each step is exactly the inverse of what ran,
	// including the pf token captured from pfctl -E's output.
	for i, rec := range st.Records {
		var undo []string
		for _, u := range rec.Undo {
			undo = append(undo, u.String())
		}
		if want := undoneBy(applied[i]); !slices.Equal(undo, want) {
			t.Errorf("record %d (%s): undo %q, want %q", i, rec.What, undo, want)
		}
	}
	if fi, err := os.Stat(env.StateFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode: %v %v, want 0600", fi, err)
	}
	if w := strings.Join(a.Warnings, "\n"); !strings.Contains(w, "*.example.org") || !strings.Contains(w, "/usr/bin/curl") {
		t.Errorf("warnings = %q", a.Warnings)
	}

	r.calls = nil
	if err := Revert(context.Background(), r, env.StateFile); err != nil {
		t.Fatal(err)
	}
	reverted := r.lines()
	var want []string
	for i := len(applied) - 1; i >= 0; i-- {
		want = append(want, undoneBy(applied[i])...)
	}
	if !slices.Equal(reverted, want) {
		t.Errorf("revert ran\n%s\nwant\n%s", strings.Join(reverted, "\n"), strings.Join(want, "\n"))
	}
	if _, err := os.Stat(env.StateFile); !os.IsNotExist(err) {
		t.Errorf("state file still there after a complete revert: %v", err)
	}
	r.calls = nil
	if err := Revert(context.Background(), r, env.StateFile); err != nil || len(r.calls) != 0 {
		t.Errorf("second revert: err=%v calls=%q; want nothing to do", err, r.lines())
	}
}

// TestApplyFailureRollsBack fails every apply step in turn and checks that
// everything applied before it (and the failed step itself, which may have
// half-happened) is undone, newest first, and that no state is left.
func TestApplyFailureRollsBack(t *testing.T) {
	probe := &fakeRunner{}
	a, err := Apply(context.Background(), probe, testPolicy(), testEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	n := len(a.Steps)
	for failAt := 1; failAt <= n; failAt++ {
		env := testEnv(t)
		r := &fakeRunner{failAt: failAt}
		_, err := Apply(context.Background(), r, testPolicy(), env)
		if err == nil {
			t.Fatalf("failAt %d: Apply succeeded", failAt)
		}
		failed := a.Steps[failAt-1]
		if !strings.Contains(err.Error(), failed.What) || !strings.Contains(err.Error(), "boom") {
			t.Errorf("failAt %d: error %q does not name the step %q and the command's message", failAt, err, failed.What)
		}
		calls := r.lines()
		done, undo := calls[:failAt], calls[failAt:]
		var want []string
		for i := len(done) - 1; i >= 0; i-- {
			if i == failAt-1 && done[i] == "pfctl -E" {
				continue // no token: nothing was enabled
			}
			want = append(want, undoneBy(done[i])...)
		}
		if !slices.Equal(undo, want) {
			t.Errorf("failAt %d: rollback ran\n%s\nwant\n%s", failAt, strings.Join(undo, "\n"), strings.Join(want, "\n"))
		}
		if _, err := os.Stat(env.StateFile); !os.IsNotExist(err) {
			t.Errorf("failAt %d: state file left after a complete rollback", failAt)
		}
	}
}

func TestRevertKeepsFailedUndo(t *testing.T) {
	env := testEnv(t)
	r := &fakeRunner{}
	if _, err := Apply(context.Background(), r, testPolicy(), env); err != nil {
		t.Fatal(err)
	}
	stuck := "/home/alice/src/proj/.env"
	r.failIf = func(c Command) ([]byte, bool) {
		return []byte("chmod: Failed to set ACL on file '" + stuck + "': Device not configured"), c.Name == "chmod" && slices.Contains(c.Args, stuck) && strings.Contains(c.Args[2], " deny ")
	}
	err := Revert(context.Background(), r, env.StateFile)
	if err == nil || !strings.Contains(err.Error(), stuck) {
		t.Fatalf("revert error %v does not name %s", err, stuck)
	}
	st, _ := ReadState(env.StateFile)
	if st == nil || len(st.Records) != 1 || !slices.Contains(st.Records[0].Undo[0].Args, stuck) {
		t.Fatalf("state after partial revert: %+v, want only the failed record", st)
	}
	// reset retries just that one; "no such file" (deleted meanwhile) counts
	// as undone.
	r.calls = nil
	r.failIf = func(c Command) ([]byte, bool) {
		return []byte("chmod: " + stuck + ": No such file or directory"), true
	}
	if err := Revert(context.Background(), r, env.StateFile); err != nil {
		t.Fatal(err)
	}
	if len(r.calls) != 1 {
		t.Errorf("retry ran %q, want the one remaining undo", r.lines())
	}
	if _, err := os.Stat(env.StateFile); !os.IsNotExist(err) {
		t.Error("state file left")
	}
}

func TestApplyRecoversFromCrash(t *testing.T) {
	env := testEnv(t)
	crashed := &fakeRunner{}
	a, err := Apply(context.Background(), crashed, testPolicy(), env)
	if err != nil {
		t.Fatal(err)
	}
	// The process died here: no Revert. A new session with another pid
	// finds the state file.
	env2 := env
	env2.PID = 200
	env2.Alive = func(pid int) bool { return pid == 100 }
	r := &fakeRunner{}
	if _, err := Apply(context.Background(), r, testPolicy(), env2); !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "aigate reset") {
		t.Fatalf("live owner: err = %v, want ErrBusy with the fix", err)
	}
	if len(r.calls) != 0 {
		t.Fatalf("touched the system while another session runs: %q", r.lines())
	}
	env2.Alive = func(int) bool { return false }
	if _, err := Apply(context.Background(), r, testPolicy(), env2); err != nil {
		t.Fatal(err)
	}
	calls := r.lines()
	n := len(a.Steps)
	var wantUndo []string
	for i := n - 1; i >= 0; i-- {
		wantUndo = append(wantUndo, undoneBy(crashed.lines()[i])...)
	}
	if len(calls) < len(wantUndo) || !slices.Equal(calls[:len(wantUndo)], wantUndo) {
		t.Fatalf("the dead session's changes were not undone first:\n%s", strings.Join(calls, "\n"))
	}
	st, _ := ReadState(env2.StateFile)
	if st == nil || st.PID != 200 || len(st.Records) != n {
		t.Fatalf("new state: %+v", st)
	}
}

func TestApplyCrashBeforeChange(t *testing.T) {
	// A record written just before a crash: its undo finds nothing, which
	// chmod reports as an error that Revert must treat as done.
	env := testEnv(t)
	st := &State{Version: stateVersion, PID: 1, User: "_aigate", Records: []Record{{
		What: "deny read /p/.env",
		Undo: []Command{cmd("chmod", "-a", "user:_aigate deny read", "/p/.env")},
	}}}
	if err := WriteState(env.StateFile, st); err != nil {
		t.Fatal(err)
	}
	r := &fakeRunner{failIf: func(Command) ([]byte, bool) { return []byte("chmod: No matching ACL entry found"), true }}
	if err := Revert(context.Background(), r, env.StateFile); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(env.StateFile); !os.IsNotExist(err) {
		t.Error("state file left")
	}
}

func TestApplyModes(t *testing.T) {
	env := testEnv(t)
	c := testPolicy()
	c.Mode = policy.ModeAudit
	r := &fakeRunner{}
	a, err := Apply(context.Background(), r, c, env)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range r.lines() {
		if strings.Contains(l, " deny ") {
			t.Errorf("audit mode applied a deny entry: %s", l)
		}
	}
	if !strings.Contains(a.Anchor.Text, "pass out log quick proto { tcp udp } from any to any") {
		t.Errorf("audit anchor does not log-and-pass:\n%s", a.Anchor.Text)
	}
	Revert(context.Background(), r, env.StateFile)

	c = testPolicy()
	c.Net = policy.NetPolicy{Mode: policy.NetAllow}
	r = &fakeRunner{}
	a, err = Apply(context.Background(), r, c, env)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range r.lines() {
		if strings.HasPrefix(l, "pfctl") {
			t.Errorf("net: allow with no deny entries touched pf: %s", l)
		}
	}
	if a.Refresher() != nil {
		t.Error("refresher for an allow-all policy")
	}
}

func TestApplyBadEnv(t *testing.T) {
	if _, err := Apply(context.Background(), &fakeRunner{}, testPolicy(), Env{}); err == nil {
		t.Error("want error for an empty env")
	}
}
