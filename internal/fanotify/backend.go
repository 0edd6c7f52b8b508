//go:build linux

package fanotify

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/resolve"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Options configure the backend. Zero values take the defaults.
type Options struct {
	Logger *zap.Logger
	// Home and ProjectRoot are walked for name rules (".env", "*.pem"):
	// their directories are marked so that opens of matching entries, also
	// ones created later, are reported.
	Home        string
	ProjectRoot string
	// ExecDirs is where exec name rules are resolved; default
	// resolve.DefaultExecDirs($PATH).
	ExecDirs []string
	// MaxWalkDirs bounds the directories marked per sandbox (default 20000).
	MaxWalkDirs int
	// MaxIgnoreMarks bounds the ignore masks set on unrelated files in marked
	// directories (default 50000). Each pins an inode in memory.
	MaxIgnoreMarks int
	// WalkCacheDir, when set, keeps the walk cache between processes
	// there, a file per user (walkpersist.go): for embedded runs, which
	// start a new backend each time. It must be root's and writable by no
	// one else.
	WalkCacheDir string
	// FlushWhenEmpty: when the last sandbox is removed, drop every mark
	// of both groups in one call each (FAN_MARK_FLUSH) instead of one per
	// path, and keep nothing for a later sandbox (ignore masks, lingering
	// exec marks). For embedded runs, whose process ends with its
	// sandbox: removing a large home's marks path by path was a fifth of
	// such a run (two marks per directory).
	FlushWhenEmpty bool
	// KeepDir, when set, is where the content of protected files too
	// large to keep in memory is copied, as unnamed files (keep.go). It
	// is made if missing and must be root's, mode 0700; without it a
	// truncate of such a file cannot be undone.
	KeepDir string
	// Workers decide sandboxed events (default 4).
	Workers int
	// DecisionTimeout is how long a sandboxed open may wait for a verdict
	// before it is denied (default 2s).
	DecisionTimeout time.Duration
	// EventBuffer is the capacity of the Events channel (default 4096).
	EventBuffer int
	// MarkLinger is how long an exec-only mark (the deny_exec copy
	// directories: /tmp, /var/tmp, /dev/shm; the filesystem exec marks
	// with the exec directories' ignore marks) stays after the last
	// sandbox that needed it, so that the next sandbox does not set it
	// again (marks.go, lingerMark; execfs.go, remove); default 10s,
	// negative: none.
	MarkLinger time.Duration

	// beforeDecide, for tests, runs in a worker before each decision.
	beforeDecide func(*pending)
	// noFSExec, for tests and benchmarks, sets no filesystem exec marks
	// (execfs.go), as on a kernel that refuses them.
	noFSExec bool
	// noExecIgnore, for tests and benchmarks, sets no ignore marks on
	// the exec directories no sandbox can write into (execignore.go).
	noExecIgnore bool
	// onExecEvent, for tests, is called by the reader with the path of
	// each event of the exec group.
	onExecEvent func(path string)
	// syscallRunning, for tests, makes a read of /proc/TID/syscall answer
	// "running" (a woken thread, see blocked) while it returns true.
	syscallRunning func(tid int) bool
	// allInWorkers, for tests, sends every sandboxed event to the workers
	// (no decideInline), so that beforeDecide sees them all.
	allInWorkers bool
	// pruneEvery is how often a sandbox at its directory bound looks for
	// directories that have gone, which no longer count (rm -rf
	// node_modules); default 5s.
	pruneEvery time.Duration
	// noWatch, for benchmarks, leaves the directory watcher off.
	noWatch bool
	// readerStall: once the reader has held one batch of events this long
	// the reaper withholds the guard's heartbeat (default readerStall).
	// guardStall and guardRelease: how long without a heartbeat before the
	// guard freezes the sandboxes, and before it kills them and aigate to
	// release the group (guard.go). Tests shorten them.
	readerStall  time.Duration
	guardStall   time.Duration
	guardRelease time.Duration
	// beforeBatch, for tests, runs in the reader before each read.
	beforeBatch func()
	// noPlaceByID, for tests, places every opener by /proc/TID/cgroup
	// (place.go), as on kernels before 6.13.
	noPlaceByID bool
	// beforeIgnoreBatch, for tests, runs before each batch of ignore
	// masks set in the background (ignoreLater).
	beforeIgnoreBatch func()
}

