package dns

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/cgroup"
)

// Bounds of one owner lookup. A sandbox is hostile: it can hold thousands
// of processes and descriptors to make the scan slow, so the scan stops at
// whichever bound comes first and the event goes out without a process.
const (
	ownerMaxFDs     = 8192 // descriptors read per lookup
	ownerMaxCgroups = 64   // the sandbox's cgroup and those below it
	ownerMaxProcs   = 4096 // about the pids read from one cgroup.procs
	// ownerShare is how many budgets lookups may take in each second: a
	// flood of refused queries costs the proxy at most 20 x 5 ms = 10% of
	// a CPU.
	ownerShare = 20
)

var errBudget = errors.New("lookup budget spent")

// ownerFinder maps the client of a refused query to the process of the
// sandbox that holds its socket: sock_diag gives the socket's inode, and
// the descriptors of the sandbox's processes (from cgroup.procs, never
// /proc at large) are searched for socket:[inode].
type ownerFinder struct {
	dir   string // the sandbox's cgroup directory
	cgRel string // the same as /proc/PID/cgroup shows it ("/a/b")

	budget time.Duration // of one lookup
	sem    chan struct{} // one lookup at a time: the netlink socket is shared
	// Under sem:
	diag   *diagSock
	window time.Time     // start of the current second
	spent  time.Duration // time lookups took in it
	sc     *ownerScratch // during a lookup only
}

// ownerScratch is one lookup's buffers (~41 KiB). They are taken from a
// pool for the lookup rather than held by each finder: the agent runs a
// proxy, and so a finder, per sandbox, while refused queries are rare; a
// thousand idle sandboxes held 41 MiB of buffers that were never read.
type ownerScratch struct {
	link  []byte // readlink buffer
	dents []byte // getdents buffer
	file  []byte // cgroup.procs, /proc/PID/cgroup and comm
}

var ownerScratchPool = sync.Pool{New: func() any {
	return &ownerScratch{link: make([]byte, 64), dents: make([]byte, 8192), file: make([]byte, ownerMaxProcs*8)}
}}

// newOwnerFinder opens the sock_diag socket in the calling thread's network
// namespace, which must be that of the listener l (checked: a lookup in
// another namespace would find nothing, or the wrong socket).
func newOwnerFinder(cgroupDir string, l any, budget time.Duration) (*ownerFinder, error) {
	if cgroupDir == "" {
		return nil, errors.New("no sandbox cgroup given")
	}
	root, err := cgroup.Mountpoint()
	if err != nil {
		return nil, err
	}
	rel, err := filepath.Rel(root, cgroupDir)
	if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
		return nil, fmt.Errorf("sandbox cgroup %s is not below the cgroup v2 mount %s", cgroupDir, root)
	}
	d, err := openDiag()
	if err != nil {
		return nil, err
	}
	if err := sameNetns(d.fd, l); err != nil {
		d.close()
		return nil, err
	}
	return &ownerFinder{
		dir: cgroupDir, cgRel: "/" + rel, diag: d, budget: budget,
		sem: make(chan struct{}, 1),
	}, nil
}

func (f *ownerFinder) close() error {
	f.sem <- struct{}{} // waits for a lookup in progress
	return f.diag.close()
}

// find returns the process holding p's socket. It waits for a lookup in
// progress at most f.budget, then takes at most f.budget itself.
func (f *ownerFinder) find(p peer) (owner, error) {
	wait := time.NewTimer(f.budget)
	defer wait.Stop()
	select {
	case f.sem <- struct{}{}:
	case <-wait.C:
		return owner{}, fmt.Errorf("another lookup is running: %w", errBudget)
	}
	defer func() { <-f.sem }()
	start := time.Now()
	if start.Sub(f.window) >= time.Second {
		f.window, f.spent = start, 0
	}
	if f.spent >= ownerShare*f.budget {
		return owner{}, fmt.Errorf("lookups took %s in the last second: %w", f.spent, errBudget)
	}
	defer func() { f.spent += time.Since(start) }()
	return f.lookup(p, start.Add(f.budget))
}

// lookup is find's search, under sem.
func (f *ownerFinder) lookup(p peer, deadline time.Time) (owner, error) {
	f.sc = ownerScratchPool.Get().(*ownerScratch)
	defer func() {
		ownerScratchPool.Put(f.sc)
		f.sc = nil
	}()
	proto := uint8(unix.IPPROTO_UDP)
	if p.tcp {
		proto = unix.IPPROTO_TCP
	}
	m, err := f.diag.lookup(proto, p.client, p.proxy, deadline)
	if err != nil {
		return owner{}, err
	}
	if m.local.Port() != p.client.Port() {
		return owner{}, fmt.Errorf("sock_diag answered with a socket on port %d, not %d", m.local.Port(), p.client.Port())
	}
	o, err := f.holder(m.inode, deadline)
	if err != nil {
		return owner{}, err
	}
	o.uid = m.uid
	return o, nil
}

// scan is what one lookup may still spend.
type scan struct {
	fds      int
	deadline time.Time
}

// spend accounts for reading one descriptor; reading one costs about 5 µs
// (proc path walk, permission check, d_path), so the clock is read every
// 16 of them.
func (s *scan) spend() error {
	s.fds--
	if s.fds < 0 || (s.fds%16 == 0 && time.Now().After(s.deadline)) {
		return errBudget
	}
	return nil
}

