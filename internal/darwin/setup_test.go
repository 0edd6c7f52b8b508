package darwin

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// scriptRunner answers commands by the start of their shell line and
// records every call; unscripted commands succeed with no output.
type scriptRunner struct {
	mu      sync.Mutex
	calls   []string
	answers []answer
}

type answer struct {
	prefix string
	out    string
	fail   bool
}

func (s *scriptRunner) on(prefix, out string, fail bool) *scriptRunner {
	s.answers = append(s.answers, answer{prefix, out, fail})
	return s
}

func (s *scriptRunner) Run(_ context.Context, name string, args []string, stdin []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	line := Command{Name: name, Args: args}.String()
	s.calls = append(s.calls, line)
	for _, a := range s.answers {
		if strings.HasPrefix(line, a.prefix) {
			if a.fail {
				return []byte(a.out), errors.New("exit status 1")
			}
			return []byte(a.out), nil
		}
	}
	return nil, nil
}

const (
	readUser    = "dscl . -read /Users/_aigate"
	notFound    = "<dscl_cmd> DS Error: -14136 (eDSRecordNotFound)\n"
	userListing = "root 0\n_oahd 441\n_old 499\nalice 501\n"
	groupList   = "wheel 0\nstaff 20\n_x 498\n"
)

func testMachine(t *testing.T) Machine {
	dir := t.TempDir()
	conf := filepath.Join(dir, "pf.conf")
	if err := os.WriteFile(conf, []byte(appleConf), 0o644); err != nil {
		t.Fatal(err)
	}
	return Machine{Dir: filepath.Join(dir, "aigate"), PFConf: conf, UserName: DefaultUserName, Home: DefaultHome, PID: 100}
}

func newUserRunner() *scriptRunner {
	return (&scriptRunner{}).
		on(readUser, notFound, true).
		on("dscl . -list /Users UniqueID", userListing, false).
		on("dscl . -list /Groups PrimaryGroupID", groupList, false)
}

func TestSetupCreatesUserAndInstallsAnchor(t *testing.T) {
	m := testMachine(t)
	r := newUserRunner()
	res, err := Setup(context.Background(), r, m)
	if err != nil {
		t.Fatal(err)
	}
	// 499 is a UID, 498 a GID: the highest id free as both is 497.
	want := SandboxUser{Name: "_aigate", UID: 497, GID: 497, Home: DefaultHome}
	if res.User != want || !res.CreatedUser || !res.PFConfChanged {
		t.Fatalf("result %+v, want user %+v created and pf.conf changed", res, want)
	}
	var wantCalls []string
	wantCalls = append(wantCalls, readUser+" UniqueID PrimaryGroupID NFSHomeDirectory",
		"dscl . -list /Users UniqueID", "dscl . -list /Groups PrimaryGroupID")
	for _, c := range CreateUserCommands(want) {
		wantCalls = append(wantCalls, c.String())
	}
	wantCalls = append(wantCalls, "pfctl -f "+m.PFConf, "ifconfig pflog0 create")
	if got := strings.Join(r.calls, "\n"); got != strings.Join(wantCalls, "\n") {
		t.Errorf("calls:\n%s\nwant:\n%s", got, strings.Join(wantCalls, "\n"))
	}
	got, err := m.ReadUserFile()
	if err != nil || got != want {
		t.Errorf("ReadUserFile = %+v, %v; want %+v", got, err, want)
	}
	conf, _ := os.ReadFile(m.PFConf)
	if c := CheckPFConf(string(conf)); !c.OK {
		t.Errorf("pf.conf after setup: %+v", c)
	}
	backup, _ := os.ReadFile(res.Backup)
	if string(backup) != appleConf {
		t.Errorf("backup %s holds %q, want the original", res.Backup, backup)
	}
	if fi, err := os.Stat(m.PFConf); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("pf.conf mode: %v %v", fi.Mode(), err)
	}
	if fi, err := os.Stat(m.Dir); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("data dir mode: %v %v", fi.Mode(), err)
	}

	// Again, as after a macOS update: the user exists and is kept, the
	// intact block is left alone.
	r2 := (&scriptRunner{}).on(readUser, "NFSHomeDirectory: /var/db/aigate/home\nPrimaryGroupID: 497\nUniqueID: 497\n", false)
	res2, err := Setup(context.Background(), r2, m)
	if err != nil {
		t.Fatal(err)
	}
	if res2.CreatedUser || res2.PFConfChanged || res2.User != want {
		t.Errorf("second setup: %+v", res2)
	}
	if len(r2.calls) != 3 { // read user, pfctl -f, ifconfig
		t.Errorf("second setup ran %q", r2.calls)
	}
}

