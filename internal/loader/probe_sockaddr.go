//go:build linux

package loader

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/aigate-dev/aigate/internal/cgroup"
)

// ProbeSockAddr loads a cgroup/connect4 program that allows everything
// (1 is "allow" for sock_addr programs), attaches it to an empty test
// cgroup below parent (relative to the cgroup v2 mount) and detaches it:
// the kernel features both backends need for network rules. Nothing ever
// runs in the test cgroup, so the program affects no connection.
func ProbeSockAddr(parent string) error {
	if err := removeMemlock(); err != nil {
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
