//go:build linux

package loader

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/policy"
	"github.com/aigate-dev/aigate/internal/unixdiag"
)

// Sizes of aigate.h (enum aigate_unix_size) and unixmatch.h's kprobes.
const (
	unixPathMax   = int(kernelAigateUnixSizeAIGATE_UNIX_PATH)
	unixNameLen   = int(kernelAigateUnixSizeAIGATE_UNIX_NAME)
	unixKeyBits   = int(kernelAigateUnixSizeAIGATE_UNIX_KEY_BITS)
	unixKprobeOn  = "__unix_set_addr_hash"
	unixKprobeOff = "unix_release_sock"
)

// ErrNoUnixHooks means the kernel has no cgroup connect_unix and
// sendmsg_unix programs (they appeared in Linux 6.7).
var ErrNoUnixHooks = errors.New("the kernel has no cgroup connect_unix/sendmsg_unix programs (Linux 6.7 or later needed)")

var unixProbe struct {
	once sync.Once
	err  error
}

// ProbeUnixSockets reports whether this kernel can confine the unix-socket
// connections of sandboxed processes without BPF LSM: nil when it can,
// ErrNoUnixHooks (wrapped) when it lacks the cgroup programs. The answer is
// computed once per process.
func ProbeUnixSockets() error {
	unixProbe.once.Do(func() { unixProbe.err = probeUnixHooks() })
	return unixProbe.err
}

// probeUnixHooks loads a program of the connect_unix attach type: kernels
// before 6.7 refuse the unknown attach type.
func probeUnixHooks() error {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:       ebpf.CGroupSockAddr,
		AttachType: ebpf.AttachCgroupUnixConnect,
		License:    "Dual BSD/GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, 1),
			asm.Return(),
		},
	})
	if err != nil {
		if errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("probe unix-socket hooks: %w", ErrNoUnixHooks)
		}
		return fmt.Errorf("probe unix-socket hooks: %w", err)
	}
	prog.Close()
	return nil
}

// UnixSocketEnforcement describes, for status and doctor output, how the
// network object confines unix sockets on this kernel when BPF LSM is not
// in use: by socket name with the cgroup programs (6.7+), or not at all,
// with the reason.
func UnixSocketEnforcement() string {
	if err := ProbeUnixSockets(); err != nil {
		return "none: " + err.Error() + "; without BPF LSM a sandboxed process can connect to any unix socket it can open (Docker, tmux, D-Bus, ssh-agent)"
	}
	return "cgroup connect_unix/sendmsg_unix: by socket name (allow_unix, or bound inside the same sandbox; a refused path fails as a missing one, ENOENT); " +
		"aigate run refuses an allow_unix entry the sandbox could point at another socket (its directory or one above it writable by the sandbox, or for a directory entry one beneath it)"
}

// netUnix is the loaded unix-socket object of a Net. Its sys_exit
// program (exit) learns the names bound inside sandboxes, and reports the
// seccomp filter's refusals and the calls Landlock may have refused.
type netUnix struct {
	objs netUnixObjects
	exit exitHook

	// ended keeps the names that sandboxes which ended had bound, for
	// SandboxBound: the agent reads a sandbox's last events after it
	// removed the sandbox (their refusals may name a socket file its
	// server left). Kept endedKeep.
	endedMu sync.Mutex
	ended   map[uint64]endedNames
}

// endedNames is what a sandbox that ended had bound, and when it ended.
type endedNames struct {
	names map[string]bool
	at    time.Time
}

// endedKeep is how long SandboxBound remembers the names of a sandbox
// that ended: the agent settles a sandbox's trailing events within
// seconds (internal/agent/box.go, settleLimit 10 s).
const endedKeep = time.Minute

// unixLinger is how long a sys_exit program (exitHook: the bind learner,
// or the Landlock refusal reporter) stays attached once the last
// sandbox released it. Attaching it is the costliest step of creating a
// sandbox: the kernel waits for an RCU grace period when a tracepoint
// gains its first probe again soon after losing its last one
// (tracepoint_add_func, 5–15 ms on a loaded 2-CPU machine), and `aigate
// run` after `aigate run` through one agent paid it every time. While it
// lingers, every system call on the machine passes the program, which
// compares the call's number and result and returns (bpf/sockunix.c).
var unixLinger = 10 * time.Second

