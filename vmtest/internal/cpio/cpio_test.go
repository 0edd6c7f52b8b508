package cpio

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/testutil"
)

func sample(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf)
	steps := []error{
		w.Dir("etc", 0o755, 0, 0),
		w.Dir("home/alice", 0o700, 1000, 1000),
		w.File("etc/passwd", 0o644, []byte("root:x:0:0::/root:/bin/sh\n")),
		w.File("empty", 0o600, nil),
		w.File("odd", 0o755, []byte("abcde")), // data length not a multiple of 4
		w.Symlink("bin/sh", "/bin/busybox"),
		w.CharDev("dev/console", 0o600, 5, 1),
		w.Close(),
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	data := sample(t)
	if len(data)%4 != 0 {
		t.Errorf("archive length %d not 4-aligned", len(data))
	}
	type entry struct {
		name       string
		mode       uint32
		uid, gid   uint32
		major, min uint32
		data       string
	}
	want := []entry{
		{"etc", TypeDir | 0o755, 0, 0, 0, 0, ""},
		{"home/alice", TypeDir | 0o700, 1000, 1000, 0, 0, ""},
		{"etc/passwd", TypeReg | 0o644, 0, 0, 0, 0, "root:x:0:0::/root:/bin/sh\n"},
		{"empty", TypeReg | 0o600, 0, 0, 0, 0, ""},
		{"odd", TypeReg | 0o755, 0, 0, 0, 0, "abcde"},
		{"bin/sh", TypeSymlink | 0o777, 0, 0, 0, 0, "/bin/busybox"},
		{"dev/console", TypeChar | 0o600, 0, 0, 5, 1, ""},
	}
	r := NewReader(bytes.NewReader(data))
	for _, w := range want {
		h, err := r.Next()
		if err != nil {
			t.Fatalf("next (want %s): %v", w.name, err)
		}
		body, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("read %s: %v", h.Name, err)
		}
		got := entry{h.Name, h.Mode, h.UID, h.GID, h.Major, h.Minor, string(body)}
		if got != w {
			t.Errorf("entry = %+v, want %+v", got, w)
		}
	}
	if h, err := r.Next(); err != io.EOF {
		t.Errorf("after last entry: %+v, %v; want io.EOF at the trailer", h, err)
	}
}

// TestGNUCpioReads checks the archive against an independent reader, GNU
// cpio, by listing it and extracting it.
func TestGNUCpioReads(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		testutil.SkipUnlessKernel(t, "GNU cpio not installed (apt-get install cpio)")
	}
	data := sample(t)
	list := exec.Command("cpio", "-itv", "--quiet", "--numeric-uid-gid")
	list.Stdin = bytes.NewReader(data)
	out, err := list.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -itv: %v\n%s", err, out)
	}
	for _, want := range []string{"drwx------", "1000", "bin/sh -> /bin/busybox", "crw-------", "5,   1", "etc/passwd"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("cpio -itv output lacks %q:\n%s", want, out)
		}
	}

	// Extract everything but the device node (creating it needs privileges
	// the test may not have).
	dir := t.TempDir()
	x := exec.Command("cpio", "-id", "--quiet", "--no-absolute-filenames", "etc/*", "odd", "empty", "bin/sh")
	x.Dir = dir
	x.Stdin = bytes.NewReader(data)
	if out, err := x.CombinedOutput(); err != nil {
		t.Fatalf("cpio -id: %v\n%s", err, out)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "odd")); string(got) != "abcde" {
		t.Errorf("odd = %q", got)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "etc/passwd")); !strings.HasPrefix(string(got), "root:x:0:0") {
		t.Errorf("etc/passwd = %q", got)
	}
	if got, _ := os.Readlink(filepath.Join(dir, "bin/sh")); got != "/bin/busybox" {
		t.Errorf("bin/sh -> %q", got)
	}
	st, err := os.Stat(filepath.Join(dir, "odd"))
	if err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("odd mode = %v, %v; want 0755", st.Mode(), err)
	}
}

func TestSizeIsEnforced(t *testing.T) {
	w := NewWriter(io.Discard)
	if err := w.WriteHeader(&Header{Name: "f", Mode: TypeReg | 0o644, Size: 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("four")); err == nil {
		t.Error("writing past the entry size succeeded")
	}
	if _, err := w.Write([]byte("ab")); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteHeader(&Header{Name: "g", Mode: TypeReg | 0o644}); err == nil {
		t.Error("starting an entry with 1 byte of the previous one missing succeeded")
	}
	if err := w.Close(); err == nil {
		t.Error("closing with 1 byte missing succeeded")
	}
}

func TestSpecialBits(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	if err := w.Dir("tmp", 0o777|os.ModeSticky, 0, 0); err != nil {
		t.Fatal(err)
	}
	w.Close()
	h, err := NewReader(&buf).Next()
	if err != nil {
		t.Fatal(err)
	}
	if h.Mode != TypeDir|0o1777 {
		t.Errorf("mode = %o, want %o", h.Mode, TypeDir|0o1777)
	}
}
