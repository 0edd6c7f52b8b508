package config

import (
	"errors"
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

// WriteFileAtomicIf whose check fails leaves the file as it is, no
// temporary file beside it, and returns the check's error.
func TestWriteFileAtomicIfCheckFails(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, ".claude.json")
	if err := os.WriteFile(path, []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	changed := errors.New("changed")
	if err := WriteFileAtomicIf(path, []byte(`{"a": 1}`), 0o600, nil, func() error { return changed }); !errors.Is(err, changed) {
		t.Fatalf("WriteFileAtomicIf = %v, want the check's error", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("left behind: %v", ents)
	}
	if b, _ := os.ReadFile(path); string(b) != "{}\n" {
		t.Errorf("file changed: %q", b)
	}
	if err := WriteFileAtomicIf(path, []byte(`{"a": 1}`), 0o600, nil, func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != `{"a": 1}` {
		t.Errorf("file not written: %q", b)
	}
}
