//go:build linux

package loader

import (
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"

	"github.com/aigate-dev/aigate/internal/enforce"
)

var _ enforce.UserNamespaces = (*LSM)(nil)

// usernsProgram is lsm.c's userns_create program and lsmProgramOrder's name
// for it.
const (
	usernsProgram = "aigate_userns_create"
	usernsHook    = "userns_create"
)

// keepUsernsHook tells whether the kernel has the userns_create LSM hook
// (Linux 6.1+). Where it has not, the program is swapped for a stub that
// loads anywhere and is never attached, so that the rest of the object
// still loads on 5.17-6.0; the exec helper's seccomp filter then refuses
// user namespaces instead (RefusesUserNamespaces is false).
func keepUsernsHook(spec *ebpf.CollectionSpec) bool {
	if kernelHasFunc("bpf_lsm_" + usernsHook) {
		return true
	}
	stubProgram(spec, usernsProgram)
	return false
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
