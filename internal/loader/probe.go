//go:build linux

package loader

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Why BPF LSM cannot be used; ProbeLSM's errors match one of them with
// errors.Is, and their text says what to do.
var (
	// ErrLSMNotCompiled: the kernel has no BPF LSM program type
	// (CONFIG_BPF_LSM is off).
	ErrLSMNotCompiled = errors.New("BPF LSM is not compiled into this kernel")
	// ErrLSMNotActive: BPF LSM is built in but "bpf" is not in the active
	// LSM list, so attached programs never run.
	ErrLSMNotActive = errors.New("BPF LSM is not active")
	// ErrLSMLoadRefused: the kernel refused to load or attach an LSM
	// program (missing privileges, lockdown, or a kernel that disables BPF
	// trampolines).
	ErrLSMLoadRefused = errors.New("the kernel refused to load a BPF LSM program")
)

// lsmListPath is where the kernel lists its active LSMs (securityfs).
const lsmListPath = "/sys/kernel/security/lsm"

// ProbeError is what ProbeLSM returns: Reason is one of the ErrLSM*
// sentinels, Detail what was observed and Fix what the user can do.
type ProbeError struct {
	Reason error
	Detail string
	Fix    string
	Err    error // the underlying error, if any
}

func (e *ProbeError) Error() string {
	var b strings.Builder
	b.WriteString(e.Reason.Error())
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	if e.Err != nil && e.Detail == "" {
		fmt.Fprintf(&b, " (%v)", e.Err)
	}
	if e.Fix != "" {
		b.WriteString("; ")
		b.WriteString(e.Fix)
	}
	return b.String()
}

// Summary is the one-line cause, without the detail and the fix: what a
// warning repeated on every run should say.
func (e *ProbeError) Summary() string { return e.Reason.Error() }

func (e *ProbeError) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Reason}
	}
	return []error{e.Reason, e.Err}
}

// ProbeLSM proves that BPF LSM enforcement works on this kernel: it loads a
// program on the file_open hook that counts the opens of this process,
// attaches it, opens a file and checks that the program ran. Reading the
// LSM list alone is not enough: some kernels list "bpf" and still refuse
// every LSM program. It returns nil or a *ProbeError.
func ProbeLSM() error {
	if err := removeMemlock(); err != nil {
		return &ProbeError{Reason: ErrLSMLoadRefused, Detail: "cannot lift the locked-memory limit", Fix: "run as root", Err: err}
	}
	if err := hookInBTF(); err != nil {
		return err
	}

	spec, err := loadLsmProbe()
	if err != nil {
		return fmt.Errorf("probe BPF LSM: %w", err)
	}
	if err := spec.Variables[lsmProbeVarProbeTgid].Set(uint32(os.Getpid())); err != nil {
		return fmt.Errorf("probe BPF LSM: %w", err)
	}
	var objs lsmProbeObjects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		return loadRefused(err)
	}
	defer objs.Close()

	active, list := lsmActive()
	if !active {
		return notActive(list)
	}

	l, err := link.AttachLSM(link.LSMOptions{Program: objs.AigateProbeOpen})
	if err != nil {
		return loadRefused(err)
	}
	defer l.Close()

	f, err := os.Open("/proc/self/stat")
	if err != nil {
		return fmt.Errorf("probe BPF LSM: %w", err)
	}
	f.Close()

	var hits uint64
	if err := objs.ProbeHits.Lookup(uint32(0), &hits); err != nil {
		return fmt.Errorf("probe BPF LSM: read hits: %w", err)
	}
	if hits == 0 {
		return &ProbeError{
			Reason: ErrLSMNotActive,
			Detail: "an LSM program loaded and attached but did not run on file_open",
			Fix:    grubFix(list),
		}
	}
	// The programs walk dentries with bpf_loop (Linux 5.17+), which keeps
	// their verification cheap; an older kernel with BPF LSM cannot load
	// them. bpf_loop is a base helper, so any program type tells (the
	// helper probe does not support LSM programs).
	if err := features.HaveProgramHelper(ebpf.SocketFilter, asm.FnLoop); err != nil {
		return &ProbeError{
			Reason: ErrLSMLoadRefused,
			Detail: "the kernel has no bpf_loop helper, which aigate's LSM programs use (Linux 5.17 or newer)",
			Fix:    "use a newer kernel, or the fanotify backend (backend: fanotify)",
			Err:    err,
		}
	}
	return nil
}

// hookInBTF tells "not compiled in" apart: with CONFIG_BPF_LSM the kernel's
// BTF has the bpf_lsm_* attach points.
func hookInBTF() error {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return &ProbeError{
			Reason: ErrLSMNotCompiled,
			Detail: "the kernel has no BTF (/sys/kernel/btf/vmlinux), which BPF LSM programs need",
			Fix:    "use a kernel built with CONFIG_DEBUG_INFO_BTF=y and CONFIG_BPF_LSM=y, or the fanotify backend",
			Err:    err,
		}
	}
	var fn *btf.Func
	if err := spec.TypeByName("bpf_lsm_file_open", &fn); err != nil {
		return &ProbeError{
			Reason: ErrLSMNotCompiled,
			Detail: "the kernel has no bpf_lsm_file_open hook (CONFIG_BPF_LSM is off)",
			Fix:    "use a kernel built with CONFIG_BPF_LSM=y, or the fanotify backend",
			Err:    err,
		}
	}
	return nil
}

