//go:build linux

package fanotify

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Why a guard process: when the last file descriptor of a fanotify group is
// closed, the kernel ALLOWS every pending permission event and stops
// reporting. If aigate crashed or were killed, the sandboxed tool would run
// on unconfined. The guard is a tiny copy of the aigate binary, in its own
// session so that Ctrl-C and the terminal's hangup do not reach it, holding a
// duplicate of the group's descriptor. It learns the sandbox cgroups over a
// socket; when the socket reaches end of file (aigate exited, cleanly or
// not) it kills every sandbox still registered, waits until they are gone,
// and only then exits, which releases the group. It also holds the
// sandboxes' network links (HoldLinks), which would otherwise detach the
// moment aigate dies, before the kill.
//
// The heartbeat: aigate's reaper sends one every guardHeartbeat, unless the
// reader has held a batch of events for longer than the reader stall bound
// (loop.go): a reader stuck in dispatch answers no one, outsiders included.
// When no heartbeat has come for the stall bound (guardStall) the guard
// freezes the sandboxes, and thaws them when the heartbeat returns: a short
// stall (a pause in a debugger, a loaded machine) leaves the sandbox paused,
// not unconfined. When none has come for the release bound (guardRelease)
// the guard gives up on aigate, because every process on the machine that
// opens or executes a file under a marked directory waits for an answer
// that does not come, and a bug must never deny anything outside a sandbox:
// it kills the sandboxes, then aigate (its parent, known by a pidfd taken at
// start), then any other holder of the group (a child aigate forked that
// has not yet executed), prints why and exits. With every holder gone the
// kernel allows what is pending, and the sandboxes are dead before that. A
// stopped aigate (SIGSTOP, a debugger) ends that way too.

const (
	guardEnv       = "AIGATE_FANOTIFY_GUARD"
	guardTimesEnv  = "AIGATE_FANOTIFY_GUARD_TIMES" // "STALL RELEASE", Go durations
	guardHeartbeat = 250 * time.Millisecond
	// The defaults. Options.guardStall and guardRelease shorten them in
	// tests. Generous, for a loaded machine and the CI's emulated guests:
	// a false release kills aigate and its sandboxes.
	guardStall   = 2 * time.Second
	guardRelease = 20 * time.Second
)

func init() {
	if os.Getenv(guardEnv) == "1" {
		stall, release := guardStall, guardRelease
		if v := os.Getenv(guardTimesEnv); v != "" {
			s, r, _ := strings.Cut(v, " ")
			ds, err1 := time.ParseDuration(s)
			dr, err2 := time.ParseDuration(r)
			if err1 != nil || err2 != nil || ds <= 0 || dr <= ds {
				fmt.Fprintf(os.Stderr, "aigate fanotify guard: bad %s=%q, using %s and %s\n", guardTimesEnv, v, stall, release)
			} else {
				stall, release = ds, dr
			}
		}
		os.Exit(runGuard(0, stall, release))
	}
}

// guard is aigate's end of the socket to the guard process.
type guard struct {
	mu   sync.Mutex
	fd   int // -1 once closed
	cmd  *exec.Cmd
	done chan struct{}
	err  error // why the guard exited, set before done closes
}

// startGuard starts the guard with a duplicate of the group descriptor
// (its fd 3) and of the filesystem exec marks' group (fd 4, held only:
// released when the guard exits, after the kill, as the first is).
// They talk over a SOCK_SEQPACKET pair (one message per line, and room for
// descriptors, see hold) that is the guard's standard input.
// stall and release are the guard's bounds (see above).
func startGuard(groupFD, execGroupFD int, stall, release time.Duration) (*guard, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("start fanotify guard: find own binary: %w", err)
	}
	// A duplicate, owned by its *os.File: wrapping groupFD itself would let
	// the File's finalizer close the backend's descriptor (or whatever
	// reuses its number) at some later garbage collection.
	dup, err := unix.FcntlInt(uintptr(groupFD), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("start fanotify guard: %w", err)
	}
	group := os.NewFile(uintptr(dup), "fanotify")
	defer group.Close()
	dup, err = unix.FcntlInt(uintptr(execGroupFD), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("start fanotify guard: %w", err)
	}
	execGroup := os.NewFile(uintptr(dup), "fanotify-exec")
	defer execGroup.Close()
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("start fanotify guard: %w", err)
	}
	theirs := os.NewFile(uintptr(pair[1]), "fanotify-guard")
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), guardEnv+"=1", fmt.Sprintf("%s=%s %s", guardTimesEnv, stall, release))
	cmd.Stdin = theirs
	cmd.Stderr = os.Stderr
	cmd.ExtraFiles = []*os.File{group, execGroup}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// cmd.Start, not forksafe.Start: the group has no mark yet (Open
	// starts the guard right after creating it), so no exec can wait for
	// this process, and a collection per agent start is not needed.
	err = cmd.Start()
	theirs.Close()
	if err != nil {
		unix.Close(pair[0])
		return nil, fmt.Errorf("start fanotify guard %s: %w", exe, err)
	}
	g := &guard{fd: pair[0], cmd: cmd, done: make(chan struct{})}
	go func() {
		g.err = cmd.Wait()
		close(g.done)
	}()
	return g, nil
}

