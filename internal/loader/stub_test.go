//go:build linux

package loader

import (
	"testing"

	"github.com/cilium/ebpf"
)

// A program the kernel lacks the hook for is swapped for a socket filter
// that loads anywhere; other programs, and a name not in the spec, are left.
func TestStubProgram(t *testing.T) {
	other := &ebpf.ProgramSpec{Name: "aigate_other", Type: ebpf.LSM}
	spec := &ebpf.CollectionSpec{Programs: map[string]*ebpf.ProgramSpec{
		"aigate_hook":  {Name: "aigate_hook", Type: ebpf.LSM, AttachTo: "userns_create"},
		"aigate_other": other,
	}}
	stubProgram(spec, "aigate_hook")
	stubProgram(spec, "aigate_absent")
	if p := spec.Programs["aigate_hook"]; p.Type != ebpf.SocketFilter || p.AttachTo != "" || len(p.Instructions) != 2 {
		t.Errorf("stubbed program: %+v", p)
	}
	if spec.Programs["aigate_other"] != other {
		t.Error("another program was replaced")
	}
	if _, ok := spec.Programs["aigate_absent"]; ok || len(spec.Programs) != 2 {
		t.Errorf("a program was added: %v", spec.Programs)
	}
}
