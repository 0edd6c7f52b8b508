package darwin

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

// sessionRunner is a fakeRunner whose pf ruleset calls the anchor until
// dropAnchor is set, and where the sandbox user has a process (the nohup
// job the tool left) from the moment the tool starts until pkill.
type sessionRunner struct {
	fakeRunner
	mu         sync.Mutex
	job        bool
	dropAnchor bool
}

func (s *sessionRunner) Run(ctx context.Context, name string, args []string, stdin []byte) ([]byte, error) {
	s.mu.Lock()
	job, drop := s.job, s.dropAnchor
	if name == "pkill" {
		s.job = false
	}
	s.mu.Unlock()
	out, err := s.fakeRunner.Run(ctx, name, args, stdin)
	switch {
	case name == "pfctl" && len(args) == 2 && args[1] == "rules":
		if drop {
			return []byte("anchor \"com.vpn\" all\n"), nil
		}
		return []byte("anchor \"com.aigate\" all\nanchor \"com.apple/*\" all\n"), nil
	case name == "pgrep" && job:
		return []byte("4242\n"), nil
	case name == "pgrep":
		return nil, errExit1
	}
	return out, err
}

// mark records the tool starting or exiting among the commands.
func (s *sessionRunner) mark(l string) {
	s.fakeRunner.mu.Lock()
	defer s.fakeRunner.mu.Unlock()
	s.fakeRunner.calls = append(s.fakeRunner.calls, Command{Name: "tool", Args: []string{l}})
}

// TestSessionEndsEveryProcessBeforeReleasingPF runs a whole session with
// fakes: the tool starts a background job and exits; the job must be
// ended before the anchor is flushed, pf released or an entry removed.
func TestSessionEndsEveryProcessBeforeReleasingPF(t *testing.T) {
	noSleep(t)
	env := testEnv(t)
	r := &sessionRunner{}
	s := session{r: r, environ: []string{"PATH=/usr/bin"}, anchorEvery: time.Hour}
	s.start = func(ctx context.Context, toolEnv []string) (func() (int, error), error) {
		r.mark("starts")
		r.mu.Lock()
		r.job = true // nohup ./devserver &
		r.mu.Unlock()
		return func() (int, error) { r.mark("exits"); return 3, nil }, nil
	}
	res, err := s.run(context.Background(), testPolicy(), env)
	if err != nil || res.CleanupErr != nil || res.ExitCode != 3 {
		t.Fatalf("res %+v, err %v", res, err)
	}
	calls := r.allLines()
	golden(t, "session", strings.Join(calls, "\n")+"\n")
	at := func(prefix string, last bool) int {
		i := -1
		for j, l := range calls {
			if strings.HasPrefix(l, prefix) && (i < 0 || last) {
				i = j
			}
		}
		return i
	}
	exits, term := at("tool exits", false), at("pkill -TERM -U 499", false)
	lastProc := max(at("pgrep ", true), at("pkill ", true))
	for _, undo := range []string{"pfctl -a com.aigate -F rules", "pfctl -X ", "chmod -h -a "} {
		if i := at(undo, false); i < 0 || i < lastProc || i < exits {
			t.Errorf("%q at %d, before the sandbox user's processes were ended (last at %d):\n%s", undo, i, lastProc, strings.Join(calls, "\n"))
		}
	}
	if term < exits {
		t.Errorf("the job the tool left was never sent SIGTERM after the tool exited:\n%s", strings.Join(calls, "\n"))
	}
	if at("pfctl -a com.aigate -f -", false) > at("tool starts", false) {
		t.Errorf("order:\n%s", strings.Join(calls, "\n"))
	}
}

// TestSessionEndsWhenAnchorLost: a VPN reloads the pf ruleset during the
// session; the tool is asked to stop and everything is undone.
func TestSessionEndsWhenAnchorLost(t *testing.T) {
	noSleep(t)
	env := testEnv(t)
	var warned []string
	var mu sync.Mutex
	env.Warn = func(w string) { mu.Lock(); warned = append(warned, w); mu.Unlock() }
	r := &sessionRunner{}
	s := session{r: r, environ: nil, anchorEvery: time.Millisecond}
	s.start = func(ctx context.Context, _ []string) (func() (int, error), error) {
		r.mu.Lock()
		r.dropAnchor = true
		r.mu.Unlock()
		return func() (int, error) {
			select {
			case <-ctx.Done():
				return 143, nil // ended by SIGTERM
			case <-time.After(10 * time.Second):
				return 0, nil
			}
		}, nil
	}
	res, err := s.run(context.Background(), testPolicy(), env)
	if err != nil || res.ExitCode != 143 {
		t.Fatalf("res %+v err %v: the tool was not ended when the anchor call was lost", res, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if w := strings.Join(warned, "\n"); !strings.Contains(w, "pf no longer applies") {
		t.Errorf("warnings:\n%s", w)
	}
	if _, err := ReadState(env.StateFile); err != nil {
		t.Fatal(err)
	}
	if st, _ := ReadState(env.StateFile); st != nil {
		t.Errorf("state left: %+v", st)
	}
}

// TestSessionRefusesUnreferencedAnchor: nothing is applied and the tool
// never starts when pf does not call the anchor.
func TestSessionRefusesUnreferencedAnchor(t *testing.T) {
	env := testEnv(t)
	r := &sessionRunner{dropAnchor: true}
	started := false
	s := session{r: r, anchorEvery: time.Hour, start: func(context.Context, []string) (func() (int, error), error) {
		started = true
		return func() (int, error) { return 0, nil }, nil
	}}
	if _, err := s.run(context.Background(), testPolicy(), env); err == nil || started {
		t.Fatalf("err %v, started %v", err, started)
	}
	if l := r.lines(); len(l) != 1 || l[0] != "pfctl -s rules" {
		t.Errorf("calls %q, want only the ruleset read", l)
	}
}
