//go:build linux

package doctor

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/kallsyms"
	"github.com/aigate-dev/aigate/internal/mountinfo"
)

// Run performs every check. It never fails: what it cannot find out is a
// check with status Skip.
func Run(opts Options) *Report {
	if opts.Root == "" {
		opts.Root = "/"
	}
	if opts.Release == "" {
		var u unix.Utsname
		if err := unix.Uname(&u); err == nil {
			opts.Release = unix.ByteSliceToString(u.Release[:])
		}
	}
	m := &machine{opts: opts}
	m.kconfig = m.readKconfig()
	m.mounts = m.readMounts()

	kernel, major, minor := m.kernel()
	btf := m.btf()
	lsm := m.bpfLSM()
	probe := m.probe(lsm.Status)
	cg := m.cgroup2()
	fan := m.fanotify(major, minor)
	net := m.sockAddr(cg.Status)
	unixc := m.unixSockets()
	r := &Report{Checks: []Check{kernel, btf, lsm, probe, fan, net, unixc, m.landlock(), m.userns(major, minor), m.execCopies(major, minor), m.verdictCache(lsm.Status, probe.Status), cg, m.favorDynmods(major, minor), m.bpffs(), m.privileges()}}

	// Both backends enforce the network with the sock_addr programs, and
	// neither opens without them.
	netOK := net.Status != Fail && cg.Status != Fail
	lsmOK := kernel.Status != Fail && atLeast(major, minor, 5, 7) && btf.Status == OK &&
		lsm.Status == OK && probe.Status != Fail && netOK
	fanOK := kernel.Status != Fail && fan.Status != Fail && netOK
	switch {
	case lsmOK:
		r.Backend = BackendLSM
		r.Summary = "ready: BPF LSM backend"
		switch {
		case probe.Status == Skip && opts.Euid != 0:
			// Without root nothing was proven: say what is likely.
			r.Summary = "not proven without root: BPF LSM if its trial load works, else fanotify; `sudo aigate doctor` proves which"
		case probe.Status == Skip:
			r.Summary += " (load not probed: " + probe.Detail + ")"
		}
	case fanOK && lsm.Status == Skip:
		r.Backend = BackendFanotify
		r.Summary = "ready: fanotify backend at least (run `aigate doctor` as root to check BPF LSM)"
	case fanOK:
		r.Backend = BackendFanotify
		r.Summary = "ready: fanotify backend (BPF LSM cannot run here: `aigate doctor` says why); " +
			"backend: auto already falls back to it, nothing needs doing"
	case !netOK && net.Status == Fail:
		r.Summary = "not ready: cgroup sock_addr programs do not work, and both backends need them for network rules; see `aigate doctor`"
	default:
		r.Summary = "not ready: no enforcement backend can run; see `aigate doctor`"
	}
	if a := opts.Agent; a != nil && !a.Denied && a.Backend != "" {
		r.Agent = a
		if opts.Euid != 0 || a.Backend != r.Backend {
			// What runs decides: without root the probes above could
			// not prove anything, and an agent may have been told its
			// backend.
			r.Backend = a.Backend
			r.Summary = fmt.Sprintf("ready: the running agent (pid %d) enforces with the %s backend", a.PID, a.Backend)
		}
	}
	r.Ready = r.Backend != ""
	if r.Backend == BackendFanotify && (lsm.Status == Fail || probe.Status == Fail || r.Agent != nil) {
		// Only the BPF-LSM backend pins its state: bpffs does not matter.
		for i, c := range r.Checks {
			if c.Name == "bpffs" && c.Status != OK {
				r.Checks[i] = Check{Name: "bpffs", Status: Skip,
					Detail: "not needed: only the BPF LSM backend pins its state, and fanotify is the backend here (without it, an embedded `sudo aigate run` cannot keep its network programs loaded for the next run, and starts slower)"}
			}
		}
	}

	v := verdicts(kernel, major, minor, btf, lsm, probe, fan, net, unixc, cg)
	r.Verdicts = []Verdict{v.lsm, v.fan, v.net, v.unix}
	r.Backends = []BackendInfo{
		{Name: BackendLSM, State: worst(v.lsm.State, v.net.State), Enforces: enforcesLSM},
		{Name: BackendFanotify, State: worst(v.fan.State, v.net.State), Enforces: enforcesFanotify},
	}
	for _, c := range r.Checks {
		if c.Status == Skip && strings.HasPrefix(c.Fix, sudoDoctor) {
			r.NeedRoot = append(r.NeedRoot, c.Name)
		}
	}
	return r
}

