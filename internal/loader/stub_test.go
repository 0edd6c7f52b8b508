//go:build linux

package loader

import (
	"slices"
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

// The programs of optional hooks are stubbed exactly where the kernel's BTF
// lacks their attach point (bpf_lsm_<hook>): on a kernel with both hooks
// (6.12, this host, Debian's 6.1.192) nothing is stubbed, so a 32-bit
// program's ioctl is seen; on one without file_ioctl_compat (6.1 before the
// stable backport) only that program is, and the object still loads.
func TestStubAbsentHooks(t *testing.T) {
	kernel := func(funcs ...string) func(string) bool {
		return func(name string) bool { return slices.Contains(funcs, name) }
	}
	for _, tc := range []struct {
		name   string
		has    func(string) bool
		absent []string
	}{
		{"both", kernel("bpf_lsm_file_ioctl", "bpf_lsm_file_ioctl_compat", "bpf_lsm_userns_create"), nil},
		{"no compat ioctl", kernel("bpf_lsm_file_ioctl", "bpf_lsm_userns_create"), []string{"file_ioctl_compat"}},
		{"neither", kernel("bpf_lsm_file_ioctl"), []string{"userns_create", "file_ioctl_compat"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := loadLsm()
			if err != nil {
				t.Fatal(err)
			}
			got := stubAbsentHooks(spec, tc.has)
			if !slices.Equal(got, tc.absent) {
				t.Errorf("stubbed %q, want %q", got, tc.absent)
			}
			for _, hook := range optionalHooks {
				p := spec.Programs["aigate_"+hook]
				if stubbed := p.Type != ebpf.LSM || p.AttachTo != hook; stubbed != slices.Contains(tc.absent, hook) {
					t.Errorf("program of %s: type %v, attach to %q", hook, p.Type, p.AttachTo)
				}
			}
		})
	}
}
