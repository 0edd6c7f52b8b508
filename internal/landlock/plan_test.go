package landlock

import (
	"io/fs"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
)

// tree is a DirLister over an in-memory filesystem; temp lists the shared
// temp directories.
type tree struct {
	fs   fstest.MapFS
	temp map[string]bool
}

func (t tree) ReadDir(dir string) ([]fs.DirEntry, error) {
	name := strings.TrimPrefix(dir, "/")
	if name == "" {
		name = "."
	}
	return fs.ReadDir(t.fs, name)
}

func (t tree) IsTempDir(dir string) bool { return t.temp[dir] }

func newTree(paths ...string) tree {
	m := fstest.MapFS{}
	for _, p := range paths {
		switch {
		case strings.HasSuffix(p, "/"):
			m[strings.Trim(p, "/")] = &fstest.MapFile{Mode: fs.ModeDir | 0o755}
		case strings.HasSuffix(p, "@"):
			m[strings.Trim(p, "/@")] = &fstest.MapFile{Mode: fs.ModeSymlink | 0o777, Data: []byte("/home/u")}
		default:
			m[strings.Trim(p, "/")] = &fstest.MapFile{Mode: 0o644}
		}
	}
	return tree{fs: m, temp: map[string]bool{}}
}

func TestPlan(t *testing.T) {
	sys := newTree("/bin@", "/etc/", "/tmp/", "/home/u/proj/", "/home/other/", "/home/u/.bashrc",
		"/swapfile", "/usr/bin/")
	tests := []struct {
		name      string
		opts      Options
		tree      tree
		rules     []Rule
		handled   uint64
		scoped    uint64
		protected bool
	}{{
		name:   "no home: scopes only",
		opts:   Options{},
		tree:   sys,
		scoped: ScopeSignal | ScopeAbstractUnix,
	}, {
		name:   "abstract sockets allowed by the policy",
		opts:   Options{AbstractUnix: true},
		tree:   sys,
		scoped: ScopeSignal,
	}, {
		name: "home read-only but its siblings, its ancestors' siblings and the writable list",
		opts: Options{Home: "/home/u/", Writable: []string{"/home/u/proj", ".cache", "/var/tmp"}},
		tree: sys,
		rules: []Rule{
			// /bin is a symlink: skipped. /swapfile is a file: file rights only.
			{"/etc", AccessWrite}, {"/swapfile", accessFile}, {"/tmp", AccessWrite}, {"/usr", AccessWrite},
			{"/home/other", AccessWrite},
			{"/home/u/proj", AccessWrite}, {"/home/u/.cache", AccessWrite}, {"/var/tmp", AccessWrite},
		},
		handled:   AccessWrite,
		scoped:    ScopeSignal | ScopeAbstractUnix,
		protected: true,
	}, {
		name: "a fixed tool state directory: its subdirectories fully, itself without removing or renaming, a symlink not followed",
		opts: Options{Home: "/home/u", Fixed: []string{".claude", "/home/u/.missing"}},
		tree: newTree("/etc/", "/home/u/.claude/projects/", "/home/u/.claude/todos/", "/home/u/.claude/settings.json",
			"/home/u/.claude/link@"),
		rules: []Rule{
			{"/etc", AccessWrite},
			{"/home/u/.claude", AccessFixed}, {"/home/u/.claude/projects", AccessWrite}, {"/home/u/.claude/todos", AccessWrite},
		},
		handled:   AccessWrite,
		scoped:    ScopeSignal | ScopeAbstractUnix,
		protected: true,
	}, {
		name: "a sealed directory: nothing of its own, no directory made above it, its open subdirectories fixed",
		opts: Options{Home: "/home/u", Fixed: []string{".claude"}, Sealed: []string{".claude/projects"},
			Open: []string{"/home/u/.claude/projects/-home-u-p", "/home/u/.claude/todos/x"}},
		tree: newTree("/etc/", "/home/u/.claude/projects/-home-u-p/", "/home/u/.claude/projects/-home-u-q/memory/",
			"/home/u/.claude/todos/x/"),
		rules: []Rule{
			{"/etc", AccessWrite},
			{"/home/u/.claude", AccessFixed &^ AccessMakeDir},
			{"/home/u/.claude/projects/-home-u-p", AccessFixed}, {"/home/u/.claude/todos", AccessWrite},
		},
		handled:   AccessWrite,
		scoped:    ScopeSignal | ScopeAbstractUnix,
		protected: true,
	}, {
		name: "kept caches: their writable ancestors fixed, the rest of them writable, nothing beneath a kept tree",
		opts: Options{Home: "/home/u", Writable: []string{".cache", "go", ".npm", "proj"},
			Keep: []string{".cache/go-build", ".cache/pip", "go/pkg/mod", "/home/u/.npm", ".cache/missing/x"}},
		tree: newTree("/etc/", "/home/u/.cache/go-build/00/", "/home/u/.cache/pip/", "/home/u/.cache/other/",
			"/home/u/.cache/f", "/home/u/.cache/link@", "/home/u/go/bin/", "/home/u/go/pkg/mod/x/", "/home/u/go/pkg/sumdb/",
			"/home/u/.npm/_cacache/", "/home/u/proj/"),
		rules: []Rule{
			{"/etc", AccessWrite},
			{"/home/u/.cache", AccessFixed}, {"/home/u/.cache/go-build", AccessFixed}, {"/home/u/.cache/other", AccessWrite},
			{"/home/u/.cache/pip", AccessFixed},
			{"/home/u/go", AccessFixed}, {"/home/u/go/bin", AccessWrite}, {"/home/u/go/pkg", AccessFixed},
			{"/home/u/go/pkg/mod", AccessFixed}, {"/home/u/go/pkg/sumdb", AccessWrite},
			{"/home/u/.npm", AccessFixed},
			{"/home/u/proj", AccessWrite},
		},
		handled:   AccessWrite,
		scoped:    ScopeSignal | ScopeAbstractUnix,
		protected: true,
	}, {
		name: "home beneath a shared temp directory: not protected",
		opts: Options{Home: "/tmp/x/home"},
		tree: func() tree {
			t := newTree("/etc/", "/tmp/x/home/", "/tmp/y/")
			t.temp["/tmp"] = true
			return t
		}(),
		rules:   []Rule{{"/etc", AccessWrite}, {"/tmp", AccessWrite}},
		handled: AccessWrite,
		scoped:  ScopeSignal | ScopeAbstractUnix,
	}, {
		name: "read-only directories outside the home: their ancestors split too, a missing one's parent as well, the home's own left alone",
		opts: Options{Home: "/home/u", ReadOnly: []string{"/run/user/1000/systemd/", "/run/user/1001/systemd",
			"/run/user/1000/systemd/user", "/home/u/proj", "/home", "run", "/"}},
		tree: newTree("/etc/", "/home/u/proj/", "/home/other/", "/run/lock/", "/run/user/1000/systemd/user/",
			"/run/user/1000/bus", "/run/user/1000/gnupg/", "/run/user/1000/link@", "/run/user/1001/pulse/", "/run/user/1002/"),
		rules: []Rule{
			{"/etc", AccessWrite}, {"/home/other", AccessWrite}, {"/run/lock", AccessWrite}, {"/run/user/1002", AccessWrite},
			// bus is a file (a socket): file rights only; link a symlink.
			{"/run/user/1000/bus", accessFile}, {"/run/user/1000/gnupg", AccessWrite},
			{"/run/user/1001/pulse", AccessWrite},
		},
		handled:   AccessWrite,
		scoped:    ScopeSignal | ScopeAbstractUnix,
		protected: true,
	}, {
		name: "a read-only directory beneath a shared temp directory: not protected",
		opts: Options{Home: "/home/u", ReadOnly: []string{"/tmp/r/x"}},
		tree: func() tree {
			t := newTree("/etc/", "/home/u/", "/tmp/r/x/", "/tmp/y/")
			t.temp["/tmp"] = true
			return t
		}(),
		rules:   []Rule{{"/etc", AccessWrite}, {"/tmp", AccessWrite}},
		handled: AccessWrite,
		scoped:  ScopeSignal | ScopeAbstractUnix,
	}, {
		name:    "a read-only directory a writable entry holds: not protected",
		opts:    Options{Home: "/home/u", ReadOnly: []string{"/run/user/1000/systemd"}, Writable: []string{"/run/user/1000"}},
		tree:    newTree("/etc/", "/home/u/", "/run/user/1000/systemd/", "/run/user/1000/gnupg/"),
		rules:   []Rule{{"/etc", AccessWrite}, {"/run/user/1000/gnupg", AccessWrite}, {"/run/user/1000", AccessWrite}},
		handled: AccessWrite,
		scoped:  ScopeSignal | ScopeAbstractUnix,
	}, {
		name:   "relative home: scopes only",
		opts:   Options{Home: "home/u"},
		tree:   sys,
		scoped: ScopeSignal | ScopeAbstractUnix,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, protected := Plan(tt.opts, tt.tree)
			if !reflect.DeepEqual(rs.Rules, tt.rules) {
				t.Errorf("rules:\n got %v\nwant %v", rs.Rules, tt.rules)
			}
			if rs.HandledFS != tt.handled || rs.Scoped != tt.scoped || protected != tt.protected {
				t.Errorf("handled %#x scoped %#x protected %v, want %#x %#x %v",
					rs.HandledFS, rs.Scoped, protected, tt.handled, tt.scoped, tt.protected)
			}
		})
	}
}