// What each backend enforces, one line each; the README's table has the
// whole comparison, measured.
const (
	enforcesLSM = "every open and exec anywhere, by path, name and inode, execs of copies of deny_exec binaries by content (Linux 6.0+, see exec-copies), and renames, unlinks and " +
		"truncates of deny_write files (BPF LSM); egress by cgroup sock_addr programs and a DNS proxy"
	enforcesFanotify = "opens and execs of existing files by inode, and of names in the project and home trees " +
		"(new directories are marked 1-3 ms after they appear), by fanotify permission events; " +
		"deny_write stops opens for writing only: a file renamed over, moved away or unlinked is put back about a millisecond later, " +
		"truncate(2) of a file the agent holds kills the sandbox and puts the content back (files up to 32 MiB), " +
		"a directory renamed or removed above a protected path is seen after the fact (sandbox killed); " +
		"files that appear later are protected by inode once seen; copies of deny_exec binaries are refused by content " +
		"on every filesystem the kernel lets aigate mark (through the dynamic loader only in the project and home trees); " +
		"egress by cgroup sock_addr programs and a DNS proxy; a guard kills the sandbox if aigate dies"
)

// sudoDoctor is the Fix of a check skipped for lack of root.
const sudoDoctor = "sudo aigate doctor"

type machine struct {
	opts    Options
	kconfig map[string]string // nil when the kernel config is unreadable
	mounts  []mount
}

type mount struct {
	point, fstype string
	super         []string // the filesystem's options
}

func (m *machine) path(p string) string { return filepath.Join(m.opts.Root, p) }

func (m *machine) kernel() (Check, int, int) {
	c := Check{Name: "kernel"}
	major, minor, ok := parseRelease(m.opts.Release)
	switch {
	case !ok:
		c.Status, c.Detail = Skip, fmt.Sprintf("cannot parse kernel release %q", m.opts.Release)
	case atLeast(major, minor, 5, 7):
		c.Status, c.Detail = OK, "Linux "+m.opts.Release
	case atLeast(major, minor, 5, 1):
		c.Status = Warn
		c.Detail = fmt.Sprintf("Linux %s: BPF LSM needs 5.7 or later; only the fanotify backend can run", m.opts.Release)
		c.Fix = "upgrade to a kernel >= 5.7 (your distribution's current kernel package) for the BPF LSM backend"
	default:
		c.Status = Fail
		c.Detail = fmt.Sprintf("Linux %s is too old: aigate needs 5.1 or later (5.7 or later for BPF LSM)", m.opts.Release)
		c.Fix = "upgrade to a kernel >= 5.7 (your distribution's current kernel package)"
	}
	return c, major, minor
}

func (m *machine) btf() Check {
	c := Check{Name: "btf"}
	p := m.path("/sys/kernel/btf/vmlinux")
	if _, err := os.Stat(p); err == nil {
		c.Status, c.Detail = OK, "/sys/kernel/btf/vmlinux present"
		return c
	}
	c.Status = Fail
	c.Detail = "/sys/kernel/btf/vmlinux is missing: the kernel was built without CONFIG_DEBUG_INFO_BTF, which BPF LSM programs need"
	c.Fix = "install a kernel built with CONFIG_DEBUG_INFO_BTF=y (the standard kernels of Debian 11+, Ubuntu 20.10+, Fedora 31+ and RHEL 8.2+ are)"
	return c
}