func (o *Options) defaults() {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.ExecDirs == nil {
		o.ExecDirs = resolve.DefaultExecDirs(os.Getenv("PATH"))
	}
	if o.MaxWalkDirs <= 0 {
		o.MaxWalkDirs = 20000
	}
	if o.MaxIgnoreMarks <= 0 {
		o.MaxIgnoreMarks = 50000
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.DecisionTimeout <= 0 {
		o.DecisionTimeout = 2 * time.Second
	}
	if o.EventBuffer <= 0 {
		o.EventBuffer = 4096
	}
	if o.MarkLinger == 0 {
		o.MarkLinger = 10 * time.Second
	}
	if o.pruneEvery <= 0 {
		o.pruneEvery = 5 * time.Second
	}
	if o.readerStall <= 0 {
		o.readerStall = readerStall
	}
	if o.guardStall <= 0 {
		o.guardStall = guardStall
	}
	if o.guardRelease <= o.guardStall {
		o.guardRelease = max(guardRelease, 2*o.guardStall)
	}
}

// Backend enforces file and exec rules with fanotify permission events.
type Backend struct {
	opts  Options
	log   *zap.Logger
	group int
	// execGroup holds the filesystem exec marks and the ignore marks of
	// the directories no sandbox can write into (execfs.go): apart from
	// group, whose inode marks (a denied /usr/bin/curl) an ignore mark on
	// their directory would silence.
	execGroup int
	wake      [2]int // pipe that interrupts the reader's poll on Close
	cgRoot    string
	guard     *guard
	marks     *markTable
	watch     *watcher   // nil when the kernel cannot report directory creations
	ldso      *loaders   // dynamic loaders, to refuse ld.so running a deny_exec binary
	walks     *walkCache // directory listings of earlier sandboxes' walks
	stored    *walkStore // nil, or where walks is kept between processes
	keep      *keeper    // copies of the deny_write files, to undo a rename (keep.go)
	// addMu is held by Add from the sandbox's registration until its
	// trees are marked and watched, and by Remove while it flushes the
	// groups (FlushWhenEmpty), so that a flush never takes the marks of
	// a sandbox added meanwhile.
	addMu sync.Mutex
	// watchMu: one reader of the watcher at a time (drainWatch).
	watchMu sync.Mutex
	wmemo   watchMemo // under watchMu
	// ignoring counts the goroutines setting ignore masks (ignoreLater);
	// Close waits for them before it closes the group. ignClosed, under
	// ignMu, says Close has begun: no more start.
	ignoring  sync.WaitGroup
	ignMu     sync.Mutex
	ignClosed bool
	// sweeps counts the sweeps after a kill (sweep.go), started under
	// ignMu while ignClosed is false; Close waits for them too.
	sweeps sync.WaitGroup
	// placed remembers the sandbox of processes seen recently, for a
	// watcher event whose process has exited by the time it is read.
	placed pidCache
	// exits, under mu: the kernel's records of sandboxed exits, or nil
	// (RecordExits).
	exits ExitRecords

	mu        sync.RWMutex
	sandboxes map[uint32]*sandbox
	byCgroup  map[string]*sandbox // the same, by rel: sandboxOf's index
	// placedIDs caches, by cgroup id, the sandbox a cgroup is in or
	// below, or nil (place.go); emptied whenever sandboxes changes.
	placedIDs map[uint64]*sandbox
	// cgRootFD is the cgroup2 mount, to open cgroups by id; -1 if not.
	cgRootFD    int
	noPlaceByID atomic.Bool  // the kernel cannot tell a thread's cgroup id
	pidfds      pidfdCache   // openers' thread pidfds (place.go)
	sysc        syscallFiles // openers' /proc/TID/syscall (procfd.go)
	// fdDir is /proc/self/fd, to name an event's file (fdPath); -1 if not.
	fdDir int

	pending pendingSet
	work    chan *pending
	events  chan events.Event
	sent    atomic.Uint64 // events handed to events, for Flush
	stats   counters
	// batchSince is when the reader began the batch in hand, as time since
	// epoch plus one; 0 while it polls (loop.go).
	batchSince atomic.Int64
	epoch      time.Time

	wg        sync.WaitGroup
	closeOnce sync.Once
	closing   chan struct{}

	// fsexec: whole filesystems marked for execs, for copies of
	// deny_exec binaries (execfs.go).
	fsexec *fsExecMarks
}

var _ enforce.Backend = (*Backend)(nil)

// sandbox is one registered sandbox and what it needs.
type sandbox struct {
	*enforce.Sandbox
	rel  string // cgroup path relative to the cgroup2 mount, as in /proc/PID/cgroup
	plan *plan
	kept []string // the paths whose copies it holds a reference to
	// named are the names watched for it outside the trees (above.go).
	named []namedWatch
	// terms are the terminals watched for opens (terminal.go); "" where
	// the watch failed.
	terms []string
	// pts: the watcher watches every pseudo-terminal for this sandbox
	// (ptsopen.go); vts: every virtual console (vtopen.go).
	pts, vts bool
	// unkept are the deny_write files it protects that the keeper could
	// not hold (past its bound), and startDirs the directories of its
	// tree at or above a deny_write path at its start: what a sweep
	// (sweep.go) must find again.
	unkept    map[string]startFile
	startDirs map[string]struct{}
	// sweepMu guards the sweep after a kill (killAndSweep): its queue,
	// whether one runs (sweepDone, closed when it ends), and whether
	// Remove has begun (sweepClosed: no more sweeps).
	sweepMu     sync.Mutex
	sweepJobs   []sweepJob
	sweepDone   chan struct{}
	sweepClosed bool

	// mu serialises the plan's growth (grow.go) against Remove.
	mu          sync.Mutex
	removed     bool
	boundWarned bool
	// ignStop is closed by Remove: the ignore masks of its plan are
	// no longer worth setting (ignoreLater).
	ignStop   chan struct{}
	nextPrune time.Time
}

// Open creates the fanotify group, the guard process that fails closed if
// aigate dies, and the decision goroutines.
func Open(opts Options) (*Backend, error) {
	opts.defaults()
	cgRoot, err := cgroup.Mountpoint()
	if err != nil {
		return nil, fmt.Errorf("open fanotify backend: %w", err)
	}
	group, err := initGroup()
	if err != nil {
		return nil, fmt.Errorf("open fanotify backend: %w", err)
	}
	execGroup, err := initGroup()
	if err != nil {
		unix.Close(group)
		return nil, fmt.Errorf("open fanotify backend: filesystem exec marks: %w", err)
	}
	b := &Backend{
		opts:      opts,
		log:       opts.Logger,
		group:     group,
		execGroup: execGroup,
		cgRoot:    strings.TrimSuffix(cgRoot, "/"),
		marks:     newMarkTable(group, opts.MaxIgnoreMarks, max(opts.MarkLinger, 0)),
		ldso:      newLoaders(),
		walks:     newWalkCache(),
		stored:    newWalkStoreIf(opts.WalkCacheDir),
		keep:      newKeeper(maxKept),
		sandboxes: map[uint32]*sandbox{},
		byCgroup:  map[string]*sandbox{},
		placedIDs: map[uint64]*sandbox{},
		cgRootFD:  -1,
		fdDir:     -1,
		pending:   pendingSet{m: map[*pending]struct{}{}},
		work:      make(chan *pending, 256),
		events:    make(chan events.Event, opts.EventBuffer),
		closing:   make(chan struct{}),
		epoch:     time.Now(),
	}
	b.keep.log = b.log
	b.sysc.running = opts.syscallRunning
	fsLinger := max(opts.MarkLinger, 0)
	if opts.FlushWhenEmpty {
		fsLinger = 0 // an embedded run's process ends with its sandbox
	}
	b.fsexec = newFSExecMarks(execGroup, opts.noFSExec, opts.noExecIgnore, fsLinger, b.log)
	b.fsexec.entryOK = b.execIgnorable
	b.noPlaceByID.Store(opts.noPlaceByID)
	if opts.KeepDir != "" {
		if err := b.keep.useDir(opts.KeepDir); err != nil {
			b.log.Warn("protected files over 64 KiB have no copy of their content: a truncate of one inside a sandbox cannot be undone", zap.Error(err))
		}
	}
	if err := unix.Pipe2(b.wake[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		unix.Close(group)
		unix.Close(execGroup)
		b.keep.close()
		return nil, fmt.Errorf("open fanotify backend: %w", err)
	}
	b.guard, err = startGuard(group, execGroup, opts.guardStall, opts.guardRelease)
	if err != nil {
		unix.Close(group)
		unix.Close(execGroup)
		b.keep.close()
		unix.Close(b.wake[0])
		unix.Close(b.wake[1])
		return nil, fmt.Errorf("open fanotify backend: %w", err)
	}
	if opts.noWatch {
		// no watcher
	} else if b.watch, err = newWatcher(); err != nil {
		b.log.Warn("directories created after a sandbox starts will not be marked: name rules are not enforced in them", zap.Error(err))
	} else {
		b.keep.notify = b.watch.fd
	}
	if fd, err := unix.Open(b.cgRoot, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err == nil {
		b.cgRootFD = fd
	}
	if fd, err := unix.Open("/proc/self/fd", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err == nil {
		b.fdDir = fd
	}
	b.start()
	return b, nil
}

// HoldLinks gives the guard duplicates of fds (the sandbox's network
// links) to hold until it has killed the sandbox at cgroupPath, or until
// Remove: if aigate dies, its network programs stay attached for as long
// as anything of the sandbox runs. Once it returns, the guard holds them
// (they are in its socket's queue), even if aigate dies at once.
func (b *Backend) HoldLinks(cgroupPath string, fds []int) error {
	if len(fds) == 0 {
		return nil
	}
	return b.guard.hold(cgroupPath, fds)
}

// Name implements enforce.Backend.
func (b *Backend) Name() string { return "fanotify" }

// Add marks what sb's policy needs and starts deciding for its cgroup. The
// guard learns the cgroup first, so that a crash in the middle of Add still
// kills whatever runs in it.
func (b *Backend) Add(ctx context.Context, sb *enforce.Sandbox) error {
	if sb == nil || sb.Policy == nil || sb.ID == 0 {
		return errors.New("add sandbox: needs an id and a compiled policy")
	}
	rel, ok := strings.CutPrefix(strings.TrimSuffix(sb.CgroupPath, "/"), b.cgRoot)
	if !ok || !strings.HasPrefix(rel, "/") {
		return fmt.Errorf("add sandbox %s: cgroup %s is not below the cgroup v2 mount %s (or is its root)", sb.Name, sb.CgroupPath, b.cgRoot)
	}
	b.mu.Lock()
	_, dup := b.sandboxes[sb.ID]
	b.mu.Unlock()
	if dup {
		return fmt.Errorf("add sandbox %s: id %d already in use", sb.Name, sb.ID)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("add sandbox %s: %w", sb.Name, err)
	}
	// Through the agent each sandbox has its own owner: walk their home
	// and project, not the agent's.
	home, proj, execDirs := b.opts.Home, b.opts.ProjectRoot, b.opts.ExecDirs
	if sb.Home != "" {
		home = sb.Home
	}
	if sb.ProjectRoot != "" {
		proj = sb.ProjectRoot
	}
	if sb.ExecDirs != nil {
		execDirs = sb.ExecDirs
	}
	if err := b.stored.prepare(b.walks, home, proj); err != nil {
		// Ignored, and replaced when the backend closes: the walk
		// lists every directory from the disk.
		b.log.Debug("walk cache not used", zap.Error(err))
	}
	p, err := newPlanCached(sb.Policy, home, proj, execDirs, b.opts.MaxWalkDirs, b.opts.MaxIgnoreMarks, b.walks, b.marks.ignorable, sb.LandlockCovers)
	if err != nil {
		// A protected path that cannot be examined is still matched by path
		// in every directory that is marked; say so, don't refuse to run.
		b.log.Warn("some protected paths could not be examined", zap.String("sandbox", sb.Name), zap.Error(err))
	}
	b.stats.truncated(len(p.truncated))
	for _, root := range p.truncated {
		b.log.Warn("directory walk stopped at the bound: deeper directories are not marked, name rules there are not enforced",
			zap.String("root", root), zap.Int("max_walk_dirs", b.opts.MaxWalkDirs))
	}
	// Before the sandbox is decided for: the loaders its deny_exec binaries
	// name, so that the first ld.so run of one needs no ELF parsing.
	b.ldso.refresh(p.execPaths())
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("add sandbox %s: %w", sb.Name, err)
	}
	if err := b.guard.add(sb.CgroupPath); err != nil {
		return fmt.Errorf("add sandbox %s: %w", sb.Name, err)
	}
	s := &sandbox{Sandbox: sb, rel: rel, plan: p, ignStop: make(chan struct{}), startDirs: map[string]struct{}{},
		unkept: map[string]startFile{}}
	for dir := range p.tree {
		if _, ok := replaces(sb.Policy, dir); ok {
			s.startDirs[dir] = struct{}{}
		}
	}
	// Before the marks: these opens then ask no one.
	var unkept int
	for key, path := range p.protected {
		if p.inodes[key].write == 0 {
			continue
		}
		if b.keep.hold(path) {
			s.kept = append(s.kept, path)
		} else {
			unkept++
			s.unkept[path] = startFile{key: key, id: p.ids[key]}
		}
	}
	// The exact deny_write paths that do not exist: a file renamed there
	// (Claude Code's first .claude/settings.local.json) is removed.
	for _, e := range sb.Policy.Write.Paths {
		if _, err := os.Lstat(e.Value); !errors.Is(err, os.ErrNotExist) {
			continue
		}
		if b.keep.hold(e.Value) {
			s.kept = append(s.kept, e.Value)
		} else {
			unkept++
		}
	}
	if b.watch != nil {
		s.named = namesToWatch(keptInPlace(p, sb.Policy), p.tree)
		s.terms = terminals(sb.Policy)
	}
	if unkept > 0 {
		b.log.Warn("some deny_write files have no copy to restore them from: replacing one by a rename kills the sandbox",
			zap.String("sandbox", sb.Name), zap.Int("files", unkept), zap.Int("max_kept", maxKept))
	}
	// Held from before the watcher can find s until its trees are marked
	// and watched: a directory reported meanwhile waits, then grows them.
	b.addMu.Lock()
	s.mu.Lock()
	b.mu.Lock()
	b.sandboxes[sb.ID] = s
	b.byCgroup[rel] = s
	clear(b.placedIDs)
	b.mu.Unlock()
	// Registered, so that its policy is asked: exec directories that
	// hold what it must see reported lose their ignore marks.
	b.fsexec.check(sb.ID, sb.UID)
	err = b.marks.addMarks(sb.ID, p)
	if err == nil {
		// Under addMu: a loader's ignore mask is set only after every
		// sandbox added before was asked, and taken off before the new
		// one's command starts (execfs.go).
		err = b.unignoreLoaders(sb.Policy)
	}
	if err == nil && len(p.copies) > 0 {
		b.fsexec.add(sb.ID, execDirs)
		b.ignoreLoaders(p)
	}
	if b.watch != nil {
		// Directories created during the walk above, before these marks,
		// are not seen; the sandboxed tool has not started yet. (Added
		// even when marking failed: Remove drops one reference per
		// tree directory.)
		var failed int
		var first error
		for dir, td := range p.tree {
			if werr := b.watch.add(dir, td.key.dev, true, false); werr != nil {
				failed++
				first = cmp.Or(first, werr)
			}
		}
		if failed > 0 {
			b.log.Warn("new directories in some marked directories will not be marked", zap.String("sandbox", sb.Name),
				zap.Int("directories", failed), zap.Error(first))
		}
		failed, first = 0, nil
		for _, n := range s.named {
			var werr error
			if n.name == "" {
				werr = b.watch.watchSelf(n.dir, n.dev)
			} else {
				werr = b.watch.watchName(n.dir, n.dev, n.name)
			}
			if werr != nil {
				failed++
				first = cmp.Or(first, werr)
			}
		}
		if failed > 0 {
			// As in the trees: a filesystem without file handles.
			b.log.Warn("some deny_write paths outside the project and home are not watched: their unlink or rename is not seen",
				zap.String("sandbox", sb.Name), zap.Int("names", failed), zap.Error(first))
		}
		var unwatched []string
		for i, t := range s.terms {
			if werr := b.watch.watchOpen(t); werr != nil {
				// A kernel that gives no file handles for devpts (6.1
				// does not, 6.12 does): the terminal is not watched.
				b.log.Warn("a terminal is not watched: its open from inside is not seen", zap.String("sandbox", sb.Name), zap.Error(werr))
				s.terms[i] = ""
				unwatched = append(unwatched, t)
			}
		}
		if len(unwatched) > 0 {
			p.unenforced = append(p.unenforced, unwatchedTerminals(unwatched))
		}
		if werr := b.watch.watchPts(); werr != nil {
			b.log.Warn("pseudo-terminals are not watched: the open from inside of one opened later is not seen", zap.String("sandbox", sb.Name), zap.Error(werr))
			p.unenforced = append(p.unenforced, unwatchedNewTerminals)
		} else {
			s.pts = true
		}
		if werr := b.watch.watchConsoles(); werr != nil {
			b.log.Warn("virtual consoles are not watched: the open from inside of one the user logs in on is not seen", zap.String("sandbox", sb.Name), zap.Error(werr))
			p.unenforced = append(p.unenforced, unwatchedConsoles)
		} else {
			s.vts = true
		}
	}
	dirs, inodes := p.dirs, len(p.inodes)
	s.mu.Unlock()
	b.addMu.Unlock()
	if err != nil {
		_ = b.Remove(sb.ID)
		return fmt.Errorf("add sandbox %s: %w", sb.Name, err)
	}
	b.ignoreLater(s)
	marks, ignored := b.marks.counts()
	b.log.Debug("sandbox added", zap.String("sandbox", sb.Name), zap.Int("dirs", dirs), zap.Int("dirs_from_cache", p.cached),
		zap.Int("inodes", inodes), zap.Int("marks", marks), zap.Int("ignore_marks", ignored))
	return nil
}

// ignoreLater sets the ignore masks of p's unrelated files in the
// background: up to MaxIgnoreMarks (50,000) marks and a lookup each, a
// fifth of an embedded run from a large home, which the command need not
// wait for. Until one is set, an open of that file asks a decision worker,
// which allows it; everything a sandbox is refused is marked before Add
// returns. They stop with the sandbox: an embedded run from a large home
// set ~47,000 of them after its command had ended, up to the exit, on
// the CPUs the command and its end needed. An agent's next sandbox
// records whatever is left (plan.unrelated keeps the files without one).
func (b *Backend) ignoreLater(s *sandbox) {
	p := s.plan
	if len(p.unrelated) == 0 {
		return
	}
	b.ignMu.Lock()
	defer b.ignMu.Unlock()
	if b.ignClosed {
		return
	}
	b.ignoring.Add(1)
	go func() {
		defer b.ignoring.Done()
		b.marks.ignore(p.unrelated, p.copies, b.anyOtherMatch(s.ID), b.closing, s.ignStop, b.opts.beforeIgnoreBatch)
	}()
}

// anyOtherMatch reports whether some live sandbox's policy matches path;
// such a file must never get an ignore mask. It is asked for the unrelated
// files of sandbox id's own plan: its planner recorded them because id's
// policy matches none of them (by the same matchPath), so only the other
// sandboxes are asked. Asking id's policy again for every file cost a
// tenth of an embedded run from a large home, where it is the only
// sandbox.
func (b *Backend) anyOtherMatch(id uint32) func(string) bool {
	return func(path string) bool {
		b.mu.RLock()
		defer b.mu.RUnlock()
		for sid, s := range b.sandboxes {
			if sid != id && matchPath(s.Policy, path).any() {
				return true
			}
		}
		return false
	}
}

// Remove stops enforcing for the sandbox and drops the marks only it needed.
func (b *Backend) Remove(id uint32) error {
	if b.watch != nil {
		// What its processes moved before they were killed is handled
		// (undone, reported) while the sandbox is still known.
		select {
		case <-b.closing:
		default:
			evs := make([]watchEvent, 0, 64)
			b.drainWatch(make([]byte, 64*1024), &evs)
		}
	}
	b.mu.Lock()
	s, ok := b.sandboxes[id]
	delete(b.sandboxes, id)
	if ok && b.byCgroup[s.rel] == s {
		delete(b.byCgroup, s.rel)
	}
	clear(b.placedIDs)
	b.mu.Unlock()
	if !ok {
		return fmt.Errorf("remove sandbox %d: not registered", id)
	}
	select {
	case <-b.closing:
		return nil // Close released the group and the guard killed the sandbox
	default:
	}
	// A sweep after a kill puts protected files back from the keeper's
	// copies, which go below: a session that ended as its tree was
	// removed is swept before run returns.
	s.waitSweeps()
	s.mu.Lock()
	s.removed = true
	close(s.ignStop)
	for _, path := range s.kept {
		b.keep.release(path)
	}
	var err error
	marksGone, watchGone := b.flushIfEmpty()
	if !marksGone {
		err = b.marks.remove(id, s.plan)
	}
	if b.watch != nil && !watchGone {
		for dir := range s.plan.tree {
			b.watch.remove(dir)
		}
		for _, n := range s.named {
			if n.name == "" {
				b.watch.unwatchSelf(n.dir)
			} else {
				b.watch.unwatchName(n.dir, n.name)
			}
		}
		for _, t := range s.terms {
			if t != "" {
				b.watch.unwatchOpen(t)
			}
		}
		if s.pts {
			b.watch.unwatchPts()
		}
		if s.vts {
			b.watch.unwatchConsoles()
		}
	}
	b.fsexec.remove(id)
	b.fsexec.forget(id)
	s.mu.Unlock()
	if gerr := b.guard.del(s.CgroupPath); gerr != nil {
		err = errors.Join(err, gerr)
	}
	if err != nil {
		return fmt.Errorf("remove sandbox %s: %w", s.Name, err)
	}
	return nil
}

// flushIfEmpty drops every mark of the permission group and of the
// watcher's when FlushWhenEmpty is set and no sandbox is left, and
// reports for each whether it did (if not, the caller removes the
// sandbox's marks path by path). The table and the watcher forget them
// too: a sandbox added later marks afresh.
func (b *Backend) flushIfEmpty() (marks, watch bool) {
	if !b.opts.FlushWhenEmpty {
		return false, false
	}
	b.addMu.Lock()
	defer b.addMu.Unlock()
	b.mu.RLock()
	empty := len(b.sandboxes) == 0
	b.mu.RUnlock()
	if !empty {
		return false, false
	}
	if err := b.marks.flush(); err != nil {
		b.log.Debug("marks removed path by path", zap.Error(err))
	} else {
		marks = true
	}
	if b.watch != nil {
		if err := b.watch.flush(); err != nil {
			b.log.Debug("directory watches removed path by path", zap.Error(err))
		} else {
			watch = true
		}
	}
	return marks, watch
}

// Events implements enforce.Backend.
func (b *Backend) Events() <-chan events.Event { return b.events }

// Stats implements enforce.Backend.
func (b *Backend) Stats() (enforce.Stats, error) {
	return b.stats.snapshot(), nil
}

// Close stops deciding and releases the group. Sandboxes still registered
// are killed by the guard before the group goes away, because the kernel
// allows every open it can no longer ask about.
func (b *Backend) Close() error {
	var err error
	b.closeOnce.Do(func() {
		// The guard kills what is left while the loop still answers, so
		// that unrelated processes touching marked files never wait.
		err = b.guard.close(10 * time.Second)
		close(b.closing)
		b.ignMu.Lock()
		b.ignClosed = true
		b.ignMu.Unlock()
		b.ignoring.Wait()
		b.sweeps.Wait()
		_, _ = unix.Write(b.wake[1], []byte{0})
		b.wg.Wait()
		b.pending.denyAll(b)
		b.marks.close()
		b.fsexec.close()
		unix.Close(b.group)
		unix.Close(b.execGroup)
		if b.watch != nil {
			b.watch.close()
		}
		b.keep.close()
		if b.exits != nil {
			if cerr := b.exits.Close(); cerr != nil {
				b.log.Debug("exit records not closed", zap.Error(cerr))
			}
		}
		if serr := b.stored.save(b.walks); serr != nil {
			b.log.Debug("walk cache not saved", zap.Error(serr))
		}
		unix.Close(b.wake[0])
		unix.Close(b.wake[1])
		if b.cgRootFD >= 0 {
			unix.Close(b.cgRootFD)
		}
		if b.fdDir >= 0 {
			unix.Close(b.fdDir)
		}
		b.pidfds.close()
		b.sysc.close()
		close(b.events)
	})
	return err
}