// openUnix loads the unix-socket object sharing net's sandbox table, ring
// buffer and counters. An error wrapping errUnixDegraded means this kernel
// cannot do it; any other error is a bug.
func openUnix(net *netObjects, kept *keptSet) (*netUnix, error) {
	if err := ProbeUnixSockets(); err != nil {
		return nil, fmt.Errorf("%w: %w", errUnixDegraded, err)
	}
	u := &netUnix{}
	spec, err := loadNetUnix()
	if err != nil {
		return nil, fmt.Errorf("load unix-socket programs: %w", err)
	}
	_, err = kept.load(keptUnix, spec, &u.objs, &ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{
		MapSandboxes:     net.Sandboxes,
		MapSandboxLevels: net.SandboxLevels,
		MapEvents:        net.Events,
		MapCounters:      net.Counters,
	}})
	if err != nil {
		return nil, fmt.Errorf("load unix-socket programs: %w", err)
	}
	u.exit = exitHook{prog: u.objs.AigateUnixBindExit, what: "unix bind learner"}
	return u, nil
}

var errUnixDegraded = errors.New("unix sockets are not confined")

func (u *netUnix) close() error {
	return errors.Join(u.exit.close(), u.objs.Close())
}

// unixAllowEntries turns allow_unix into unix_allow keys and their rules:
// an absolute path P allows the socket P and every socket beneath P; a
// name "@N" allows the abstract socket N. Other name patterns (a bare name,
// a prefix or suffix) are not matched for unix sockets: connections they
// would allow stay refused.
func unixAllowEntries(policyID uint32, fs policy.FileSet) map[netUnixUnixAllowKey]uint32 {
	out := map[netUnixUnixAllowKey]uint32{}
	add := func(k netUnixUnixAllowKey, rule policy.RuleID) {
		if old, ok := out[k]; !ok || uint32(rule) < old {
			out[k] = uint32(rule)
		}
	}
	for _, e := range fs.Paths {
		p := strings.TrimSuffix(e.Value, "/")
		if len(p)+1 <= unixPathMax { // the socket P itself, NUL included
			add(unixPathKey(policyID, p+"\x00"), e.Rule)
		}
		if len(p)+2 <= unixPathMax { // sockets beneath P
			add(unixPathKey(policyID, p+"/"), e.Rule)
		}
	}
	for _, e := range fs.Names {
		name, ok := strings.CutPrefix(e.Value, "@")
		if !ok || name == "" || len(name) > unixPathMax-1 {
			continue
		}
		k := netUnixUnixAllowKey{PolicyId: policyID, Prefixlen: uint32(unixKeyBits + 8*len(name))}
		k.N.Abstract = uint32(len(name))
		copyName(&k.N, name)
		add(k, e.Rule)
	}
	return out
}

func unixPathKey(policyID uint32, prefix string) netUnixUnixAllowKey {
	k := netUnixUnixAllowKey{PolicyId: policyID, Prefixlen: uint32(unixKeyBits + 8*len(prefix))}
	copyName(&k.N, prefix)
	return k
}

func copyName(n *netUnixUnixName, s string) {
	for i := 0; i < len(s) && i < len(n.Name); i++ {
		n.Name[i] = int8(s[i])
	}
}

// UnixAllow is what WriteUnixAllow wrote for one policy: each allow_unix
// key with its rule. The caller keeps it and passes it back.
type UnixAllow map[netUnixUnixAllowKey]uint32

// WriteUnixAllow writes policyID's allow_unix entries fs over have (what
// the last call returned, nil at first), new ones first, and returns what
// is written now. Without unix-socket programs it writes nothing.
func (n *Net) WriteUnixAllow(policyID uint32, have UnixAllow, fs policy.FileSet) (UnixAllow, error) {
	if n.unix == nil {
		return nil, nil
	}
	want := UnixAllow(unixAllowEntries(policyID, fs))
	var errs []error
	for k, rule := range want {
		if old, ok := have[k]; ok && old == rule {
			continue
		}
		if err := n.unix.objs.UnixAllow.Update(k, rule, ebpf.UpdateAny); err != nil {
			errs = append(errs, fmt.Errorf("write allow_unix entry: %w", err))
			delete(want, k)
		}
	}
	for k := range have {
		if _, ok := want[k]; ok {
			continue
		}
		if err := n.unix.objs.UnixAllow.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("delete allow_unix entry: %w", err))
			want[k] = have[k]
		}
	}
	return want, errors.Join(errs...)
}

// removeUnix deletes the allow_unix entries have and the names bound in
// the sandbox cgroup cgroupID (0: none).
func (n *Net) removeUnix(have UnixAllow, cgroupID uint64) error {
	if n.unix == nil {
		return nil
	}
	var errs []error
	for k := range have {
		if err := n.unix.objs.UnixAllow.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("delete allow_unix entry: %w", err))
		}
	}
	if cgroupID != 0 {
		errs = append(errs, n.forgetBound(cgroupID))
	}
	return errors.Join(errs...)
}

