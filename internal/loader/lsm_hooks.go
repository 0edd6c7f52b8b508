//go:build linux

package loader

import (
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"

	"github.com/aigate-dev/aigate/internal/enforce"
)

var _ enforce.UserNamespaces = (*LSM)(nil)

// The LSM hooks that only some kernels have, each the name of lsm.c's
// program for it (aigate_<hook>) in lsmProgramOrder.
const (
	// usernsHook: Linux 6.1+. Where it is absent the exec helper's
	// seccomp filter refuses user namespaces instead
	// (RefusesUserNamespaces is false).
	usernsHook = "userns_create"
	// ioctlCompatHook: Linux 6.8+ and the stable kernels that took it
	// (Debian's 6.1.192 has it). Where it is present a 32-bit program's
	// ioctl reaches it instead of file_ioctl; where it is absent, that
	// ioctl reaches file_ioctl.
	ioctlCompatHook = "file_ioctl_compat"
)

// optionalHooks are the hooks of the constants above.
var optionalHooks = []string{usernsHook, ioctlCompatHook}

// stubAbsentHooks swaps the program of each of optionalHooks whose hook
// the kernel lacks (has tells whether the kernel's BTF has a function) for
// a stub that loads anywhere and is never attached, so that the rest of the
// object still loads there, and returns the hooks it swapped.
func stubAbsentHooks(spec *ebpf.CollectionSpec, has func(string) bool) []string {
	var absent []string
	for _, hook := range optionalHooks {
		// The kernel's attach point for hook X is bpf_lsm_X.
		if has("bpf_lsm_" + hook) {
			continue
		}
		stubProgram(spec, "aigate_"+hook)
		absent = append(absent, hook)
	}
	return absent
}

// stubProgram replaces program name in spec, if it is there, by a trivial
// socket filter that is never attached: the object then loads on a kernel
// that lacks the program's hook or helper, without the program.
func stubProgram(spec *ebpf.CollectionSpec, name string) {
	if _, ok := spec.Programs[name]; !ok {
		return
	}
	spec.Programs[name] = &ebpf.ProgramSpec{
		Name:    name,
		Type:    ebpf.SocketFilter,
		License: "Dual BSD/GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		},
	}
}

func kernelHasFunc(name string) bool {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return false
	}
	var fn *btf.Func
	return spec.TypeByName(name, &fn) == nil
}

// RefusesUserNamespaces implements enforce.UserNamespaces: true where the
// userns_create program is attached.
func (l *LSM) RefusesUserNamespaces() bool { return l.userns }
