//go:build linux

package fanotify

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/forksafe"
	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/testutil"
	"golang.org/x/sys/unix"
)

// requireWatching fails (or skips without AIGATE_REQUIRE_KERNEL) when the
// directory watcher could not start.
func requireWatching(t *testing.T, e *env) {
	t.Helper()
	if !e.b.Health().Watching {
		testutil.SkipUnlessKernel(t, "fanotify FAN_REPORT_DFID_NAME (Linux 5.9) unavailable: new directories are not watched")
	}
}

// markedSoon waits until the permission group marks dir and returns how
// long that took. The watcher is asynchronous: the tests of what is covered
// wait for it, so that a loaded machine does not turn them into measures of
// the race, which TestNewDirRace measures on its own.
func markedSoon(t *testing.T, b *Backend, dir string) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < 2*time.Second {
		if kernelMarked(t, b.group, dir) {
			return time.Since(start)
		}
		time.Sleep(250 * time.Microsecond) // shorter sleeps take the CPU from the watcher being waited for
	}
	t.Fatalf("%s not marked within 2s", dir)
	return 0
}

// kernelMarked reports whether the kernel holds a FAN_OPEN_PERM mark of
// group on path's inode, from /proc/self/fdinfo: the tables in marks.go
// keep paths, and a directory re-created at a path is another inode.
func kernelMarked(t *testing.T, group int, path string) bool {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return false
	}
	data, err := os.ReadFile("/proc/self/fdinfo/" + strconv.Itoa(group))
	if err != nil {
		t.Fatal(err)
	}
	want := "ino:" + strconv.FormatUint(st.Ino, 16) + " "
	for _, line := range strings.Split(string(data), "\n") {
		i := strings.Index(line, want)
		j := strings.Index(line, " mask:")
		if i < 0 || j < 0 {
			continue
		}
		var mask uint64
		if _, err := fmt.Sscanf(line[j+1:], "mask:%x", &mask); err == nil && mask&unix.FAN_OPEN_PERM != 0 {
			return true
		}
	}
	return false
}

// TestNewDirCreatedOutside: directories created after Add by a process
// outside the sandbox, with secrets written into them from outside too (the
// user's editor, a build tool, git clone run by the user).
func TestNewDirCreatedOutside(t *testing.T) {
	e := newEnv(t, nil)
	requireWatching(t, e)
	s := e.sandbox(policy.Policy{DenyRead: rules(".env", "*.pem", "secrets")})

	flat := e.write(filepath.Join(e.project, "later", ".env"), "K=v")
	deep := e.write(filepath.Join(e.project, "x", "y", "z", "server.pem"), "pem")
	inHome := e.write(filepath.Join(e.home, "newtool", "secrets", "token"), "t")
	fine := e.write(filepath.Join(e.project, "x", "y", "z", "main.go"), "package main")
	for _, p := range []string{flat, deep, inHome} {
		markedSoon(t, e.b, filepath.Dir(p))
		if got := e.run(s, "open", p, "r"); got != "EPERM" {
			t.Errorf("sandboxed read of %s: %s, want EPERM", p, got)
			continue
		}
		if ev := e.event(); ev.Path != p || ev.Op != events.OpRead || ev.CgroupID != s.CgroupID {
			t.Errorf("event %+v for %s", ev, p)
		}
	}
	if got := e.run(s, "open", fine, "r"); got != "ok" {
		t.Errorf("sandboxed read of %s: %s, want ok", fine, got)
	}
	if got := e.run(nil, "open", flat, "r"); got != "ok" {
		t.Errorf("read of %s outside the sandbox: %s", flat, got)
	}
	e.noEvent()
	if h := e.b.Health(); h.GrownDirs < 6 || h.UnmarkedDirs != 0 {
		t.Errorf("health %+v: want at least 6 grown directories (later, x, y, z, newtool, secrets), none unmarked", h)
	}
}

// TestNewDirMovedIn: a whole tree made elsewhere and moved in (mv, an
// unpacked archive renamed into place) is covered at every depth.
func TestNewDirMovedIn(t *testing.T) {
	e := newEnv(t, nil)
	requireWatching(t, e)
	s := e.sandbox(policy.Policy{DenyRead: rules(".env", "*.pem")})

	outside := filepath.Join(filepath.Dir(e.home), "staging") // same filesystem: rename(2), not a copy
	e.write(filepath.Join(outside, "tree", "a", "b", "c", ".env"), "K=v")
	e.write(filepath.Join(outside, "tree", "a", "key.pem"), "pem")
	e.write(filepath.Join(outside, "tree", "a", "b", "README"), "r")
	dst := filepath.Join(e.project, "vendor")
	if err := os.Rename(filepath.Join(outside, "tree"), dst); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(dst, "a", "b", "c", ".env"), filepath.Join(dst, "a", "key.pem")} {
		markedSoon(t, e.b, filepath.Dir(p))
		if got := e.run(s, "open", p, "r"); got != "EPERM" {
			t.Errorf("sandboxed read of %s (moved in): %s, want EPERM", p, got)
			continue
		}
		if ev := e.event(); ev.Path != p {
			t.Errorf("event %+v for %s", ev, p)
		}
	}
	if got := e.run(s, "open", filepath.Join(dst, "a", "b", "README"), "r"); got != "ok" {
		t.Errorf("sandboxed read of an unrelated moved-in file: %s", got)
	}
}