func TestEffective(t *testing.T) {
	home := Ruleset{HandledFS: AccessWrite, Scoped: ScopeSignal,
		Rules: []Rule{{"/etc", AccessWrite}, {"/f", accessFile}}}
	fence := Ruleset{Scoped: ScopeSignal | ScopeAbstractUnix}
	tests := []struct {
		name string
		rs   Ruleset
		abi  int
		want Ruleset
	}{
		{"fence, ABI 7: scopes only", fence, 7, fence},
		{"fence, ABI 5: a block-device right", fence, 5, Ruleset{HandledFS: AccessMakeBlock | AccessRefer,
			Rules: []Rule{{"/", AccessMakeBlock | AccessRefer}}}},
		{"fence, ABI 1: no refer", fence, 1, Ruleset{HandledFS: AccessMakeBlock,
			Rules: []Rule{{"/", AccessMakeBlock}}}},
		{"home, ABI 6", home, 6, home},
		{"home, ABI 2: no truncate, no scopes", home, 2, Ruleset{HandledFS: AccessWrite &^ AccessTruncate,
			Rules: []Rule{{"/etc", AccessWrite &^ AccessTruncate}, {"/f", AccessWriteFile}}}},
		{"home, ABI 1: no refer either", home, 1, Ruleset{HandledFS: AccessWrite &^ (AccessTruncate | AccessRefer),
			Rules: []Rule{{"/etc", AccessWrite &^ (AccessTruncate | AccessRefer)}, {"/f", AccessWriteFile}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.rs.Effective(tt.abi); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestCovered(t *testing.T) {
	ident := func(p string) (string, error) { return p, nil }
	fixed := Ruleset{HandledFS: AccessWrite, Rules: []Rule{{"/etc", AccessWrite},
		{"/home/u/.cache", AccessFixed}, {"/home/u/.cache/other", AccessWrite}, {"/home/u/proj", AccessWrite}}}
	tree := "/home/u/.cache/go-build"
	with := func(rs Ruleset, rules ...Rule) Ruleset {
		rs.Rules = append(append([]Rule{}, rs.Rules...), rules...)
		return rs
	}
	tests := []struct {
		name    string
		rs      Ruleset
		resolve Resolver
		want    bool
	}{
		{"beneath a fixed directory only", fixed, ident, true},
		{"ABI 1 (no refer handled): reparenting refused all the same", fixed.Effective(1), ident, true},
		{"no domain", Ruleset{}, ident, false},
		{"fence only, before ABI 6: refer granted on /", Ruleset{Scoped: ScopeSignal}.Effective(5), ident, false},
		{"links granted above", with(fixed, Rule{"/home/u", AccessRefer}), ident, false},
		{"an ancestor writable (allow_write ~/.cache)", with(fixed, Rule{"/home/u/.cache", AccessWrite}), ident, false},
		{"a subtree writable (allow_write beneath the cache)", with(fixed, Rule{tree + "/00", AccessWrite}), ident, false},
		{"a rule that leads into it through a symlink", with(fixed, Rule{"/home/u/proj/link", AccessWrite}),
			func(p string) (string, error) {
				if p == "/home/u/proj/link" {
					return tree, nil
				}
				return p, nil
			}, false},
		{"the tree itself a symlink to a writable place", fixed,
			func(p string) (string, error) {
				if p == tree {
					return "/home/u/proj/gb", nil
				}
				return p, nil
			}, false},
		{"a rule path that does not resolve for another reason", fixed,
			func(p string) (string, error) {
				if p == "/etc" {
					return "", fs.ErrPermission
				}
				return p, nil
			}, false},
		{"a missing rule path is skipped, as the kernel does", with(fixed, Rule{"/home/u/.cache/gone", AccessWrite}),
			func(p string) (string, error) {
				if p == "/home/u/.cache/gone" {
					return "", fs.ErrNotExist
				}
				return p, nil
			}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Covered(tt.rs, tree, tt.resolve); got != tt.want {
				t.Errorf("Covered = %v, want %v", got, tt.want)
			}
		})
	}
}
