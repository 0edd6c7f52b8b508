package claudestate

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Clone is the clone of a marketplace that an installed plugin comes
// from: Claude Code reads it when it updates the plugin (the plugin's
// files, or where marketplace.json says they come from) and runs git in
// it, so a sandbox that changed it would reach code a claude outside
// installs and runs.
type Clone struct {
	Marketplace string
	Dir         string   // absolute, beneath ~/.claude/plugins/marketplaces
	Plugins     []string // "name@marketplace" installed from it
}

// maxRegistry bounds what is read of installed_plugins.json and
// known_marketplaces.json.
const maxRegistry = 4 << 20

// InstalledClones lists the marketplace clones in ~/.claude/plugins/
// marketplaces that installed plugins come from (installed_plugins.json's
// "name@marketplace" keys, known_marketplaces.json's installLocation). A
// marketplace whose location lies elsewhere (a directory of the user's)
// is not a clone Claude Code made and is left out. Missing or broken
// files list nothing: Claude Code installs nothing from them either.
func InstalledClones(home string) []Clone {
	plugins := filepath.Join(home, ".claude", "plugins")
	var installed struct {
		Plugins map[string]json.RawMessage `json:"plugins"`
	}
	var known map[string]struct {
		InstallLocation string `json:"installLocation"`
	}
	if readJSON(filepath.Join(plugins, "installed_plugins.json"), &installed) != nil ||
		readJSON(filepath.Join(plugins, "known_marketplaces.json"), &known) != nil {
		return nil
	}
	base := filepath.Join(plugins, "marketplaces") + string(filepath.Separator)
	byName := map[string]*Clone{}
	for key := range installed.Plugins {
		i := strings.LastIndex(key, "@")
		if i < 0 {
			continue
		}
		m := key[i+1:]
		loc := filepath.Clean(known[m].InstallLocation)
		if !strings.HasPrefix(loc, base) {
			continue
		}
		c := byName[m]
		if c == nil {
			c = &Clone{Marketplace: m, Dir: loc}
			byName[m] = c
		}
		c.Plugins = append(c.Plugins, key)
	}
	out := make([]Clone, 0, len(byName))
	for _, c := range byName {
		sort.Strings(c.Plugins)
		out = append(out, *c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Marketplace < out[j].Marketplace })
	return out
}

func readJSON(path string, v any) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxRegistry))
	if err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}

// Fingerprint bounds: the official marketplace is a few thousand files.
const (
	maxCloneFiles = 100000
	maxCloneBytes = 512 << 20
)

// ErrCloneTooLarge is Fingerprint's answer for a clone past its bounds.
var ErrCloneTooLarge = errors.New("too large to check")

// Fingerprint sums what of a clone decides what a plugin update outside
// installs and what git runs there: every file of the working tree (path,
// mode, content; symbolic links by target) and, in .git, config, HEAD,
// packed-refs, refs/heads, hooks and info. It leaves out what a plain
// fetch rewrites with nothing new (FETCH_HEAD, objects, the index, logs,
// remote refs, which the next fetch outside sets from the remote), so a
// refresh that brought nothing leaves it unchanged. It does not follow
// links.
func Fingerprint(dir string) (string, error) {
	h := sha256.New()
	files, bytes := 0, int64(0)
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if d.IsDir() && !keptInClone(rel, true) {
			return filepath.SkipDir
		}
		if !keptInClone(rel, d.IsDir()) {
			return nil
		}
		if files++; files > maxCloneFiles {
			return ErrCloneTooLarge
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%q %o ", rel, info.Mode())
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "-> %q", target)
		case info.Mode().IsRegular():
			if bytes += info.Size(); bytes > maxCloneBytes {
				return ErrCloneTooLarge
			}
			sum, err := fileSum(path)
			if err != nil {
				return err
			}
			h.Write([]byte(sum))
		}
		h.Write([]byte("\n"))
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("fingerprint %s: %w", dir, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// keptInClone says whether rel (relative to the clone) counts in its
// fingerprint: everything outside .git, and in it what steers git or the
// checkout.
func keptInClone(rel string, dir bool) bool {
	parts := strings.Split(filepath.ToSlash(rel), "/")
	if parts[0] != ".git" {
		return true
	}
	if len(parts) == 1 {
		return true
	}
	switch parts[1] {
	case "config", "HEAD", "packed-refs", "hooks", "info":
		return true
	case "refs":
		return len(parts) == 2 || parts[2] == "heads"
	}
	return false
}

func fileSum(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