// TestNewDirRecreated: rm -rf build && mkdir build: the new inode at a path
// the tables already know gets its own marks.
func TestNewDirRecreated(t *testing.T) {
	e := newEnv(t, nil)
	requireWatching(t, e)
	s := e.sandbox(policy.Policy{DenyRead: rules(".env")})
	dir := filepath.Join(e.project, "build")
	for round := range 3 {
		p := e.write(filepath.Join(dir, "sub", ".env"), "K=v")
		markedSoon(t, e.b, filepath.Dir(p))
		if got := e.run(s, "open", p, "r"); got != "EPERM" {
			t.Fatalf("round %d: sandboxed read of %s: %s, want EPERM", round, p, got)
		}
		e.event()
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
	}
}

// TestNewDirBound: new directories count against MaxWalkDirs; past it they
// are reported in Health, and directories that have gone make room again.
func TestNewDirBound(t *testing.T) {
	// The project (1) and the home (2) are the walk's two directories.
	e := newEnv(t, func(o *Options) { o.MaxWalkDirs = 3; o.pruneEvery = time.Millisecond })
	requireWatching(t, e)
	s := e.sandbox(policy.Policy{DenyRead: rules(".env")})

	first := e.write(filepath.Join(e.project, "one", ".env"), "K=v")
	markedSoon(t, e.b, filepath.Dir(first))
	if got := e.run(s, "open", first, "r"); got != "EPERM" {
		t.Fatalf("first new directory: %s, want EPERM", got)
	}
	e.event()
	second := e.write(filepath.Join(e.project, "two", ".env"), "K=v")
	waitFor(t, "unmarked directory counted", func() bool { return e.b.Health().UnmarkedDirs == 1 })
	if got := e.run(s, "open", second, "r"); got != "ok" {
		t.Fatalf("directory beyond the bound: %s, want ok (not marked)", got)
	}
	// One goes; the next new directory takes its place.
	if err := os.RemoveAll(filepath.Join(e.project, "one")); err != nil {
		t.Fatal(err)
	}
	third := e.write(filepath.Join(e.project, "three", ".env"), "K=v")
	markedSoon(t, e.b, filepath.Dir(third))
	if got := e.run(s, "open", third, "r"); got != "EPERM" {
		t.Fatalf("new directory after one was removed: %s, want EPERM", got)
	}
	e.event()
	if h := e.b.Health(); h.UnmarkedDirs != 1 || h.GrownDirs != 2 {
		t.Fatalf("health %+v, want 2 grown, 1 unmarked", h)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for start := time.Now(); time.Since(start) < 2*time.Second; time.Sleep(time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("%s: not within 2s", what)
}

// TestNewDirRace measures the window that stays open: the time from
// mkdir(2) to the permission mark on the new directory, during which an
// open of a file in the directory is not reported. Then the worst case: a
// sandboxed process that polls for a secret to appear in new directories
// and opens it the moment it exists, while a process outside creates each
// directory and writes the secret into it at once (as git clone or tar x
// would).
func TestNewDirRace(t *testing.T) {
	e := newEnv(t, nil)
	requireWatching(t, e)
	s := e.sandbox(policy.Policy{DenyRead: rules(".env")})
	race := filepath.Join(e.project, "race")
	const n = 200
	lat := make([]time.Duration, 0, n)
	for i := range n {
		dir := filepath.Join(race, strconv.Itoa(i))
		if i == 0 {
			dir = race
		}
		start := time.Now()
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		// The table, set right after fanotify_mark(2) returns: cheaper to
		// poll than fdinfo, so the figure is the marker's, not the test's.
		waitFor(t, dir+" marked", func() bool {
			e.b.marks.mu.Lock()
			defer e.b.marks.mu.Unlock()
			_, ok := e.b.marks.applied[dir]
			return ok
		})
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	t.Logf("mkdir -> permission mark, %d directories: median %v, p90 %v, p99 %v, max %v",
		n, lat[n/2], lat[n*9/10], lat[n*99/100], lat[n-1])

	// The adversary: spins on stat(2) for race/w<i>/.env, opens it at once.
	const rounds = 100
	cmd := e.cmd(s, "spin-open", race, strconv.Itoa(rounds))
	out := new(strings.Builder)
	cmd.Stdout = out
	if err := forksafe.Start(cmd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	time.Sleep(50 * time.Millisecond)
	for i := range rounds {
		e.write(filepath.Join(race, "w"+strconv.Itoa(i), ".env"), "K=v")
		time.Sleep(2 * time.Millisecond)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("spin-open: %v", err)
	}
	var won, denied, missed int
	for _, r := range strings.Fields(out.String()) {
		switch r {
		case "ok":
			won++
		case "EPERM":
			denied++
		default:
			missed++
		}
	}
	t.Logf("sandboxed spinner vs a writer outside, %d new directories: read %d secrets, denied %d, other %d", rounds, won, denied, missed)
	if won+denied != rounds {
		t.Fatalf("spin-open answered %q", out.String())
	}
	// Whoever won each race, every directory ends up marked.
	for i := range rounds {
		markedSoon(t, e.b, filepath.Join(race, "w"+strconv.Itoa(i)))
	}
}

var _ = registerHelper("spin-open", func(args []string) string {
	rounds, _ := strconv.Atoi(args[1])
	var out []string
	for i := range rounds {
		p := filepath.Join(args[0], "w"+strconv.Itoa(i), ".env")
		deadline := time.Now().Add(5 * time.Second)
		for {
			var st unix.Stat_t
			if unix.Stat(p, &st) == nil {
				break
			}
			if time.Now().After(deadline) {
				return strings.Join(append(out, "timeout"), " ")
			}
		}
		out = append(out, helperOp("open", []string{p, "r"}))
	}
	return strings.Join(out, " ")
})

// BenchmarkCreate measures what the directory watcher costs the rest of the
// machine: create+close+unlink of a file in a watched directory, which
// queues a FAN_CREATE event aigate reads and drops (there is no
// "directories only" mark). "marked" is the same with the permission marks
// only (the O_CREAT open of a new file is a round trip either way).
func BenchmarkCreate(b *testing.B) {
	e := newEnv(b, nil)
	if err := e.b.Close(); err != nil {
		b.Fatal(err)
	}
	create := func(b *testing.B) {
		path := filepath.Join(e.project, "bench-file")
		for b.Loop() {
			fd, err := unix.Open(path, unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
			if err != nil {
				b.Fatal(err)
			}
			unix.Close(fd)
			if err := unix.Unlink(path); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("no-aigate", create)
	b.Run("marked", func(b *testing.B) {
		e2 := newEnv(b, func(o *Options) { o.Home, o.ProjectRoot = e.home, e.project; o.noWatch = true })
		e2.home, e2.project = e.home, e.project
		e2.sandbox(policy.Policy{DenyRead: rules(".env")})
		create(b)
	})
	b.Run("watched", func(b *testing.B) {
		e2 := newEnv(b, func(o *Options) { o.Home, o.ProjectRoot = e.home, e.project })
		e2.home, e2.project = e.home, e.project
		e2.sandbox(policy.Policy{DenyRead: rules(".env")})
		if !e2.b.Health().Watching {
			// skip-ok: a benchmark, which CI does not run.
			b.Skip("no directory watcher")
		}
		create(b)
	})
}

// TestNewFileByInode: a protected file created after Add, or replaced by a
// rename (an atomic rewrite of a rotated credential), is protected by inode
// once the watcher has handled it: a hard link of it outside every tree is
// refused, with an event naming the link. The time until the mark (the
// window in which only its path protects it) is logged.
func TestNewFileByInode(t *testing.T) {
	e := newEnv(t, nil)
	requireWatching(t, e)
	dir := filepath.Join(e.project, "conf")
	e.write(filepath.Join(dir, "README"), "r")
	s := e.sandbox(policy.Policy{DenyRead: rules(".env")})
	elsewhere := t.TempDir()

	created := e.write(filepath.Join(dir, ".env"), "K=created")
	staged := e.write(filepath.Join(filepath.Dir(e.home), "staged-env"), "K=rotated")
	replacedAt := filepath.Join(e.project, ".env")
	unrelated := e.write(filepath.Join(dir, "notes.txt"), "n")
	for i, c := range []struct {
		path    string
		prepare func()
	}{
		{created, func() {}},
		{replacedAt, func() {
			e.write(replacedAt, "K=old")
			markedSoon(t, e.b, replacedAt)
			if err := os.Rename(staged, replacedAt); err != nil { // a new inode at the protected name
				t.Fatal(err)
			}
		}},
	} {
		c.prepare()
		t.Logf("%s marked %v after it appeared", c.path, markedSoon(t, e.b, c.path))
		link := filepath.Join(elsewhere, fmt.Sprintf("link%d", i))
		if err := os.Link(c.path, link); err != nil {
			t.Fatal(err)
		}
		if got := e.run(s, "open", link, "r"); got != "EPERM" {
			t.Errorf("sandboxed read of %s, a hard link of %s: %s, want EPERM", link, c.path, got)
			continue
		}
		if ev := e.event(); ev.Path != link || ev.Op != events.OpRead {
			t.Errorf("event %+v for %s", ev, link)
		}
	}
	// The control: an unrelated new file stays readable through a link.
	link := filepath.Join(elsewhere, "notes")
	if err := os.Link(unrelated, link); err != nil {
		t.Fatal(err)
	}
	if got := e.run(s, "open", link, "r"); got != "ok" {
		t.Errorf("sandboxed read of an unrelated new file's link: %s", got)
	}
	e.noEvent()
}
