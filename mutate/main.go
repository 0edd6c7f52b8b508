// Command mutate checks that the tests notice a broken security check. Each
// file in mutate/breaks/ describes one deliberate break (an exact piece of
// code and what to replace it with) and the tests that must catch it. For
// each break, one at a time, mutate copies the repository, applies the
// break to the copy, runs those tests there, and counts the break as
// killed when they fail. A break that does not apply or does not compile
// is an error (the list has gone stale), not a kill. It exits non-zero when
// any break survives or is stale, and prints the kill rate.
//
//	go run ./mutate [-list] [-run REGEXP] [-tier ci|all]
//
// Run it as root with the kernel tests' environment: most breaks are caught
// only by kernel tests (see mutate/README.md).
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// A break is one file of mutate/breaks/:
//
//	# Why this check matters (comment lines, any number).
//	file: internal/agent/conn.go
//	test: ./internal/escape/ -run ^TestEscapeNestedRun$
//	tier: ci
//	generate: true          (optional: rebuild the BPF objects after the edit)
//	--- old
//	exact lines of the product code
//	+++ new
//	what they become
//
// "old" must occur exactly once in file. Several test lines may be given;
// the break is killed when any of them fails.
type brk struct {
	name     string
	file     string
	tests    [][]string
	tier     string
	generate bool
	old, new string
}

func main() {
	list := flag.Bool("list", false, "list the breaks and exit")
	run := flag.String("run", "", "only the breaks whose name matches this regular expression")
	tier := flag.String("tier", "all", "ci: only the breaks marked tier: ci; all: every break")
	timeout := flag.Duration("timeout", 10*time.Minute, "limit for the tests of one break")
	flag.Parse()
	if err := mainErr(*list, *run, *tier, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "mutate:", err)
		os.Exit(1)
	}
}

func mainErr(list bool, run, tier string, timeout time.Duration) error {
	root, err := repoRoot()
	if err != nil {
		return err
	}
	breaks, err := load(filepath.Join(root, "mutate", "breaks"))
	if err != nil {
		return err
	}
	var re *regexp.Regexp
	if run != "" {
		if re, err = regexp.Compile(run); err != nil {
			return fmt.Errorf("-run: %w", err)
		}
	}
	var chosen []brk
	for _, b := range breaks {
		if (re == nil || re.MatchString(b.name)) && (tier == "all" || b.tier == tier) {
			chosen = append(chosen, b)
		}
	}
	if list {
		for _, b := range chosen {
			fmt.Printf("%-40s %-4s %s\n", b.name, b.tier, b.file)
		}
		return nil
	}
	if len(chosen) == 0 {
		return errors.New("no break matches")
	}

	work, err := os.MkdirTemp("", "aigate-mutate-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if err := copyTree(root, work); err != nil {
		return fmt.Errorf("copy the repository: %w", err)
	}

	var killed, survived, stale []string
	for _, b := range chosen {
		start := time.Now()
		verdict, detail := try(work, b, timeout)
		fmt.Printf("%-9s %-40s %5.1fs %s\n", verdict, b.name, time.Since(start).Seconds(), detail)
		switch verdict {
		case "killed":
			killed = append(killed, b.name)
		case "SURVIVED":
			survived = append(survived, b.name)
		default:
			stale = append(stale, b.name)
		}
	}
	total := len(killed) + len(survived)
	if total > 0 {
		fmt.Printf("kill rate: %d/%d (%.0f%%)\n", len(killed), total, 100*float64(len(killed))/float64(total))
	}
	switch {
	case len(survived) > 0:
		return fmt.Errorf("breaks the tests did not notice: %s", strings.Join(survived, ", "))
	case len(stale) > 0:
		return fmt.Errorf("breaks that no longer apply or build (update mutate/breaks/): %s", strings.Join(stale, ", "))
	}
	return nil
}