// errGuardClosed: the guard was told to end (Backend.Close, which then
// waits for it to kill what is left while the loop still answers).
var errGuardClosed = errors.New("fanotify guard is closed")

func (g *guard) send(line string, fds ...int) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.fd < 0 {
		return errGuardClosed
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if err := unix.Sendmsg(g.fd, []byte(line), oob, nil, 0); err != nil {
		return fmt.Errorf("tell fanotify guard: %w", err)
	}
	return nil
}

func (g *guard) add(cgroupPath string) error { return g.send("add " + cgroupPath) }
func (g *guard) del(cgroupPath string) error { return g.send("del " + cgroupPath) }
func (g *guard) beat() error                 { return g.send("beat") }

// hold passes duplicates of fds to the guard, which keeps them until del
// of cgroupPath or, when aigate is gone, until it has killed the sandbox.
// Descriptors in flight are held by the socket: once sendmsg returns they
// outlive this process.
func (g *guard) hold(cgroupPath string, fds []int) error {
	for len(fds) > 0 {
		n := min(len(fds), guardMaxFDs)
		if err := g.send("hold "+cgroupPath, fds[:n]...); err != nil {
			return err
		}
		fds = fds[n:]
	}
	return nil
}

// guardMaxFDs is how many descriptors one message carries (the kernel's
// SCM_MAX_FD is 253).
const guardMaxFDs = 64

// close ends the socket and waits for the guard, which kills the sandboxes
// still registered before it exits.
func (g *guard) close(timeout time.Duration) error {
	g.mu.Lock()
	if g.fd >= 0 {
		unix.Close(g.fd)
		g.fd = -1
	}
	g.mu.Unlock()
	select {
	case <-g.done:
		return g.err
	case <-time.After(timeout):
		_ = g.cmd.Process.Kill()
		<-g.done
		return fmt.Errorf("fanotify guard did not exit within %s", timeout)
	}
}

// guardMsg is one message aigate sent: a line, and the descriptors that
// came with it.
type guardMsg struct {
	line string
	fds  []int
}

// readGuard reads messages from the socket fd until end of file (aigate
// closed it or died), then closes msgs.
func readGuard(fd int, msgs chan<- guardMsg) {
	defer close(msgs)
	buf := make([]byte, 8192)
	oob := make([]byte, unix.CmsgSpace(4*guardMaxFDs))
	for {
		n, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || (n == 0 && oobn == 0) {
			return
		}
		m := guardMsg{line: string(buf[:n])}
		if cms, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for _, cm := range cms {
				if fds, err := unix.ParseUnixRights(&cm); err == nil {
					m.fds = append(m.fds, fds...)
				}
			}
		}
		msgs <- m
	}
}

// runGuard is the guard process's main. Its fd 3 is the fanotify group and
// fd 4 the filesystem exec marks' group, held open and never used; fd is
// its socket to aigate.
func runGuard(fd int, stallAfter, releaseAfter time.Duration) int {
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGPIPE)
	parent := openParent()
	msgs := make(chan guardMsg)
	go readGuard(fd, msgs)
	sandboxes := map[string]bool{}
	held := map[string][]int{} // descriptors to close once a sandbox is gone
	frozen := false
	setFrozen := func(v bool) {
		if frozen == v {
			return
		}
		frozen = v
		for p := range sandboxes {
			writeCgroup(p, "cgroup.freeze", v)
		}
	}
	// One timer: stallAfter after the last message it freezes; then,
	// releaseAfter after that message, it releases.
	stall := time.NewTimer(stallAfter)
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				// The held descriptors close when the guard exits, after
				// every sandbox is dead.
				for p := range sandboxes {
					killCgroup(p)
				}
				return 0
			}
			setFrozen(false)
			stall.Reset(stallAfter)
			cmd, arg, _ := strings.Cut(m.line, " ")
			switch cmd {
			case "add":
				sandboxes[arg] = true
			case "del":
				delete(sandboxes, arg)
				for _, f := range held[arg] {
					unix.Close(f)
				}
				delete(held, arg)
			case "hold":
				held[arg] = append(held[arg], m.fds...)
				m.fds = nil
			}
			for _, f := range m.fds { // sent with any other message: not ours to keep
				unix.Close(f)
			}
		case <-stall.C:
			if !frozen {
				setFrozen(true)
				stall.Reset(releaseAfter - stallAfter)
				continue
			}
			release(sandboxes, parent, releaseAfter)
			return 1
		}
	}
}

// guardParent is the aigate process that started the guard.
type guardParent struct {
	pid   int
	pidfd int // -1: none (aigate already gone, or no pidfd_open)
}

