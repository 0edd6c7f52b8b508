package testutil

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestNoHiddenSkips: a test that skips by itself (t.Skip, t.Skipf,
// t.SkipNow) passes silently in CI when the kernel or the machine lacks
// what it needs. Kernel and environment skips go through SkipUnlessKernel,
// SkipUnlessLSM, RequireRoot or HostOnly, which CI turns into failures.
// The few skips that are right as they are (a -short run, a pid that the
// kernel handed out again, a fixture of vmtest's own tests) say why in a
// "skip-ok:" comment on the line before.
func TestNoHiddenSkips(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	skip := regexp.MustCompile(`\.Skip(f|Now)?\(`)
	checked := 0
	err = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "bin") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, "_test.go") || path == filepath.Join(root, "internal", "testutil", "skips_test.go") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		checked++
		lines := strings.Split(string(data), "\n")
		for i, l := range lines {
			if !skip.MatchString(l) || strings.HasPrefix(strings.TrimSpace(l), "//") {
				continue
			}
			if strings.Contains(l, "skip-ok:") || (i > 0 && strings.Contains(lines[i-1], "skip-ok:")) {
				continue
			}
			rel, _ := filepath.Rel(root, path)
			t.Errorf("%s:%d skips by itself: use testutil.SkipUnlessKernel (or SkipUnlessLSM, RequireRoot, HostOnly), or say why CI may skip it in a \"skip-ok:\" comment on the line before", rel, i+1)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 50 {
		t.Fatalf("only %d test files found under %s: the walk is broken", checked, root)
	}
}
