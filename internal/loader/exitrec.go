//go:build linux

package loader

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// The compiler is taken from $BPF2GO_CC (bpf2go's default for -cc), which
// `make generate` sets to Debian's clang 14.
//go:generate go tool bpf2go -cflags "-O2 -g -Wall -Werror" -target bpfel -no-global-types exitRec ../../bpf/exitrec.c -- -I../../bpf/include

// ExitRecorder is bpf/exitrec.c attached: it notes the sandbox of every
// sandboxed process as it exits, so that the fanotify backend can place a
// mover whose /proc entry is gone by the time its rename is read
// (fanotify.ExitRecords).
type ExitRecorder struct {
	objs exitRecObjects
	link link.Link
}

// OpenExitRecorder loads and attaches the exit program, sharing the
// sandbox table of the object that owns it (Net.Shared): the program acts
// on the sandboxes entered there, and on nothing else.
func OpenExitRecorder(shared SharedMaps) (*ExitRecorder, error) {
	if shared.Sandboxes == nil || shared.SandboxLevels == nil {
		return nil, errors.New("record sandboxed exits: no sandbox table to share")
	}
	if err := removeMemlock(); err != nil {
		return nil, fmt.Errorf("record sandboxed exits: %w", err)
	}
	spec, err := loadExitRec()
	if err != nil {
		return nil, fmt.Errorf("record sandboxed exits: %w", err)
	}
	r := &ExitRecorder{}
	repl := map[string]*ebpf.Map{MapSandboxes: shared.Sandboxes, MapSandboxLevels: shared.SandboxLevels}
	adopted, err := shared.kept.load(keptExitRec, spec, &r.objs, &ebpf.CollectionOptions{MapReplacements: repl})
	if err != nil {
		return nil, fmt.Errorf("record sandboxed exits: %w", err)
	}
	if adopted {
		// What an earlier run's sandboxes left (the sandbox table it
		// shares was emptied with the network object's).
		if err := scrub(&r.objs); err != nil {
			r.objs.Close()
			return nil, fmt.Errorf("record sandboxed exits: %w", err)
		}
	}
	if r.link, err = link.AttachTracing(link.TracingOptions{Program: r.objs.AigateExitRecord}); err != nil {
		r.objs.Close()
		return nil, fmt.Errorf("record sandboxed exits: %w", err)
	}
	return r, nil
}

// Exited returns the cgroup id of the sandbox that process pid (an
// initial-namespace tgid) was in when it last exited from a sandbox. The
// record stays until the LRU map evicts it: one mv reports two events per
// rename, and may rename several paths.
func (r *ExitRecorder) Exited(pid int) (uint64, bool) {
	if pid <= 0 {
		return 0, false
	}
	key := uint32(pid)
	var id uint64
	if err := r.objs.Exited.Lookup(&key, &id); err != nil {
		return 0, false
	}
	return id, true
}

// Close detaches the program and frees its map.
func (r *ExitRecorder) Close() error {
	return errors.Join(r.link.Close(), r.objs.Close())
}

// Shared returns the sandbox table, events and counters of a standalone
// Net (the fanotify backend's), for the objects that act on the same
// sandboxes (OpenExitRecorder); false when the Net shares another's.
func (n *Net) Shared() (SharedMaps, bool) {
	if n.table == nil {
		return SharedMaps{}, false
	}
	return SharedMaps{
		Sandboxes:     n.objs.Sandboxes,
		SandboxLevels: n.objs.SandboxLevels,
		Events:        n.objs.Events,
		Counters:      n.objs.Counters,
		kept:          n.kept,
	}, true
}
