// Command skipcheck finds the tests that no environment of CI runs: a test
// that skips on the host (no BPF LSM there) and in every VM kernel (a
// host-only tool missing) proves nothing, and each run alone looks green.
//
//	go run ./skipcheck record [-v] -o LOG -- go test -json ...
//	go run ./skipcheck check -allow skipcheck/allow.txt LOG...
//
// record runs a `go test -json` command, keeps its events in LOG and prints
// what go test would have printed without -json (everything with -v), so
// CI's log stays readable; it exits with the command's status. vmtest
// --json writes the same events for the tests run inside the guest.
//
// check reads the logs, one environment each (named after the file), and
// fails when a test or subtest skipped in every log that has it and ran
// in none, unless the allowlist names it with the reason; an allowlist
// entry that ran somewhere, or that no log has, fails too.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "record":
		var code int
		code, err = record(os.Args[2:], os.Stdout)
		if err == nil {
			os.Exit(code)
		}
	case "check":
		err = check(os.Args[2:], os.Stdout)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "skipcheck:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: skipcheck record [-v] -o LOG -- go test -json ...\n       skipcheck check -allow FILE LOG...")
	os.Exit(2)
}

// record runs the command after the flags, writes its standard output to
// the log and prints it as go test would without -json.
func record(args []string, stdout io.Writer) (int, error) {
	fs := flag.NewFlagSet("record", flag.ExitOnError)
	out := fs.String("o", "", "write the command's `go test -json` output to this file")
	verbose := fs.Bool("v", false, "print every line of output, as go test -v")
	fs.Parse(args)
	if *out == "" || fs.NArg() == 0 {
		usage()
	}
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		return 0, err
	}
	log, err := os.Create(*out)
	if err != nil {
		return 0, err
	}
	defer log.Close()
	cmd := exec.Command(fs.Arg(0), fs.Args()[1:]...)
	cmd.Stdin, cmd.Stderr = os.Stdin, os.Stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("run %s: %w", fs.Arg(0), err)
	}
	p := &printer{w: stdout, verbose: *verbose, held: map[string][]string{}}
	sc := bufio.NewScanner(pipe)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		fmt.Fprintln(log, sc.Text())
		p.line(sc.Text())
	}
	scanErr := sc.Err()
	err = cmd.Wait()
	for _, l := range p.failures() {
		fmt.Fprintln(stdout, l)
	}
	if scanErr != nil {
		return 0, fmt.Errorf("read the output of %s: %w", fs.Arg(0), scanErr)
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), nil
	}
	if err != nil {
		return 0, err
	}
	return 0, log.Close()
}

// printer turns go test -json events back into go test's plain output.
type printer struct {
	w       io.Writer
	verbose bool
	held    map[string][]string // a package's output, until it passes or fails
	failed  []test              // the tests and subtests that failed, in order
}

// failures are the closing lines that name each failed test, deepest
// subtests only (a parent fails with them): a CI log's tail shows them
// after the output of every package.
func (p *printer) failures() []string {
	var out []string
	for _, f := range p.failed {
		parent := false
		for _, o := range p.failed {
			if o.pkg == f.pkg && strings.HasPrefix(o.name, f.name+"/") {
				parent = true
			}
		}
		if !parent {
			out = append(out, fmt.Sprintf("skipcheck: failed: %s (%s)", f.name, f.pkg))
		}
	}
	return out
}

func (p *printer) line(s string) {
	var e struct {
		event
		Elapsed float64
	}
	if !strings.HasPrefix(s, "{") || json.Unmarshal([]byte(s), &e) != nil {
		fmt.Fprintln(p.w, s)
		return
	}
	if e.Action == "fail" && e.Test != "" {
		p.failed = append(p.failed, test{e.Package, e.Test})
	}
	switch {
	case e.Action == "build-output":
		fmt.Fprint(p.w, e.Output)
	case e.Action == "output" && p.verbose:
		fmt.Fprint(p.w, e.Output)
	case e.Action == "output":
		p.held[e.Package] = append(p.held[e.Package], e.Output)
	case e.Test == "" && (e.Action == "pass" || e.Action == "skip") && !p.verbose:
		// As go test without -v: one line per package, the output only
		// when it failed.
		for _, o := range p.held[e.Package] {
			if strings.HasPrefix(o, "ok ") || strings.HasPrefix(o, "?   ") {
				fmt.Fprint(p.w, o)
			}
		}
		delete(p.held, e.Package)
	case e.Test == "" && e.Action == "fail" && !p.verbose:
		for _, o := range p.held[e.Package] {
			fmt.Fprint(p.w, o)
		}
		delete(p.held, e.Package)
	}
}

// check reads the logs and the allowlist and reports the tests that no
// environment runs.
func check(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("check", flag.ExitOnError)
	allowPath := fs.String("allow", "skipcheck/allow.txt", "the `file` of tests that may skip everywhere, each with its reason")
	fs.Parse(args)
	if fs.NArg() == 0 {
		usage()
	}
	allow, err := readAllow(*allowPath)
	if err != nil {
		return err
	}
	o := outcomes{}
	for _, path := range fs.Args() {
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("%w (the run that writes it did not run or failed first: make check runs them all)", err)
		}
		env := strings.TrimSuffix(filepath.Base(path), ".json")
		err = o.read(env, f)
		f.Close()
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
	}
	if len(o) == 0 {
		return errors.New("no test results in the logs: were they written with go test -json (or vmtest --json)?")
	}
	bad := problems(o, allow, *allowPath)
	for _, b := range bad {
		fmt.Fprintln(stdout, "skipcheck:", b)
	}
	if len(bad) > 0 {
		return fmt.Errorf("%d problem(s) with tests that no environment runs", len(bad))
	}
	fmt.Fprintf(stdout, "skipcheck: %d tests and subtests in %d logs, each run somewhere (%d allowed to skip everywhere)\n", len(o), fs.NArg(), len(allow))
	return nil
}
