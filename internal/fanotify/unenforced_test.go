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
