//go:build linux

package fanotify

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/policy"
)

// A deny_exec name of a multi-call binary is named as not enforced; an
// alias of a denied program (slogin -> ssh) is not.
func TestUnenforcedExec(t *testing.T) {
	bin := t.TempDir()
	for _, f := range []string{"busybox", "ssh"} {
		if err := os.WriteFile(filepath.Join(bin, f), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{"nc": "busybox", "sh": "busybox", "slogin": "ssh"} {
		if err := os.Symlink(target, filepath.Join(bin, link)); err != nil {
			t.Fatal(err)
		}
	}
	c := &policy.Compiled{Exec: policy.FileSet{Names: []policy.Entry{{Value: "nc", Rule: 1}, {Value: "ssh", Rule: 2}}}}
	got := UnenforcedExec(c, []string{bin})
	if len(got) != 1 || !strings.Contains(got[0], "deny_exec nc is not enforced") || !strings.Contains(got[0], "also runs sh") {
		t.Fatalf("UnenforcedExec = %q", got)
	}
}

// The backend names the same multi-call binary for a sandbox it added, from
// the listing of the exec directories Add made (one listing per sandbox),
// and that listing is the one in force: a multi-call binary installed after
// Add is named only for a sandbox added after it.
func TestUnenforcedFromAdd(t *testing.T) {
	e := newEnv(t, nil)
	if err := os.WriteFile(filepath.Join(e.bin, "busybox"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, link := range []string{"nc", "sh"} {
		if err := os.Symlink("busybox", filepath.Join(e.bin, link)); err != nil {
			t.Fatal(err)
		}
	}
	p := policy.Policy{DenyExec: []policy.PathRule{{Pattern: "nc"}, {Pattern: "wget"}}}
	s := e.sandbox(p)
	got := e.b.Unenforced(s.Sandbox)
	if len(got) != 1 || !strings.Contains(got[0], "deny_exec nc is not enforced") || !strings.Contains(got[0], "also runs sh") {
		t.Fatalf("Unenforced = %q", got)
	}
	for _, link := range []string{"wget"} {
		if err := os.Symlink("busybox", filepath.Join(e.bin, link)); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.b.Unenforced(s.Sandbox); len(got) != 1 || strings.Contains(got[0], "wget") {
		t.Fatalf("Unenforced after a new link = %q, want the listing Add made", got)
	}
	if got := e.b.Unenforced(e.sandbox(p).Sandbox); len(got) != 1 || !strings.Contains(got[0], "deny_exec nc, wget is not enforced") {
		t.Fatalf("Unenforced of a new sandbox = %q", got)
	}
}

// Where a copy of a denied binary still runs is said for any policy with
// deny_exec rules, and not for one without.
func TestUnenforcedCopies(t *testing.T) {
	if got := UnenforcedCopies(&policy.Compiled{}); got != nil {
		t.Fatalf("no deny_exec rules: %q", got)
	}
	c := &policy.Compiled{Exec: policy.FileSet{Names: []policy.Entry{{Value: "curl", Rule: 1}}}}
	got := UnenforcedCopies(c)
	if len(got) != 1 || !strings.Contains(got[0], "refused to mark") || !strings.Contains(got[0], "dynamic loader") {
		t.Fatalf("UnenforcedCopies = %q", got)
	}
}