// holder searches the descriptors of the sandbox's processes, its own
// cgroup first, then the cgroups below it, for the socket inode ino. In
// each cgroup the highest pids, the newest processes but after a wrap, go
// first: a query often comes from a short-lived tool (curl, dig) with a
// few descriptors, while the long-lived agent holds many.
func (f *ownerFinder) holder(ino uint32, deadline time.Time) (owner, error) {
	want := []byte("socket:[" + strconv.FormatUint(uint64(ino), 10) + "]")
	s := &scan{fds: ownerMaxFDs, deadline: deadline}
	dirs := []string{f.dir}
	for i := 0; i < len(dirs); i++ {
		pids, err := f.readProcs(filepath.Join(dirs[i], "cgroup.procs"))
		if err != nil && i == 0 {
			return owner{}, err
		}
		slices.Sort(pids)
		for _, pid := range slices.Backward(pids) {
			if time.Now().After(deadline) {
				return owner{}, errBudget
			}
			o, err := f.scanPID(pid, want, s)
			if err == nil {
				return o, nil
			}
			if errors.Is(err, errBudget) {
				return owner{}, err
			}
		}
		dirs = append(dirs, subdirs(dirs[i], ownerMaxCgroups-len(dirs))...)
	}
	return owner{}, fmt.Errorf("no process of the sandbox holds socket inode %d", ino)
}

var errNotHolder = errors.New("not the holder")

// scanPID looks for want among pid's descriptors. Everything is read
// through one descriptor of /proc/PID, which stays bound to that process:
// if it exits and the pid is reused, reads fail instead of describing
// another process.
func (f *ownerFinder) scanPID(pid int, want []byte, s *scan) (owner, error) {
	pd, err := unix.Open("/proc/"+strconv.Itoa(pid), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return owner{}, err
	}
	defer unix.Close(pd)
	fdd, err := unix.Openat(pd, "fd", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return owner{}, err
	}
	defer unix.Close(fdd)
	var names []string
	for {
		n, err := unix.Getdents(fdd, f.sc.dents)
		if err != nil {
			return owner{}, fmt.Errorf("list descriptors of pid %d: %w", pid, err)
		}
		if n <= 0 {
			return owner{}, errNotHolder
		}
		_, _, names = unix.ParseDirent(f.sc.dents[:n], -1, names[:0])
		for _, name := range names {
			if err := s.spend(); err != nil {
				return owner{}, err
			}
			// readlinkat reads the link's text and follows nothing.
			k, err := unix.Readlinkat(fdd, name, f.sc.link)
			if err == nil && bytes.Equal(f.sc.link[:k], want) {
				return f.describe(pd, pid)
			}
		}
	}
}

// describe reads pid's comm, after checking it is still in the sandbox.
func (f *ownerFinder) describe(pd, pid int) (owner, error) {
	n, err := readAt(pd, "cgroup", f.sc.file[:4096])
	if err != nil {
		return owner{}, err
	}
	if cg, ok := cgroup.V2Path(f.sc.file[:n]); !ok || !cgroup.Within(string(cg), f.cgRel) {
		return owner{}, fmt.Errorf("pid %d holds the socket but left the sandbox", pid)
	}
	n, err = readAt(pd, "comm", f.sc.file[:64])
	if err != nil {
		return owner{}, err
	}
	return owner{tgid: uint32(pid), comm: strings.TrimSuffix(string(f.sc.file[:n]), "\n")}, nil
}

// readAt reads the file name in directory dirfd (or the absolute path
// name) into buf, as far as it fits.
func readAt(dirfd int, name string, buf []byte) (int, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", name, err)
	}
	defer unix.Close(fd)
	n := 0
	for n < len(buf) {
		k, err := unix.Read(fd, buf[n:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("read %s: %w", name, err)
		}
		if k == 0 {
			break
		}
		n += k
	}
	return n, nil
}

// readProcs reads the pids of a cgroup.procs file, as many as f.sc.file
// holds.
func (f *ownerFinder) readProcs(path string) ([]int, error) {
	n, err := readAt(unix.AT_FDCWD, path, f.sc.file)
	if err != nil {
		return nil, fmt.Errorf("list sandbox processes: %w", err)
	}
	b := f.sc.file[:n]
	if n == len(f.sc.file) {
		// Full: the last line may be cut.
		b = b[:bytes.LastIndexByte(b, '\n')+1]
	}
	var pids []int
	for line := range strings.SplitSeq(string(b), "\n") {
		if n, err := strconv.ParseUint(line, 10, 31); err == nil && n > 0 {
			pids = append(pids, int(n))
		}
	}
	return pids, nil
}

// subdirs lists at most n cgroups directly below dir.
func subdirs(dir string, n int) []string {
	if n <= 0 {
		return nil
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() && len(out) < n {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out
}

// sameNetns checks that the socket fd and the listener l are in one
// network namespace (SIOCGSKNS).
func sameNetns(fd int, l any) error {
	sc, ok := l.(syscall.Conn)
	if !ok {
		return fmt.Errorf("listener %T has no descriptor", l)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return fmt.Errorf("descriptor of a listener: %w", err)
	}
	var theirs uint64
	var nsErr error
	if err := rc.Control(func(s uintptr) { theirs, nsErr = netnsIno(int(s)) }); err != nil {
		return fmt.Errorf("descriptor of a listener: %w", err)
	}
	if nsErr != nil {
		return nsErr
	}
	ours, err := netnsIno(fd)
	if err != nil {
		return err
	}
	if ours != theirs {
		return errors.New("the proxy's listeners are in another network namespace than the one it started in")
	}
	return nil
}

func netnsIno(fd int) (uint64, error) {
	ns, err := unix.IoctlRetInt(fd, unix.SIOCGSKNS)
	if err != nil {
		return 0, fmt.Errorf("network namespace of a socket: %w", err)
	}
	defer unix.Close(ns)
	var st unix.Stat_t
	if err := unix.Fstat(ns, &st); err != nil {
		return 0, fmt.Errorf("network namespace of a socket: %w", err)
	}
	return st.Ino, nil
}
