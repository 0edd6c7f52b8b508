//go:build linux

package landlock

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/testutil"
)

const (
	rulesetEnv = "AIGATE_LANDLOCK_TEST_RULESET" // JSON Ruleset: restrict, then re-exec with opsEnv
	opsEnv     = "AIGATE_LANDLOCK_TEST_OPS"
)

// The test binary is its own confined process: it enters the domain on
// the thread it then execs from, as aigate's exec helper does, so that
// every thread of the process that runs the operations is in the domain.
func init() {
	if js, ok := os.LookupEnv(rulesetEnv); ok {
		os.Exit(restrictAndExec(js))
	}
	testutil.HelperOps(opsEnv, op)
}

func restrictAndExec(js string) int {
	var rs Ruleset
	if err := json.Unmarshal([]byte(js), &rs); err != nil {
		fmt.Println("bad ruleset:", err)
		return 2
	}
	runtime.LockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fmt.Println("no_new_privs:", err)
		return 2
	}
	if _, err := Restrict(rs); err != nil {
		fmt.Println("restrict:", err)
		return 2
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, rulesetEnv+"=") {
			env = append(env, kv)
		}
	}
	err := syscall.Exec("/proc/self/exe", os.Args, env)
	fmt.Println("exec:", err)
	return 2
}

