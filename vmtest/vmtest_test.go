package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/vmtest/internal/cpio"

	"github.com/aigate-dev/aigate/internal/testutil"
)

func TestConsoleMarkers(t *testing.T) {
	m := "@@vmtest-0123456789ab: "
	c := newConsole(m)
	lines := []struct {
		in, show string
		ok       bool
	}{
		{"SeaBIOS noise", "SeaBIOS noise", true},
		{m + "init 2.31", "vmtest: /init started 2.31s after boot", true},
		{m + "kernel 6.1.0-56-cloud-amd64", "vmtest: guest kernel 6.1.0-56-cloud-amd64", true},
		{m + "lsm lockdown,capability,bpf", "vmtest: guest LSMs lockdown,capability,bpf", true},
		{m + "start loader", "vmtest: === loader", true},
		{"--- PASS: TestX (0.01s)", "--- PASS: TestX (0.01s)", true},
		// A test that printed no final newline: the marker ends its line.
		{"PASS" + m + "exit loader 0", "PASS\nvmtest: === loader exited with status 0", true},
		{m + "start cli", "vmtest: === cli", true},
		// A marker from another run (another nonce) is only text.
		{"@@vmtest-ffffffffffff: exit cli 0", "@@vmtest-ffffffffffff: exit cli 0", true},
		{m + "exit cli 3", "vmtest: === cli exited with status 3", true},
		{m + "exit bogus notanumber", m + "exit bogus notanumber", true},
		{m + "done", "", false},
	}
	for _, l := range lines {
		show, ok := c.line(l.in)
		if show != l.show || ok != l.ok {
			t.Errorf("line(%q) = %q, %v; want %q, %v", l.in, show, ok, l.show, l.ok)
		}
	}
	if !c.initSeen || c.initUptime != "2.31" || c.kernel != "6.1.0-56-cloud-amd64" || !c.hasBPF() || !c.done {
		t.Errorf("console state = %+v", c)
	}
	if c.tests != (testCounts{passed: 1}) {
		t.Errorf("test counts = %+v, want 1 passed", c.tests)
	}
	c.line("    --- FAIL: TestX/sub (0.00s)") // a subtest: not counted
	c.line("--- SKIP: TestY (0.00s)")
	if c.tests != (testCounts{passed: 1, skipped: 1}) {
		t.Errorf("test counts = %+v, want 1 passed, 1 skipped", c.tests)
	}
	if len(c.status) != 2 || c.status["loader"] != 0 || c.status["cli"] != 3 {
		t.Errorf("status = %v, want loader:0 cli:3", c.status)
	}
	if c.panicked {
		t.Error("panic reported without one")
	}
	c.line("[    5.1] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100")
	if !c.panicked {
		t.Error("panic not detected")
	}
}

func TestHasBPF(t *testing.T) {
	for lsm, want := range map[string]bool{
		"lockdown,capability,bpf":           true,
		"bpf":                               true,
		"lockdown,capability,landlock":      false,
		"lockdown,capability,bpfx,landlock": false,
		"":                                  false,
	} {
		if got := (&console{lsm: lsm}).hasBPF(); got != want {
			t.Errorf("hasBPF(%q) = %v, want %v", lsm, got, want)
		}
	}
}

