package main

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const pkg = "example.com/p"

func logOf(lines ...string) string { return strings.Join(lines, "\n") + "\n" }

func ev(action, test string) string {
	return `{"Action":"` + action + `","Package":"` + pkg + `","Test":"` + test + `"}`
}

// A test that skips on the host and runs in one VM kernel is covered; one
// that skips in every log is reported, subtests included, unless allowed.
func TestSkippedEverywhere(t *testing.T) {
	o := outcomes{}
	host := logOf(
		"not json: a build line",
		ev("run", "TestLSM"), ev("skip", "TestLSM"),
		ev("skip", "TestNowhere"),
		ev("pass", "TestBoth"),
		ev("skip", "TestSub/lsm"), ev("pass", "TestSub/fanotify"), ev("pass", "TestSub"),
		ev("skip", "TestAllowed"),
		ev("fail", "TestFailedHere"),
		`{"Action":"skip","Package":"`+pkg+`"}`, // a package without tests
	)
	// A failure ran the test: CI fails on it, not here.
	vm := logOf(ev("skip", "TestFailedHere"), ev("pass", "TestLSM"), ev("skip", "TestNowhere"), ev("pass", "TestBoth"), ev("skip", "TestSub/lsm"))
	for env, log := range map[string]string{"host": host, "vm-6.1": vm} {
		if err := o.read(env, strings.NewReader(log)); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for _, k := range o.skippedEverywhere() {
		got = append(got, k.name)
	}
	if want := "TestAllowed TestNowhere TestSub/lsm"; strings.Join(got, " ") != want {
		t.Errorf("skipped everywhere: %q, want %q", got, want)
	}
	allow := []allowEntry{{test: test{pkg, "TestAllowed"}, reason: "r", line: 3}}
	bad := problems(o, allow, "allow.txt")
	if len(bad) != 2 || !strings.Contains(bad[0], "TestNowhere") || !strings.Contains(bad[1], "TestSub/lsm") {
		t.Errorf("problems: %q, want TestNowhere and TestSub/lsm", bad)
	}
	if !strings.Contains(bad[1], "host, vm-6.1") {
		t.Errorf("problem %q does not name the environments", bad[1])
	}
}

// An allowlist entry for a test that ran somewhere, or that no log has,
// is stale and fails the check.
func TestAllowStale(t *testing.T) {
	o := outcomes{}
	o.read("host", strings.NewReader(logOf(ev("skip", "TestRan"), ev("pass", "TestRan/x"))))
	o.read("vm", strings.NewReader(logOf(ev("pass", "TestRan"))))
	allow := []allowEntry{{test: test{pkg, "TestRan"}, line: 1}, {test: test{pkg, "TestGone"}, line: 2}}
	bad := problems(o, allow, "allow.txt")
	if len(bad) != 2 || !strings.Contains(bad[0], "allow.txt:1") || !strings.Contains(bad[0], "ran in vm") ||
		!strings.Contains(bad[1], "allow.txt:2") || !strings.Contains(bad[1], "in no log") {
		t.Errorf("problems: %q, want line 1 ran in vm and line 2 in no log", bad)
	}
}

func TestReadAllow(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "allow.txt")
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	got, err := readAllow(write("# comment\n\np TestA/sub x: why it cannot run\n"))
	if err == nil {
		t.Fatalf("three fields accepted: %+v", got)
	}
	got, err = readAllow(write("# comment\n\np TestA/sub_1: why: it cannot run\n"))
	if err != nil || len(got) != 1 || got[0].test != (test{"p", "TestA/sub_1"}) || got[0].reason != "why: it cannot run" || got[0].line != 3 {
		t.Fatalf("got %+v, %v", got, err)
	}
	for _, bad := range []string{"p TestA\n", "p TestA: \n", "p TestA: a\np TestA: b\n"} {
		if _, err := readAllow(write(bad)); err == nil || !strings.Contains(err.Error(), "allow.txt:") {
			t.Errorf("%q: error %v, want one naming the file and line", bad, err)
		}
	}
}

// The repository's own allowlist parses.
func TestRepoAllowlist(t *testing.T) {
	if _, err := readAllow("allow.txt"); err != nil {
		t.Fatal(err)
	}
}

// record's printer shows a passing package as its ok line and a failing
// one with its output, as go test without -json.
func TestPrinter(t *testing.T) {
	var b strings.Builder
	p := &printer{w: &b, held: map[string][]string{}}
	for _, l := range []string{
		`{"Action":"output","Package":"a","Test":"TestX","Output":"=== RUN   TestX\n"}`,
		`{"Action":"output","Package":"a","Output":"ok  \ta\t0.1s\n"}`,
		`{"Action":"pass","Package":"a"}`,
		`{"Action":"output","Package":"b","Test":"TestY","Output":"    y_test.go:1: boom\n"}`,
		`{"Action":"output","Package":"b","Output":"FAIL\tb\t0.1s\n"}`,
		`{"Action":"fail","Package":"b"}`,
		`# not json`,
	} {
		p.line(l)
	}
	want := "ok  \ta\t0.1s\n    y_test.go:1: boom\nFAIL\tb\t0.1s\n# not json\n"
	if b.String() != want {
		t.Errorf("printed %q, want %q", b.String(), want)
	}
}

// record's closing lines name each failed test, deepest subtest only.
func TestPrinterFailures(t *testing.T) {
	p := &printer{w: io.Discard, held: map[string][]string{}}
	for _, l := range []string{
		`{"Action":"fail","Package":"b","Test":"TestY/lsm/deep"}`,
		`{"Action":"pass","Package":"b","Test":"TestY/fanotify"}`,
		`{"Action":"fail","Package":"b","Test":"TestY/lsm"}`,
		`{"Action":"fail","Package":"b","Test":"TestY"}`,
		`{"Action":"fail","Package":"c","Test":"TestY"}`,
		`{"Action":"fail","Package":"b"}`,
	} {
		p.line(l)
	}
	want := []string{"skipcheck: failed: TestY/lsm/deep (b)", "skipcheck: failed: TestY (c)"}
	if got := p.failures(); !slices.Equal(got, want) {
		t.Errorf("failures %q, want %q", got, want)
	}
}
