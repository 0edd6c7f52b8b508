//go:build linux

package resolve

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/aigate-dev/aigate/internal/policy"
	"golang.org/x/sys/unix"
)

func TestKernelDev(t *testing.T) {
	// 8:1 (sda1) in userspace encoding is 0x801; the kernel keeps 8<<20|1.
	if got, want := KernelDev(unix.Mkdev(8, 1)), uint64(8<<20|1); got != want {
		t.Fatalf("KernelDev = %#x, want %#x", got, want)
	}
	if got, want := KernelDev(unix.Mkdev(259, 70000)), uint64(259<<20|70000); got != want {
		t.Fatalf("KernelDev = %#x, want %#x", got, want)
	}
}

func TestPathsSkipsMissingAndResolvesLinks(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(secret, link); err != nil {
		t.Fatal(err)
	}
	set := policy.FileSet{Paths: []policy.Entry{
		{Value: link, Rule: 1},
		{Value: filepath.Join(dir, "missing"), Rule: 2},
		{Value: filepath.Join(secret, "below-a-file"), Rule: 3},
		{Value: dir, Rule: 4},
	}}
	files, err := Paths(set)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 {
		t.Fatalf("got %d files, want 2: %+v", len(files), files)
	}
	var st unix.Stat_t
	if err := unix.Stat(secret, &st); err != nil {
		t.Fatal(err)
	}
	if f := files[0]; f.Path != secret || f.Ino != st.Ino || f.Rule != 1 || f.IsDir {
		t.Errorf("link entry resolved to %+v", f)
	}
	if f := files[1]; !f.IsDir || f.Rule != 4 {
		t.Errorf("dir entry resolved to %+v", f)
	}
}

func TestExecutables(t *testing.T) {
	bin := t.TempDir()
	other := t.TempDir()
	write := func(p string) {
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Debian: /usr/bin/nc -> nc.openbsd in the same directory; the target's
	// own name is not "another name" of the program.
	write(filepath.Join(bin, "nc.openbsd"))
	if err := os.Symlink(filepath.Join(bin, "nc.openbsd"), filepath.Join(bin, "nc")); err != nil {
		t.Fatal(err)
	}
	// A link to a program outside the searched directories.
	write(filepath.Join(other, "ncat.bin"))
	if err := os.Symlink(filepath.Join(other, "ncat.bin"), filepath.Join(bin, "ncat")); err != nil {
		t.Fatal(err)
	}
	write(filepath.Join(bin, "curl"))
	write(filepath.Join(bin, "curly"))
	write(filepath.Join(bin, "ssh-keygen"))
	write(filepath.Join(bin, "git-ssh"))
	if err := os.Mkdir(filepath.Join(bin, "wget"), 0o755); err != nil {
		t.Fatal(err)
	}
	set := policy.FileSet{
		Names:      []policy.Entry{{Value: "nc", Rule: 1}, {Value: "curl", Rule: 2}, {Value: "wget", Rule: 3}, {Value: "ncat", Rule: 6}},
		NamePrefix: []policy.Entry{{Value: "ssh-", Rule: 4}},
		NameSuffix: []policy.Entry{{Value: "-ssh", Rule: 5}},
	}
	// bin listed twice: the same inode must be reported once.
	files := Executables(set, []string{bin, bin})
	got := map[string]policy.RuleID{}
	for _, f := range files {
		got[filepath.Base(f.Path)] = f.Rule
	}
	want := map[string]policy.RuleID{"nc.openbsd": 1, "curl": 2, "ssh-keygen": 4, "git-ssh": 5, "ncat.bin": 6}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: rule %d, want %d", k, got[k], v)
		}
	}
}

func TestDefaultExecDirs(t *testing.T) {
	got := DefaultExecDirs("/opt/bin:relative::/usr/bin")
	if got[len(got)-1] != "/opt/bin" {
		t.Fatalf("PATH dir not appended: %v", got)
	}
	for _, d := range got {
		if d == "relative" || d == "" {
			t.Fatalf("non-absolute dir kept: %v", got)
		}
	}
	if len(got) != 7 {
		t.Fatalf("duplicates not removed: %v", got)
	}
}

// TestExecutablesMultiCall: denying "nc" must not deny the shell when both
// are links to one busybox binary.
func TestExecutablesMultiCall(t *testing.T) {
	bin := t.TempDir()
	box := filepath.Join(t.TempDir(), "busybox")
	if err := os.WriteFile(box, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"nc", "sh", "wget"} {
		if err := os.Symlink(box, filepath.Join(bin, name)); err != nil {
			t.Fatal(err)
		}
	}
	// A hard link under a denied name only: still denied by inode.
	only := filepath.Join(bin, "ncat")
	if err := os.WriteFile(only, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(only, filepath.Join(bin, "netcat")); err != nil {
		t.Fatal(err)
	}
	set := policy.FileSet{Names: []policy.Entry{{Value: "nc", Rule: 1}, {Value: "wget", Rule: 2}, {Value: "ncat", Rule: 3}, {Value: "netcat", Rule: 4}}}
	files, shared := ExecutablesShared(set, []string{bin})
	if len(files) != 1 || filepath.Base(files[0].Path) != "ncat" || files[0].Rule != 3 {
		t.Fatalf("files = %+v, want only ncat (rule 3)", files)
	}
	if len(shared) != 1 || shared[0].File.Path != box {
		t.Fatalf("shared = %+v, want busybox", shared)
	}
	if got := shared[0]; len(got.Denied) != 2 || len(got.Allowed) != 1 || got.Allowed[0] != "sh" {
		t.Fatalf("shared names = %+v", got)
	}
}

// TestExecutablesAlias: a symlink to a denied program under another name
// (Debian's /usr/bin/slogin -> ssh) is an alias, not a multi-call binary:
// the file stays denied.
func TestExecutablesAlias(t *testing.T) {
	bin := t.TempDir()
	ssh := filepath.Join(bin, "ssh")
	if err := os.WriteFile(ssh, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("ssh", filepath.Join(bin, "slogin")); err != nil {
		t.Fatal(err)
	}
	set := policy.FileSet{Names: []policy.Entry{{Value: "ssh", Rule: 1}}}
	files, shared := ExecutablesShared(set, []string{bin})
	if len(files) != 1 || files[0].Path != ssh || len(shared) != 0 {
		t.Fatalf("files = %+v, shared = %+v; want ssh denied", files, shared)
	}
}

// Executables names the rule the kernel would report: the longest prefix
// or suffix (policy.FileSet.MatchName), not the first one listed.
func TestExecutablesLongestName(t *testing.T) {
	bin := t.TempDir()
	for _, n := range []string{"python3.11", "server-key.pem"} {
		if err := os.WriteFile(filepath.Join(bin, n), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	set := policy.FileSet{
		NamePrefix: []policy.Entry{{Value: "py", Rule: 1}, {Value: "python", Rule: 2}},
		NameSuffix: []policy.Entry{{Value: ".pem", Rule: 3}, {Value: "-key.pem", Rule: 4}},
	}
	got := map[string]policy.RuleID{}
	for _, f := range Executables(set, []string{bin}) {
		got[filepath.Base(f.Path)] = f.Rule
	}
	if got["python3.11"] != 2 || got["server-key.pem"] != 4 {
		t.Errorf("rules %v, want python3.11: 2 and server-key.pem: 4", got)
	}
}
