package claudestate

import (
	"os"
	"path/filepath"
	"testing"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestInstalledClones: the clones of marketplaces installed plugins come
// from, not those without an installed plugin nor a marketplace in a
// directory of the user's.
func TestInstalledClones(t *testing.T) {
	home := t.TempDir()
	mk := filepath.Join(home, ".claude", "plugins", "marketplaces")
	writeFile(t, filepath.Join(home, ".claude", "plugins", "installed_plugins.json"),
		`{"version": 2, "plugins": {"fmt@m": [{}], "lint@m": [{}], "x@local": [{}], "y@gone": [{}]}}`)
	writeFile(t, filepath.Join(home, ".claude", "plugins", "known_marketplaces.json"), `{
  "m": {"installLocation": "`+mk+`/m"},
  "unused": {"installLocation": "`+mk+`/unused"},
  "local": {"installLocation": "`+home+`/my-marketplace"}
}`)
	got := InstalledClones(home)
	if len(got) != 1 || got[0].Marketplace != "m" || got[0].Dir != mk+"/m" ||
		len(got[0].Plugins) != 2 || got[0].Plugins[0] != "fmt@m" {
		t.Errorf("got %+v", got)
	}
	if got := InstalledClones(t.TempDir()); got != nil {
		t.Errorf("no registry: %+v", got)
	}
}

// TestFingerprint: a change to the working tree or to what steers git
// (.git/config, hooks, a local branch) changes the sum; what a fetch that
// brought nothing rewrites (FETCH_HEAD, objects, logs, remote refs) does
// not.
func TestFingerprint(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"plugins/fmt/hooks/hooks.json", ".claude-plugin/marketplace.json", ".git/config",
		".git/HEAD", ".git/refs/heads/main", ".git/FETCH_HEAD", ".git/objects/ab/cd", ".git/refs/remotes/origin/main"} {
		writeFile(t, filepath.Join(dir, f), f+"\n")
	}
	for _, d := range []string{".git/hooks", ".git/info"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	base, err := Fingerprint(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{".git/FETCH_HEAD", ".git/objects/ef/01", ".git/logs/HEAD", ".git/refs/remotes/origin/main", ".git/index"} {
		writeFile(t, filepath.Join(dir, f), "fetched\n")
		if sum, _ := Fingerprint(dir); sum != base {
			t.Errorf("%s changed the sum", f)
		}
	}
	for _, f := range []string{"plugins/fmt/hooks/hooks.json", "plugins/fmt/new.sh", ".claude-plugin/marketplace.json",
		".git/config", ".git/hooks/post-merge", ".git/refs/heads/main", ".git/info/attributes"} {
		old, existed := os.ReadFile(filepath.Join(dir, f))
		writeFile(t, filepath.Join(dir, f), "planted\n")
		if sum, _ := Fingerprint(dir); sum == base {
			t.Errorf("%s: a plant left the sum as it was", f)
		}
		if existed == nil {
			writeFile(t, filepath.Join(dir, f), string(old))
		} else if err := os.Remove(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
		if sum, _ := Fingerprint(dir); sum != base {
			t.Fatalf("%s: undone, the sum differs", f)
		}
	}
	// A link in place of the clone is not followed.
	link := filepath.Join(t.TempDir(), "m")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	if sum, _ := Fingerprint(link); sum == base {
		t.Errorf("a link to the clone sums as the clone")
	}
}
