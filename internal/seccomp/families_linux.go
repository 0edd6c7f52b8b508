package seccomp

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Families are the socket families a sandboxed command may create: those
// aigate checks (unix, IPv4, IPv6) and netlink, which stays on the machine
// and which glibc's getaddrinfo needs. The BPF LSM backend allows the same
// (bpf/lsm.c, socket_create).
var Families = []uint32{unix.AF_UNIX, unix.AF_INET, unix.AF_INET6, unix.AF_NETLINK}

// abi is one system call convention a process of this architecture may
// use: its AUDIT_ARCH value and its socket system call numbers. -1: none.
type abi struct {
	arch                           uint32
	socket, socketpair, socketcall int32
}

// abis lists the conventions of GOARCH, the native one first. amd64's x32
// calls carry the native arch with bit 30 set in the number; i386 code
// (int 0x80) comes as AUDIT_ARCH_I386, whose socketcall multiplexer passes
// its arguments in memory, where a filter cannot read them: refused.
func abis() ([]abi, error) {
	switch runtime.GOARCH {
	case "amd64":
		return []abi{
			{unix.AUDIT_ARCH_X86_64, 41, 53, -1},
			{unix.AUDIT_ARCH_I386, 359, 360, 102},
		}, nil
	case "arm64":
		return []abi{
			{unix.AUDIT_ARCH_AARCH64, 198, 199, -1},
			{unix.AUDIT_ARCH_ARM, 281, 288, -1},
		}, nil
	}
	return nil, fmt.Errorf("refuse socket families: no seccomp filter for %s", runtime.GOARCH)
}

const x32Bit = 0x40000000

// Classic BPF opcodes (linux/filter.h) and struct seccomp_data offsets.
const (
	ldAbs  = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
	jeqK   = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
	retK   = unix.BPF_RET | unix.BPF_K
	offNr  = 0
	offArc = 4
	offArg = 16 // args[0]; its low 32 bits on a little-endian machine

	retAllow = unix.SECCOMP_RET_ALLOW
	retEPERM = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
)

// filter is the program: for each ABI, socket and socketpair with a family
// outside Families fail with EPERM, and socketcall fails with EPERM; every
// other call is allowed.
func filter(list []abi) []unix.SockFilter {
	var p []unix.SockFilter
	ins := func(code uint16, jt, jf uint8, k uint32) int {
		p = append(p, unix.SockFilter{Code: code, Jt: jt, Jf: jf, K: k})
		return len(p) - 1
	}
	var toFamily []int // jumps (taken branch) to the family check
	for _, a := range list {
		ins(ldAbs, 0, 0, offArc)
		archAt := ins(jeqK, 0, 0, a.arch) // not this arch: skip the block
		ins(ldAbs, 0, 0, offNr)
		if a.arch == unix.AUDIT_ARCH_X86_64 {
			// x32: the same numbers with bit 30 set, the same arguments.
			ins(unix.BPF_ALU|unix.BPF_AND|unix.BPF_K, 0, 0, ^uint32(x32Bit))
		}
		if a.socketcall >= 0 {
			ins(jeqK, 0, 1, uint32(a.socketcall))
			ins(retK, 0, 0, retEPERM)
		}
		toFamily = append(toFamily, ins(jeqK, 0, 0, uint32(a.socket)))
		toFamily = append(toFamily, ins(jeqK, 0, 0, uint32(a.socketpair)))
		ins(retK, 0, 0, retAllow)
		p[archAt].Jf = uint8(len(p) - archAt - 1)
	}
	// Another arch cannot run this binary's children's code without one
	// of the ABIs above: allow.
	ins(retK, 0, 0, retAllow)
	famAt := len(p)
	for _, at := range toFamily {
		p[at].Jt = uint8(famAt - at - 1)
	}
	ins(ldAbs, 0, 0, offArg)
	for i, fam := range Families {
		// An allowed family jumps to the allow after the refusal.
		ins(jeqK, uint8(len(Families)-i), 0, fam)
	}
	ins(retK, 0, 0, retEPERM)
	ins(retK, 0, 0, retAllow)
	return p
}

// RefuseSocketFamilies installs the filter on the calling thread, which
// must have no_new_privs set and is the one that goes on to execve (the
// filter is kept across it and inherited by every child). A refused call
// fails with EPERM; seccomp reports no event.
func RefuseSocketFamilies() error {
	list, err := abis()
	if err != nil {
		return err
	}
	prog := filter(list)
	if len(prog) > 255 {
		return errors.New("refuse socket families: filter too long for 8-bit jumps")
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&fprog)), 0, 0); err != nil {
		return fmt.Errorf("refuse socket families: install seccomp filter: %w", err)
	}
	return nil
}
