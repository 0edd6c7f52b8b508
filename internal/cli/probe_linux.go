//go:build linux

package cli

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/doctor"
	"github.com/aigate-dev/aigate/internal/landlock"
	"github.com/aigate-dev/aigate/internal/loader"
	"github.com/aigate-dev/aigate/internal/sandbox"
)

func init() {
	lsmProbe = probeLSM
	fanotifyProbe = probeFanotify
	sockAddrProbe = func() error { return probeSockAddr(sandbox.DefaultParent) }
	unixProbe = probeUnix
	landlockABI = landlock.ABI
}

// probeLSM runs loader.ProbeLSM and hands its reason and its fix to
// doctor separately, so that the verdict can say both.
func probeLSM() error {
	err := loader.ProbeLSM()
	var pe *loader.ProbeError
	if !errors.As(err, &pe) {
		return err
	}
	reason := pe.Reason.Error()
	if pe.Detail != "" {
		reason += ": " + pe.Detail
	} else if pe.Err != nil {
		reason += fmt.Sprintf(" (%v)", pe.Err)
	}
	return &doctor.ProbeError{Reason: reason, Fix: pe.Fix, Err: err}
}

func probeUnix() (string, error) {
	err := loader.ProbeUnixSockets()
	return loader.UnixSocketEnforcement(), err
}

// fanotifyTimeout bounds the wait for the probe's own permission event.
const fanotifyTimeout = 2 * time.Second

// probeFanotify proves what the fanotify backend relies on, end to end: a
// FAN_CLASS_CONTENT group, a FAN_OPEN_PERM|FAN_OPEN_EXEC_PERM mark on a
// test file, the event of an open of it, and a FAN_DENY answer that makes
// that open fail with EPERM. Only the test file is marked; closing the
// group lets an open still waiting through (the kernel allows pending
// events of a closed group), so the probe cannot leave a thread hanging.
func probeFanotify() error {
	dir, err := os.MkdirTemp("", "aigate-doctor-")
	if err != nil {
		return fmt.Errorf("create a test file: %w", err)
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "probe")
	if err := os.WriteFile(file, []byte("aigate doctor\n"), 0o600); err != nil {
		return fmt.Errorf("create a test file: %w", err)
	}

	fd, err := unix.FanotifyInit(unix.FAN_CLASS_CONTENT|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_LARGEFILE)
	if err != nil {
		return fmt.Errorf("fanotify_init(FAN_CLASS_CONTENT): %w", err)
	}
	group := os.NewFile(uintptr(fd), "fanotify")
	closed := false
	closeGroup := func() {
		if !closed {
			group.Close()
			closed = true
		}
	}
	defer closeGroup()
	if err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD, unix.FAN_OPEN_PERM|unix.FAN_OPEN_EXEC_PERM, unix.AT_FDCWD, file); err != nil {
		return fmt.Errorf("fanotify_mark(FAN_OPEN_PERM|FAN_OPEN_EXEC_PERM) on a test file: %w", err)
	}

	opened := make(chan error, 1)
	go func() {
		f, err := os.Open(file)
		if err == nil {
			f.Close()
		}
		opened <- err
	}()
	answerErr := answerOne(fd, fanotifyTimeout)
	// Whatever happened, the opener must not wait on this group any more.
	closeGroup()
	var openErr error
	select {
	case openErr = <-opened:
	case <-time.After(fanotifyTimeout):
		return errors.New("the test open did not return after its permission event was answered")
	}
	if answerErr != nil {
		return answerErr
	}
	if !errors.Is(openErr, unix.EPERM) {
		return fmt.Errorf("the test open was answered FAN_DENY but returned %v, not EPERM", openErr)
	}
	return nil
}

// answerOne waits up to timeout for one permission event on the group fd
// and answers it FAN_DENY.
func answerOne(fd int, timeout time.Duration) error {
	const metaLen = 24 // struct fanotify_event_metadata
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 4096)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("no permission event arrived within %v of opening the marked test file", timeout)
		}
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, int(left.Milliseconds())+1)
		if errors.Is(err, unix.EINTR) || n == 0 {
			continue
		}
		if err != nil {
			return fmt.Errorf("poll the fanotify group: %w", err)
		}
		n, err = unix.Read(fd, buf)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read the fanotify group: %w", err)
		}
		if n < metaLen {
			return fmt.Errorf("short fanotify event (%d bytes)", n)
		}
		if v := buf[4]; v != unix.FANOTIFY_METADATA_VERSION {
			return fmt.Errorf("fanotify metadata version %d, want %d", v, unix.FANOTIFY_METADATA_VERSION)
		}
		mask := binary.NativeEndian.Uint64(buf[8:16])
		evfd := int32(binary.NativeEndian.Uint32(buf[16:20]))
		if evfd >= 0 {
			defer unix.Close(int(evfd))
		}
		if mask&unix.FAN_OPEN_PERM == 0 {
			return fmt.Errorf("unexpected fanotify event mask %#x, want FAN_OPEN_PERM", mask)
		}
		resp := make([]byte, 8) // struct fanotify_response
		binary.NativeEndian.PutUint32(resp[0:4], uint32(evfd))
		binary.NativeEndian.PutUint32(resp[4:8], unix.FAN_DENY)
		if _, err := unix.Write(fd, resp); err != nil {
			return fmt.Errorf("answer the permission event: %w", err)
		}
		return nil
	}
}

// probeSockAddr loads a cgroup/connect4 program that allows everything
// (1 is "allow" for sock_addr programs), attaches it to an empty test
// cgroup below parent (relative to the cgroup v2 mount) and detaches it:
// the kernel features both backends need for network rules. Nothing ever
// runs in the test cgroup, so the program affects no connection.
func probeSockAddr(parent string) error {
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("lift the locked-memory limit: %w", err)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:       "aigate_probe",
		Type:       ebpf.CGroupSockAddr,
		AttachType: ebpf.AttachCGroupInet4Connect,
		License:    "Dual BSD/GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, 1),
			asm.Return(),
		},
	})
	if err != nil {
		return fmt.Errorf("load a cgroup/connect4 program: %w", err)
	}
	defer prog.Close()

	root, err := cgroup.Mountpoint()
	if err != nil {
		return err
	}
	parentDir := filepath.Join(root, parent)
	_, statErr := os.Stat(parentDir)
	madeParent := errors.Is(statErr, fs.ErrNotExist)
	g, err := cgroup.Create(parent, fmt.Sprintf("doctor-probe-%d", os.Getpid()))
	if err != nil {
		return err
	}
	defer func() {
		_ = os.Remove(g.Path)
		if madeParent {
			// Only when empty: a sandbox created meanwhile keeps it.
			_ = os.Remove(parentDir)
		}
	}()
	l, err := link.AttachCgroup(link.CgroupOptions{Path: g.Path, Attach: ebpf.AttachCGroupInet4Connect, Program: prog})
	if err != nil {
		return fmt.Errorf("attach a cgroup/connect4 program to %s: %w", g.Path, err)
	}
	if err := l.Close(); err != nil {
		return fmt.Errorf("detach the test program from %s: %w", g.Path, err)
	}
	return nil
}