func loadRefused(err error) error {
	if errors.Is(err, ebpf.ErrNotSupported) {
		return &ProbeError{
			Reason: ErrLSMNotCompiled,
			Detail: "the kernel does not support BPF LSM programs",
			Fix:    "use a kernel built with CONFIG_BPF_LSM=y, or the fanotify backend",
			Err:    err,
		}
	}
	pe := &ProbeError{Reason: ErrLSMLoadRefused, Err: err}
	switch {
	case errors.Is(err, unix.EPERM) && os.Geteuid() != 0:
		pe.Detail = "not running as root"
		pe.Fix = "run aigate with sudo"
	case errors.Is(err, unix.EPERM):
		// Nothing says why: the verifier log is empty. Tell what can be
		// measured (does a trampoline program of another kind load?) and
		// what lockdown's level does and does not explain.
		pe.Detail = "BPF_PROG_LOAD returned EPERM although running as root; " + fentryTrial() +
			"; the cause is not visible from user space (" + lockdownState() + ")"
		pe.Fix = "with backend: auto aigate uses the fanotify backend here, and nothing needs doing; " +
			"BPF LSM needs a kernel, or a hypervisor, that lets root load BPF LSM programs"
	default:
		pe.Fix = "run `aigate doctor` for details, or use the fanotify backend (backend: fanotify)"
	}
	return pe
}

// fentryTrial loads an empty fentry program, which needs a BPF trampoline
// as an LSM program does, and says whether the kernel refused it too.
func fentryTrial() string {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.Tracing,
		AttachType:   ebpf.AttachTraceFEntry,
		AttachTo:     "security_file_open",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
		License:      "GPL",
	})
	switch {
	case err == nil:
		prog.Close()
		return "an fentry program (also a BPF trampoline) loads, so only LSM programs are refused"
	case errors.Is(err, unix.EPERM):
		return "an fentry program is refused too, so every program that needs a BPF trampoline is"
	}
	return fmt.Sprintf("an fentry trial load failed too (%v)", err)
}

// lockdownState describes /sys/kernel/security/lockdown for error messages.
func lockdownState() string {
	b, err := os.ReadFile("/sys/kernel/security/lockdown")
	if err != nil {
		return "kernel lockdown state unknown"
	}
	return describeLockdown(string(b))
}

// describeLockdown turns the lockdown file ("none [integrity]
// confidentiality": the active mode is bracketed) into a phrase.
func describeLockdown(s string) string {
	_, rest, ok := strings.Cut(s, "[")
	mode, _, ok2 := strings.Cut(rest, "]")
	switch {
	case !ok || !ok2 || mode == "":
		return "kernel lockdown state unknown (" + strings.TrimSpace(s) + ")"
	case mode == "none":
		return "kernel lockdown is off"
	case mode == "integrity":
		// Its BPF restriction is the bpf_probe_write_user helper only.
		return "kernel lockdown is in integrity mode, which does not restrict loading BPF programs"
	case mode == "confidentiality":
		return "kernel lockdown is in confidentiality mode, which refuses BPF helpers that read kernel memory"
	}
	return "kernel lockdown is in " + mode + " mode"
}

// lsmActive reports whether "bpf" is in the active LSM list, and the list.
// When securityfs is not mounted the list is unknown and the attach test
// decides.
func lsmActive() (bool, string) {
	b, err := os.ReadFile(lsmListPath)
	if err != nil {
		return true, ""
	}
	list := strings.TrimSpace(string(b))
	for _, name := range strings.Split(list, ",") {
		if name == "bpf" {
			return true, list
		}
	}
	return false, list
}

func notActive(list string) error {
	return &ProbeError{
		Reason: ErrLSMNotActive,
		Detail: fmt.Sprintf("%q is missing from the active LSM list %q (%s)", "bpf", list, lsmListPath),
		Fix:    grubFix(list),
	}
}

// grubFix says how to add bpf to the lsm= boot parameter, with the full
// line to put in /etc/default/grub.
func grubFix(list string) string {
	lsms := "lockdown,capability,landlock,yama,apparmor,bpf"
	if list != "" {
		lsms = list + ",bpf"
	}
	line := "GRUB_CMDLINE_LINUX=\"lsm=" + lsms + "\""
	if cur, ok := grubCmdline(); ok {
		var kept []string
		for _, f := range strings.Fields(cur) {
			if !strings.HasPrefix(f, "lsm=") {
				kept = append(kept, f)
			}
		}
		line = "GRUB_CMDLINE_LINUX=\"" + strings.Join(append(kept, "lsm="+lsms), " ") + "\""
	}
	return "add bpf to the kernel's lsm= boot parameter: in /etc/default/grub set " + line +
		", then run update-grub (or grub2-mkconfig -o /boot/grub2/grub.cfg) and reboot"
}

// grubCmdline reads GRUB_CMDLINE_LINUX from /etc/default/grub.
func grubCmdline() (string, bool) {
	b, err := os.ReadFile("/etc/default/grub")
	if err != nil {
		return "", false
	}
	for _, line := range strings.Split(string(b), "\n") {
		v, ok := strings.CutPrefix(strings.TrimSpace(line), "GRUB_CMDLINE_LINUX=")
		if ok {
			return strings.Trim(v, `"'`), true
		}
	}
	return "", false
}
