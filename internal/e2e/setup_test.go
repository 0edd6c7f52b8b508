//go:build linux

package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/sandbox"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// TestSetup is what a new user does: `sudo aigate setup`, then `aigate
// run` without sudo through the agent, then `sudo aigate reset --force`.
// It runs the real commands on the machine, with a throwaway user, so it
// only runs where the aigate group does not exist yet (it never touches
// a group it did not create), and where systemd is not PID 1 unless
// AIGATE_REQUIRE_KERNEL=1 says the machine is a throwaway CI host (with
// systemd, setup installs and starts the real aigate.service).
func TestSetup(t *testing.T) {
	// setup and reset are the same on every kernel; the guest has no useradd.
	testutil.HostOnly(t)
	requireSandboxes(t)
	if _, err := user.LookupGroup(api.Group); err == nil {
		testutil.SkipUnlessKernel(t, fmt.Sprintf("group %s exists already (aigate setup ran here?): this test creates and removes it, and never removes a group it did not create", api.Group))
	}
	if release, ok := holdAgentLock(t); ok {
		release()
	} else {
		testutil.SkipUnlessKernel(t, fmt.Sprintf("an agent runs on %s: reset --force would refuse, and must not remove its state", api.DefaultSocket))
	}
	systemd := dirExists("/run/systemd/system")
	if systemd && os.Getenv(testutil.RequireKernelEnv) != "1" {
		// skip-ok: only without AIGATE_REQUIRE_KERNEL, which CI sets.
		t.Skipf("systemd runs this machine: setup would install and start the real aigate.service; set %s=1 on a throwaway host to run it", testutil.RequireKernelEnv)
	}
	for _, tool := range []string{"useradd", "userdel", "id", "unshare"} {
		if _, err := exec.LookPath(tool); err != nil {
			testutil.SkipUnlessKernel(t, tool+" is missing: "+err.Error())
		}
	}
	if !inPrivateState(t) {
		return
	}
	// A world-readable directory: the user runs the binary from it and
	// reaches the agent's socket in it.
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} { // t.TempDir makes both 0700
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := copyExecutable(t, binary(t), filepath.Join(dir, "aigate"))
	usr := newTestUser(t)
	// Whatever happens, the group goes again (reset's own removal is
	// asserted below; this is for a test that failed half-way).
	t.Cleanup(func() {
		if _, err := user.LookupGroup(api.Group); err == nil {
			if out, err := exec.Command("groupdel", api.Group).CombinedOutput(); err != nil {
				t.Errorf("cleanup: groupdel %s: %v: %s", api.Group, err, out)
			}
		}
	})
	sudo := append(CleanEnv(os.Environ()), "HOME=/root", "NO_COLOR=1",
		"SUDO_USER="+usr.Username, "SUDO_UID="+usr.Uid, "SUDO_GID="+usr.Gid)

	// sudo aigate setup
	out, code := runAigate(t, bin, sudo, nil, "setup")
	if code != 0 {
		t.Fatalf("aigate setup: exit %d\n%s", code, out)
	}
	t.Logf("aigate setup:\n%s", out)
	grp, err := user.LookupGroup(api.Group)
	if err != nil {
		t.Fatalf("after setup: %v\n%s", err, out)
	}
	if groups := idGroups(t, usr.Username); !slices.Contains(groups, api.Group) {
		t.Errorf("id -nG %s = %v: not in group %s after setup", usr.Username, groups, api.Group)
	}
	if !strings.Contains(out, "added "+usr.Username+" to group "+api.Group) {
		t.Errorf("setup does not say it added %s to the group:\n%s", usr.Username, out)
	}
	if systemd {
		unit, err := os.ReadFile("/etc/systemd/system/aigate.service")
		if err != nil || !strings.Contains(string(unit), "\nExecStart="+bin+" agent\n") {
			t.Errorf("unit file: %v\n%s", err, unit)
		}
		if out, err := exec.Command("systemctl", "is-active", "aigate.service").CombinedOutput(); err != nil {
			t.Errorf("systemctl is-active aigate.service: %v: %s", err, out)
		}
	} else if !strings.Contains(out, "systemd is not running this machine") || !strings.Contains(out, "sudo "+bin+" agent") {
		t.Errorf("without systemd, setup does not say how to start the agent (sudo %s agent):\n%s", bin, out)
	}
	for _, check := range []string{"fanotify", "cgroup2", "bpffs"} {
		if !regexp.MustCompile(`(?m)^` + check + `\s+(ok|warn|FAIL)\s`).MatchString(out) {
			t.Errorf("setup printed no %s line of the kernel check:\n%s", check, out)
		}
	}
	// Idempotent: a second setup changes nothing and still succeeds.
	if out, code := runAigate(t, bin, sudo, nil, "setup"); code != 0 || strings.Contains(out, "created group") {
		t.Errorf("second aigate setup: exit %d (want 0, and no group created again)\n%s", code, out)
	}

	// The agent, on a socket of the test's own in a directory everyone
	// may enter: the socket's own mode and group are what let users in.
	sock := filepath.Join(dir, "aigate.sock")
	// Its trust and policy records go with the test, not into the
	// machine's /var/lib/aigate/trust.
	agent := exec.Command(bin, "agent", "--socket", sock, "--metrics-addr", "", "--pin-dir", "", "--trust-dir", filepath.Join(t.TempDir(), "trust"))
	agent.Env = sudo
	var agentLog testutil.SyncBuffer
	agent.Stdout, agent.Stderr = &agentLog, &agentLog
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	agentDone := make(chan error, 1)
	go func() { agentDone <- agent.Wait() }()
	stopAgent := func() {
		if agent.ProcessState != nil || agent.Process.Signal(syscall.SIGTERM) != nil {
			return
		}
		select {
		case <-agentDone:
		case <-time.After(20 * time.Second):
			_ = agent.Process.Kill()
			<-agentDone
			t.Errorf("the agent did not stop within 20 s of SIGTERM\n%s", agentLog.String())
		}
	}
	t.Cleanup(stopAgent)
	testutil.WaitForFile(t, sock, time.Minute, agentDone, &agentLog)
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o660 || fi.Sys().(*syscall.Stat_t).Gid != atou(t, grp.Gid) {
		t.Errorf("agent socket %s: %v, %v: want mode 0660, group %s (gid %s)", sock, fi.Mode(), err, api.Group, grp.Gid)
	}

	// The user's project, with a secret the default policy denies.
	proj := filepath.Join(usr.HomeDir, "proj")
	secret := filepath.Join(proj, ".env")
	if err := os.MkdirAll(proj, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secret, []byte("API_KEY=sk-setup-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	uid, gid := atou(t, usr.Uid), atou(t, usr.Gid)
	for _, p := range []string{proj, secret} {
		if err := os.Chown(p, int(uid), int(gid)); err != nil {
			t.Fatal(err)
		}
	}
	userEnv := append(CleanEnv(os.Environ()), "HOME="+usr.HomeDir, "USER="+usr.Username, "NO_COLOR=1", api.SocketEnv+"="+sock)
	asUser := func(groups ...uint32) *syscall.SysProcAttr {
		return &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: groups}}
	}
	if out, code := runAigateIn(t, bin, userEnv, asUser(), proj, "init"); code != 0 {
		t.Fatalf("aigate init as %s: exit %d\n%s", usr.Username, code, out)
	}

	// Without the group (a login from before setup): no access, and the
	// error says what to do.
	out, code = runAigateIn(t, bin, userEnv, asUser(), proj, "run", "--", "cat", ".env")
	if code == 0 || strings.Contains(out, "sk-setup-secret") || !strings.Contains(out, "not in the \""+api.Group+"\" group") {
		t.Errorf("aigate run as %s without group %s: exit %d, want refused with a message naming the group\n%s", usr.Username, api.Group, code, out)
	}
	// With it, as after logging in again: the agent creates the sandbox,
	// and the kernel refuses the secret.
	out, code = runAigateIn(t, bin, userEnv, asUser(atou(t, grp.Gid)), proj, "run", "--", "cat", ".env")
	if code != 1 || strings.Contains(out, "sk-setup-secret") || !strings.Contains(out, "aigate: blocked read "+secret) {
		t.Errorf("aigate run -- cat .env as %s in group %s: exit %d, want 1 and the read blocked\n%s\nagent log:\n%s", usr.Username, api.Group, code, out, agentLog.String())
	}
	stopAgent()
	if left, err := SandboxesOf(agent.Process.Pid); err != nil || len(left) > 0 {
		t.Errorf("the stopped agent left sandbox cgroups %v (%v)", left, err)
	}

	// A sandbox cgroup a crashed agent left: reset must remove it.
	stale := plantStaleSandbox(t)

	// reset lists its plan and exits 2 without --force. Another package's
	// run may sweep the stale sandbox before reset plans (see below).
	for try := 1; ; try++ {
		out, code = runAigate(t, bin, sudo, nil, "reset")
		if strings.Contains(out, "sandbox cgroups") {
			break
		}
		if _, err := os.Lstat(stale); err == nil || try == 3 {
			break // the checks below say what is wrong
		}
		t.Logf("the stale sandbox %s was swept by another run before reset planned: again", filepath.Base(stale))
		stale = plantStaleSandbox(t)
	}
	if code != 2 {
		t.Errorf("aigate reset without --force: exit %d, want 2\n%s", code, out)
	}
	for _, want := range []string{"group " + api.Group, "~/.aigate/config.yaml", "sandbox cgroups"} {
		if !strings.Contains(out, want) {
			t.Errorf("aigate reset's plan lacks %q:\n%s", want, out)
		}
	}
	if _, err := user.LookupGroup(api.Group); err != nil {
		t.Fatalf("aigate reset without --force removed the group: %v", err)
	}

	// While an agent holds the default socket's lock, reset refuses.
	if release, ok := holdAgentLock(t); ok {
		out, code = runAigate(t, bin, sudo, nil, "reset", "--force")
		release()
		if code == 0 || !strings.Contains(out, "an agent is running") {
			t.Errorf("aigate reset --force with a live agent: exit %d, want refused\n%s", code, out)
		}
		if _, err := user.LookupGroup(api.Group); err != nil {
			t.Fatalf("the refused reset removed the group: %v", err)
		}
	}

	out, code = runAigate(t, bin, sudo, nil, "reset", "--force")
	if code != 0 {
		t.Fatalf("aigate reset --force: exit %d\n%s", code, out)
	}
	t.Logf("aigate reset --force:\n%s", out)
	if _, err := user.LookupGroup(api.Group); err == nil {
		t.Errorf("group %s still exists after reset --force", api.Group)
	}
	if groups := idGroups(t, usr.Username); slices.Contains(groups, api.Group) {
		t.Errorf("id -nG %s = %v after reset --force", usr.Username, groups)
	}
	for _, p := range []string{filepath.Dir(api.DefaultSocket), "/sys/fs/bpf/aigate", "/etc/systemd/system/aigate.service", "/var/lib/aigate", filepath.Join(usr.HomeDir, ".aigate"), stale} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left after reset --force (%v)\n%s", p, err, out)
		}
	}
	// Any agent or run that makes a sandbox meanwhile sweeps stale ones
	// too (make check runs other packages beside this one): when one took
	// it first, plant another and reset again, which then has only that
	// left to remove.
	for try := 1; !strings.Contains(out, "removed sandbox "+filepath.Base(stale)); try++ {
		if _, err := os.Lstat(stale); err == nil || try == 3 {
			t.Errorf("reset --force does not say it removed the stale sandbox %s:\n%s", filepath.Base(stale), out)
			break
		}
		t.Logf("the stale sandbox %s was swept by another run first: again", filepath.Base(stale))
		stale = plantStaleSandbox(t)
		out, _ = runAigate(t, bin, sudo, nil, "reset", "--force")
	}
	if systemd {
		if exec.Command("systemctl", "is-active", "aigate.service").Run() == nil {
			t.Errorf("aigate.service still active after reset --force")
		}
	}
	// Again: nothing left to do, and it says so.
	if out, code := runAigate(t, bin, sudo, nil, "reset", "--force"); code != 0 || !strings.Contains(out, "nothing to remove") {
		t.Errorf("second aigate reset --force: exit %d, want 0 and nothing to remove\n%s", code, out)
	}
}