func TestSetupUndoesHalfCreatedUser(t *testing.T) {
	m := testMachine(t)
	r := newUserRunner().on("dscl . -create /Users/_aigate UniqueID", "eDSPermissionError", true)
	_, err := Setup(context.Background(), r, m)
	if err == nil || !strings.Contains(err.Error(), "create user _aigate") || !strings.Contains(err.Error(), "UniqueID") {
		t.Fatalf("err = %v, want the failed dscl line", err)
	}
	tail := strings.Join(r.calls[len(r.calls)-3:], "\n")
	want := "dscl . -delete /Users/_aigate\ndscl . -delete /Groups/_aigate\nrm -rf /var/db/aigate/home"
	if tail != want {
		t.Errorf("undo calls:\n%s\nwant:\n%s", tail, want)
	}
	if _, err := m.ReadUserFile(); !errors.Is(err, ErrNotSetUp) {
		t.Errorf("user recorded after a failed setup: %v", err)
	}
	if conf, _ := os.ReadFile(m.PFConf); string(conf) != appleConf {
		t.Errorf("pf.conf changed by a failed setup")
	}
}

func TestSetupRestoresPFConfPfctlRejects(t *testing.T) {
	m := testMachine(t)
	r := newUserRunner().on("pfctl -f", "pfctl: Syntax error in config file", true)
	_, err := Setup(context.Background(), r, m)
	if err == nil || !strings.Contains(err.Error(), "Syntax error") || !strings.Contains(err.Error(), "restored") {
		t.Fatalf("err = %v", err)
	}
	if conf, _ := os.ReadFile(m.PFConf); string(conf) != appleConf {
		t.Errorf("pf.conf not restored:\n%s", conf)
	}
}

func TestSetupRefusesForeignAccount(t *testing.T) {
	for _, rec := range []string{
		"NFSHomeDirectory: /var/root\nPrimaryGroupID: 0\nUniqueID: 0\n",
		"NFSHomeDirectory: /Users/bob\nPrimaryGroupID: 20\nUniqueID: 501\n",
		"NFSHomeDirectory: /var/db/aigate/home\nPrimaryGroupID: 20\nUniqueID: 450\n", // group staff
	} {
		m := testMachine(t)
		r := (&scriptRunner{}).on(readUser, rec, false)
		if _, err := Setup(context.Background(), r, m); err == nil || !strings.Contains(err.Error(), "refusing") {
			t.Errorf("existing account %q: err = %v, want a refusal", rec, err)
		}
		if len(r.calls) != 1 {
			t.Errorf("calls after refusal: %q", r.calls)
		}
	}
}