// forgetBound drops the names learned for the sandbox cgroup id, and
// remembers the path names for a while (endedKeep).
func (n *Net) forgetBound(cgroupID uint64) error {
	keys, err := dropMarked[netUnixUnixBoundKey, netUnixUnixBoundVal](n.unix.objs.UnixBoundCgroups, cgroupID,
		n.unix.objs.UnixBound, func(k *netUnixUnixBoundKey) bool { return k.CgroupId == cgroupID })
	n.unix.remember(cgroupID, keys, time.Now())
	if err != nil {
		return fmt.Errorf("forget unix sockets bound in cgroup %d: %w", cgroupID, err)
	}
	return nil
}

// remember keeps the path names of keys as bound by the sandbox cgroupID
// that ended at now, and forgets those of sandboxes that ended endedKeep
// before.
func (u *netUnix) remember(cgroupID uint64, keys []netUnixUnixBoundKey, now time.Time) {
	u.endedMu.Lock()
	defer u.endedMu.Unlock()
	for cg, e := range u.ended {
		if now.Sub(e.at) > endedKeep {
			delete(u.ended, cg)
		}
	}
	names := map[string]bool{}
	for _, k := range keys {
		if k.N.Abstract == 0 {
			names[nameOf(&k.N)] = true
		}
	}
	if len(names) == 0 {
		return
	}
	if u.ended == nil {
		u.ended = map[uint64]endedNames{}
	}
	u.ended[cgroupID] = endedNames{names: names, at: now}
}

// endedBound reports whether the sandbox cgroupID, which ended, had bound
// the path name.
func (u *netUnix) endedBound(cgroupID uint64, name string) bool {
	u.endedMu.Lock()
	defer u.endedMu.Unlock()
	e, ok := u.ended[cgroupID]
	return ok && e.names[name]
}

// nameOf is the path name of n, up to its first NUL.
func nameOf(n *netUnixUnixName) string {
	b := make([]byte, 0, len(n.Name))
	for _, c := range n.Name {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}

// UnixSockets reports whether n confines the unix-socket connections of
// its sandboxes: nil when it does, else why not (kernel before 6.7,
// NetOptions.SkipUnix, ...). Status output shows the reason.
func (n *Net) UnixSockets() error {
	if n.unix != nil {
		return nil
	}
	return n.unixErr
}

// SandboxBound reports whether the socket file found at the absolute path
// name, whose device and inode number stat(2) gave as dev and ino, is the
// sandbox's own: a process of sandbox cgroupID bound that name (unix_bound
// records the socket, by its inode number; for a sandbox that ended, the
// names it had bound are kept a while), and either that socket is alive
// in the kernel's socket table (unix_diag, in the network namespace of
// process pid) and bound to that very file, or it is closed and no live
// socket holds the file found (a socket file without a socket reaches
// nothing: a connect is refused, and no bind takes it over). So an
// outsider's live socket at the name, even in place of the sandbox's live
// one, is not. The agent asks it of a refused connect whose name it finds
// a socket at: tmux's server inside binds the name its client was refused
// a moment before, and may be gone again, leaving its file, by the time a
// late agent looks, even after the sandbox ended.
func (n *Net) SandboxBound(cgroupID uint64, pid uint32, name string, dev, ino uint64) (bool, error) {
	k := netUnixUnixBoundKey{CgroupId: cgroupID}
	if n.unix == nil || !strings.HasPrefix(name, "/") || len(name) >= len(k.N.Name) {
		return false, nil // relative names are never learned (sockunix.c)
	}
	copyName(&k.N, name)
	var v netUnixUnixBoundVal
	err := n.unix.objs.UnixBound.Lookup(&k, &v)
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return false, fmt.Errorf("look up bound unix name %s: %w", name, err)
	}
	if err != nil && !n.unix.endedBound(cgroupID, name) {
		return false, nil
	}
	nl, derr := unixdiag.OpenFor(pid)
	if derr != nil {
		return false, derr
	}
	defer unix.Close(nl)
	if err == nil {
		s, err := unixdiag.Get(nl, uint32(v.Ino), unixdiag.ShowVFS)
		if err == nil {
			return s.Bound && s.FileIno == uint32(ino) && s.FileDev == unixdiag.KernelDev(dev), nil
		}
		if !errors.Is(err, unixdiag.ErrNotFound) {
			return false, fmt.Errorf("unix socket bound at %s: %w", name, err)
		}
		// Closed since (or no unix_diag: then the dump fails too).
	}
	held, err := unixdiag.FileHeld(nl, dev, ino)
	if err != nil {
		return false, fmt.Errorf("unix socket file %s: %w", name, err)
	}
	return !held, nil
}
