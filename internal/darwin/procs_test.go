package darwin

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

func noSleep(t *testing.T) {
	old := sleep
	sleep = func(time.Duration) {}
	t.Cleanup(func() { sleep = old })
}

// TestFinishEndsProcessesBeforeReleasingPF: a dev server the tool left
// running as the sandbox user must be gone before the pf anchor (and any
// entry) is released, or it would keep running with open network.
func TestFinishEndsProcessesBeforeReleasingPF(t *testing.T) {
	noSleep(t)
	env := testEnv(t)
	r := &fakeRunner{}
	if _, err := Apply(context.Background(), r, testPolicy(), env); err != nil {
		t.Fatal(err)
	}
	// Two processes survive SIGTERM and go on the first SIGKILL.
	killed := false
	r.calls = nil
	r.procs = func(c Command) ([]byte, error) {
		if killed {
			return nil, errExit1
		}
		return []byte("5012\n5013\n"), nil
	}
	r.failIf = func(c Command) ([]byte, bool) {
		if c.Name == "pkill" && c.Args[0] == "-KILL" {
			killed = true
		}
		return nil, false
	}
	if err := Finish(context.Background(), r, testUser, env.StateFile); err != nil {
		t.Fatal(err)
	}
	golden(t, "finish", renderCommands(r.calls))
	calls := r.allLines()
	firstUndo, lastProc := -1, -1
	for i, l := range calls {
		if strings.HasPrefix(l, "pgrep ") || strings.HasPrefix(l, "pkill ") {
			lastProc = i
		} else if firstUndo < 0 {
			firstUndo = i
		}
	}
	joined := strings.Join(calls, "\n")
	if firstUndo < 0 || lastProc > firstUndo {
		t.Fatalf("processes not ended before the undo:\n%s", joined)
	}
	for _, want := range []string{"pgrep -U 499", "pkill -TERM -U 499", "pkill -KILL -U 499", "pfctl -a com.aigate -F rules", "pfctl -X 17368543127000"} {
		if !strings.Contains(joined, want) {
			t.Errorf("no %q in\n%s", want, joined)
		}
	}
	if strings.Index(joined, "pkill -TERM") > strings.Index(joined, "pkill -KILL") {
		t.Error("SIGKILL before SIGTERM")
	}
}

// TestFinishKeepsRulesWhileProcessesRun: when a process cannot be ended,
// nothing is undone and the state stays for reset.
func TestFinishKeepsRulesWhileProcessesRun(t *testing.T) {
	noSleep(t)
	env := testEnv(t)
	r := &fakeRunner{}
	if _, err := Apply(context.Background(), r, testPolicy(), env); err != nil {
		t.Fatal(err)
	}
	r.calls = nil
	r.procs = func(Command) ([]byte, error) { return []byte("666\n"), nil }
	err := Finish(context.Background(), r, testUser, env.StateFile)
	if err == nil || !strings.Contains(err.Error(), "666") {
		t.Fatalf("err = %v, want the surviving pid", err)
	}
	if l := r.lines(); len(l) != 0 {
		t.Errorf("undid with a process still running: %q", l)
	}
	if _, err := os.Stat(env.StateFile); err != nil {
		t.Errorf("state file gone: %v", err)
	}
	// A pgrep that fails for its own reason is an error, not "none".
	r.procs = func(Command) ([]byte, error) { return []byte("pgrep: illegal option"), errExit1 }
	if err := Finish(context.Background(), r, testUser, env.StateFile); err == nil {
		t.Error("a failing pgrep counted as no process")
	}
}

// TestApplyEndsLeftoverProcesses: what a crashed session left running ends
// before its changes are undone and the new session starts.
func TestApplyEndsLeftoverProcesses(t *testing.T) {
	noSleep(t)
	env := testEnv(t)
	if _, err := Apply(context.Background(), &fakeRunner{}, testPolicy(), env); err != nil {
		t.Fatal(err)
	}
	env.PID = 200
	gone := false
	r := &fakeRunner{
		procs: func(Command) ([]byte, error) {
			if gone {
				return nil, errExit1
			}
			return []byte("77\n"), nil
		},
		failIf: func(c Command) ([]byte, bool) {
			gone = gone || c.Name == "pkill"
			return nil, false
		},
	}
	if _, err := Apply(context.Background(), r, testPolicy(), env); err != nil {
		t.Fatal(err)
	}
	calls := r.allLines()
	if len(calls) < 3 || calls[0] != "pgrep -U 499" || calls[1] != "pkill -TERM -U 499" || !strings.HasPrefix(calls[3], "pfctl -a com.aigate -F rules") {
		t.Errorf("leftover processes not ended before the leftover undo:\n%s", strings.Join(calls[:min(len(calls), 6)], "\n"))
	}
}
