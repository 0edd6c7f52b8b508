package config

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A sandbox's fanotify or LSM check refuses the open of the temporary file
// after the kernel created it; the write must fail and leave no file.
func TestRefusedWriteLeavesNoTempFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte("net: deny\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	openFile = func(name string, flag int, perm os.FileMode) (*os.File, error) {
		f, err := os.OpenFile(name, flag, perm)
		if err != nil {
			return nil, err
		}
		f.Close()
		return nil, &os.PathError{Op: "open", Path: name, Err: syscall.EPERM}
	}
	t.Cleanup(func() { openFile = os.OpenFile })

	err := WriteFileAtomic(path, []byte("net: allow\n"), 0o644, nil)
	if err == nil || !strings.Contains(err.Error(), "operation not permitted") {
		t.Fatalf("WriteFileAtomic = %v, want the refusal", err)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.Name() != "config.yaml" {
			t.Errorf("left behind: %s", e.Name())
		}
	}
	if b, _ := os.ReadFile(path); string(b) != "net: deny\n" {
		t.Errorf("file changed: %q", b)
	}
}