// privateStateEnv marks the copy of TestSetup that runs in its own mount
// namespace (see inPrivateState).
const privateStateEnv = "AIGATE_SETUP_PRIVATE"

// inPrivateState runs TestSetup again, in a child process with a mount
// namespace of its own: tmpfs on /run and /var/lib, a new BPF filesystem
// on /sys/fs/bpf. reset --force removes the agent's state directories
// (/var/lib/aigate with the keep directory, /run/aigate, the pins), and
// make check runs this package beside the others, whose agents keep
// their copies of protected files there: a shared reset emptied an
// escape test's keep directory under its running agent. It reports
// whether the caller is that child and should go on; in the parent it
// hands on the child's result and returns false.
func inPrivateState(t *testing.T) bool {
	t.Helper()
	if os.Getenv(privateStateEnv) == "1" {
		return true
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	const mounts = `set -e
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=0755 tmpfs /var/lib
mount -t bpf bpf /sys/fs/bpf
exec "$0" "$@"`
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "--", "sh", "-c", mounts,
		self, "-test.run=^"+t.Name()+"$", "-test.v=true", "-test.count=1")
	cmd.Env = append(os.Environ(), privateStateEnv+"=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	code, err := ExitCode(RunBounded(cmd, 10*time.Minute))
	text := out.String()
	switch {
	case err != nil:
		t.Fatalf("%s in its own mount namespace: %v\n%s", t.Name(), err, text)
	case code == 0 && strings.Contains(text, "--- PASS: "+t.Name()+" "):
		t.Logf("%s ran in its own mount namespace:\n%s", t.Name(), text)
	case code == 0 && strings.Contains(text, "--- SKIP: "+t.Name()+" "):
		testutil.SkipUnlessKernel(t, "in its own mount namespace:\n"+text)
	default:
		t.Fatalf("%s in its own mount namespace: exit %d\n%s", t.Name(), code, text)
	}
	return false
}

// newTestUser creates a user with a home, removed with it at the end.
func newTestUser(t *testing.T) *user.User {
	t.Helper()
	name := fmt.Sprintf("aigsetup%d", os.Getpid()%100000)
	if out, err := exec.Command("useradd", "--create-home", "--shell", "/bin/sh", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", "--remove", name).CombinedOutput(); err != nil {
			t.Errorf("cleanup: userdel -r %s: %v: %s", name, err, out)
		}
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// plantStaleSandbox creates an empty sandbox cgroup named for an owner
// that has exited, as a crashed agent would leave it, and returns its path.
func plantStaleSandbox(t *testing.T) string {
	t.Helper()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	root, err := cgroup.Mountpoint()
	if err != nil {
		t.Fatal(err)
	}
	// An ID far above what concurrent runs allocate (the lowest free one).
	path := filepath.Join(root, sandbox.DefaultParent, sandbox.Name(900000+uint32(os.Getpid()%90000), dead.Process.Pid))
	if err := os.MkdirAll(path, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cleanup: %v", err)
		}
	})
	return path
}