// openParent takes a pidfd of the guard's parent, aigate. The parent
// checked again afterwards proves the pidfd names aigate and not a process
// that reused its pid: had aigate died in between, the guard would have
// been reparented.
func openParent() guardParent {
	ppid := os.Getppid()
	pidfd, err := unix.PidfdOpen(ppid, 0)
	if err != nil {
		fmt.Fprintf(os.Stderr, "aigate fanotify guard: pidfd of aigate (pid %d): %v; a stalled aigate will not be killed\n", ppid, err)
		return guardParent{pid: ppid, pidfd: -1}
	}
	if os.Getppid() != ppid {
		unix.Close(pidfd)
		return guardParent{pid: ppid, pidfd: -1}
	}
	return guardParent{pid: ppid, pidfd: pidfd}
}

// release ends a stall that lasted `after`: it kills the sandboxes, then
// aigate, then every other holder of the group, so that the kernel allows
// the opens pending from outside the sandboxes once the guard exits.
func release(sandboxes map[string]bool, parent guardParent, after time.Duration) {
	for p := range sandboxes {
		killCgroup(p)
	}
	killed := "aigate"
	if parent.pidfd >= 0 {
		if err := unix.PidfdSendSignal(parent.pidfd, unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
			fmt.Fprintf(os.Stderr, "aigate fanotify guard: kill aigate (pid %d): %v\n", parent.pid, err)
		}
		waitPidfd(parent.pidfd, 5*time.Second)
	} else {
		// No pidfd: aigate holds the group, so the search below finds it
		// if it is still there.
		killed = "aigate if still there"
	}
	others, err := killGroupHolders()
	if err != nil {
		fmt.Fprintf(os.Stderr, "aigate fanotify guard: %v; a process still holding the group keeps it\n", err)
	}
	fmt.Fprintf(os.Stderr, "aigate fanotify guard: aigate (pid %d) stopped answering the kernel for %s; "+
		"killed its sandboxes (%d), %s and %d other holders of its fanotify group, and exiting, "+
		"which releases the group, so that nothing outside the sandboxes waits for it\n",
		parent.pid, after, len(sandboxes), killed, others)
}

// waitPidfd waits (bounded) until the process of pidfd has exited: its
// descriptors are closed by then.
func waitPidfd(pidfd int, within time.Duration) {
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		n, err := unix.Poll(fds, int(time.Until(deadline)/time.Millisecond)+1)
		if n > 0 || (err != nil && !errors.Is(err, unix.EINTR)) {
			return
		}
	}
}

// killGroupHolders SIGKILLs every other process that holds the guard's
// group (its fd 3): kcmp(KCMP_FILE) says whether a descriptor is the same
// open file, not merely another fanotify group. Only copies of aigate hold
// it: a child it forked that has not yet executed (the group is
// close-on-exec), which may itself wait in execve for the group's answer.
// A sandboxed one is dead already (cgroup.kill). It returns how many it
// killed, and an error when the kernel cannot compare descriptors.
func killGroupHolders() (int, error) {
	self := os.Getpid()
	procs, _ := os.ReadDir("/proc")
	killed := 0
	for _, pe := range procs {
		pid, err := strconv.Atoi(pe.Name())
		if err != nil || pid == self {
			continue
		}
		dir := filepath.Join("/proc", pe.Name(), "fd")
		fds, _ := os.ReadDir(dir)
		for _, fe := range fds {
			link, err := os.Readlink(filepath.Join(dir, fe.Name()))
			if err != nil || link != "anon_inode:[fanotify]" {
				continue
			}
			n, err := strconv.Atoi(fe.Name())
			if err != nil {
				continue
			}
			// The pidfd first: if the holder exits and its pid is reused
			// after kcmp, the signal still goes to the holder.
			pidfd, err := unix.PidfdOpen(pid, 0)
			if err != nil {
				break
			}
			r, _, errno := unix.Syscall6(unix.SYS_KCMP, uintptr(self), uintptr(pid), 0 /* KCMP_FILE */, 3, uintptr(n), 0)
			if errno == unix.ENOSYS {
				unix.Close(pidfd)
				return killed, errors.New("find the other holders of the group: kcmp: the kernel has no CONFIG_KCMP")
			}
			if errno == 0 && r == 0 {
				_ = unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0)
				waitPidfd(pidfd, 5*time.Second)
				killed++
			}
			unix.Close(pidfd)
			if errno == 0 && r == 0 {
				break
			}
		}
	}
	return killed, nil
}

func writeCgroup(dir, file string, on bool) {
	v := "0"
	if on {
		v = "1"
	}
	if err := os.WriteFile(filepath.Join(dir, file), []byte(v), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(os.Stderr, "aigate fanotify guard: %s %s: %v\n", file, dir, err)
	}
}

// killCgroup kills every process in the cgroup and below, and waits until
// they are gone (bounded), so that none of them runs again unconfined.
func killCgroup(dir string) {
	writeCgroup(dir, "cgroup.kill", true)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if !populated(dir) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	fmt.Fprintf(os.Stderr, "aigate fanotify guard: processes in %s survived cgroup.kill\n", dir)
}

func populated(dir string) bool {
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
	if err != nil {
		return false
	}
	return strings.Contains(string(data), "populated 1")
}