func TestReadUserFileRefusesUnsafe(t *testing.T) {
	m := testMachine(t)
	if _, err := m.ReadUserFile(); !errors.Is(err, ErrNotSetUp) {
		t.Fatalf("no dir: %v", err)
	}
	if _, err := Setup(context.Background(), newUserRunner(), m); err != nil {
		t.Fatal(err)
	}
	// A record edited to run the tool as root.
	if err := os.WriteFile(m.UserFile(), []byte(`{"name":"_aigate","uid":0,"gid":0,"home":"/var/root"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := m.ReadUserFile(); err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Errorf("uid 0 record: %v", err)
	}
	if err := os.Chmod(m.Dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := m.ReadUserFile(); err == nil || !strings.Contains(err.Error(), "writable by others") {
		t.Errorf("world-writable dir: %v", err)
	}
	if err := Reset(context.Background(), &scriptRunner{}, m, nil); err == nil || !strings.Contains(err.Error(), "writable by others") {
		t.Errorf("reset from a world-writable dir: %v", err)
	}
}

func TestResetUndoesSetupAndLeftovers(t *testing.T) {
	m := testMachine(t)
	if _, err := Setup(context.Background(), newUserRunner(), m); err != nil {
		t.Fatal(err)
	}
	// A run that died: its record is undone first.
	st := &State{Version: stateVersion, PID: 4242, User: "_aigate", Records: []Record{
		{What: "deny read /x/.env", Undo: []Command{cmd("chmod", "-a", "user:_aigate deny read", "/x/.env")}},
	}}
	if err := WriteState(m.StateFile(), st); err != nil {
		t.Fatal(err)
	}
	record := "NFSHomeDirectory: /var/db/aigate/home\nPrimaryGroupID: 497\nUniqueID: 497\n"

	// A live session is never opened by reset.
	m.Alive = func(int) bool { return true }
	busy := &scriptRunner{}
	if err := Reset(context.Background(), busy, m, nil); !errors.Is(err, ErrBusy) || len(busy.calls) != 0 {
		t.Fatalf("live session: err %v, calls %q", err, busy.calls)
	}

	m.Alive = func(int) bool { return false }
	plan := strings.Join(ResetPlan(context.Background(), (&scriptRunner{}).on(readUser, record, false), m), "\n")
	for _, want := range []string{"1 change(s) a run left", "anchor block in " + m.PFConf, "user and group _aigate (uid 497, gid 497)", m.UserFile()} {
		if !strings.Contains(plan, want) {
			t.Errorf("plan lacks %q:\n%s", want, plan)
		}
	}
	r := (&scriptRunner{}).on(readUser, record, false)
	var said []string
	if err := Reset(context.Background(), r, m, func(s string) { said = append(said, s) }); err != nil {
		t.Fatal(err)
	}
	want := []string{
		// The dead session's processes end before its rules go.
		readUser + " UniqueID PrimaryGroupID NFSHomeDirectory",
		"pgrep -U 497",
		"chmod -a 'user:_aigate deny read' /x/.env",
		"pfctl -f " + m.PFConf,
		readUser + " UniqueID PrimaryGroupID NFSHomeDirectory",
		"dscl . -delete /Users/_aigate",
		"dscl . -delete /Groups/_aigate",
		"rm -rf /var/db/aigate/home",
	}
	if got := strings.Join(r.calls, "\n"); got != strings.Join(want, "\n") {
		t.Errorf("calls:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	if conf, _ := os.ReadFile(m.PFConf); string(conf) != appleConf {
		t.Errorf("pf.conf after reset:\n%s", conf)
	}
	if _, err := os.Lstat(m.Dir); !os.IsNotExist(err) {
		t.Errorf("data dir left: %v (said %q)", err, said)
	}

	// Nothing left: a second reset does nothing and succeeds.
	r2 := (&scriptRunner{}).on(readUser, notFound, true)
	if err := Reset(context.Background(), r2, m, nil); err != nil || len(r2.calls) != 1 {
		t.Errorf("second reset: %v, calls %q", err, r2.calls)
	}
	if p := ResetPlan(context.Background(), r2, m); len(p) != 0 {
		t.Errorf("plan after reset: %q", p)
	}
}

func TestCheckAnchorReferencedRules(t *testing.T) {
	rules := "scrub-anchor \"com.apple/*\" all fragment reassemble\nanchor \"com.apple/*\" all\nanchor \"com.aigate\" all\n"
	if c := CheckAnchorReferenced(rules); !c.OK {
		t.Errorf("referenced: %+v", c)
	}
	if c := CheckAnchorReferenced("anchor \"com.apple/*\" all\nanchor \"com.aigate.old\" all\n"); c.OK {
		t.Errorf("other anchor accepted: %+v", c)
	}
	// Order: a VPN's anchor with "pass quick" before ours wins.
	if c := CheckAnchorFirst(rules); c.OK || !strings.Contains(c.Detail, "com.apple/*") || !strings.Contains(c.Fix, "setup") {
		t.Errorf("anchor after com.apple/* reported first: %+v", c)
	}
	first := "scrub-anchor \"com.apple/*\" all fragment reassemble\nanchor \"com.aigate\" all\nanchor \"com.apple/*\" all\n"
	if c := CheckAnchorFirst(first); !c.OK {
		t.Errorf("first: %+v", c)
	}
	if c := CheckAnchorFirst("anchor \"com.apple/*\" all\n"); c.OK {
		t.Errorf("missing anchor: %+v", c)
	}
}
