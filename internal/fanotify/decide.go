//go:build linux

package fanotify

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/policy"
)

// sandboxOf returns the sandbox whose cgroup (or a cgroup beneath it) holds
// thread tid, or nil.
//
// A live thread is always placed by what the kernel says of it now, never
// from a cache by pid: a cached answer per pid could outlive the process
// and be wrong for the next one with the same number (a sandboxed child may
// get the pid of a process that was outside). Its cgroup id comes from a
// pidfd of the thread, which names that thread only (place.go); only the
// id's place among the sandboxes' cgroups is cached; else /proc/TID/cgroup
// is read. A process that has exited (a short mv or git, read by the
// watcher afterwards) is placed by the kernel's record of its exit, then by
// pidCache (see below). tid 0 means the opener lives in a pid namespace we
// cannot see, which sandboxes (started by aigate) never do.
func (b *Backend) sandboxOf(tid int) *sandbox {
	if tid <= 0 {
		return nil
	}
	b.mu.RLock()
	n := len(b.sandboxes)
	b.mu.RUnlock()
	if n == 0 {
		return nil
	}
	if s, ok := b.placeByID(tid); ok {
		if s != nil {
			b.placed.put(tid, s)
		}
		return s
	}
	cg, ok := readCgroup(tid)
	if !ok {
		return b.exitedSandbox(tid)
	}
	if s := b.sandboxAt(cg); s != nil {
		b.placed.put(tid, s)
		return s
	}
	return nil
}

// sandboxAt returns the sandbox whose cgroup is cg or the nearest of its
// ancestors: one map lookup per level of cg, where a loop over the
// sandboxes cost a comparison per sandbox (1,000 of them: tens of
// microseconds on every event of the machine).
func (b *Backend) sandboxAt(cg string) *sandbox {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.sandboxAtLocked(cg)
}

// sandboxAtLocked is sandboxAt with b.mu held.
func (b *Backend) sandboxAtLocked(cg string) *sandbox {
	for dir := cg; dir != ""; {
		if s := b.byCgroup[dir]; s != nil {
			return s
		}
		i := strings.LastIndexByte(dir, '/')
		if i < 0 {
			break
		}
		dir = dir[:i]
	}
	return nil
}

// exitedSandbox places a process that has exited (a short git or mv, read
// by the watcher afterwards), if its sandbox is still registered. First
// the kernel's record of its exit (ExitRecords): the sandbox it was in when
// it exited, whether or not it was ever seen here. Then the sandbox it was
// last seen in (pidCache), for when no record is kept (the kernel refused
// the program, or the record was evicted). The record comes first because
// it is the newer fact: a cached pid may be that of an earlier process.
//
// Both can be wrong in one case: a pid reused, within the time the event
// waits to be read, by a process outside every sandbox that has exited
// too; it is then taken for the sandboxed process that had the pid before
// it, and its move of a protected path is undone or kills the sandbox. A
// live process is never mistaken: /proc is read first.
func (b *Backend) exitedSandbox(tid int) *sandbox {
	b.mu.RLock()
	exits := b.exits
	b.mu.RUnlock()
	if exits != nil {
		if id, ok := exits.Exited(tid); ok {
			b.mu.RLock()
			defer b.mu.RUnlock()
			for _, s := range b.sandboxes {
				if s.CgroupID == id {
					return s
				}
			}
			return nil
		}
	}
	s := b.placed.get(tid)
	b.mu.RLock()
	defer b.mu.RUnlock()
	if s != nil && b.sandboxes[s.ID] == s {
		return s
	}
	return nil
}

// ExitRecords is what the kernel noted of sandboxed processes as they
// exited (loader.ExitRecorder, bpf/exitrec.c): the cgroup id of the
// sandbox each pid was in.
type ExitRecords interface {
	Exited(pid int) (cgroupID uint64, ok bool)
	Close() error
}

// RecordExits hands the backend the kernel's exit records, to place
// movers that have exited before the watcher reads their rename. Call it
// before the first Add; Close closes r.
func (b *Backend) RecordExits(r ExitRecords) {
	b.mu.Lock()
	b.exits = r
	b.mu.Unlock()
}

