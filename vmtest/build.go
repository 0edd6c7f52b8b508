package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
)

// goPackage is what vmtest needs to know of a package from `go list`.
type goPackage struct {
	ImportPath   string
	Dir          string
	Name         string
	TestGoFiles  []string
	XTestGoFiles []string
	Module       *struct{ Dir string }
}

func goList(ctx context.Context, patterns ...string) ([]goPackage, error) {
	args := append([]string{"list", "-e", "-json=ImportPath,Dir,Name,TestGoFiles,XTestGoFiles,Module"}, patterns...)
	cmd := exec.CommandContext(ctx, "go", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list %s: %w\n%s", strings.Join(patterns, " "), err, stderr.Bytes())
	}
	var pkgs []goPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p goPackage
		if err := dec.Decode(&p); err != nil {
			return nil, fmt.Errorf("go list output: %w", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs, nil
}

// lsmTestMarkers are the strings whose presence in a package's test files
// makes it a package that vmtest runs by default: tests that need BPF LSM,
// which only the VM can give. Tests that need only root or cgroups run on the
// host, which is ten times faster than the emulated guest.
var lsmTestMarkers = []string{"testutil.SkipUnlessLSM", "AIGATE_REQUIRE_LSM"}

// defaultPackages returns the module's packages whose tests need BPF LSM.
func defaultPackages(ctx context.Context) ([]goPackage, error) {
	all, err := goList(ctx, "./...")
	if err != nil {
		return nil, err
	}
	var pkgs []goPackage
	for _, p := range all {
		if strings.HasSuffix(p.ImportPath, "/vmtest") || strings.Contains(p.ImportPath, "/vmtest/") {
			continue
		}
		if needsLSM(p) {
			pkgs = append(pkgs, p)
		}
	}
	return pkgs, nil
}

func needsLSM(p goPackage) bool {
	for _, f := range append(append([]string{}, p.TestGoFiles...), p.XTestGoFiles...) {
		data, err := os.ReadFile(filepath.Join(p.Dir, f))
		if err != nil {
			continue
		}
		for _, m := range lsmTestMarkers {
			if bytes.Contains(data, []byte(m)) {
				return true
			}
		}
	}
	return false
}

// testName gives each package a short unique name for its test binary.
func testNames(pkgs []goPackage) []string {
	names := make([]string, len(pkgs))
	seen := map[string]int{}
	for i, p := range pkgs {
		name := path.Base(p.ImportPath)
		seen[name]++
		if seen[name] > 1 {
			name = fmt.Sprintf("%s%d", name, seen[name])
		}
		names[i] = name
	}
	return names
}

// buildTest compiles a package's tests into a static binary.
func buildTest(ctx context.Context, p goPackage, out string, tags string, log io.Writer) error {
	args := []string{"test", "-c", "-o", out}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	args = append(args, p.ImportPath)
	return goBuild(ctx, args, out, log)
}

// buildBinary compiles a main package into a static binary.
func buildBinary(ctx context.Context, pkg string, out string, tags string, log io.Writer) error {
	args := []string{"build", "-o", out}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	args = append(args, pkg)
	return goBuild(ctx, args, out, log)
}

func goBuild(ctx context.Context, args []string, out string, log io.Writer) error {
	cmd := exec.CommandContext(ctx, "go", args...)
	// Static: the guest has no libc.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Stdout = log
	cmd.Stderr = log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
	}
	if _, err := os.Stat(out); err != nil {
		// `go test -c` on a package without tests succeeds and writes nothing.
		return fmt.Errorf("go %s wrote no binary (no test files?)", strings.Join(args, " "))
	}
	return nil
}