func (m *machine) bpfLSM() Check {
	c := Check{Name: "bpf-lsm"}
	if m.kconfig != nil && m.kconfig["CONFIG_BPF_LSM"] != "y" {
		c.Status = Fail
		c.Detail = "the kernel was built without CONFIG_BPF_LSM"
		c.Fix = "install a kernel built with CONFIG_BPF_LSM=y; until then aigate uses the fanotify backend"
		return c
	}
	file := m.path("/sys/kernel/security/lsm")
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) && m.opts.Mount && m.opts.Euid == 0 {
		dir := m.path("/sys/kernel/security")
		if merr := unix.Mount("securityfs", dir, "securityfs", 0, ""); merr != nil && !errors.Is(merr, unix.EBUSY) {
			c.Status = Skip
			c.Detail = fmt.Sprintf("securityfs is not mounted and mounting it failed: %v", merr)
			c.Fix = "sudo mount -t securityfs securityfs /sys/kernel/security && aigate doctor"
			return c
		}
		data, err = os.ReadFile(file)
	}
	if err != nil {
		c.Status = Skip
		c.Detail = fmt.Sprintf("cannot read the active LSM list: %v", err)
		c.Fix = "sudo aigate doctor (mounts securityfs to read /sys/kernel/security/lsm)"
		return c
	}
	active := strings.TrimSpace(string(data))
	for _, l := range strings.Split(active, ",") {
		if l == "bpf" {
			c.Status, c.Detail = OK, "active LSMs: "+active
			return c
		}
	}
	c.Status = Fail
	c.Detail = "BPF LSM is built in but not active (active LSMs: " + active + ")"
	c.Fix = lsmFix(active, m.cmdline())
	return c
}

