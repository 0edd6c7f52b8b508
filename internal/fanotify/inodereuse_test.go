//go:build linux

package fanotify

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
	"golang.org/x/sys/unix"
)

// "read-rename FROM TO": read TO, then rename FROM over it, as git reads
// its config before it renames config.lock over it. The read is a
// permission event that places the process, so that its rename is known
// for the sandbox's after it has exited (pidCache).
var _ = registerHelper("read-rename", func(args []string) string {
	if _, err := os.ReadFile(args[1]); err != nil {
		return errnoName(err)
	}
	if err := os.Rename(args[0], args[1]); err != nil {
		return errnoName(err)
	}
	return "ok"
})

// reuseIno returns a new file in dir that sandbox s's rules by inode take
// for the freed file whose inode number was ino: the first of the files
// it creates that the filesystem gives that number (ext4 hands a freed
// number to the next file made in the same block group, within a few
// tries when nothing else on the machine creates files meanwhile). Where
// none gets it (tmpfs; or, as in CI, other tests' files took the number
// first), the freed file's entry, rules and file handle, is moved to the
// last new file's number: the state a reuse leaves, made certain, so the
// test never depends on the allocator.
func reuseIno(t *testing.T, e *env, s *sbox, dir string, ino uint64) string {
	t.Helper()
	var last string
	for i := range 200 {
		path := filepath.Join(dir, fmt.Sprintf("new%d.txt", i))
		if err := os.WriteFile(path, []byte("unrelated"), 0o644); err != nil {
			t.Fatal(err)
		}
		var st unix.Stat_t
		if err := unix.Stat(path, &st); err != nil {
			t.Fatal(err)
		}
		if st.Ino == ino {
			return path
		}
		last = path
	}
	var st unix.Stat_t
	if err := unix.Stat(last, &st); err != nil {
		t.Fatal(err)
	}
	e.b.mu.RLock()
	in := e.b.sandboxes[s.ID]
	e.b.mu.RUnlock()
	p := in.plan
	freed := inodeKey{uint64(st.Dev), ino}
	p.inoMu.Lock()
	r, id := p.inodes[freed], p.ids[freed]
	p.inodes[keyOf(&st)], p.ids[keyOf(&st)] = r, id
	p.inoMu.Unlock()
	if !r.any() || id == "" {
		t.Fatalf("no rules or no file handle were recorded for the freed inode %d: the test proves nothing", ino)
	}
	t.Logf("the filesystem of %s gave inode %d to none of 200 new files: its entry moved to %s's number", dir, ino, last)
	return last
}

// A protected file is freed and the filesystem gives its inode number to
// a new, unrelated file: the rules by inode must not follow the number.
// The user removes a deny_read file (no copy of it is held, so nothing
// tells the backend its inode is gone); the next file made gets the number
// and a sandboxed read of it is allowed. Before the inode's identity was
// checked, it was refused under the removed file's rule (seen as `git
// submodule add` refused a template copy under the rule of .git/config).
func TestFreedInodeNumberReused(t *testing.T) {
	e := newEnv(t, nil)
	dir := filepath.Join(e.project, "conf")
	secret := e.write(filepath.Join(dir, "secret.pem"), "key")
	var st unix.Stat_t
	if err := unix.Stat(secret, &st); err != nil {
		t.Fatal(err)
	}
	s := e.sandbox(policy.Policy{DenyRead: rules("*.pem")})
	if got := e.run(s, "open", secret, "r"); got != "EPERM" {
		t.Fatalf("sandboxed read of %s: %s, want EPERM", secret, got)
	}
	e.event()
	if err := os.Remove(secret); err != nil {
		t.Fatal(err)
	}
	reused := reuseIno(t, e, s, dir, st.Ino)
	if got := e.run(s, "open", reused, "r"); got != "ok" {
		t.Fatalf("sandboxed read of %s, a new file with the removed %s's inode number: %s, want ok", reused, secret, got)
	}
	e.noEvent()
}

