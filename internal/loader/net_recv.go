//go:build linux

package loader

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// The kprobe reads its argument from pt_regs, whose layout is the
// architecture's: one object per architecture aigate is built for.
//go:generate go tool bpf2go -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 -no-global-types netRecv ../../bpf/sockrecv.c -- -I../../bpf/include

// recvSymbol is the kernel function the receive check hooks: receive_fd
// and receive_fd_replace call it for every descriptor installed into a
// process from elsewhere (SCM_RIGHTS, pidfd_getfd, seccomp's addfd).
const recvSymbol = "security_file_receive"

// ErrNoReceiveCheck means this kernel cannot run the receive check: it
// attaches no kprobes (CONFIG_KPROBES off), so a socket created outside a
// sandbox and passed in over SCM_RIGHTS is not checked on the fanotify
// backend.
var ErrNoReceiveCheck = errors.New("the kernel attaches no kprobes (CONFIG_KPROBES), needed to check sockets passed into a sandbox")

// netRecv is the loaded receive check of a Net (bpf/sockrecv.c): it kills
// a sandboxed process that receives a socket, other than a unix socket,
// created outside its sandbox.
type netRecv struct {
	objs netRecvObjects
	link link.Link
}

// loadRecv loads the receive check sharing net's sandbox table, ring
// buffer and counters, and attaches it: it costs one map lookup per
// descriptor passed outside every sandbox. An error wrapping
// ErrNoReceiveCheck means this kernel cannot attach it.
func loadRecv(net *netObjects, kept *keptSet) (*netRecv, error) {
	if err := ProbeReceiveCheck(); err != nil {
		return nil, err
	}
	r := &netRecv{}
	spec, err := loadNetRecv()
	if err != nil {
		return nil, fmt.Errorf("load the receive check: %w", err)
	}
	_, err = kept.load(keptRecv, spec, &r.objs, &ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{
		MapSandboxes:     net.Sandboxes,
		MapSandboxLevels: net.SandboxLevels,
		MapEvents:        net.Events,
		MapCounters:      net.Counters,
	}})
	if err != nil {
		return nil, fmt.Errorf("load the receive check: %w", err)
	}
	r.link, err = link.Kprobe(recvSymbol, r.objs.AigateFileReceive, nil)
	if err != nil {
		r.objs.Close()
		return nil, fmt.Errorf("attach the receive check to %s: %w", recvSymbol, err)
	}
	return r, nil
}

// linkFD is the kprobe link's descriptor, -1 when it has none.
func (r *netRecv) linkFD() int {
	if f, ok := r.link.(interface{ FD() int }); ok {
		return f.FD()
	}
	return -1
}

func (r *netRecv) close() error {
	return errors.Join(r.link.Close(), r.objs.Close())
}

var recvProbe struct {
	once sync.Once
	err  error
}

// kprobePMU exists when the kernel can create kprobes through perf events
// (CONFIG_KPROBE_EVENTS, Linux 4.17+), the way the loader attaches them.
const kprobePMU = "/sys/bus/event_source/devices/kprobe/type"

// ProbeReceiveCheck reports whether this kernel can attach the receive
// check: nil when it can, ErrNoReceiveCheck (wrapped) when it has no
// kprobes. The answer is computed once per process.
func ProbeReceiveCheck() error {
	recvProbe.once.Do(func() {
		if _, err := os.Stat(kprobePMU); err != nil {
			recvProbe.err = fmt.Errorf("probe the receive check: %w: %w", ErrNoReceiveCheck, err)
		}
	})
	return recvProbe.err
}

// openRecv loads and attaches the receive check when check asks for it; a
// kernel that cannot attach it leaves n.recv nil with the reason.
func (n *Net) openRecv(check bool) error {
	if !check {
		n.recvErr = errors.New("sockets passed in are left to the BPF LSM programs")
		return nil
	}
	r, err := loadRecv(&n.objs, n.kept)
	if errors.Is(err, ErrNoReceiveCheck) {
		n.recvErr = err
		return nil
	}
	if err != nil {
		return err
	}
	n.recv = r
	return nil
}

// ReceivedSockets reports whether n kills a sandboxed process that
// receives a socket created outside its sandbox: nil when it does, else
// why not (no kprobes on this kernel, NetOptions.CheckReceived unset).
func (n *Net) ReceivedSockets() error {
	if n.recv != nil {
		return nil
	}
	return n.recvErr
}
