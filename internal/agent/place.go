//go:build linux

package agent

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/sandbox"
)

// place moves the client's waiting child into the sandbox (see the exec
// helper in package launch for why the agent does this and not the
// client): checkPlace, then placement.move into the sandbox. A create of
// version 3 places it while the sandbox is built instead (create.go),
// with the same two steps.
func (a *Agent) place(p api.Peer, b *box, pid int) *api.Error {
	pl, e := a.checkPlace(p, pid)
	if e != nil {
		return e
	}
	defer pl.close()
	// Move and the sandbox's Close exclude each other: a process moved in
	// after end had killed the sandbox's processes would run on once
	// enforcement stopped, and keep the cgroup from being removed.
	if e := pl.move(func(pid int) error {
		err := b.sb.Move(pid)
		if errors.Is(err, sandbox.ErrClosed) {
			return &api.Error{Code: api.CodeSandbox, Message: fmt.Sprintf("sandbox %s ended before process %d could be placed in it", b.info.Name, pid)}
		}
		return err
	}); e != nil {
		return e
	}
	a.placed(b, pid)
	return nil
}

// placed records that b's first process, pid, is in, and ends b at once
// when that process has died meanwhile (the emptiness event came too
// early to count).
func (a *Agent) placed(b *box, pid int) {
	a.mu.Lock()
	b.info.Placed = true
	b.helpers = append(b.helpers, pid)
	a.mu.Unlock()
	a.onEmpty(b)
}

// placement is a process checkPlace found the caller may place.
type placement struct {
	a   *Agent
	pid int
	pfd int // pidfd, open from before the checks
}

// checkPlace checks that the caller may place pid. The process must
// belong to the caller (real uid) and be the caller's child, and it must
// not be in a sandbox already: moving a sandboxed process into a fresh
// sandbox with a looser policy would be an escape. Root may place any
// process that is not sandboxed.
//
// The checks read /proc/PID and the move writes PID: both name the
// process the caller meant only while it has not been reaped (a pid is
// not reused before). A pidfd taken first says whether it has been,
// right before the write (move). What is left is the few microseconds
// from there to the write: for the pid to name another process by then,
// the kernel would have to hand out every other pid (pid_max, 4194304 on
// 64-bit) meanwhile.
func (a *Agent) checkPlace(p api.Peer, pid int) (*placement, *api.Error) {
	pfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			err = errors.New("no such process")
		}
		return nil, &api.Error{Code: api.CodeSandbox, Message: fmt.Sprintf("place process %d: %v", pid, err)}
	}
	pl := &placement{a: a, pid: pid, pfd: pfd}
	if e := pl.check(p); e != nil {
		pl.close()
		return nil, e
	}
	return pl, nil
}

func (pl *placement) check(p api.Peer) *api.Error {
	pid := pl.pid
	st, err := readProcStatus(pid)
	if err != nil {
		return &api.Error{Code: api.CodeSandbox, Message: fmt.Sprintf("place process %d: %v", pid, err)}
	}
	if !p.Root() {
		if st.uid != p.UID {
			return &api.Error{Code: api.CodeForbidden, Message: fmt.Sprintf("process %d is not yours", pid)}
		}
		if st.ppid != p.PID {
			return &api.Error{Code: api.CodeForbidden, Message: fmt.Sprintf("process %d is not your child", pid)}
		}
		// The parent read is the peer only while the peer is still
		// there: a process that took its pid could have children too.
		if err := p.Verify(); err != nil {
			return &api.Error{Code: api.CodeForbidden, Message: fmt.Sprintf("process %d: %v", pid, err)}
		}
	}
	return pl.refuseSandboxed()
}

// refuseSandboxed refuses a process that is in a sandbox already (or
// whose cgroup cannot be read): moving it into a fresh sandbox with a
// looser policy would be an escape.
func (pl *placement) refuseSandboxed() *api.Error {
	if in, err := pl.a.sandboxed(pl.pid); err != nil || in {
		return &api.Error{Code: api.CodeForbidden, Message: fmt.Sprintf("process %d is already in a sandbox", pl.pid)}
	}
	return nil
}

// move moves the checked process with write (which writes its pid to a
// sandbox's cgroup.procs), refusing it if it has been reaped since the
// checks or has entered a sandbox meanwhile: a create places its process
// milliseconds after the checks, and two requests could name the same
// child. The agent's placements are serialised, so that the second of
// two finds the process in the first's sandbox.
func (pl *placement) move(write func(pid int) error) *api.Error {
	placeChecked(pl.pid)
	pl.a.placeMu.Lock()
	defer pl.a.placeMu.Unlock()
	if unix.PidfdSendSignal(pl.pfd, 0, nil, 0) != nil {
		return &api.Error{Code: api.CodeSandbox, Message: fmt.Sprintf("process %d exited before it could be placed", pl.pid)}
	}
	if e := pl.refuseSandboxed(); e != nil {
		return e
	}
	if err := write(pl.pid); err != nil {
		var ae *api.Error
		if errors.As(err, &ae) {
			return ae
		}
		return &api.Error{Code: api.CodeSandbox, Message: err.Error()}
	}
	return nil
}

func (pl *placement) close() { unix.Close(pl.pfd) }

// placeChecked runs between place's checks and its move; tests make the
// process die there.
var placeChecked = func(pid int) {}

type procStatus struct {
	uid  uint32 // real
	ppid int
}

func readProcStatus(pid int) (procStatus, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return procStatus{}, errors.New("no such process")
		}
		return procStatus{}, err
	}
	var st procStatus
	var haveUID, havePPid bool
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "Uid:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, err := strconv.ParseUint(f[0], 10, 32)
				if err == nil {
					st.uid, haveUID = uint32(n), true
				}
			}
		}
		if v, ok := strings.CutPrefix(line, "PPid:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err == nil {
				st.ppid, havePPid = n, true
			}
		}
	}
	if !haveUID || !havePPid {
		return procStatus{}, errors.New("unreadable /proc status")
	}
	return st, nil
}
