package claudejson

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeFile is Restore's write without a rename: the check, then the write.
func writeFile(path string, data []byte, unchanged func() error) error {
	if err := unchanged(); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o600)
}

// TestGuardRestore: the guarded keys are merged back and the other
// changes stay; a broken file gets the recorded one back whole, the broken
// one kept beside it; a removed file is put back; no change, no undo.
func TestGuardRestore(t *testing.T) {
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name, after string // "" after: the file is removed
		keys        string // the undo's What(); "" for none
		want        string
	}{
		{"unchanged", before, "", before},
		{"other keys", strings.Replace(before, `"numStartups": 3`, `"numStartups": 4`, 1) + "",
			"", strings.Replace(before, `"numStartups": 3`, `"numStartups": 4`, 1)},
		{"server and startups", strings.NewReplacer(`"numStartups": 3`, `"numStartups": 4`,
			`"docs": {`, `"evil": {"command": "id"}, "docs": {`).Replace(before),
			"mcpServers", strings.Replace(before, `"numStartups": 3`, `"numStartups": 4`, 1)},
		{"broken", `{"mcpServers": {"ev`, "the whole file (no longer valid JSON; the broken one is ", before},
		{"removed", "", "the whole file (removed inside)", before},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), ".claude.json")
			if err := os.WriteFile(path, []byte(before), 0o600); err != nil {
				t.Fatal(err)
			}
			g := Read(path, []string{"/home/u/p"})
			if tc.after == "" {
				os.Remove(path)
			} else if err := os.WriteFile(path, []byte(tc.after), 0o600); err != nil {
				t.Fatal(err)
			}
			undo, err := g.Restore(now, writeFile)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.keys == "" && undo != nil:
				t.Errorf("undid %q, want nothing", undo.What())
			case tc.keys != "" && (undo == nil || !strings.HasPrefix(undo.What(), tc.keys)):
				t.Errorf("undo %+v, want %q", undo, tc.keys)
			}
			got, _ := os.ReadFile(path)
			if string(got) != tc.want {
				t.Errorf("file:\n%s\nwant\n%s", got, tc.want)
			}
			if tc.name == "broken" {
				aside, _ := os.ReadFile(path + ".replaced-20261206T100000")
				if string(aside) != tc.after {
					t.Errorf("the broken file was not kept aside: %q", aside)
				}
			}
		})
	}
}

// TestGuardNoFileBefore: without a file at start, a new one with a
// server loses the server, and a broken one is left alone (claude reads
// nothing there, and there is nothing to put back).
func TestGuardNoFileBefore(t *testing.T) {
	path := filepath.Join(t.TempDir(), ".claude.json")
	g := Read(path, nil)
	if err := os.WriteFile(path, []byte("{\n  \"mcpServers\": {\"e\": {\"command\": \"id\"}},\n  \"userID\": \"x\"\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	undo, err := g.Restore(time.Now(), writeFile)
	if err != nil || undo == nil || undo.What() != "mcpServers" {
		t.Fatalf("undo %+v, %v", undo, err)
	}
	if got, _ := os.ReadFile(path); string(got) != "{\n  \"userID\": \"x\"\n}\n" {
		t.Errorf("file:\n%s", got)
	}
	if err := os.WriteFile(path, []byte("{broken"), 0o600); err != nil {
		t.Fatal(err)
	}
	if undo, err := g.Restore(time.Now(), writeFile); undo != nil || err != nil {
		t.Errorf("undo %+v, %v for a broken file with none before", undo, err)
	}
}

// TestGuardRestoreConcurrentWrite: a write of claude's or the user's
// outside between Restore's read and its write is not lost under the
// merged file: Restore reads again and merges into that. A file that
// changes at every try is given up on, unchanged, with ErrChanged.
func TestGuardRestoreConcurrentWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), ".claude.json")
	if err := os.WriteFile(path, []byte(before), 0o600); err != nil {
		t.Fatal(err)
	}
	g := Read(path, nil)
	planted := strings.Replace(before, `"docs": {`, `"evil": {"command": "id"}, "docs": {`, 1)
	if err := os.WriteFile(path, []byte(planted), 0o600); err != nil {
		t.Fatal(err)
	}
	user := strings.Replace(planted, `"numStartups": 3`, `"numStartups": 9`, 1)
	writes := 0
	undo, err := g.Restore(time.Now(), func(path string, data []byte, unchanged func() error) error {
		writes++
		if writes == 1 { // the user's write lands between the read and the rename
			if err := os.WriteFile(path, []byte(user), 0o600); err != nil {
				return err
			}
		}
		return writeFile(path, data, unchanged)
	})
	if err != nil || undo == nil || undo.What() != "mcpServers" {
		t.Fatalf("undo %+v, %v", undo, err)
	}
	want := strings.Replace(before, `"numStartups": 3`, `"numStartups": 9`, 1)
	if got, _ := os.ReadFile(path); string(got) != want || writes != 2 {
		t.Errorf("after %d writes:\n%s\nwant\n%s", writes, got, want)
	}

	if err := os.WriteFile(path, []byte(planted), 0o600); err != nil {
		t.Fatal(err)
	}
	writes = 0
	_, err = g.Restore(time.Now(), func(path string, data []byte, unchanged func() error) error {
		writes++
		if err := os.WriteFile(path, []byte(planted+strings.Repeat(" ", writes)), 0o600); err != nil {
			return err
		}
		return writeFile(path, data, unchanged)
	})
	if !errors.Is(err, ErrChanged) || writes != restoreTries {
		t.Errorf("a file that keeps changing: %v after %d tries, want ErrChanged after %d", err, writes, restoreTries)
	}
	if got, _ := os.ReadFile(path); !strings.Contains(string(got), "evil") {
		t.Errorf("a write was made over a file that kept changing:\n%s", got)
	}
}

// TestGuardRestoreMidWrite: a file read while it is being written in
// place (empty, half of it) is not taken for broken and replaced whole,
// which would lose what was being written: it is read again.
func TestGuardRestoreMidWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), ".claude.json")
	if err := os.WriteFile(path, []byte(before), 0o600); err != nil {
		t.Fatal(err)
	}
	g := Read(path, nil)
	user := strings.NewReplacer(`"numStartups": 3`, `"numStartups": 9`,
		`"docs": {`, `"evil": {"command": "id"}, "docs": {`).Replace(before)
	if err := os.WriteFile(path, []byte(user), 0o600); err != nil {
		t.Fatal(err)
	}
	reads := 0
	readFile = func(path string) ([]byte, error) {
		if reads++; reads == 1 {
			return []byte(user[:len(user)/2]), nil
		}
		return readBounded(path)
	}
	t.Cleanup(func() { readFile = readBounded })
	undo, err := g.Restore(time.Now(), writeFile)
	if err != nil || undo == nil || undo.What() != "mcpServers" {
		t.Fatalf("undo %+v, %v", undo, err)
	}
	want := strings.Replace(before, `"numStartups": 3`, `"numStartups": 9`, 1)
	if got, _ := os.ReadFile(path); string(got) != want {
		t.Errorf("file:\n%s\nwant\n%s", got, want)
	}
	if m, _ := filepath.Glob(path + ".replaced-*"); len(m) != 0 {
		t.Errorf("put aside as broken: %v", m)
	}
}