// lsmFix spells out the boot parameter change that activates BPF LSM,
// keeping the LSMs that are active now, in their order.
func lsmFix(active, cmdline string) string {
	want := "bpf"
	if active != "" {
		want = active + ",bpf"
	}
	var old string
	for _, f := range strings.Fields(cmdline) {
		if strings.HasPrefix(f, "lsm=") {
			old = f
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "add bpf to the kernel's lsm= boot parameter: lsm=%s\n", want)
	if old != "" {
		fmt.Fprintf(&b, "(the current command line already has %s: replace it)\n", old)
	}
	b.WriteString("  Debian, Ubuntu: in /etc/default/grub add it to GRUB_CMDLINE_LINUX:\n")
	fmt.Fprintf(&b, "    sudo sed -i 's/^GRUB_CMDLINE_LINUX=\"/GRUB_CMDLINE_LINUX=\"lsm=%s /' /etc/default/grub\n", want)
	b.WriteString("    sudo update-grub\n")
	b.WriteString("  Fedora, RHEL:\n")
	fmt.Fprintf(&b, "    sudo grubby --update-kernel=ALL --args=\"lsm=%s\"\n", want)
	b.WriteString("  then: sudo reboot, and check with: aigate doctor")
	return b.String()
}

func (m *machine) probe(lsm Status) Check {
	c := Check{Name: "bpf-lsm-load"}
	switch {
	case lsm == Fail:
		c.Status, c.Detail = Skip, "BPF LSM is not active"
	case m.opts.ProbeLSM == nil:
		c.Status, c.Detail = Skip, "no load probe in this build"
	case m.opts.Euid != 0:
		var pe *ProbeError
		if m.opts.RememberedLSM != nil && errors.As(m.opts.RememberedLSM(), &pe) {
			// A root run found it refused this boot; that cannot change
			// before the next boot (backend/probecache_linux.go).
			c.Status, c.Detail, c.Fix = Fail, pe.Reason, pe.Fix
			return c
		}
		c.Status, c.Detail = Skip, "loading a BPF program needs root"
		c.Fix = sudoDoctor
	default:
		err := m.opts.ProbeLSM()
		var pe *ProbeError
		switch {
		case err == nil:
			c.Status, c.Detail = OK, "a test BPF LSM program loaded, attached and ran"
		case errors.As(err, &pe):
			c.Status, c.Detail, c.Fix = Fail, pe.Reason, pe.Fix
		default:
			c.Status = Fail
			c.Detail = fmt.Sprintf("BPF LSM is active but a test program cannot be attached: %v", err)
			c.Fix = "a hypervisor, container runtime or lockdown policy forbids BPF trampolines here " +
				"(check /sys/kernel/security/lockdown); aigate uses the fanotify backend instead"
		}
	}
	return c
}

func (m *machine) fanotify(major, minor int) Check {
	c := Check{Name: "fanotify"}
	switch {
	case m.kconfig != nil && m.kconfig["CONFIG_FANOTIFY_ACCESS_PERMISSIONS"] != "y":
		c.Status = Fail
		c.Detail = "the kernel was built without CONFIG_FANOTIFY_ACCESS_PERMISSIONS: no fanotify permission events"
		c.Fix = "install a kernel built with CONFIG_FANOTIFY_ACCESS_PERMISSIONS=y (most distribution kernels are)"
	case major > 0 && !atLeast(major, minor, 5, 1):
		c.Status, c.Detail = Fail, "exec permission events (FAN_OPEN_EXEC_PERM) need Linux 5.1"
		c.Fix = "upgrade to a kernel >= 5.7"
	case m.opts.ProbeFanotify == nil && m.kconfig == nil:
		c.Status, c.Detail = OK, "assumed available (kernel config not readable, no probe in this build)"
	case m.opts.ProbeFanotify == nil:
		c.Status, c.Detail = OK, "permission events built in (CONFIG_FANOTIFY_ACCESS_PERMISSIONS=y; no probe in this build)"
	case m.opts.Euid != 0:
		c.Status, c.Detail = Skip, "not probed: fanotify permission events need root (CAP_SYS_ADMIN)"
		c.Fix = sudoDoctor
	default:
		if err := m.opts.ProbeFanotify(); err != nil {
			c.Status = Fail
			c.Detail = fmt.Sprintf("fanotify permission events do not work: %v", err)
			c.Fix = "use a kernel built with CONFIG_FANOTIFY=y and CONFIG_FANOTIFY_ACCESS_PERMISSIONS=y, " +
				"outside a container or security policy that forbids fanotify_init(FAN_CLASS_CONTENT)"
		} else {
			c.Status, c.Detail = OK, "a permission mark on a test file worked: its open was reported and denied"
		}
	}
	return c
}

// sockAddr proves that the cgroup sock_addr programs, which both backends
// enforce the network with, load and attach.
func (m *machine) sockAddr(cg Status) Check {
	c := Check{Name: "sock-addr"}
	switch {
	case m.opts.ProbeSockAddr == nil:
		c.Status, c.Detail = Skip, "no probe in this build"
	case cg == Fail:
		c.Status, c.Detail = Skip, "no cgroup v2 hierarchy to attach a test program to"
	case m.opts.Euid != 0:
		c.Status, c.Detail = Skip, "not probed: loading and attaching a BPF program needs root"
		c.Fix = sudoDoctor
	default:
		if err := m.opts.ProbeSockAddr(); err != nil {
			c.Status = Fail
			c.Detail = fmt.Sprintf("cgroup sock_addr programs cannot be used: %v", err)
			c.Fix = "both backends need cgroup/connect4,6 and sendmsg4,6 programs for network rules: " +
				"use a kernel built with CONFIG_CGROUP_BPF=y, with cgroup v2 mounted, and run aigate as root"
		} else {
			c.Status, c.Detail = OK, "a cgroup/connect4 program loaded, attached to a test cgroup and detached"
		}
	}
	return c
}

// unixSockets says whether sandboxed processes are kept from connecting
// to unix sockets outside their sandbox (Docker, ssh-agent, D-Bus).
func (m *machine) unixSockets() Check {
	c := Check{Name: "unix-sockets"}
	switch {
	case m.opts.ProbeUnix == nil:
		c.Status, c.Detail = Skip, "no probe in this build"
	case m.opts.Euid != 0:
		c.Status, c.Detail = Skip, "not probed: loading a BPF program needs root"
		c.Fix = sudoDoctor
	default:
		desc, err := m.opts.ProbeUnix()
		c.Detail = desc
		if err != nil {
			c.Status = Warn
			c.Fix = "Linux 6.7 or later confines unix sockets by name with cgroup connect_unix/sendmsg_unix programs: upgrade the kernel"
		} else {
			c.Status = OK
		}
	}
	return c
}

// landlock says what the sandboxed command's Landlock domain does here:
// it fences off the user's processes outside the sandbox and keeps the
// home read-only (docs/threat-model.md).
func (m *machine) landlock() Check {
	c := Check{Name: "landlock"}
	if m.opts.LandlockABI == nil {
		c.Status, c.Detail = Skip, "no probe in this build"
		return c
	}
	abi := m.opts.LandlockABI()
	switch {
	case abi >= 6:
		c.Status = OK
		c.Detail = fmt.Sprintf("ABI %d: processes outside the sandbox are out of reach (ptrace, /proc/PID/mem and environ, signals, abstract unix sockets); the home is read-only but for the project and tool state", abi)
	case abi > 0:
		c.Status = Warn
		c.Detail = fmt.Sprintf("ABI %d: ptrace and /proc/PID/mem of processes outside the sandbox are refused and the home is read-only, but on the fanotify backend the sandbox can still signal them and reach abstract unix sockets", abi)
		c.Fix = "Linux 6.12 or later (Landlock ABI 6) scopes signals and abstract unix sockets; the lsm backend refuses such signals itself"
	default:
		c.Status = Warn
		c.Detail = "not available: on the fanotify backend aigate run refuses to start (AIGATE_LANDLOCK=optional runs without it: the command can ptrace your other processes); on the lsm backend the home stays writable"
		c.Fix = "add landlock to the kernel's lsm= boot parameter (before bpf), e.g. lsm=lockdown,capability,landlock,bpf, and reboot"
		return c
	}
	c.Detail += "; its refusals (ptrace, signals, writes in the home, also to deny_write files there such as ~/.bashrc) as aigate events: " + m.landlockReported(abi)
	return c
}

// landlockReported says whether Landlock's refusals become events: the
// agent reports them from its audit records where the kernel has them
// (ABI 7, Linux 6.15, while audit is enabled, package llaudit), else
// from the system calls they made fail (package refused); the running
// agent says which.
func (m *machine) landlockReported(abi int) string {
	const calls = "reported by the agent from the system calls they made fail (tp_btf/sys_exit)"
	switch a := m.opts.Agent; {
	case a != nil && a.Landlock != "":
		return a.Landlock
	case abi < 7:
		return calls + "; the kernel reports them to audit only from Landlock ABI 7 (Linux 6.15)"
	case m.opts.LandlockAudit == nil:
		return "unknown (no probe in this build)"
	case m.opts.Euid != 0:
		return "unknown without root or a running agent (`sudo aigate doctor`)"
	}
	r := m.opts.LandlockAudit()
	if strings.HasPrefix(r, "reported") {
		return "reported by an agent from the kernel's audit records (audit is enabled), none runs now"
	}
	return calls + " (" + r + ")"
}

// userns says how sandboxes are kept from creating user namespaces
// (allow_userns: false, the default): inside one a process may mount, and
// so put a directory over a path that a rule or allow_unix names.
func (m *machine) userns(major, minor int) Check {
	c := Check{Name: "userns", Status: OK}
	if atLeast(major, minor, 6, 1) {
		c.Detail = "sandboxes cannot create user namespaces unless the policy says allow_userns: true: the BPF LSM backend refuses them in its userns_create hook, with events; the fanotify backend with a seccomp filter, without events"
	} else {
		c.Detail = "sandboxes cannot create user namespaces unless the policy says allow_userns: true: both backends refuse them with a seccomp filter, without events (BPF LSM's userns_create hook needs Linux 6.1)"
	}
	if b, err := os.ReadFile(m.path("proc/sys/user/max_user_namespaces")); err == nil && strings.TrimSpace(string(b)) == "0" {
		c.Detail += "; this machine allows none to anyone (user.max_user_namespaces = 0)"
	}
	return c
}

// execCopies says how each backend treats a copy of a deny_exec binary
// under another name (cp /usr/bin/curl /tmp/x): the BPF LSM backend
// compares its size and then its SHA-256, which IMA computes
// (bpf_ima_file_hash, Linux 6.0, CONFIG_IMA); fanotify does both in the
// agent, for execs it is told about.
func (m *machine) execCopies(major, minor int) Check {
	c := Check{Name: "exec-copies", Status: OK}
	const fan = "; fanotify backend: refused on every filesystem the kernel lets aigate mark, also one mounted later; through the dynamic loader only in the project and home trees (size, then SHA-256 in the agent)"
	switch {
	case !atLeast(major, minor, 6, 0):
		c.Status = Warn
		c.Detail = "BPF LSM backend: a copy of a deny_exec binary under another name runs (bpf_ima_file_hash needs Linux 6.0)" + fan
		c.Fix = "upgrade to a kernel >= 6.0 for the BPF LSM backend to refuse copies"
	case m.kconfig != nil && m.kconfig["CONFIG_IMA"] != "y":
		c.Status = Warn
		c.Detail = "BPF LSM backend: the kernel has no IMA (CONFIG_IMA) to hash files, so every exec of a file the size of a deny_exec binary is refused, copy or not" + fan
		c.Fix = "use a kernel built with CONFIG_IMA=y (Debian's, Ubuntu's and Fedora's are)"
	default:
		c.Detail = "BPF LSM backend: a copy of a deny_exec binary under any name and anywhere is refused (size, then SHA-256 through IMA)" + fan
	}
	return c
}

// verdictCache says whether the BPF LSM backend can answer a file a
// sandbox opens again from its per-inode cache of allowed verdicts
// (bpf/include/verdict.h): it needs rename_lock's address, which the
// loader reads from /proc/kallsyms (internal/loader/lsm.go). Without it
// the backend loads all the same and checks every open in full.
func (m *machine) verdictCache(lsm, probe Status) Check {
	c := Check{Name: "verdict-cache", Status: OK}
	if lsm == Fail || probe == Fail {
		c.Status = Skip
		c.Detail = "not needed: the BPF LSM backend cannot run here"
		return c
	}
	_, err := kallsyms.Lookup(m.path(kallsyms.Path), "rename_lock")
	switch {
	case err == nil:
		c.Detail = "BPF LSM backend: a file a sandbox opens again is answered from a per-inode cache of allowed verdicts (rename_lock's address is in /proc/kallsyms)"
		return c
	case errors.Is(err, kallsyms.ErrHidden) && m.opts.Euid != 0:
		c.Status = Skip
		c.Detail = "/proc/kallsyms hides addresses from this user; the agent reads it as root"
		c.Fix = sudoDoctor
		return c
	}
	c.Status = Warn
	c.Detail = "BPF LSM backend: no verdict cache, every open is checked in full (the same verdicts, slower repeated opens): " + err.Error()
	switch {
	case errors.Is(err, kallsyms.ErrHidden):
		c.Fix = "set kernel.kptr_restrict to 0 or 1 (2 hides kernel addresses from root too)"
	case errors.Is(err, kallsyms.ErrMissing):
		c.Fix = "use a kernel built with CONFIG_KALLSYMS_ALL=y (Debian's, Ubuntu's and Fedora's are)"
	default:
		c.Fix = "let root read /proc/kallsyms (an LSM policy or a container may refuse it)"
	}
	return c
}

type verdictSet struct{ lsm, fan, net, unix Verdict }

// verdicts sums the checks up per part of enforcement: the first check
// that fails decides, then one skipped for lack of root.
func verdicts(kernel Check, major, minor int, btf, lsm, probe, fan, net, unixc, cg Check) verdictSet {
	var v verdictSet
	lsmKernel := kernel
	if kernel.Status == Warn && !atLeast(major, minor, 5, 7) {
		lsmKernel.Status = Fail // 5.1 to 5.6 run fanotify only
	}
	v.lsm = verdictOf("bpf-lsm", "BPF LSM", lsmKernel, btf, lsm, probe)
	v.fan = verdictOf("fanotify", "fanotify", kernel, fan)
	v.net = verdictOf("sock-addr", "network (cgroup sock_addr)", cg, net)
	v.unix = Verdict{Name: "unix-sockets", Title: "unix sockets", Detail: unixc.Detail, Fix: unixc.Fix}
	switch unixc.Status {
	case OK:
		v.unix.State = Confined
	case Warn, Fail:
		v.unix.State = NotConfined
	default:
		v.unix.State = skipState(unixc)
	}
	return v
}

// verdictOf decides from checks, in order: the last one is the proof (a
// probe), the ones before are prerequisites.
func verdictOf(name, title string, checks ...Check) Verdict {
	v := Verdict{Name: name, Title: title}
	for _, c := range checks {
		if c.Status == Fail {
			v.State, v.Detail, v.Fix = NotUsable, c.Detail, c.Fix
			return v
		}
	}
	for _, c := range checks {
		if c.Status == Skip {
			v.State, v.Detail, v.Fix = skipState(c), c.Detail, c.Fix
			return v
		}
	}
	proof := checks[len(checks)-1]
	v.State, v.Detail = Usable, proof.Detail
	return v
}

func skipState(c Check) string {
	if strings.HasPrefix(c.Fix, sudoDoctor) {
		return NeedsRoot
	}
	return Unknown
}

// worst orders states: not usable, then unknown, then needs root.
func worst(states ...string) string {
	rank := map[string]int{Usable: 0, NeedsRoot: 1, Unknown: 2, NotUsable: 3}
	w := Usable
	for _, s := range states {
		if rank[s] > rank[w] {
			w = s
		}
	}
	return w
}

func (m *machine) cgroup2() Check {
	c := Check{Name: "cgroup2"}
	var point string
	for _, mt := range m.mounts {
		if mt.fstype != "cgroup2" {
			continue
		}
		// Prefer the unified hierarchy's usual homes; any mount works.
		if point == "" || mt.point == "/sys/fs/cgroup" || mt.point == "/sys/fs/cgroup/unified" && point != "/sys/fs/cgroup" {
			point = mt.point
		}
	}
	if point == "" {
		c.Status = Fail
		c.Detail = "no cgroup v2 hierarchy is mounted"
		c.Fix = "sudo mkdir -p /sys/fs/cgroup/unified && sudo mount -t cgroup2 none /sys/fs/cgroup/unified\n" +
			"(or boot with systemd.unified_cgroup_hierarchy=1 to make cgroup v2 the only hierarchy)"
		return c
	}
	c.Status, c.Detail = OK, "cgroup v2 at "+point
	data, err := os.ReadFile(m.path(filepath.Join(point, "cgroup.controllers")))
	if err != nil {
		return c
	}
	have := strings.Fields(string(data))
	var missing []string
	for _, ctl := range []string{"memory", "cpu", "pids"} {
		if !contains(have, ctl) {
			missing = append(missing, ctl)
		}
	}
	if len(missing) > 0 {
		c.Status = Warn
		c.Detail += fmt.Sprintf("; controllers %s are not available in it, so resource_limits (if you set them) cannot be enforced; nothing else needs them", strings.Join(missing, ", "))
		if fi, err := os.Stat(m.path("/run/systemd/system")); err == nil && fi.IsDir() {
			c.Fix = "boot with systemd.unified_cgroup_hierarchy=1 so that the controllers move to cgroup v2"
		} else {
			// No systemd to ask: the kernel parameter keeps the
			// controllers out of cgroup v1, so that v2 gets them.
			c.Fix = fmt.Sprintf("boot with cgroup_no_v1=%s (kernel parameter) so that cgroup v1 hierarchies cannot take these controllers", strings.Join(missing, ","))
		}
	}
	return c
}

// favorDynmods says whether moving a run into its sandbox waits for an RCU
// grace period: a write to cgroup.procs does unless the cgroup v2
// hierarchy is mounted with favordynmods (internal/cgroup/dynmods_linux.go;
// docs/performance.md measures what it gives and what it costs).
func (m *machine) favorDynmods(major, minor int) Check {
	c := Check{Name: "favordynmods", Status: OK}
	var cg *mount
	for i, mt := range m.mounts {
		if mt.fstype == "cgroup2" && (cg == nil || mt.point == "/sys/fs/cgroup") {
			cg = &m.mounts[i]
		}
	}
	switch {
	case cg == nil:
		c.Status = Skip
		c.Detail = "no cgroup v2 hierarchy (see cgroup2)"
	case contains(cg.super, "favordynmods"):
		c.Detail = "cgroup v2 is mounted with favordynmods: moving a run into its sandbox does not wait for an RCU grace period (forks and exits on the machine pay a little for it: docs/performance.md)"
	case !atLeast(major, minor, 6, 0):
		c.Detail = "each `aigate run` through the agent waits for an RCU grace period (5-16 ms measured on a 2-CPU machine, about a third of its start) to move into its sandbox; favordynmods, which avoids it, needs Linux 6.0"
	default:
		c.Status = Warn
		c.Detail = "cgroup v2 at " + cg.point + " is not mounted with favordynmods: each `aigate run` through the agent waits for an RCU grace period (5-16 ms measured on a 2-CPU machine, about a third of its start) to move into its sandbox (docs/performance.md)"
		c.Fix = "sudo aigate setup --favordynmods (sets it, and the agent sets it again after a reboot), or for this boot only: sudo mount -o remount,favordynmods " + cg.point
	}
	return c
}

func (m *machine) bpffs() Check {
	c := Check{Name: "bpffs"}
	for _, mt := range m.mounts {
		if mt.fstype == "bpf" && mt.point == "/sys/fs/bpf" {
			c.Status, c.Detail = OK, "mounted at /sys/fs/bpf"
			return c
		}
	}
	c.Status = Warn
	c.Detail = "no BPF filesystem at /sys/fs/bpf: the agent cannot pin programs across restarts, and an embedded `sudo aigate run` cannot keep its network programs loaded for the next run"
	c.Fix = "sudo mount -t bpf bpf /sys/fs/bpf"
	return c
}

func (m *machine) privileges() Check {
	c := Check{Name: "privileges"}
	if m.opts.Euid == 0 {
		c.Status, c.Detail = OK, "running as root"
		return c
	}
	switch a := m.opts.Agent; {
	case a != nil && a.Denied:
		c.Status = Warn
		c.Detail = "not root, and not allowed to use the running agent's socket " + a.Socket
		c.Fix = "ask root to add you to the aigate group (sudo usermod -aG aigate $USER), then log in again"
	case a != nil && a.Backend != "":
		c.Status = OK
		c.Detail = fmt.Sprintf("not root, but the running agent (pid %d, %s) creates sandboxes for you: aigate run -- <command>", a.PID, a.Socket)
	default:
		c.Status = Warn
		c.Detail = "not root, and no agent is running: loading BPF programs and creating sandbox cgroups need root"
		c.Fix = "sudo aigate setup (installs the agent; then aigate run needs no sudo), or run each sandbox with sudo: sudo aigate run -- <command>"
	}
	return c
}

func (m *machine) cmdline() string {
	data, _ := os.ReadFile(m.path("/proc/cmdline"))
	return string(data)
}

// readKconfig reads the kernel's build configuration from
// /boot/config-<release> or /proc/config.gz; nil when neither is readable.
func (m *machine) readKconfig() map[string]string {
	var r io.Reader
	if f, err := os.Open(m.path("/boot/config-" + m.opts.Release)); err == nil && m.opts.Release != "" {
		defer f.Close()
		r = f
	} else if f, err := os.Open(m.path("/proc/config.gz")); err == nil {
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil
		}
		r = zr
	} else {
		return nil
	}
	cfg := map[string]string{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && strings.HasPrefix(k, "CONFIG_") {
			cfg[k] = v
		}
	}
	if sc.Err() != nil {
		return nil
	}
	return cfg
}

// readMounts reads /proc/self/mountinfo; a line it cannot parse is left out.
func (m *machine) readMounts() []mount {
	data, err := os.ReadFile(m.path("/proc/self/mountinfo"))
	if err != nil {
		return nil
	}
	mounts, _ := mountinfo.Parse(string(data))
	out := make([]mount, 0, len(mounts))
	for _, mi := range mounts {
		out = append(out, mount{point: mi.Point, fstype: mi.FSType, super: mi.SuperOptions})
	}
	return out
}

func parseRelease(rel string) (major, minor int, ok bool) {
	parts := strings.SplitN(rel, ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(parts[0])
	end := 0
	for end < len(parts[1]) && parts[1][end] >= '0' && parts[1][end] <= '9' {
		end++
	}
	minor, err2 := strconv.Atoi(parts[1][:end])
	return major, minor, err1 == nil && err2 == nil
}

func atLeast(major, minor, wantMajor, wantMinor int) bool {
	return major > wantMajor || major == wantMajor && minor >= wantMinor
}

func contains(s []string, x string) bool {
	for _, y := range s {
		if x == y {
			return true
		}
	}
	return false
}
