package main

import (
	"bytes"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"
)

// The smoke test boots real VMs (about 10 s each under TCG), so it runs only
// when asked: AIGATE_VMTEST_SMOKE=1 go test ./vmtest -run Smoke -v
func requireSmoke(t *testing.T) {
	t.Helper()
	if os.Getenv("AIGATE_VMTEST_SMOKE") != "1" {
		// skip-ok: make vmtest-smoke, which CI runs, sets it.
		t.Skip("boots QEMU; set AIGATE_VMTEST_SMOKE=1 to run")
	}
}

// smoke runs vmtest on testdata/smoke with extra arguments after "--".
func smoke(t *testing.T, flags []string, testArgs ...string) (int, string) {
	t.Helper()
	args := append([]string{"--pkg", "./testdata/smoke", "--env", "SMOKE_ENV=it's set"}, flags...)
	args = append(append(args, "--"), testArgs...)
	var out bytes.Buffer
	w := io.MultiWriter(&out, testWriter{t})
	code := run(args, w, w)
	return code, out.String()
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func TestSmokePass(t *testing.T) {
	requireSmoke(t)
	code, out := smoke(t, nil, "-test.v")
	if code != exitOK {
		t.Errorf("exit code %d, want %d", code, exitOK)
	}
	for _, re := range []string{
		`(?m)^vmtest: guest kernel 6\.1\.\S+$`,
		`(?m)^vmtest: guest LSMs \S*\bbpf\b`,
		`(?m)^--- PASS: TestGuestHasBPFLSM`,
		`(?m)^--- PASS: TestGuestUsersAndFiles`,
		`(?m)^--- PASS: TestHostToolIP`,
		`(?m)^vmtest: === smoke exited with status 0$`,
		`(?m)^vmtest: 1 passed, 0 failed$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("output does not match %s", re)
		}
	}
	// The kernel and LSM lines come before any test output.
	if strings.Index(out, "guest LSMs") > strings.Index(out, "=== RUN") {
		t.Error("LSM list printed after the tests started")
	}
}

func TestSmokeFailingTest(t *testing.T) {
	requireSmoke(t)
	code, out := smoke(t, nil, "-test.run", "TestDeliberateFailure", "-smoke.fail")
	if code != exitTestFailed {
		t.Errorf("exit code %d, want %d", code, exitTestFailed)
	}
	if !strings.Contains(out, "vmtest: === smoke exited with status 1") || !strings.Contains(out, "vmtest: 0 passed, 1 failed") {
		t.Error("failure not reported")
	}
	// The closing lines name the test and its message (a CI log's tail).
	if !regexp.MustCompile(`vmtest: failed: TestDeliberateFailure \(smoke, [0-9.]+s\): smoke_test.go:\d+: failing on purpose`).MatchString(out) {
		t.Errorf("the closing lines do not name the failed test with its message:\n%s", out)
	}
}

func TestSmokeExitStatus(t *testing.T) {
	requireSmoke(t)
	code, out := smoke(t, nil, "-test.run", "TestGuestHasBPFLSM", "-smoke.exit=7")
	if code != exitTestFailed {
		t.Errorf("exit code %d, want %d", code, exitTestFailed)
	}
	if !strings.Contains(out, "vmtest: === smoke exited with status 7") || !strings.Contains(out, "smoke: exit status 7") {
		t.Error("exit status 7 not carried back from the guest")
	}
}

func TestSmokeTimeout(t *testing.T) {
	requireSmoke(t)
	// 2 s is enough to build (cached) but not to boot under TCG.
	code, out := smoke(t, []string{"--timeout", "2s"})
	if code == exitOK {
		t.Errorf("exit code %d, want failure", code)
	}
	if !strings.Contains(out, "time limit") && !strings.Contains(out, "deadline exceeded") {
		t.Error("time limit not reported")
	}
}

func TestSmokeShare(t *testing.T) {
	requireSmoke(t)
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/hello.txt", []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out := smoke(t, []string{"--share", dir + ":/mnt/share", "--env", "SMOKE_SHARE=/mnt/share"}, "-test.v", "-test.run", "TestShare")
	if code != exitOK {
		t.Errorf("exit code %d, want %d", code, exitOK)
	}
	if !strings.Contains(out, "--- PASS: TestShare") {
		t.Error("TestShare did not pass in the guest")
	}
	if _, err := os.Stat(dir + "/written-by-guest"); err == nil {
		t.Error("the guest wrote into the shared host directory")
	}
}

func TestSmokeHostRoot(t *testing.T) {
	requireSmoke(t)
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/hello.js", []byte("console.log('node', process.version)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out := smoke(t, []string{"--host-dir", dir, "--env", "SMOKE_HOST_DIR=" + dir}, "-test.v", "-test.run", "TestHostRoot")
	if code != exitOK || !strings.Contains(out, "--- PASS: TestHostRoot") {
		t.Errorf("exit code %d; TestHostRoot did not pass in the guest", code)
	}
	if _, err := os.Stat("/usr/lib/written-by-guest"); err == nil {
		t.Error("the guest wrote into the host's /usr")
	}
}