// holdAgentLock takes the default agent socket's lock as a live agent
// would. It returns false when a real agent holds it (then reset --force
// refuses anyway, and the test cannot go on to assert the removals).
func holdAgentLock(t *testing.T) (release func(), ok bool) {
	t.Helper()
	dir := filepath.Dir(api.DefaultSocket)
	made := !dirExists(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	lock, err := os.OpenFile(api.DefaultSocket+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		return nil, false
	}
	return func() {
		lock.Close()
		if made {
			// reset removes it; this is for a reset that did not.
			t.Cleanup(func() { os.RemoveAll(dir) })
		}
	}, true
}

// copyExecutable copies the file src to dst, mode 0755, and returns dst.
func copyExecutable(t *testing.T, src, dst string) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}

// runAigate runs aigate as root in the current directory.
func runAigate(t *testing.T, bin string, env []string, attr *syscall.SysProcAttr, args ...string) (string, int) {
	t.Helper()
	return runAigateIn(t, bin, env, attr, "", args...)
}

// runAigateIn runs aigate with attr's credentials in dir, bounded, and
// returns its combined output and exit code.
func runAigateIn(t *testing.T, bin string, env []string, attr *syscall.SysProcAttr, dir string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env, cmd.Dir, cmd.SysProcAttr = env, dir, attr
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	code, err := ExitCode(RunBounded(cmd, runLimit))
	if err != nil {
		t.Fatalf("aigate %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String(), code
}

// idGroups is `id -nG name`: the user's groups from the group database.
func idGroups(t *testing.T, name string) []string {
	t.Helper()
	out, err := exec.Command("id", "-nG", name).Output()
	if err != nil {
		t.Fatalf("id -nG %s: %v", name, err)
	}
	return strings.Fields(string(out))
}

func dirExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

func atou(t *testing.T, s string) uint32 {
	t.Helper()
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(n)
}
