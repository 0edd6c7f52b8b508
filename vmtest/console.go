package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// newMarker returns a prefix that no test output can produce by accident:
// a random nonce makes a forged or echoed marker from a previous run
// impossible to mistake for this run's.
func newMarker() string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return "@@vmtest-" + hex.EncodeToString(b[:]) + ": "
}

// console follows the guest's serial output and records what the marker
// lines say.
type console struct {
	marker string

	initSeen   bool
	initUptime string // guest seconds since boot when /init started
	kernel     string
	lsm        string
	current    string         // test binary running now
	status     map[string]int // exit status by test name
	order      []string       // names in the order they finished
	done       bool
	panicked   bool
	mountErrs  []string // guest paths of shares that failed to mount
	tests      testCounts
	results    []testResult      // every test's and subtest's result, in order
	running    string            // the test go test -v last named (=== RUN, CONT, NAME)
	lastMsg    map[string]string // the last t.Log/t.Error line each test printed
}

// testResult is one "--- PASS/FAIL/SKIP: name (1.23s)" line of go test
// -v, with the test binary that printed it and the seconds the test took
// (kept for the json logs: they are where the next look at the guests'
// time starts).
type testResult struct {
	bin, action, test string
	elapsed           float64
}

// resultLine matches a result line of go test -v, indented four spaces
// per subtest level.
var resultLine = regexp.MustCompile(`^\s*--- (PASS|FAIL|SKIP): (\S+) \(([0-9.]+)s\)`)

// testNameLine matches the lines go test -v names the test with whose
// output follows; testMsgLine the first line of a t.Log or t.Error
// message ("    file_test.go:12: text").
var (
	testNameLine = regexp.MustCompile(`^=== (?:RUN|CONT|NAME) +(\S+)`)
	testMsgLine  = regexp.MustCompile(`^ {4,}(\S+_test\.go:\d+: .*)`)
)

// testCounts counts top-level Go test results in -test.v output.
type testCounts struct{ passed, failed, skipped int }

func newConsole(marker string) *console {
	return &console{marker: marker, status: map[string]int{}, lastMsg: map[string]string{}}
}

// line processes one line of console output (without its line ending) and
// returns what to show the user, if anything: markers become short readable
// lines, other lines are shown unchanged.
func (c *console) line(s string) (string, bool) {
	if strings.Contains(s, "Kernel panic - not syncing") {
		c.panicked = true
	}
	i := strings.Index(s, c.marker)
	if i < 0 {
		c.countTest(s)
		return s, true
	}
	before := s[:i]
	kind, arg, _ := strings.Cut(s[i+len(c.marker):], " ")
	var show string
	switch kind {
	case "init":
		c.initSeen, c.initUptime = true, arg
		show = fmt.Sprintf("vmtest: /init started %ss after boot", arg)
	case "kernel":
		c.kernel = arg
		show = "vmtest: guest kernel " + arg
	case "lsm":
		c.lsm = arg
		show = "vmtest: guest LSMs " + arg
	case "start":
		c.current = arg
		show = "vmtest: === " + arg
	case "exit":
		name, code, _ := strings.Cut(arg, " ")
		n, err := strconv.Atoi(code)
		if err != nil {
			return s, true
		}
		c.status[name] = n
		c.order = append(c.order, name)
		c.current = ""
		show = fmt.Sprintf("vmtest: === %s exited with status %d", name, n)
	case "mountfail":
		c.mountErrs = append(c.mountErrs, arg)
		show = "vmtest: could not mount the shared directory " + arg
	case "done":
		c.done = true
		return before, before != ""
	default:
		return s, true
	}
	if before != "" {
		return before + "\n" + show, true
	}
	return show, true
}

// countTest counts a top-level (unindented) result line of go test -v and
// records every result line, subtests' too.
func (c *console) countTest(s string) {
	if m := testNameLine.FindStringSubmatch(s); m != nil {
		c.running = m[1]
	} else if m := testMsgLine.FindStringSubmatch(s); m != nil && c.running != "" && c.current != "" {
		c.lastMsg[c.running] = m[1]
	}
	if m := resultLine.FindStringSubmatch(s); m != nil && c.current != "" {
		// Without -test.v a failed test's messages follow its result line.
		c.running = m[2]
		elapsed, _ := strconv.ParseFloat(m[3], 64) // the pattern admits only a number
		c.results = append(c.results, testResult{bin: c.current, action: strings.ToLower(m[1]), test: m[2], elapsed: elapsed})
	}
	switch {
	case strings.HasPrefix(s, "--- PASS: "):
		c.tests.passed++
	case strings.HasPrefix(s, "--- FAIL: "):
		c.tests.failed++
	case strings.HasPrefix(s, "--- SKIP: "):
		c.tests.skipped++
	}
}

// hasBPF reports whether the guest's LSM list includes bpf.
func (c *console) hasBPF() bool {
	for _, l := range strings.Split(c.lsm, ",") {
		if l == "bpf" {
			return true
		}
	}
	return false
}

// failures are the lines that name each failed test, deepest subtests
// only (a parent fails with them), with the last message it printed,
// for the closing lines a CI log's tail shows: at most max of them,
// then how many more.
func (c *console) failures(max int) []string {
	var failed []testResult
	for _, r := range c.results {
		if r.action == "fail" {
			failed = append(failed, r)
		}
	}
	var out []string
	n := 0
	for _, r := range failed {
		parent := false
		for _, o := range failed {
			if o.bin == r.bin && strings.HasPrefix(o.test, r.test+"/") {
				parent = true
			}
		}
		if parent {
			continue
		}
		if n++; n > max {
			continue
		}
		line := fmt.Sprintf("vmtest: failed: %s (%s, %.1fs)", r.test, r.bin, r.elapsed)
		if m := c.lastMsg[r.test]; m != "" {
			if len(m) > 200 {
				m = m[:200] + "..."
			}
			line += ": " + m
		}
		out = append(out, line)
	}
	if n > max {
		out = append(out, fmt.Sprintf("vmtest: failed: %d more", n-max))
	}
	return out
}
