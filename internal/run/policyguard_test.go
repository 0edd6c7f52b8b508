//go:build linux

package run

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPolicyGuard(t *testing.T) {
	home := t.TempDir()
	dir := filepath.Join(home, ".aigate")
	write := func(p, s string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "config.yaml"), "net: deny\n")
	write(filepath.Join(dir, "trusted.yaml"), "trusted: []\n")
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)

	// Nothing changed: nothing to say.
	g := guardPolicyDir(dir, nil)
	if msg, err := g.restore(now); msg != "" || err != nil {
		t.Fatalf("unchanged: %q %v", msg, err)
	}

	for name, attack := range map[string]func(){
		"directory replaced": func() {
			if err := os.Rename(dir, filepath.Join(home, "old")); err != nil {
				t.Fatal(err)
			}
			write(filepath.Join(dir, "config.yaml"), "net: allow\n")
		},
		"file renamed over": func() {
			write(filepath.Join(home, "forged"), "trusted: [{path: /x, sha256: y}]\n")
			if err := os.Rename(filepath.Join(home, "forged"), filepath.Join(dir, "trusted.yaml")); err != nil {
				t.Fatal(err)
			}
		},
		"directory removed": func() {
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
		},
	} {
		g := guardPolicyDir(dir, nil)
		attack()
		msg, err := g.restore(now)
		if err != nil || msg == "" {
			t.Errorf("%s: %q %v", name, msg, err)
		}
		for file, want := range map[string]string{"config.yaml": "net: deny\n", "trusted.yaml": "trusted: []\n"} {
			if got, _ := os.ReadFile(filepath.Join(dir, file)); string(got) != want {
				t.Errorf("%s: %s is %q", name, file, got)
			}
		}
		if name != "directory removed" && !strings.Contains(msg, ".replaced-") {
			t.Errorf("%s: the changed copy was not kept: %q", name, msg)
		}
	}
}
