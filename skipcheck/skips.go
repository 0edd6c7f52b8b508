package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// event is the part of a `go test -json` line the check reads. vmtest
// --json writes the same fields for the guest's tests.
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

// test names one test or subtest of one package.
type test struct{ pkg, name string }

func (t test) String() string { return t.pkg + " " + t.name }

// outcomes is what each environment's log says of each test.
type outcomes map[test]map[string]string // test -> environment -> pass, fail or skip

// read adds the results of one environment's log. Lines that are not JSON
// (a build error, vmtest's own lines) are ignored.
func (o outcomes) read(env string, r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var e event
		if json.Unmarshal(line, &e) != nil || e.Test == "" {
			continue
		}
		switch e.Action {
		case "pass", "fail", "skip":
		default:
			continue
		}
		k := test{e.Package, e.Test}
		if o[k] == nil {
			o[k] = map[string]string{}
		}
		// A test run twice (-count) ran if either run did.
		if prev := o[k][env]; prev == "" || prev == "skip" {
			o[k][env] = e.Action
		}
	}
	return sc.Err()
}

// skippedEverywhere lists the tests that skipped in every environment
// that saw them and ran in none, sorted.
func (o outcomes) skippedEverywhere() []test {
	var out []test
	for k, envs := range o {
		ran := false
		for _, a := range envs {
			if a != "skip" {
				ran = true
			}
		}
		if !ran {
			out = append(out, k)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// allowEntry is one line of the allowlist: a test that may skip everywhere,
// and why.
type allowEntry struct {
	test   test
	reason string
	line   int
}

// readAllow parses the allowlist: one test a line, as
//
//	<package> <test>: <reason>
//
// with blank lines and #-comments ignored. Every entry needs a reason.
func readAllow(path string) ([]allowEntry, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the allowlist: %w", err)
	}
	var out []allowEntry
	seen := map[test]int{}
	for i, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		head, reason, ok := strings.Cut(l, ": ")
		fields := strings.Fields(head)
		if !ok || len(fields) != 2 || strings.TrimSpace(reason) == "" {
			return nil, fmt.Errorf("%s:%d: want `<package> <test>: <why no environment runs it>`, got %q", path, i+1, l)
		}
		k := test{fields[0], fields[1]}
		if prev, dup := seen[k]; dup {
			return nil, fmt.Errorf("%s:%d: %s is listed already on line %d", path, i+1, k, prev)
		}
		seen[k] = i + 1
		out = append(out, allowEntry{test: k, reason: strings.TrimSpace(reason), line: i + 1})
	}
	return out, nil
}

// problems compares the tests skipped everywhere with the allowlist: a
// test skipped everywhere and not allowed is one problem, and so is an
// allowed entry that ran somewhere or was not seen (the list went stale).
func problems(o outcomes, allow []allowEntry, allowPath string) []string {
	allowed := map[test]bool{}
	for _, a := range allow {
		allowed[a.test] = true
	}
	var out []string
	for _, k := range o.skippedEverywhere() {
		if !allowed[k] {
			out = append(out, fmt.Sprintf("%s: skipped in every environment (%s), so nothing tests it: make one run it, or add it to %s with the reason", k, envList(o[k]), allowPath))
		}
	}
	for _, a := range allow {
		envs, seen := o[a.test]
		switch {
		case !seen:
			out = append(out, fmt.Sprintf("%s:%d: %s is in no log: remove it (renamed or deleted?)", allowPath, a.line, a.test))
		default:
			for env, res := range envs {
				if res != "skip" {
					out = append(out, fmt.Sprintf("%s:%d: %s ran in %s: remove it from the list", allowPath, a.line, a.test, env))
					break
				}
			}
		}
	}
	return out
}

func envList(m map[string]string) string {
	var envs []string
	for e := range m {
		envs = append(envs, e)
	}
	sort.Strings(envs)
	return strings.Join(envs, ", ")
}