// pidCache maps the processes placed in a sandbox lately to it, in two
// generations of at most pidCacheSize each. A process that exits before
// the watcher reads its rename is then still placed if it was seen before
// (git reads .git/config, a permission event, before renaming over it).
// A pid reused within that time by a process outside every sandbox would
// be taken for the sandbox's: its move of a protected file would be undone.
type pidCache struct {
	mu       sync.Mutex
	cur, old map[int]*sandbox
}

const pidCacheSize = 4096

func (c *pidCache) put(pid int, s *sandbox) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur[pid] == s {
		return
	}
	if c.cur == nil || len(c.cur) >= pidCacheSize {
		c.old, c.cur = c.cur, make(map[int]*sandbox, 64)
	}
	c.cur[pid] = s
}

func (c *pidCache) get(pid int) *sandbox {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.cur[pid]; ok {
		return s
	}
	return c.old[pid]
}

// readCgroup returns the cgroup v2 path of tid from /proc/TID/cgroup.
func readCgroup(tid int) (string, bool) {
	var buf [4096]byte
	n, err := readProc(tid, "cgroup", buf[:])
	if err != nil || n <= 0 {
		return "", false
	}
	cg, ok := cgroup.V2Path(buf[:n])
	return string(cg), ok
}

// readProc reads /proc/TID/name into buf with one read: open, read, close
// and nothing else (os.ReadFile adds an fstat, a second read and an
// attempt to register the fd with the poller).
func readProc(tid int, name string, buf []byte) (int, error) {
	fd, err := unix.Open("/proc/"+strconv.Itoa(tid)+"/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	return unix.Read(fd, buf)
}

// verdict is the outcome of one sandboxed event.
type verdict struct {
	deny  bool // a rule matches
	audit bool // ... but the sandbox only reports
	kind  events.Kind
	op    events.Op
	rule  policy.RuleID
	path  string
	// unrelated: no rule of the sandbox applies to the file, by inode or
	// by path; a candidate for an ignore mask (ignorenew.go).
	unrelated bool
}

func (v verdict) allow() bool { return !v.deny || v.audit }

// facts are what a decision reads about the event's file: read once, by
// the reader, and kept for the worker when the reader hands the event on.
type facts struct {
	read   bool
	path   string
	size   int64 // 0 when fstat failed, as before
	key    inodeKey
	statOK bool
	// mode and nlink, when typeOK: only a regular file with one name
	// may get an ignore mask after its decision (ignorenew.go).
	mode   uint16
	nlink  uint32
	typeOK bool
}

// rules are the inode's rules, looked up at each decision: inodes gain
// rules while a sandbox runs (grow.go), also while an event waits for a
// worker.
func (f *facts) rules(p *plan, fd int) fileRules {
	if !f.statOK {
		return fileRules{}
	}
	return p.rulesOf(f.key, fd)
}

// recorded is rules unchecked (plan.recorded): the rules and the file
// handle recorded for the inode, for decideAt to confirm only when the
// check can change the verdict.
func (f *facts) recorded(p *plan) (fileRules, string) {
	if !f.statOK {
		return fileRules{}, ""
	}
	return p.recorded(f.key)
}

func (b *Backend) gather(p *pending) *facts {
	f := &p.facts
	if f.read {
		return f
	}
	f.read = true
	f.path = b.fdPath(p.fd)
	// The reader gathers these itself (decideInline): they must not wait
	// on a file server. AT_STATX_DONT_SYNC takes what the kernel holds of
	// a network filesystem's inode, as fresh as the open this event is
	// about (which revalidated it); on a local filesystem it changes
	// nothing.
	var stx unix.Statx_t
	const want = unix.STATX_INO | unix.STATX_SIZE
	const kind = unix.STATX_TYPE | unix.STATX_NLINK
	if err := unix.Statx(p.fd, "", unix.AT_EMPTY_PATH|unix.AT_STATX_DONT_SYNC, want|kind, &stx); err == nil && stx.Mask&want == want {
		f.key, f.statOK = inodeKey{unix.Mkdev(stx.Dev_major, stx.Dev_minor), stx.Ino}, true
		f.size = int64(stx.Size)
		if stx.Mask&kind == kind {
			f.mode, f.nlink, f.typeOK = stx.Mode, stx.Nlink, true
		}
	}
	return f
}

// decide checks one sandboxed event against its sandbox's policy: first by
// inode (a hard link or bind mount of a protected file has another path),
// then by path through the policy's reference matchers.
func (b *Backend) decide(p *pending) verdict {
	v, _ := b.decideAt(p, false)
	return v
}

// decideInline is the decision the reader makes itself, sparing the
// event the hand-off to a worker goroutine, which cost more than the
// decision (see readLoop's runtime.Gosched). It does only what cannot wait on anything but this
// machine's memory: a readlink and an fstat of the event's fd, the policy
// match, one read of /proc/TID/syscall and, for a read of a deny_exec
// file, a stat of /proc/TID/exe compared with the loaders already known.
// It returns false, with the
// facts read kept in p, when the decision needs more: /proc/TID/syscall
// again because the thread was "running", the ELF header of a deny_exec
// binary whose interpreter is not known yet, or a hash (of an exe the
// size of a loader, or of a file the size of a deny_exec binary).
// Those may take milliseconds, and open files, so they stay in the
// workers, where the reaper bounds them. The verdicts are the same either
// way: decideAt runs the same steps in the same order.
func (b *Backend) decideInline(p *pending) (verdict, bool) {
	return b.decideAt(p, true)
}

// decideAt decides p; inline, it gives up (false) at the first step that
// may wait.
func (b *Backend) decideAt(p *pending, inline bool) (verdict, bool) {
	c := p.sb.Policy
	f := b.gather(p)
	r, id := f.recorded(p.sb.plan)
	// The handle check (a syscall, 0.6 us of the reader's ~5 us here)
	// can only take rules away, for an inode whose number another file
	// has taken. When the inode's only rule is a write rule, that changes
	// nothing before the write step below (no read or exec rule to
	// lose), and there nothing either when the path has a write rule too
	// and the open only reads: the opener of a deny_write file reading it
	// (the common round trip of a protected file) is spared it. Any other
	// verdict checks first, as rulesOf does. Unconfirmed rules are never
	// fewer than confirmed ones: skipping the check cannot allow more.
	lazy := p.mask&unix.FAN_OPEN_EXEC_PERM == 0 && r.read == 0 && r.exec == 0 && r.write != 0 && id != ""
	if !lazy {
		r = confirmRules(r, id, p.fd)
	}
	v := verdict{audit: p.sb.Mode == policy.ModeAudit, path: f.path}
	if p.mask&unix.FAN_OPEN_EXEC_PERM != 0 {
		v.kind, v.op = events.KindExec, events.OpExec
		if v.audit && p.group == b.execGroup && b.firstGroupReports(r, v.path) {
			// The same exec is an event in the first group too, decided
			// there; reported once. Refusing sandboxes need not ask:
			// the kernel asks no group after the first refusal.
			return v, true
		}
		v.rule = r.exec
		if v.rule == 0 {
			v.rule, _ = c.MatchExec(v.path)
		}
		if v.rule == 0 {
			if inline && p.sb.plan.maybeCopy(f.size) {
				return v, false
			}
			v.rule = p.sb.plan.copyOf(p.fd, f.size)
		}
		v.deny = v.rule != 0
		return v, true
	}
	v.kind, v.op = events.KindFile, events.OpRead
	if r.read != 0 {
		v.rule, v.deny = r.read, true
		return v, true
	}
	// Each set is matched at most once per event: from here on the read
	// set does not match, so MatchExec is the exec set's answer and
	// MatchOpen for a write the write set's.
	if id, ok := c.Read.Match(v.path); ok {
		v.rule, v.deny = id, true
		return v, true
	}
	if b.mayCopyExec(p, f, r.exec, v.path) {
		if inline {
			return v, false
		}
		if rule := b.copyExec(p, f.size); rule != 0 {
			v.kind, v.op = events.KindExec, events.OpExec
			v.rule, v.deny = rule, true
			return v, true
		}
	}
	if r.exec == 0 && p.sb.plan.maybeCopy(f.size) {
		if inline {
			return v, false
		}
		if rule := b.loaderCopy(p, f.size); rule != 0 {
			v.kind, v.op = events.KindExec, events.OpExec
			v.rule, v.deny = rule, true
			return v, true
		}
	}
	if exec := b.loaderCandidate(p, r.exec, v.path); exec != 0 {
		loader, ok := b.loaderOpen(p, f, inline)
		if !ok {
			return v, false
		}
		if loader {
			v.kind, v.op = events.KindExec, events.OpExec
			v.rule, v.deny = exec, true
			return v, true
		}
	}
	// Only a write rule can still match: find out how the file is opened.
	var byPath policy.RuleID
	matched := lazy
	if lazy {
		if byPath, _ = c.Write.Match(v.path); byPath == 0 {
			// The inode's write rule alone applies: confirm it.
			r, lazy = confirmRules(r, id, p.fd), false
		}
	}
	write := r.write
	if write == 0 {
		if write = byPath; !matched {
			write, _ = c.Write.Match(v.path)
		}
		if write == 0 {
			// Nothing of this sandbox's applies: no rule by inode, none
			// by path, not a deny_exec binary's size (maybeCopy above).
			v.unrelated = f.statOK && !r.any()
			return v, true
		}
	}
	var access accessKind
	if inline {
		var ok bool
		if access, ok = b.sysc.openAccessOnce(p.tid); !ok {
			return v, false
		}
	} else {
		access = b.sysc.openAccess(p.tid, p.deadline)
	}
	if access == accessRead {
		return v, true
	}
	if lazy {
		// A write to a write-protected path either way; the rule
		// reported is the inode's if it is still that file's.
		if write = confirmRules(r, id, p.fd).write; write == 0 {
			write = byPath
		}
	}
	v.op = events.OpWrite
	v.rule, v.deny = write, true
	return v, true
}

// firstGroupReports reports whether the exec of the file at path (rules
// r) is an event in the backend's first group: its inode is marked for
// execs, or its directory.
func (b *Backend) firstGroupReports(r fileRules, path string) bool {
	return r.exec != 0 || b.marks.mask(filepath.Dir(path))&unix.FAN_OPEN_EXEC_PERM != 0
}

// loaderCandidate returns the exec rule of the file p opens (exec, the
// inode's, or by path), which a dynamic loader opening it would break
// (`ld.so /usr/bin/curl`, see loader.go), else 0. decideAt calls it once
// the read set has not matched path, so the exec set alone is MatchExec.
func (b *Backend) loaderCandidate(p *pending, exec policy.RuleID, path string) policy.RuleID {
	if exec == 0 {
		exec, _ = p.sb.Policy.Exec.Match(path)
	}
	return exec
}

// loaderOpen reports whether p's opener is a dynamic loader opening the
// file outside an exec: the open of a deny_exec file that is refused.
// Inline it answers only from what the loaders know already and one read
// of /proc/TID/syscall (false when that is not enough: the worker asks
// again, the whole way).
func (b *Backend) loaderOpen(p *pending, f *facts, inline bool) (loader, ok bool) {
	if !inline {
		// Not knowing whether the loader is inside execve refuses: the
		// open of a deny_exec file by a loader outside an exec is the
		// route this closes.
		if !b.ldso.isLoader(p.tid, p.fd) {
			return false, true
		}
		in, known := b.sysc.inExec(p.tid, p.deadline)
		return !(in && known), true
	}
	if !f.statOK {
		return false, false
	}
	if loader, ok = b.ldso.isLoaderKnown(p.tid, f.key); !ok || !loader {
		return loader, ok
	}
	in, ok := b.sysc.inExecOnce(p.tid)
	return !in, ok
}

// verdictOverload denies an event that no worker could take.
func (b *Backend) verdictOverload(p *pending) verdict {
	v := verdict{deny: true, kind: events.KindFile, op: events.OpRead, path: b.fdPath(p.fd)}
	if p.mask&unix.FAN_OPEN_EXEC_PERM != 0 {
		v.kind, v.op = events.KindExec, events.OpExec
	}
	return v
}

// fdPath is the path of the opened file as the kernel names it (the path
// the opener used, resolved; " (deleted)" appended for unlinked files).
// The link is read relative to a kept /proc/self/fd (b.fdDir): a
// readlink of "/proc/self/fd/N" walks three /proc components first, and
// os.Readlink allocates a buffer per try (0.9 us against 0.6 us here).
func (b *Backend) fdPath(fd int) string {
	if b.fdDir >= 0 {
		var buf [512]byte
		n, err := unix.Readlinkat(b.fdDir, strconv.Itoa(fd), buf[:])
		if err == nil && n < len(buf) {
			return string(buf[:n])
		}
		if err != nil {
			return ""
		}
		// Possibly cut: read it the long way.
	}
	p, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return ""
	}
	return p
}

