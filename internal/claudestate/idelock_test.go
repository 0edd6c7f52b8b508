package claudestate

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestIDELockPort(t *testing.T) {
	for name, want := range map[string]uint16{
		"12345.lock": 12345, "1.lock": 1, "65535.lock": 65535,
		"65536.lock": 0, "0.lock": 0, "01234.lock": 0, ".lock": 0, "12345": 0,
		"12345.lock.tmp": 0, "+123.lock": 0, "12a.lock": 0, "123456.lock": 0,
	} {
		got, ok := IDELockPort(name)
		if got != want || ok != (want != 0) {
			t.Errorf("IDELockPort(%q) = %d, %v; want %d", name, got, ok, want)
		}
	}
}

func TestIDELocks(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"4000.lock", "5000.lock", "x.lock", "6000.lock.tmp"} {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got, err := IDELocks(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []IDELock{{4000, filepath.Join(dir, "4000.lock")}, {5000, filepath.Join(dir, "5000.lock")}}
	if !slices.Equal(got, want) {
		t.Errorf("IDELocks = %v, want %v", got, want)
	}
	if got, err := IDELocks(filepath.Join(dir, "missing")); err != nil || got != nil {
		t.Errorf("missing directory: %v, %v", got, err)
	}
}
