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
