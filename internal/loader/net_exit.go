//go:build linux

package loader

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// exitHook is a tp_btf/sys_exit program attached while a sandbox is: it
// runs for every system call of every task, so it is attached only while
// holders > 0, and for unixLinger after the last one let go. One at a
// time: the unix-socket object's (bind learner, seccomp and Landlock
// refusals) where it is loaded, else the refused object's.
type exitHook struct {
	prog *ebpf.Program
	what string // for errors

	mu      sync.Mutex
	link    link.Link
	holders int
	idle    *time.Timer
	idleErr error // what a lingering detach returned, for close
}

// hold attaches the program when the first sandbox is attached, unless it
// still lingers from an earlier one.
func (h *exitHook) hold() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stopIdle()
	if h.link == nil {
		l, err := link.AttachTracing(link.TracingOptions{Program: h.prog})
		if err != nil {
			return fmt.Errorf("attach the %s (tp_btf/sys_exit): %w", h.what, err)
		}
		h.link = l
	}
	h.holders++
	return nil
}

// release detaches the program unixLinger after the last sandbox, if no
// sandbox held it again meanwhile.
func (h *exitHook) release() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.holders--; h.holders > 0 {
		return nil
	}
	h.holders = 0
	if h.link == nil {
		return nil
	}
	if unixLinger <= 0 {
		return h.detach()
	}
	var t *time.Timer
	t = time.AfterFunc(unixLinger, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		// A hold, or close, came first (t is set: the callback waited
		// for the lock release holds).
		if h.idle != t {
			return
		}
		h.idle = nil
		h.idleErr = errors.Join(h.idleErr, h.detach())
	})
	h.idle = t
	return nil
}

// stopIdle cancels a pending detach (caller holds h.mu).
func (h *exitHook) stopIdle() {
	if h.idle != nil {
		h.idle.Stop()
		h.idle = nil
	}
}

// detach detaches the program now (caller holds h.mu).
func (h *exitHook) detach() error {
	h.stopIdle()
	h.holders = 0
	if h.link == nil {
		return nil
	}
	err := h.link.Close()
	h.link = nil
	return err
}

// close detaches the program and returns what any detach returned.
func (h *exitHook) close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	err := errors.Join(h.idleErr, h.detach())
	h.idleErr = nil
	return err
}

// attached is the link as it is now (nil: detached), for tests.
func (h *exitHook) attached() link.Link {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.link
}

// netRefused is the refused object (bpf/refused.c), loaded where the
// unix-socket object is not: its sys_exit program reports the calls
// Landlock may have refused.
type netRefused struct {
	objs netRefusedObjects
	exit exitHook
}

// openRefused loads the refused object sharing net's sandbox table, ring
// buffer and counters.
func openRefused(net *netObjects) (*netRefused, error) {
	spec, err := loadNetRefused()
	if err != nil {
		return nil, fmt.Errorf("load the Landlock refusal reporter: %w", err)
	}
	r := &netRefused{}
	err = spec.LoadAndAssign(&r.objs, &ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{
		MapSandboxes:     net.Sandboxes,
		MapSandboxLevels: net.SandboxLevels,
		MapEvents:        net.Events,
		MapCounters:      net.Counters,
	}})
	if err != nil {
		return nil, fmt.Errorf("load the Landlock refusal reporter: %w", err)
	}
	r.exit = exitHook{prog: r.objs.AigateRefusedExit, what: "Landlock refusal reporter"}
	return r, nil
}

func (r *netRefused) close() error {
	return errors.Join(r.exit.close(), r.objs.Close())
}
