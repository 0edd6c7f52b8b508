package mountinfo

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	data := `27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
25 24 0:23 / /dev/shm rw,nosuid,nodev,noexec - tmpfs tmpfs rw,size=4k
28 27 0:25 / /mnt/my\040disk ro,nosuid master:1 shared:2 - tmpfs none ro,size=4k
`
	ms, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 3 {
		t.Fatalf("got %d mounts, want 3: %+v", len(ms), ms)
	}
	root, shm, disk := ms[0], ms[1], ms[2]
	if root.Major != 254 || root.Minor != 0 || root.Point != "/" || root.FSType != "ext4" || root.Has("noexec") || root.SuperHas("ro") {
		t.Errorf("root: %+v", root)
	}
	if !shm.Has("noexec") || shm.Point != "/dev/shm" || shm.Minor != 23 {
		t.Errorf("shm: %+v", shm)
	}
	if disk.Point != "/mnt/my disk" || !disk.SuperHas("ro") || !disk.Has("ro") || disk.Has("noexec") {
		t.Errorf("disk: %+v", disk)
	}
}

func TestParseBadLine(t *testing.T) {
	ms, err := Parse("27 1 254:0 / / rw\n25 24 0:23 / /dev/shm rw - tmpfs tmpfs rw\n")
	if err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("err = %v, want one naming line 1", err)
	}
	if len(ms) != 1 || ms[0].Point != "/dev/shm" {
		t.Fatalf("mounts %+v, want the good line's", ms)
	}
	if _, err := Parse("27 1 x / / rw - ext4 /dev/vda rw\n"); err == nil {
		t.Fatal("a device that is not major:minor parsed")
	}
}

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{`a\040b`: "a b", `a\134b`: `a\b`, `end\04`: `end\04`, `plain`: "plain", `\011`: "\t"} {
		if got := Unescape(in); got != want {
			t.Errorf("Unescape(%q) = %q, want %q", in, got, want)
		}
	}
}