// The git case: a sandboxed process renames its own file over a deny_write
// path (git's config.lock over .git/config), again and again. The watcher
// protects by inode what the path names when it handles a rename, which
// can be the sandbox's next replacement; the restore then replaces that
// one too and the filesystem frees it. Here the race is made certain: the
// watcher is held while the sandbox renames, and the replacement is
// protected as that handling would. The next file made with its number
// must be readable and writable inside. The restored file itself is
// protected by inode from the restore on: a hard link of it is refused.
func TestRestoreFreesReplacementRules(t *testing.T) {
	e := newEnv(t, nil)
	cfg := e.write(filepath.Join(e.project, "ci.yaml"), "x")
	s := e.sandbox(policy.Policy{DenyWrite: rules("ci.yaml"), DenyRead: rules("*.pem")})
	// Made after Add: made before, its number was not given again within
	// 2000 files here (Add sets an ignore mark on it; that may keep the
	// inode), and the test skipped.
	lock := e.write(filepath.Join(e.project, "ci.yaml.lock"), "planted")
	var st unix.Stat_t
	if err := unix.Stat(lock, &st); err != nil {
		t.Fatal(err)
	}
	e.b.watchMu.Lock()
	if got := e.run(s, "read-rename", lock, cfg); got != "ok" {
		e.b.watchMu.Unlock()
		t.Fatalf("sandboxed rename of %s over %s: %s", lock, cfg, got)
	}
	e.b.mu.RLock()
	in := e.b.sandboxes[s.ID]
	e.b.mu.RUnlock()
	e.b.protectNew(in, e.project, cfg)
	if in.plan.rulesOf(keyOf(&st), -1).write == 0 {
		e.b.watchMu.Unlock()
		t.Fatal("the replacement was not protected: the test proves nothing")
	}
	e.b.watchMu.Unlock()
	if ev := e.event(); ev.Path != cfg || !ev.Restored {
		t.Fatalf("event %+v, want %s restored", ev, cfg)
	}
	alias := filepath.Join(e.project, "alias.txt")
	if err := os.Link(cfg, alias); err != nil {
		t.Fatal(err)
	}
	if got := e.run(s, "open", alias, "w"); got != "EPERM" {
		t.Fatalf("sandboxed write through %s, a hard link of the restored %s: %s, want EPERM", alias, cfg, got)
	}
	e.event()
	reused := reuseIno(t, e, s, e.project, st.Ino)
	for _, mode := range []string{"r", "w"} {
		if got := e.run(s, "open", reused, mode); got != "ok" {
			t.Fatalf("sandboxed open (%s) of %s, a new file with the number of the replacement the restore freed: %s, want ok", mode, reused, got)
		}
	}
	e.noEvent()
}

// A deny_write inode whose number a file at another write-protected path
// has taken (the state a reuse leaves, made certain as reuseIno does: the
// entry of ci.yaml, rules and handle, moved to app.lock's number). The
// reader skips the handle check for a read there (the path has a write
// rule of its own: allowed either way) but makes it for a write: the
// write is refused under app.lock's own rule, not ci.yaml's, as when
// every open checked the handle first.
func TestReusedWriteInodeLazyCheck(t *testing.T) {
	e := newEnv(t, nil)
	cfg := e.write(filepath.Join(e.project, "ci.yaml"), "x")
	lock := e.write(filepath.Join(e.project, "app.lock"), "y")
	s := e.sandbox(policy.Policy{DenyWrite: rules("ci.yaml", "*.lock")})
	var cst, lst unix.Stat_t
	if err := unix.Stat(cfg, &cst); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(lock, &lst); err != nil {
		t.Fatal(err)
	}
	e.b.mu.RLock()
	in := e.b.sandboxes[s.ID]
	e.b.mu.RUnlock()
	p := in.plan
	p.inoMu.Lock()
	r, id := p.inodes[keyOf(&cst)], p.ids[keyOf(&cst)]
	p.inodes[keyOf(&lst)], p.ids[keyOf(&lst)] = r, id
	p.inoMu.Unlock()
	if r.write == 0 || r.read != 0 || r.exec != 0 || id == "" {
		t.Fatalf("ci.yaml's recorded entry is %+v, handle %q: want a write rule alone and a handle, or the test proves nothing", r, id)
	}
	lockRule, _ := s.Policy.Write.Match(lock)
	if lockRule == 0 || lockRule == r.write {
		t.Fatalf("app.lock's rule by path is %d, ci.yaml's %d: want two different rules", lockRule, r.write)
	}
	if got := e.run(s, "open", lock, "r"); got != "ok" {
		t.Fatalf("sandboxed read of %s: %s, want ok", lock, got)
	}
	e.noEvent()
	if got := e.run(s, "open", lock, "w"); got != "EPERM" {
		t.Fatalf("sandboxed write of %s: %s, want EPERM", lock, got)
	}
	if ev := e.event(); ev.Path != lock || ev.Op != events.OpWrite || policy.RuleID(ev.Rule) != lockRule {
		t.Fatalf("event %+v, want a write of %s under rule %d (app.lock's), not %d (ci.yaml's)", ev, lock, lockRule, r.write)
	}
}