// try applies b in work, runs its tests and restores the file.
func try(work string, b brk, timeout time.Duration) (verdict, detail string) {
	path := filepath.Join(work, b.file)
	orig, err := os.ReadFile(path)
	if err != nil {
		return "STALE", err.Error()
	}
	if n := bytes.Count(orig, []byte(b.old)); n != 1 {
		return "STALE", fmt.Sprintf("the old text occurs %d times in %s, want once", n, b.file)
	}
	mutated := bytes.Replace(orig, []byte(b.old), []byte(b.new), 1)
	if err := os.WriteFile(path, mutated, 0o644); err != nil {
		return "STALE", err.Error()
	}
	restore := func() error { return os.WriteFile(path, orig, 0o644) }
	defer func() {
		_ = restore()
		if b.generate {
			_, _ = command(work, timeout, "make", "generate")
		}
	}()
	if b.generate {
		if out, err := command(work, timeout, "make", "generate"); err != nil {
			return "STALE", "make generate: " + lastLines(out, 5)
		}
	}
	for _, args := range b.tests {
		pkgs := packages(args)
		if out, err := command(work, timeout, "go", append([]string{"test", "-count=1", "-run", "^$"}, pkgs...)...); err != nil {
			return "STALE", "does not build: " + lastLines(out, 5)
		}
		out, err := command(work, timeout, "go", append([]string{"test", "-count=1"}, args...)...)
		if err != nil {
			return "killed", "by " + strings.Join(args, " ") + ": " + firstFailure(out)
		}
	}
	return "SURVIVED", ""
}

// packages returns the package arguments of a go test command line.
func packages(args []string) []string {
	var pkgs []string
	for _, a := range args {
		if strings.HasPrefix(a, "./") {
			pkgs = append(pkgs, a)
		}
	}
	return pkgs
}

func command(dir string, timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func firstFailure(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "--- FAIL") {
			return strings.TrimSpace(l)
		}
	}
	return lastLines(out, 1)
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, " | ")
}

func load(dir string) ([]brk, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.txt"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var out []brk
	for _, f := range files {
		b, err := parse(f)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

func parse(path string) (brk, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return brk{}, err
	}
	b := brk{name: strings.TrimSuffix(filepath.Base(path), ".txt"), tier: "all"}
	var section string
	var old, new []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	line := 0
	for sc.Scan() {
		line++
		l := sc.Text()
		switch {
		case l == "--- old":
			section = "old"
			continue
		case l == "+++ new":
			section = "new"
			continue
		case section == "old":
			old = append(old, l)
			continue
		case section == "new":
			new = append(new, l)
			continue
		case strings.HasPrefix(l, "#") || strings.TrimSpace(l) == "":
			continue
		}
		k, v, ok := strings.Cut(l, ":")
		v = strings.TrimSpace(v)
		switch {
		case !ok:
			return brk{}, fmt.Errorf("%s:%d: want key: value, --- old or +++ new", path, line)
		case k == "file":
			b.file = v
		case k == "test":
			b.tests = append(b.tests, strings.Fields(v))
		case k == "tier":
			b.tier = v
		case k == "generate":
			b.generate = v == "true"
		default:
			return brk{}, fmt.Errorf("%s:%d: unknown key %q (file, test, tier, generate)", path, line, k)
		}
	}
	b.old, b.new = strings.Join(old, "\n"), strings.Join(new, "\n")
	switch {
	case b.file == "" || len(b.tests) == 0:
		return brk{}, fmt.Errorf("%s: a break needs file: and test:", path)
	case b.old == "" || b.old == b.new:
		return brk{}, fmt.Errorf("%s: a break needs a --- old section and a different +++ new one", path)
	case b.tier != "ci" && b.tier != "all":
		return brk{}, fmt.Errorf("%s: tier %q: want ci or all", path, b.tier)
	}
	return b, nil
}

func repoRoot() (string, error) {
	out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		return "", fmt.Errorf("find the repository (run mutate inside it): %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// copyTree copies the repository's working tree (what git tracks or would
// track, as it is now) into dst.
func copyTree(root, dst string) error {
	out, err := exec.Command("git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		return err
	}
	for _, rel := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		src := filepath.Join(root, rel)
		fi, err := os.Lstat(src)
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted, not yet committed
		}
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		data, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(to, data, fi.Mode().Perm()); err != nil {
			return err
		}
	}
	return nil
}
