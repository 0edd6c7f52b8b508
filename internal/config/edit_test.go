package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func eq(a, b string) bool { return a == b }

const sample = `# My aigate config.
deny_read:   # secrets
  - .env
  - '*.pem'  # certificates

  # cloud
  - ~/.aws/

# Shell files.
deny_write:
  - ~/.bashrc
net: deny # no egress
allow_net:
  - github.com
`

// readmeStyle is a config written the way the README shows it: flow
// lists with comments after them and blank lines between.
const readmeStyle = `mode: enforce            # or audit

deny_read:  [.env, "*.pem"]   # secrets
deny_exec:  [curl, nc]        # downloaders

net: deny                # no egress
`

func newDoc(t *testing.T, content string) *Doc {
	t.Helper()
	return &Doc{Path: "test.yaml", Orig: []byte(content), Exists: true, data: []byte(content)}
}

func TestAddToList(t *testing.T) {
	for _, tc := range []struct {
		name, in, key, value, want string
		added                      bool
	}{
		{"append after last item, keeping blank lines and comments", sample, "deny_read", "id_rsa*",
			strings.Replace(sample, "  - ~/.aws/\n", "  - ~/.aws/\n  - id_rsa*\n", 1), true},
		{"quotes what YAML needs quoted", sample, "deny_write", "*.key",
			strings.Replace(sample, "  - ~/.bashrc\n", "  - ~/.bashrc\n  - '*.key'\n", 1), true},
		{"duplicate is not added", sample, "deny_read", ".env", sample, false},
		{"missing key is appended", sample, "deny_exec", "curl", sample + "deny_exec:\n  - curl\n", true},
		{"last key in file", sample, "allow_net", "pypi.org", sample + "  - pypi.org\n", true},
		{"empty file", "", "deny_read", ".env", "deny_read:\n  - .env\n", true},
		{"comments only, no newline", "# hi", "deny_read", ".env", "# hi\ndeny_read:\n  - .env\n", true},
		{"null value", "deny_read:\nnet: deny\n", "deny_read", ".env", "deny_read:\n  - .env\nnet: deny\n", true},
		{"null value with comment", "deny_read: # later\nnet: deny\n", "deny_read", ".env", "deny_read: # later\n  - .env\nnet: deny\n", true},
		{"empty flow list", "deny_read: [] # none\n", "deny_read", ".env", "deny_read: # none\n  - .env\n", true},
		{"four-space indent is kept", "deny_read:\n    - a\n", "deny_read", "b", "deny_read:\n    - a\n    - b\n", true},
		{"indent of new key follows the file", "deny_read:\n    - a\n", "deny_exec", "b", "deny_read:\n    - a\ndeny_exec:\n    - b\n", true},
		{"trailing comment lines stay after the list", "deny_read:\n  - a\n  # - b\n\nnet: deny\n", "deny_read", "c",
			"deny_read:\n  - a\n  - c\n  # - b\n\nnet: deny\n", true},
		{"flow list stays a flow list", "deny_read: [a, b]\n", "deny_read", "c", "deny_read: [a, b, c]\n", true},
		{"flow list keeps its comment, the blank lines and the next key's comment", readmeStyle, "deny_exec", "wget",
			strings.Replace(readmeStyle, "[curl, nc]", "[curl, nc, wget]", 1), true},
		{"flow list with quotes and a comma inside them", "deny_read: ['a,]', \"b\\\"]\"]   # x\n", "deny_read", "*.pem",
			"deny_read: ['a,]', \"b\\\"]\", '*.pem']   # x\n", true},
		{"flow list over lines with a comment inside", "deny_read: [a,   # first\n  b\n]\nnet: deny\n", "deny_read", "c",
			"deny_read: [a,   # first\n  b, c\n]\nnet: deny\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDoc(t, tc.in)
			added, err := d.AddToList(tc.key, tc.value, eq)
			if err != nil {
				t.Fatal(err)
			}
			if added != tc.added {
				t.Errorf("added = %v, want %v", added, tc.added)
			}
			if got := string(d.Data()); got != tc.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

func TestRemoveFromList(t *testing.T) {
	for _, tc := range []struct {
		name, in, key, value, want string
		removed                    bool
	}{
		{"middle item", sample, "deny_read", "*.pem",
			strings.Replace(sample, "  - '*.pem'  # certificates\n", "", 1), true},
		{"absent item", sample, "deny_read", "nope", sample, false},
		{"absent key", sample, "deny_exec", "curl", sample, false},
		{"last item leaves an explicit empty list", sample, "deny_write", "~/.bashrc",
			strings.Replace(sample, "deny_write:\n  - ~/.bashrc\n", "deny_write: []\n", 1), true},
		{"last item keeps the key comment", "deny_read:  # c\n  - a\n", "deny_read", "a", "deny_read: [] # c\n", true},
		{"flow list, first item", "deny_read: [a, b]  # c\n", "deny_read", "a", "deny_read: [b]  # c\n", true},
		{"flow list, last item", "deny_read: [a, b]  # c\n", "deny_read", "b", "deny_read: [a]  # c\n", true},
		{"flow list, only item", "deny_read: [a]  # c\n\nnet: deny\n", "deny_read", "a", "deny_read: []  # c\n\nnet: deny\n", true},
		{"flow list, README style", readmeStyle, "deny_exec", "nc",
			strings.Replace(readmeStyle, "[curl, nc]", "[curl]", 1), true},
		{"flow list, an item twice", "deny_read: [a, b, a, c, a]\n", "deny_read", "a", "deny_read: [b, c]\n", true},
		{"flow list, quoted item", "deny_read: [.env, \"*.pem\", x]\n", "deny_read", "*.pem", "deny_read: [.env, x]\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDoc(t, tc.in)
			removed, err := d.RemoveFromList(tc.key, tc.value, eq)
			if err != nil {
				t.Fatal(err)
			}
			if removed != tc.removed {
				t.Errorf("removed = %v, want %v", removed, tc.removed)
			}
			if got := string(d.Data()); got != tc.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

func TestSetScalar(t *testing.T) {
	for _, tc := range []struct {
		name, in, value, want string
		changed               bool
	}{
		{"keeps the comment and its spacing", sample, "allow",
			strings.Replace(sample, "net: deny # no egress", "net: allow # no egress", 1), true},
		{"unchanged", sample, "deny", sample, false},
		{"missing key", "deny_read: []\n", "deny", "deny_read: []\nnet: deny\n", true},
		{"null", "net:\n", "deny", "net: deny\n", true},
		{"quoted", "net: \"allow\"\n", "deny", "net: deny\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDoc(t, tc.in)
			changed, err := d.SetScalar("net", tc.value)
			if err != nil {
				t.Fatal(err)
			}
			if changed != tc.changed {
				t.Errorf("changed = %v, want %v", changed, tc.changed)
			}
			if got := string(d.Data()); got != tc.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

func TestEditRejects(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"not yaml", "deny_read: [\n"},
		{"top level list", "- a\n"},
		{"scalar where a list belongs", "deny_read: .env\n"},
		{"mapping where a list belongs", "deny_read:\n  a: b\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDoc(t, tc.in)
			if _, err := d.AddToList("deny_read", "x", eq); err == nil {
				t.Fatalf("no error; content now:\n%s", d.Data())
			}
			if string(d.Data()) != tc.in {
				t.Errorf("content changed on error")
			}
		})
	}
	d := newDoc(t, "net:\n  - a\n")
	if _, err := d.SetScalar("net", "deny"); err == nil || !strings.Contains(err.Error(), "test.yaml:1") {
		t.Errorf("SetScalar on a list: err = %v, want one naming test.yaml:1", err)
	}
}

func TestDiff(t *testing.T) {
	old := "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n"
	new := "a\nb\nc\nd\nX\nf\ng\nh\ni\nj\nk\n"
	want := "--- a/f\n+++ b/f\n@@ -2,9 +2,10 @@\n b\n c\n d\n-e\n+X\n f\n g\n h\n i\n j\n+k\n"
	if got := Diff("f", []byte(old), []byte(new)); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	long := strings.Repeat("x\n", 10)
	got := Diff("f", []byte("a\n"+long+"b\n"), []byte("A\n"+long+"B\n"))
	if strings.Count(got, "@@ ") != 2 {
		t.Errorf("distant changes should make two hunks:\n%s", got)
	}
	if got := Diff("/abs/f", nil, []byte("a\n")); got != "--- /dev/null\n+++ b/abs/f\n@@ -0,0 +1,1 @@\n+a\n" {
		t.Errorf("new file diff:\n%s", got)
	}
	if Diff("f", []byte("a"), []byte("a")) != "" {
		t.Error("equal inputs must give an empty diff")
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.yaml")
	if err := WriteFileAtomic(p, []byte("one\n"), 0o640, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o604); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(p, []byte("two\n"), 0o600, nil); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o604 {
		t.Errorf("mode %v, want the original 0604 kept", fi.Mode().Perm())
	}
	if b, _ := os.ReadFile(p); string(b) != "two\n" {
		t.Errorf("content %q", b)
	}
	// A symlinked config keeps its link; the target is replaced.
	target := filepath.Join(dir, "real.yaml")
	link := filepath.Join(dir, "link.yaml")
	os.WriteFile(target, []byte("old\n"), 0o644)
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(link, []byte("new\n"), 0o644, nil); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("symlink replaced by a file")
	}
	if b, _ := os.ReadFile(target); string(b) != "new\n" {
		t.Errorf("target content %q", b)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}
