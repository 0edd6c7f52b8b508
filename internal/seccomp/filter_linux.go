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

// Refuse says what the filter refuses. Every other call is allowed.
type Refuse struct {
	// Families: socket and socketpair of a family outside Families, and
	// i386 socketcall (whose arguments a filter cannot read): EPERM.
	Families bool
	// Userns: new user namespaces (policy allow_userns: false).
	// unshare and clone with CLONE_NEWUSER, and setns with
	// CLONE_NEWUSER or nstype 0, fail with EPERM; clone3, whose flags
	// lie in memory a filter cannot read, fails with ENOSYS, so that
	// glibc (pthread_create, posix_spawn) falls back to clone, as under
	// container runtimes' default profiles.
	Userns bool
	// IOUring: io_uring_setup fails with EPERM (policy allow_io_uring:
	// false), the answer of the kernel's own io_uring_disabled sysctl,
	// after which libuv and liburing users fall back to ordinary calls.
	// io_uring runs no seccomp filter on its operations, so its
	// IORING_OP_SOCKET would create any socket family.
	IOUring bool
	// SharedFiles: clone with CLONE_FILES but without CLONE_THREAD
	// fails with EPERM, clone3 with ENOSYS (as for Userns). A descriptor
	// table is then shared by the threads of one process only, so the
	// fanotify backend's kill of a process that receives a socket from
	// outside (bpf/sockrecv.c) leaves no other process holding it.
	// Threads, fork, vfork and posix_spawn do not share a table this way.
	SharedFiles bool
}

// Any tells whether r refuses anything.
func (r Refuse) Any() bool { return r.Families || r.Userns || r.IOUring || r.SharedFiles }

// abi is one system call convention a process of this architecture may
// use: its AUDIT_ARCH value and its system call numbers. -1: none.
type abi struct {
	arch                                      uint32
	socket, socketpair, socketcall            int32
	clone, unshare, setns, clone3, uringSetup int32
}

// abis lists the conventions of GOARCH, the native one first. amd64's x32
// calls carry the native arch with bit 30 set in the number; i386 code
// (int 0x80) comes as AUDIT_ARCH_I386, whose socketcall multiplexer passes
// its arguments in memory, where a filter cannot read them: refused.
// clone's flags are its first argument on all four.
func abis() ([]abi, error) {
	switch runtime.GOARCH {
	case "amd64":
		return []abi{
			{unix.AUDIT_ARCH_X86_64, 41, 53, -1, 56, 272, 308, 435, 425},
			{unix.AUDIT_ARCH_I386, 359, 360, 102, 120, 310, 346, 435, 425},
		}, nil
	case "arm64":
		return []abi{
			{unix.AUDIT_ARCH_AARCH64, 198, 199, -1, 220, 97, 268, 435, 425},
			{unix.AUDIT_ARCH_ARM, 281, 288, -1, 120, 337, 375, 435, 425},
		}, nil
	}
	return nil, fmt.Errorf("seccomp filter: none for %s", runtime.GOARCH)
}

const x32Bit = 0x40000000

// Classic BPF opcodes (linux/filter.h) and struct seccomp_data offsets.
const (
	ldAbs  = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
	jeqK   = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
	jsetK  = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
	retK   = unix.BPF_RET | unix.BPF_K
	offNr  = 0
	offArc = 4
	offArg = 16 // args[0]; its low 32 bits on a little-endian machine
	argLen = 8

	retAllow  = unix.SECCOMP_RET_ALLOW
	retEPERM  = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
	retENOSYS = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
)

// asm assembles a classic BPF program whose jumps name labels; "" is
// the next instruction.
type asm struct {
	ins    []unix.SockFilter
	jt, jf []string
	labels map[string]int
}

func (a *asm) op(code uint16, k uint32, jt, jf string) {
	a.ins = append(a.ins, unix.SockFilter{Code: code, K: k})
	a.jt, a.jf = append(a.jt, jt), append(a.jf, jf)
}

func (a *asm) label(name string) {
	if a.labels == nil {
		a.labels = map[string]int{}
	}
	a.labels[name] = len(a.ins)
}