func TestVerdict(t *testing.T) {
	ok := func() *console {
		c := newConsole("m")
		c.initSeen, c.lsm, c.done = true, "capability,bpf", true
		c.status["a"], c.status["b"] = 0, 0
		return c
	}
	tests := []struct {
		name string
		res  func() *vmResult
		want string // substring of the error, "" for success
	}{
		{"all pass", func() *vmResult { return &vmResult{con: ok()} }, ""},
		{"one fails", func() *vmResult { c := ok(); c.status["b"] = 1; return &vmResult{con: c} }, "b: exit status 1"},
		{"missing marker", func() *vmResult { c := ok(); delete(c.status, "b"); return &vmResult{con: c} }, "b: did not run"},
		{"crashed during test", func() *vmResult {
			c := ok()
			delete(c.status, "b")
			c.current, c.done, c.panicked = "b", false, true
			return &vmResult{con: c}
		}, "b: did not finish"},
		{"panic", func() *vmResult { c := ok(); c.panicked = true; return &vmResult{con: c} }, "panicked"},
		{"timeout", func() *vmResult { return &vmResult{con: ok(), timedOut: true} }, "time limit"},
		{"no bpf", func() *vmResult { c := ok(); c.lsm = "capability"; return &vmResult{con: c} }, "not in the guest's LSM list"},
		{"no init", func() *vmResult { return &vmResult{con: newConsole("m")} }, "never reached /init"},
		{"init did not finish", func() *vmResult { c := ok(); c.done = false; return &vmResult{con: c} }, "/init did not finish"},
	}
	for _, tt := range tests {
		err := verdict(tt.res(), []string{"a", "b"}, time.Minute)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: verdict = %v, want success", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: verdict = %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
}

func TestQemuArgs(t *testing.T) {
	args := qemuArgs(vmConfig{kernel: "/k/vmlinuz", initrd: "/r/initrd", accel: "tcg", memMB: 2048, cpus: 2, cmdline: []string{"foo=bar"}})
	joined := strings.Join(args, " ")
	for _, want := range []string{"-accel tcg,thread=multi", "-cpu max", "-m 2048", "-smp 2", "-no-reboot", "-kernel /k/vmlinuz", "-initrd /r/initrd", "-serial stdio"} {
		if !strings.Contains(joined, want) {
			t.Errorf("args lack %q: %s", want, joined)
		}
	}
	var appendArg string
	for i, a := range args {
		if a == "-append" {
			appendArg = args[i+1]
		}
	}
	for _, want := range []string{"console=ttyS0", "lsm=lockdown,capability,landlock,bpf", "panic=-1", "foo=bar"} {
		if !strings.Contains(" "+appendArg+" ", " "+want+" ") {
			t.Errorf("kernel cmdline lacks %q: %s", want, appendArg)
		}
	}
	kvm := strings.Join(qemuArgs(vmConfig{accel: "kvm", memMB: 1, cpus: 1}), " ")
	if !strings.Contains(kvm, "-accel kvm ") || !strings.Contains(kvm, "-cpu host") {
		t.Errorf("kvm args: %s", kvm)
	}
}

func TestNewestPackage(t *testing.T) {
	names := []string{
		"linux-image-6.1.0-9-cloud-amd64",
		"linux-image-6.1.0-56-cloud-amd64",
		"linux-image-6.1.0-56-cloud-amd64-dbg",
		"linux-image-6.1.0-48-cloud-amd64",
		"linux-image-6.12.117+deb12-cloud-amd64",
		"linux-image-6.12.43+deb12-cloud-amd64",
		"linux-image-6.12.117+deb12-cloud-amd64-unsigned",
		"linux-image-cloud-amd64",
	}
	if got := newestPackage(kernelSeries["6.1"], names); got != "linux-image-6.1.0-56-cloud-amd64" {
		t.Errorf("6.1: %q", got)
	}
	if got := newestPackage(kernelSeries["6.12"], names); got != "linux-image-6.12.117+deb12-cloud-amd64" {
		t.Errorf("6.12: %q", got)
	}
	if got := newestPackage(kernelSeries["6.1"], names[4:]); got != "" {
		t.Errorf("no 6.1 package: %q", got)
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"--pkg", "./a", "--pkg=./b", "--env", "X=1", "--timeout", "30s", "--", "-test.v", "-test.run", "TestX"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(o.pkgs, " ") != "./a ./b" || o.timeout.Seconds() != 30 || o.kernel != "6.1" || o.accel != "tcg-single" {
		t.Errorf("options = %+v", o)
	}
	if strings.Join(o.testArgs, " ") != "-test.v -test.run TestX" {
		t.Errorf("test args = %q", o.testArgs)
	}
	if _, err := parseFlags([]string{"--accel", "hvf"}, io.Discard); err == nil {
		t.Error("--accel hvf accepted")
	}
}

func TestGuestEnv(t *testing.T) {
	host := map[string]string{"AIGATE_REQUIRE_KERNEL": "1", "AIGATE_REQUIRE_LSM": "0", "SECRET": "x"}
	env := guestEnv(func(k string) (string, bool) { v, ok := host[k]; return v, ok })
	if env["AIGATE_REQUIRE_KERNEL"] != "1" || env["AIGATE_REQUIRE_LSM"] != "0" || env["AIGATE_VMTEST"] != "1" || env["HOME"] != "/root" {
		t.Errorf("env = %v", env)
	}
	if _, ok := env["SECRET"]; ok {
		t.Error("host environment leaked into the guest")
	}
	if env := guestEnv(func(string) (string, bool) { return "", false }); env["AIGATE_REQUIRE_LSM"] != "1" {
		t.Errorf("AIGATE_REQUIRE_LSM defaults to %q in the guest, want 1", env["AIGATE_REQUIRE_LSM"])
	}
}

// TestShQuote runs quoted strings through a real shell.
func TestShQuote(t *testing.T) {
	for _, s := range []string{"plain", "it's", `a"b`, "$HOME", "`id`", "a b\tc", "", "'''", "-test.run=^(A|B)$"} {
		out, err := exec.Command("sh", "-c", "printf %s "+shQuote(s)).Output()
		if err != nil {
			t.Fatalf("sh: %v", err)
		}
		if string(out) != s {
			t.Errorf("shQuote(%q) through sh = %q", s, out)
		}
	}
}

func TestInitScript(t *testing.T) {
	script := initScript(initConfig{
		marker: "@@vmtest-abc: ",
		tests:  []guestTest{{name: "loader", bin: "/tests/loader.test", dir: "/src/internal/loader"}},
		args:   []string{"-test.run", "Test'X"},
		env:    map[string]string{"AIGATE_VMTEST": "1"},
	})
	if out, err := exec.Command("sh", "-n", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("init script does not parse: %v\n%s\n%s", err, out, script)
	}
	for _, want := range []string{
		"#!/bin/sh\n",
		"mount -t securityfs securityfs /sys/kernel/security",
		"mount -t bpf",
		"mount -t cgroup2",
		"ip link set lo up",
		"export AIGATE_VMTEST='1'",
		`(cd '/src/internal/loader' && exec '/tests/loader.test' '-test.run' 'Test'\''X') </dev/null`,
		`echo "${M}exit loader $?"`,
		"poweroff -f",
	} {
		if !strings.Contains(script, want) {
			t.Errorf("init script lacks %q:\n%s", want, script)
		}
	}
	if regexp.MustCompile(`(?m)^set -e`).MatchString(script) {
		t.Error("set -e would stop /init at the first failing test")
	}
}

func TestBaseArchive(t *testing.T) {
	bb, err := staticBusybox()
	if err != nil {
		testutil.SkipUnlessKernel(t, fmt.Sprintf("no static busybox: %v", err))
	}
	var buf bytes.Buffer
	if err := baseArchive(&buf, bb); err != nil {
		t.Fatal(err)
	}
	got := map[string]*cpio.Header{}
	r := cpio.NewReader(&buf)
	for {
		h, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[h.Name] = h
	}
	checks := []struct {
		name string
		mode uint32
	}{
		{"bin/busybox", cpio.TypeReg | 0o755},
		{"bin/sh", cpio.TypeSymlink | 0o777},
		{"sbin/poweroff", cpio.TypeSymlink | 0o777},
		{"dev/console", cpio.TypeChar | 0o600},
		{"etc/passwd", cpio.TypeReg | 0o644},
		{"tmp", cpio.TypeDir | 0o1777},
	}
	for _, c := range checks {
		h := got[c.name]
		if h == nil {
			t.Errorf("%s missing", c.name)
			continue
		}
		if h.Mode != c.mode {
			t.Errorf("%s mode %o, want %o", c.name, h.Mode, c.mode)
		}
	}
	if h := got["home/alice"]; h == nil || h.UID != 1000 {
		t.Errorf("home/alice = %+v, want uid 1000", h)
	}
}

func TestRunArchive(t *testing.T) {
	dir := t.TempDir()
	host := dir + "/f"
	if err := writeFileAtomic(host, []byte("data")); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := runArchive(&buf, "#!/bin/sh\n", []string{"/src/c/d", "/src/a"}, []guestFile{{host: host, guest: "/src/a/b/testdata/f"}, {host: host, guest: "/tests/x.test"}}); err != nil {
		t.Fatal(err)
	}
	var names []string
	r := cpio.NewReader(&buf)
	for {
		h, err := r.Next()
		if err != nil {
			break
		}
		names = append(names, h.Name)
	}
	want := "init src/c src/c/d src/a src/a/b src/a/b/testdata src/a/b/testdata/f tests/x.test"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("entries = %s, want %s", got, want)
	}
}

func TestCheckStatic(t *testing.T) {
	if bb, err := staticBusybox(); err == nil {
		if err := checkStatic(bb); err != nil {
			t.Errorf("static busybox rejected: %v", err)
		}
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		testutil.SkipUnlessKernel(t, "no sh")
	}
	// The host's /bin/sh (dash or bash) is dynamically linked on Debian.
	if err := checkStatic(sh); err == nil || !strings.Contains(err.Error(), "CGO_ENABLED=0") {
		t.Errorf("checkStatic(%s) = %v, want a dynamic-linking error", sh, err)
	}
	if err := checkStatic("vmtest_test.go"); err != nil {
		t.Errorf("a non-ELF file is rejected: %v", err)
	}
}

func TestParseLdd(t *testing.T) {
	out := `	linux-vdso.so.1 (0x00007ffd)
	libbpf.so.1 => /lib/x86_64-linux-gnu/libbpf.so.1 (0x00007f76)
	libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f76)
	/lib64/ld-linux-x86-64.so.2 (0x00007f76)
`
	libs, err := parseLdd(out)
	if err != nil {
		t.Fatal(err)
	}
	want := "/lib/x86_64-linux-gnu/libbpf.so.1 /lib/x86_64-linux-gnu/libc.so.6 /lib64/ld-linux-x86-64.so.2"
	if got := strings.Join(libs, " "); got != want {
		t.Errorf("libs = %s, want %s", got, want)
	}
	if _, err := parseLdd("\tlibfoo.so.1 => not found\n"); err == nil {
		t.Error("a missing library was not reported")
	}
}

// Each result line, subtests' too, is kept with the binary that printed
// it, and written as go test -json events naming the package (for
// skipcheck, which fails when a test skips in every environment).
func TestConsoleResults(t *testing.T) {
	m := "@@vmtest-abc: "
	c := newConsole(m)
	for _, l := range []string{
		"--- SKIP: TestBefore (0.00s)", // no binary running: not a test line
		m + "start loader",
		"=== RUN   TestX",
		"--- PASS: TestX (0.10s)",
		"    --- SKIP: TestX/fanotify (0.00s)",
		"        --- FAIL: TestX/lsm/deep_name (1.00s)",
		"some output --- SKIP: TestNot (0.00s)",
		m + "exit loader 1",
	} {
		c.line(l)
	}
	want := []testResult{{"loader", "pass", "TestX", 0.1}, {"loader", "skip", "TestX/fanotify", 0}, {"loader", "fail", "TestX/lsm/deep_name", 1}}
	if fmt.Sprint(c.results) != fmt.Sprint(want) {
		t.Fatalf("results %v, want %v", c.results, want)
	}
	file := filepath.Join(t.TempDir(), "logs", "vm.json")
	if err := writeResults(file, c.results, []string{"loader"}, []goPackage{{ImportPath: "example.com/loader"}}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `{"Action":"skip","Package":"example.com/loader","Test":"TestX/fanotify","Elapsed":0}`) ||
		!strings.Contains(string(data), `{"Action":"fail","Package":"example.com/loader","Test":"TestX/lsm/deep_name","Elapsed":1}`) ||
		!strings.Contains(string(data), `"Test":"TestX","Elapsed":0.1}`) || strings.Count(string(data), "\n") != 3 {
		t.Errorf("written:\n%s", data)
	}
}

// The closing lines name each failed test, deepest subtest only, with
// the last message it printed: a CI log's tail shows no more than them.
func TestConsoleFailures(t *testing.T) {
	m := "@@vmtest-abc: "
	c := newConsole(m)
	long := strings.Repeat("x", 300)
	for _, l := range []string{
		"=== RUN   TestOutside",
		"    a_test.go:1: before any binary: not kept",
		m + "start escape",
		"=== RUN   TestA",
		"=== RUN   TestA/lsm",
		"    world_test.go:86: first",
		"    persist_test.go:12: 1 write event of 2:",
		"        aigate: blocked write /x",
		"=== RUN   TestB",
		"    b_test.go:3: " + long,
		"=== NAME  TestA/lsm",
		"    persist_test.go:14: the agent closed the session",
		"--- FAIL: TestA (3.00s)",
		"    --- PASS: TestA/fanotify (1.00s)",
		"    --- FAIL: TestA/lsm (2.00s)",
		"--- FAIL: TestB (0.50s)",
		"--- PASS: TestC (0.10s)",
		m + "exit escape 1",
	} {
		c.line(l)
	}
	want := []string{
		"vmtest: failed: TestA/lsm (escape, 2.0s): persist_test.go:14: the agent closed the session",
		"vmtest: failed: TestB (escape, 0.5s): " + ("b_test.go:3: " + long)[:200] + "...",
	}
	if got := c.failures(8); !slices.Equal(got, want) {
		t.Errorf("failures:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := c.failures(1); len(got) != 2 || got[1] != "vmtest: failed: 1 more" {
		t.Errorf("failures(1) = %q", got)
	}
	// Without -test.v the messages follow the result line.
	c = newConsole(m)
	for _, l := range []string{m + "start smoke", "--- FAIL: TestD (0.01s)", "    smoke_test.go:85: on purpose", "FAIL", m + "exit smoke 1"} {
		c.line(l)
	}
	if got := c.failures(8); !slices.Equal(got, []string{"vmtest: failed: TestD (smoke, 0.0s): smoke_test.go:85: on purpose"}) {
		t.Errorf("without -test.v: %q", got)
	}
	if got := newConsole(m).failures(8); len(got) != 0 {
		t.Errorf("nothing failed: %q", got)
	}
}