// op runs one operation and prints "ok" or the errno's name.
func op(args []string) string {
	result := func(err error) string {
		var errno syscall.Errno
		if errors.As(err, &errno) {
			return unix.ErrnoName(errno)
		}
		if err != nil {
			return err.Error()
		}
		return "ok"
	}
	switch args[0] {
	case "ptrace": // attach to args[1], then let it go
		pid, _ := strconv.Atoi(args[1])
		runtime.LockOSThread()
		err := unix.PtraceAttach(pid)
		if err == nil {
			var ws unix.WaitStatus
			_, _ = unix.Wait4(pid, &ws, unix.WALL, nil)
			_ = unix.PtraceDetach(pid)
		}
		return result(err)
	case "ptrace-child": // a child of ours, in our domain
		cmd := exec.Command("sleep", "10")
		if err := cmd.Start(); err != nil {
			return err.Error()
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		return op([]string{"ptrace", strconv.Itoa(cmd.Process.Pid)})
	case "kill":
		pid, _ := strconv.Atoi(args[1])
		return result(unix.Kill(pid, unix.SIGCONT))
	case "read":
		data, err := os.ReadFile(args[1])
		if err == nil && len(data) == 0 {
			return "empty"
		}
		return result(err)
	case "write":
		return result(os.WriteFile(args[1], []byte("x"), 0o644))
	case "rename":
		return result(os.Rename(args[1], args[2]))
	case "unlink":
		return result(os.Remove(args[1]))
	case "symlink":
		return result(os.Symlink(args[1], args[2]))
	case "link":
		return result(os.Link(args[1], args[2]))
	case "mkdir":
		return result(os.Mkdir(args[1], 0o755))
	}
	return "unknown op " + args[0]
}

// confined runs ops as nobody in a domain of rs and returns one result per
// op. Landlock's fence around /proc/PID is weaker for root (it keeps
// CAP_SYS_PTRACE's reach to environ and maps), so, like the tool, the
// operations run as an unprivileged user.
func confined(t *testing.T, rs Ruleset, ops ...string) []string {
	t.Helper()
	js, err := json.Marshal(rs)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = append(os.Environ(), opsEnv+"="+strings.Join(ops, ";"))
	if !reflect.DeepEqual(rs, Ruleset{}) { // the zero Ruleset: no domain at all
		cmd.Env = append(cmd.Env, rulesetEnv+"="+string(js))
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("confined helper: %v\n%s", err, out)
	}
	got := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(got) != len(ops) {
		t.Fatalf("%d results for %d operations:\n%s", len(got), len(ops), out)
	}
	return got
}

const nobody = 65534

// outsider starts a process of the same user outside any domain, with a
// secret in its environment.
func outsider(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	cmd.Env = []string{"SECRET_TOKEN=outside-secret"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	time.Sleep(50 * time.Millisecond) // exec'd: its environ is sleep's
	return cmd.Process.Pid
}

func requireLandlock(t *testing.T, min int) int {
	t.Helper()
	testutil.RequireRoot(t)
	abi := ABI()
	if abi < min {
		testutil.SkipUnlessKernel(t, fmt.Sprintf("Landlock ABI %d, need %d", abi, min))
	}
	return abi
}

// TestFence: the domain of a sandbox without home protection (Plan with
// no home) fences its processes off from the user's others, and leaves
// them their own children.
func TestFence(t *testing.T) {
	requireLandlock(t, 6)
	pid := strconv.Itoa(outsider(t))
	rs, _ := Plan(Options{}, nil)
	ops := []string{"ptrace " + pid, "read /proc/" + pid + "/environ", "read /proc/" + pid + "/mem",
		"read /proc/" + pid + "/maps", "kill " + pid, "ptrace-child", "read /proc/" + pid + "/cmdline"}
	want := []string{"EPERM", "EACCES", "EACCES", "EACCES", "EPERM", "ok", "ok"}
	got := confined(t, rs, ops...)
	for i := range ops {
		if got[i] != want[i] {
			t.Errorf("%s: %s, want %s", ops[i], got[i], want[i])
		}
	}
	// The control: the same operations from outside any domain.
	if got := confined(t, Ruleset{}, "ptrace "+pid, "kill "+pid); got[0] != "ok" || got[1] != "ok" {
		t.Errorf("outside a domain: %v, want ok", got)
	}
}

// TestWritable: a ruleset handling writes allows them beneath its rules
// only; files elsewhere stay readable.
func TestWritable(t *testing.T) {
	requireLandlock(t, 3)
	dir := reachableTempDir(t)
	home, work := filepath.Join(dir, "home"), filepath.Join(dir, "home", "work")
	for _, d := range []string{home, work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, nobody, nobody); err != nil {
			t.Fatal(err)
		}
	}
	rc := filepath.Join(home, ".bashrc")
	if err := os.WriteFile(rc, []byte("rc"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(rc, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	rs := Ruleset{HandledFS: AccessWrite, Rules: []Rule{{Path: work, Access: AccessWrite}}}
	ops := []string{"write " + rc, "write " + filepath.Join(home, "new"), "rename " + work + " " + home + "/moved",
		"read " + rc, "write " + filepath.Join(work, "f"), "rename " + work + "/f " + work + "/g"}
	want := []string{"EACCES", "EACCES", "EACCES", "ok", "ok", "ok"}
	got := confined(t, rs, ops...)
	for i := range ops {
		if got[i] != want[i] {
			t.Errorf("%s: %s, want %s", ops[i], got[i], want[i])
		}
	}
	// The control: without the domain, the home is the user's to write.
	if got := confined(t, Ruleset{}, "write "+rc); got[0] != "ok" {
		t.Errorf("outside a domain: write %s: %s", rc, got[0])
	}
}

// TestFixed: in a Fixed directory (~/.claude) files are created and
// written, but none is removed, renamed over, symlinked or moved in from
// a subdirectory, so a protected file there cannot be replaced without an
// open the policy sees; beneath its subdirectories everything goes.
func TestFixed(t *testing.T) {
	requireLandlock(t, 3)
	dir := reachableTempDir(t)
	home := filepath.Join(dir, "home")
	state := filepath.Join(home, ".claude")
	sub := filepath.Join(state, "projects")
	for _, d := range []string{home, state, sub} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{filepath.Join(state, "settings.json"), filepath.Join(state, "history.jsonl"), filepath.Join(sub, "old")} {
		if err := os.WriteFile(f, []byte("{}"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	chownTree(t, home, nobody)
	// The plan's rules for the Fixed directory only: the test's home lies
	// in /tmp, which Plan would grant as a whole (a shared temp directory).
	plan, _ := Plan(Options{Home: home, Fixed: []string{".claude"}}, OSDirs{})
	rs := Ruleset{HandledFS: plan.HandledFS}
	for _, r := range plan.Rules {
		if r.Path == state || strings.HasPrefix(r.Path, state+"/") {
			rs.Rules = append(rs.Rules, r)
		}
	}
	if len(rs.Rules) != 2 {
		t.Fatalf("rules for %s: %+v, want the directory and its subdirectory", state, rs.Rules)
	}
	settings := filepath.Join(state, "settings.json")
	cases := []struct{ op, want string }{
		// What Claude Code does there.
		{"write " + filepath.Join(state, "history.jsonl"), "ok"},
		{"write " + filepath.Join(state, ".last-cleanup"), "ok"},
		{"mkdir " + filepath.Join(state, "todos"), "ok"},
		{"write " + filepath.Join(sub, "new.tmp"), "ok"},
		{"rename " + filepath.Join(sub, "new.tmp") + " " + filepath.Join(sub, "new"), "ok"},
		{"unlink " + filepath.Join(sub, "old"), "ok"},
		// Replacing a file of the directory itself.
		{"write " + filepath.Join(state, "evil"), "ok"},
		{"rename " + filepath.Join(state, "evil") + " " + settings, "EACCES"},
		{"unlink " + settings, "EACCES"},
		{"rename " + filepath.Join(sub, "new") + " " + settings, "EACCES"},
		{"rename " + sub + " " + filepath.Join(state, "moved"), "EACCES"},
		{"symlink /tmp/x " + filepath.Join(state, "settings.local.json"), "EACCES"},
		{"link " + filepath.Join(sub, "new") + " " + filepath.Join(state, "settings.local.json"), "EXDEV"},
		{"read " + settings, "ok"},
	}
	var ops []string
	for _, c := range cases {
		ops = append(ops, c.op)
	}
	got := confined(t, rs, ops...)
	for i, c := range cases {
		if got[i] != c.want {
			t.Errorf("%s: %s, want %s", c.op, got[i], c.want)
		}
	}
}

// TestKeep: beneath a kept tree (the user's build cache, deny_write) in a
// writable directory (~/.cache), the domain lets the sandbox write and
// create (the fanotify backend's directory marks refuse those) but not
// link, rename or symlink anything into, out of or within it, nor remove
// it: so the backend needs no inode mark per cached file (Covered). The
// rest of ~/.cache stays writable as before, except removing or renaming
// in a directory first made during the run.
func TestKeep(t *testing.T) {
	requireLandlock(t, 1)
	dir := reachableTempDir(t)
	home := filepath.Join(dir, "home")
	cache := filepath.Join(home, ".cache")
	gb := filepath.Join(cache, "go-build")
	sub := filepath.Join(gb, "00")
	other := filepath.Join(cache, "other")
	proj := filepath.Join(home, "proj")
	for _, d := range []string{home, cache, gb, sub, other, proj} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	entry := filepath.Join(sub, "abc-d")
	for _, f := range []string{entry, filepath.Join(other, "old"), filepath.Join(proj, "evil")} {
		if err := os.WriteFile(f, []byte("{}"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	chownTree(t, home, nobody)
	// The plan's rules beneath the home only: the test's home lies in
	// /tmp, which Plan would grant as a whole (a shared temp directory).
	plan, _ := Plan(Options{Home: home, Writable: []string{".cache", "proj"}, Keep: []string{".cache/go-build"}}, OSDirs{})
	rs := Ruleset{HandledFS: plan.HandledFS}
	for _, r := range plan.Rules {
		if strings.HasPrefix(r.Path, home+"/") {
			rs.Rules = append(rs.Rules, r)
		}
	}
	rs = rs.Effective(ABI())
	if !Covered(rs, gb, filepath.EvalSymlinks) {
		t.Fatalf("Covered(%s) false for %+v", gb, rs.Rules)
	}
	newTool := filepath.Join(cache, "newtool")
	cases := []struct{ op, want string }{
		// Tools' caches beside it.
		{"write " + filepath.Join(other, "new.tmp"), "ok"},
		{"rename " + filepath.Join(other, "new.tmp") + " " + filepath.Join(other, "new"), "ok"},
		{"unlink " + filepath.Join(other, "old"), "ok"},
		{"mkdir " + newTool, "ok"},
		{"write " + filepath.Join(newTool, "a"), "ok"},
		// A directory made during the run is Fixed: no removing there.
		{"rename " + filepath.Join(newTool, "a") + " " + filepath.Join(newTool, "b"), "EACCES"},
		// The kept tree: writes and creates are the backend's to refuse.
		{"write " + entry, "ok"},
		{"write " + filepath.Join(sub, "new-d"), "ok"},
		// Never a name of the sandbox's choosing for an entry.
		{"link " + entry + " " + filepath.Join(proj, "x"), "EXDEV"},
		{"link " + entry + " " + filepath.Join(other, "x"), "EXDEV"},
		{"link " + entry + " " + filepath.Join(cache, "x"), "EXDEV"},
		{"rename " + entry + " " + filepath.Join(proj, "y"), "EACCES"}, // no REMOVE_FILE there
		{"link " + filepath.Join(proj, "evil") + " " + filepath.Join(sub, "in-d"), "EXDEV"},
		{"rename " + filepath.Join(proj, "evil") + " " + filepath.Join(sub, "in-d"), "EXDEV"},
		{"symlink " + filepath.Join(proj, "evil") + " " + filepath.Join(sub, "sym-d"), "EACCES"},
		{"rename " + entry + " " + filepath.Join(sub, "other-d"), "EACCES"},
		{"unlink " + entry, "EACCES"},
		{"rename " + gb + " " + filepath.Join(cache, "gb"), "EACCES"},
		{"read " + entry, "ok"},
	}
	var ops []string
	for _, c := range cases {
		ops = append(ops, c.op)
	}
	got := confined(t, rs, ops...)
	for i, c := range cases {
		if got[i] != c.want {
			t.Errorf("%s: %s, want %s", c.op, got[i], c.want)
		}
	}
}

// reachableTempDir is a temporary directory that the unprivileged user the
// tests run their children as (nobody) can reach: t.TempDir and its
// parent are made 0755.
func reachableTempDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// chownTree gives dir and everything beneath it to uid (and its group).
func chownTree(t *testing.T, dir string, uid int) {
	t.Helper()
	if err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chown(p, uid, uid)
	}); err != nil {
		t.Fatal(err)
	}
}
