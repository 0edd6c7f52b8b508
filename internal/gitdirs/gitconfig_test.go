package gitdirs

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// stripCases are configs a sandbox could plant, with what StripRisky
// must keep, byte for byte.
var stripCases = []struct {
	name, in, want, removed string
}{
	{"fsmonitor among git's own, comments kept",
		"# made by git\n[core]\n\trepositoryformatversion = 0\n\tfsmonitor = \"touch /tmp/x\" ; planted\n\tbare = false\n[remote \"origin\"]\n\turl = /tmp/x\n",
		"# made by git\n[core]\n\trepositoryformatversion = 0\n\tbare = false\n[remote \"origin\"]\n\turl = /tmp/x\n",
		"core.fsmonitor"},
	{"key on the header line",
		"[core] fsmonitor = evil\n\tbare = false\n",
		"[core]\n\tbare = false\n", "core.fsmonitor"},
	{"continuation hides nothing",
		"[core]\n\tbare = false ; x \\\n\tfsmonitor = evil\n",
		"[core]\n\tbare = false ; x \\\n", "core.fsmonitor"},
	{"continued value goes whole",
		"[core]\n\tfsmonitor = a\\\n\tbare = false\n\tbare = true\n",
		"[core]\n\tbare = true\n", "core.fsmonitor"},
	{"quoted subsection with a bracket",
		"[remote \"a]b\"]\n\turl = x\n[include]\n\tpath = /tmp/evil\n",
		"[remote \"a]b\"]\n\turl = x\n[include]\n", "include.path"},
	{"old-style subsection, case, CRLF",
		"[Core]\r\n\tFSMonitor=x\r\n[submodule.s]\r\n\tupdate = !sh\r\n\turl = y\r\n",
		"[Core]\r\n[submodule.s]\r\n\turl = y\r\n", "core.fsmonitor, submodule.s.update"},
	{"byte order mark",
		"\xef\xbb\xbf[core]\n\tfsmonitor = x\n", "\xef\xbb\xbf[core]\n", "core.fsmonitor"},
	{"a header aigate cannot read",
		"[core \"x\" junk]\n\tbare = false\n",
		"", "a line aigate cannot read, bare (after it)"},
	{"nothing risky: unchanged",
		"[core]\n\tbare = false\n[branch \"main\"]\n\tremote = origin\n\tmerge = refs/heads/main\n",
		"[core]\n\tbare = false\n[branch \"main\"]\n\tremote = origin\n\tmerge = refs/heads/main\n", ""},
}

// TestStripRisky: only the planted keys go, every other byte stays; and
// git itself, reading what is left, sees none of the keys StripRisky
// would remove (no parsing difference hides one).
func TestStripRisky(t *testing.T) {
	gitBin, err := exec.LookPath("git")
	if err != nil {
		t.Fatalf("git is needed to check StripRisky against git's own reading: %v", err)
	}
	for _, c := range stripCases {
		t.Run(c.name, func(t *testing.T) {
			out, removed := StripRisky([]byte(c.in))
			if string(out) != c.want {
				t.Errorf("StripRisky =\n%q\nwant\n%q", out, c.want)
			}
			if got := strings.Join(removed, ", "); got != c.removed {
				t.Errorf("removed %q, want %q", got, c.removed)
			}
			inGit := func(data []byte) []string {
				f := filepath.Join(t.TempDir(), "config")
				if err := os.WriteFile(f, data, 0o644); err != nil {
					t.Fatal(err)
				}
				list, err := exec.Command(gitBin, "config", "--file", f, "--null", "--name-only", "--list").Output()
				if err != nil {
					return nil // git refuses the file: it runs nothing from it
				}
				var risky []string
				for _, k := range strings.Split(string(list), "\x00") {
					sec, rest, _ := strings.Cut(k, ".")
					if k != "" && !harmless[sec+"."+rest[strings.LastIndex(rest, ".")+1:]] {
						risky = append(risky, k)
					}
				}
				return risky
			}
			for _, k := range inGit([]byte(c.in)) {
				if !slices.ContainsFunc(removed, func(r string) bool { return strings.EqualFold(r, k) }) {
					t.Errorf("git reads %s, StripRisky did not remove it (removed %q)", k, removed)
				}
			}
			if left := inGit(out); len(left) > 0 {
				t.Errorf("git reads %q in what StripRisky left", left)
			}
		})
	}
}
