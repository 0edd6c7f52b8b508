//go:build linux

package run

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/aigate-dev/aigate/internal/config"
)

// policyGuard undoes what a sandboxed command did to ~/.aigate, the user's
// policy and trust store, by the one route the fanotify backend cannot
// refuse: a rename (mv ~/.aigate away and a forged directory in its place,
// or a forged trusted.yaml renamed over the real one), which would make
// the next run trusted and network-open. aigate run, outside the sandbox,
// records the directory and its files before the command starts and, once
// the sandbox is gone, puts them back if they changed, keeping what it
// found beside them. The LSM backend refuses such renames in the kernel;
// this is the fallback's "detect and undo" (docs/threat-model.md).
type policyGuard struct {
	dir   string
	fi    os.FileInfo       // the directory at start; nil when it did not exist
	files map[string][]byte // regular files in it at start, by name
	user  *config.User
}

// maxGuarded bounds the files kept in memory: aigate's own are small.
const maxGuarded = 1 << 20

func guardPolicyDir(dir string, u *config.User) *policyGuard {
	g := &policyGuard{dir: dir, files: map[string][]byte{}, user: u}
	_ = u.Do(func() error {
		fi, err := os.Lstat(dir)
		if err != nil || !fi.IsDir() {
			return nil
		}
		g.fi = fi
		g.files = readGuarded(dir)
		return nil
	})
	return g
}

func readGuarded(dir string) map[string][]byte {
	out := map[string][]byte{}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		if info, err := e.Info(); err != nil || info.Size() > maxGuarded {
			continue
		}
		if data, err := os.ReadFile(filepath.Join(dir, e.Name())); err == nil {
			out[e.Name()] = data
		}
	}
	return out
}

// restore checks the directory after the sandbox ended. It returns "" when
// nothing changed, else what it found and did, for a warning.
func (g *policyGuard) restore(now time.Time) (string, error) {
	var msg string
	err := g.user.Do(func() error {
		fi, err := os.Lstat(g.dir)
		existed := g.fi != nil
		switch {
		case !existed && err != nil:
			return nil
		case existed && err == nil && os.SameFile(fi, g.fi) && fi.IsDir() && sameFiles(g.files, readGuarded(g.dir)):
			return nil
		}
		aside := fmt.Sprintf("%s.replaced-%s", g.dir, now.UTC().Format("20060102T150405"))
		for i := 2; ; i++ {
			if _, err := os.Lstat(aside); err != nil {
				break
			}
			aside = fmt.Sprintf("%s.replaced-%s-%d", g.dir, now.UTC().Format("20060102T150405"), i)
		}
		if err == nil {
			if err := os.Rename(g.dir, aside); err != nil {
				return fmt.Errorf("move the changed %s aside: %w", g.dir, err)
			}
			msg = fmt.Sprintf("%s changed while the sandbox ran (a rename the fanotify backend cannot refuse); "+
				"aigate put back what it held before the run and kept the changed copy as %s", g.dir, aside)
		} else {
			msg = fmt.Sprintf("%s disappeared while the sandbox ran; aigate put back what it held before the run", g.dir)
		}
		if !existed {
			msg = fmt.Sprintf("%s appeared while the sandbox ran; aigate moved it to %s", g.dir, aside)
			return nil
		}
		if err := os.Mkdir(g.dir, g.fi.Mode().Perm()); err != nil {
			return fmt.Errorf("recreate %s: %w", g.dir, err)
		}
		return nil
	})
	if err != nil || g.fi == nil || msg == "" {
		return msg, err
	}
	names := make([]string, 0, len(g.files))
	for name := range g.files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if err := config.WriteFileAtomic(filepath.Join(g.dir, name), g.files[name], 0o600, g.user); err != nil {
			return msg, err
		}
	}
	return msg + "; if you changed it yourself meanwhile, make that change again", nil
}

func sameFiles(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for name, data := range a {
		if other, ok := b[name]; !ok || !bytes.Equal(data, other) {
			return false
		}
	}
	return true
}
