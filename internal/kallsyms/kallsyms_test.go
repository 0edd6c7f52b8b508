package kallsyms

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAddr(t *testing.T) {
	for _, tc := range []struct {
		name, listing string
		want          uint64
		err           error  // errors.Is
		errText       string // or a substring
	}{
		{name: "listed", listing: "ffffffff81000000 T _stext\nffffffff82a0b040 D rename_lock\n", want: 0xffffffff82a0b040},
		{name: "zeroed", listing: "0000000000000000 T _stext\n0000000000000000 D rename_lock\n", err: ErrHidden},
		{name: "absent", listing: "ffffffff81000000 T _stext\n", err: ErrMissing},
		{name: "a module's only", listing: "ffffffffc0000000 d rename_lock\t[some_mod]\n", err: ErrMissing},
		{name: "a longer name", listing: "ffffffff82a0b040 D rename_lock_x\n", err: ErrMissing},
		{name: "empty", listing: "", err: ErrMissing},
		{name: "twice the same", listing: "ffffffff82a0b040 D rename_lock\nffffffff82a0b040 D rename_lock\n", want: 0xffffffff82a0b040},
		{name: "twice apart", listing: "ffffffff82a0b040 D rename_lock\nffffffff82a0b080 d rename_lock\n", errText: "listed twice"},
		{name: "bad address", listing: "zz D rename_lock\n", errText: "line 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Addr(strings.NewReader(tc.listing), "rename_lock")
			switch {
			case tc.err != nil && !errors.Is(err, tc.err):
				t.Fatalf("err %v, want %v", err, tc.err)
			case tc.errText != "" && (err == nil || !strings.Contains(err.Error(), tc.errText)):
				t.Fatalf("err %v, want one saying %q", err, tc.errText)
			case tc.err == nil && tc.errText == "" && err != nil:
				t.Fatal(err)
			case got != tc.want:
				t.Fatalf("addr %#x, want %#x", got, tc.want)
			}
		})
	}
}

func TestLookupNamesTheFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "kallsyms")
	if _, err := Lookup(p, "rename_lock"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	os.WriteFile(p, []byte("0000000000000000 D rename_lock\n"), 0o644)
	if _, err := Lookup(p, "rename_lock"); !errors.Is(err, ErrHidden) || !strings.Contains(err.Error(), p) {
		t.Fatalf("zeroed: %v, want ErrHidden naming %s", err, p)
	}
}