func (a *asm) program() ([]unix.SockFilter, error) {
	off := func(at int, name string) (uint8, error) {
		if name == "" {
			return 0, nil
		}
		to, ok := a.labels[name]
		d := to - at - 1
		if !ok || d < 0 || d > 255 {
			return 0, fmt.Errorf("seccomp filter: jump from %d to %q (%d) out of reach", at, name, to)
		}
		return uint8(d), nil
	}
	var err error
	for i := range a.ins {
		var e1, e2 error
		a.ins[i].Jt, e1 = off(i, a.jt[i])
		a.ins[i].Jf, e2 = off(i, a.jf[i])
		err = errors.Join(err, e1, e2)
	}
	return a.ins, err
}

// filter builds the program for r: one block per ABI that sends each
// system call r refuses to a check shared by all ABIs (they read the same
// argument offsets), and allows everything else.
func filter(list []abi, r Refuse) ([]unix.SockFilter, error) {
	var a asm
	for i, b := range list {
		next := fmt.Sprintf("abi%d", i+1)
		a.op(ldAbs, offArc, "", "")
		a.op(jeqK, b.arch, "", next)
		a.op(ldAbs, offNr, "", "")
		if b.arch == unix.AUDIT_ARCH_X86_64 {
			// x32: the same numbers with bit 30 set, the same arguments.
			a.op(unix.BPF_ALU|unix.BPF_AND|unix.BPF_K, ^uint32(x32Bit), "", "")
		}
		to := func(nr int32, check string) {
			if nr >= 0 {
				a.op(jeqK, uint32(nr), check, "")
			}
		}
		if r.Families {
			to(b.socketcall, "eperm")
			to(b.socket, "family")
			to(b.socketpair, "family")
		}
		if r.Userns || r.SharedFiles {
			to(b.clone, "clone")
			to(b.clone3, "enosys")
		}
		if r.Userns {
			to(b.unshare, "newuser0")
			to(b.setns, "setns")
		}
		if r.IOUring {
			to(b.uringSetup, "eperm")
		}
		a.op(retK, retAllow, "", "")
		a.label(next)
	}
	// Another arch cannot run this binary's children's code without one
	// of the ABIs above: allow.
	a.op(retK, retAllow, "", "")

	a.label("family")
	a.op(ldAbs, offArg, "", "")
	for _, fam := range Families {
		a.op(jeqK, fam, "allow", "")
	}
	a.op(retK, retEPERM, "", "")

	// setns(fd, nstype): nstype 0 joins whatever namespace fd is.
	a.label("setns")
	a.op(ldAbs, offArg+argLen, "", "")
	a.op(jeqK, 0, "eperm", "newuser")
	a.label("newuser0")
	a.op(ldAbs, offArg, "", "")
	a.label("newuser")
	a.op(jsetK, unix.CLONE_NEWUSER, "eperm", "allow")

	// clone(flags, ...): the refusals r makes of its flags.
	a.label("clone")
	a.op(ldAbs, offArg, "", "")
	if r.Userns {
		a.op(jsetK, unix.CLONE_NEWUSER, "eperm", "")
	}
	if r.SharedFiles {
		a.op(jsetK, unix.CLONE_THREAD, "allow", "")
		a.op(jsetK, unix.CLONE_FILES, "eperm", "")
	}
	a.op(retK, retAllow, "", "")

	a.label("allow")
	a.op(retK, retAllow, "", "")
	a.label("eperm")
	a.op(retK, retEPERM, "", "")
	a.label("enosys")
	a.op(retK, retENOSYS, "", "")
	return a.program()
}

// Install puts the filter for r on the calling thread, which must have
// no_new_privs set and is the one that goes on to execve (the filter is
// kept across it and inherited by every child). seccomp reports no event.
func Install(r Refuse) error {
	if !r.Any() {
		return nil
	}
	list, err := abis()
	if err != nil {
		return err
	}
	prog, err := filter(list, r)
	if err != nil {
		return err
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&fprog)), 0, 0); err != nil {
		return fmt.Errorf("install seccomp filter: %w", err)
	}
	return nil
}