// describe builds the event of a denial. Overload denials have no rule:
// they are counted apart (Health) and logged, not reported as policy
// violations.
func (b *Backend) describe(p *pending, v verdict) (events.Event, bool) {
	if !v.deny || v.rule == 0 {
		return events.Event{}, false
	}
	ev := events.Event{
		Time:     time.Now(),
		CgroupID: p.sb.CgroupID,
		PID:      uint32(p.tid),
		Kind:     v.kind,
		Op:       v.op,
		Path:     v.path,
		Rule:     uint32(v.rule),
		Audit:    v.audit,
		Backend:  "fanotify",
	}
	b.fillTask(&ev, p.tid)
	return ev, true
}

func (b *Backend) emit(ev events.Event) {
	select {
	case b.events <- ev:
		b.sent.Add(1)
	default:
		b.stats.dropped()
	}
}

// fillTask reads the thread's process id, uid and command name. /proc/TID/status
// names all three, but the kernel formats the whole file for it (memory
// figures under the mm's lock included): 4-6 us here, which a denied
// opener waited for, as the event is built before the answer (finish).
// The thread's pidfd, kept since it was placed (place.go), tells its
// process id and real uid in one ioctl and /proc/TID/comm its name (1.7 us
// for both); status is read when no pidfd is kept (an older kernel, a
// process that has exited). comm is the name as the kernel holds it, as
// the LSM backend reports it; status escaped a few characters.
func (b *Backend) fillTask(ev *events.Event, tid int) {
	if tgid, uid, ok := b.pidfdTask(tid); ok {
		var buf [64]byte // TASK_COMM_LEN is 16; a newline ends it
		if n, err := readProc(tid, "comm", buf[:]); err == nil && n > 0 {
			ev.TGID, ev.UID = tgid, uid
			ev.Comm = strings.TrimSuffix(string(buf[:n]), "\n")
			return
		}
	}
	fillTaskStatus(ev, tid)
}

// fillTaskStatus is fillTask from one read of /proc/TID/status. The three
// lines come first in the file, well within the buffer.
func fillTaskStatus(ev *events.Event, tid int) {
	var buf [1024]byte
	n, err := readProc(tid, "status", buf[:])
	if err != nil || n <= 0 {
		return
	}
	rest := string(buf[:n])
	for rest != "" {
		var line string
		line, rest, _ = strings.Cut(rest, "\n")
		k, val, _ := strings.Cut(line, ":")
		val = strings.TrimSpace(val)
		switch k {
		case "Name":
			ev.Comm = val
		case "Tgid":
			n, _ := strconv.ParseUint(val, 10, 32)
			ev.TGID = uint32(n)
		case "Uid":
			real, _, _ := strings.Cut(val, "\t")
			n, _ := strconv.ParseUint(real, 10, 32)
			ev.UID = uint32(n)
			return
		}
	}
}
