package refused

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/landlock"
)

// Backend is the Backend field of the events kept: the same as those the
// kernel's audit records give (package llaudit), since the refusal is the
// same.
const Backend = events.BackendLandlock

// x86_64 system call numbers (bpf/include/refused.h).
const (
	nrOpen                    = 2
	nrKill                    = 62
	nrTruncate                = 76
	nrMkdir                   = 83
	nrRmdir                   = 84
	nrCreat                   = 85
	nrUnlink                  = 87
	nrSymlink                 = 88
	nrPtrace                  = 101
	nrRtSigqueueinfo          = 129
	nrMknod                   = 133
	nrTkill                   = 200
	nrTgkill                  = 234
	nrOpenat                  = 257
	nrMkdirat                 = 258
	nrMknodat                 = 259
	nrUnlinkat                = 263
	nrSymlinkat               = 266
	nrRtTgsigqueueinfo        = 297
	nrProcessVMReadv          = 310
	nrProcessVMWritev         = 311
	nrOpenat2                 = 437
	atFDCWD                   = -100
	atRemoveDir               = 0x200
	oAccMode                  = 0o3
	oCreat                    = 0o100
	oTrunc                    = 0o1000
	sIFMT                     = 0o170000
	sIFSOCK                   = 0o140000
	sIFBLK                    = 0o060000
	sIFCHR                    = 0o020000
	sIFIFO                    = 0o010000
	sIFREG                    = 0o100000
	permExec           uint32 = 1
	permWrite          uint32 = 2
)

// Process is what a candidate's target process is, as /proc shows it.
type Process struct {
	UIDs, GIDs [4]uint32 // real, effective, saved, filesystem
	CapPrm     uint64    // permitted capabilities
	// OwnerUID owns /proc/PID: the process's uid while it is dumpable,
	// root otherwise (the kernel's task_dump_owner).
	OwnerUID uint32
	// InitUserNS: the process is in the agent's (initial) user namespace.
	InitUserNS bool
	Cgroup     string // its cgroup v2 directory, absolute
	Comm       string
}

// Host is the system the candidates are judged against (OSHost on Linux).
type Host interface {
	// Lstat returns an error wrapping fs.ErrNotExist for a missing path.
	Lstat(path string) (landlock.Inode, error)
	// HasACL tells whether path has an access ACL (true when unsure).
	HasACL(path string) bool
	// Resolve is filepath.EvalSymlinks.
	Resolve(path string) (string, error)
	// Dir is where a relative path of thread tid started: its working
	// directory (fd atFDCWD) or the directory its descriptor fd names.
	Dir(tid uint32, fd int32) (string, error)
	// MntNS is the agent's own mount namespace (inode number).
	MntNS() uint32
	Process(pid int32) (Process, error)
}

// Sandbox is what a candidate is judged by: the sandbox's Landlock domain
// as the kernel has it (Ruleset.Effective; Confined false: the command
// made none) and its cgroup directory.
type Sandbox struct {
	Domain   landlock.Ruleset
	Confined bool
	Cgroup   string
}

// errNo is why a candidate was dropped; the caller only counts them.
var errNo = errors.New("not a Landlock refusal")

// Attribute turns a candidate (e.Refused set) into the Landlock event it
// stands for, or says it is none: an error, and the caller drops it.
func Attribute(e events.Event, sb Sandbox, h Host) (events.Event, error) {
	r := e.Refused
	if r == nil || !sb.Confined {
		return events.Event{}, errNo
	}
	out := e
	// Landlock refuses in audit mode too: never "allowed because audited".
	out.Refused, out.Backend, out.Rule, out.RuleText, out.Audit = nil, Backend, 0, "", false
	var err error
	switch {
	case e.Kind == events.KindProc:
		out.Path, err = process(e, sb, h)
	default:
		out.Path, err = file(e, sb, h)
	}
	if err != nil {
		return events.Event{}, err
	}
	return out, nil
}

// process judges a ptrace, process_vm_*, /proc/PID open or signal.
func process(e events.Event, sb Sandbox, h Host) (string, error) {
	r := e.Refused
	pid := r.Target
	if e.Path != "" {
		// A /proc/PID/... open: in the agent's own /proc only.
		if r.MntNS != h.MntNS() {
			return "", errNo
		}
		var ok bool
		if pid, ok = procPID(e.Path); !ok {
			return "", errNo
		}
	}
	if pid <= 0 {
		return "", errNo
	}
	p, err := h.Process(pid)
	if err != nil {
		return "", fmt.Errorf("%w: %w", errNo, err)
	}
	if within(p.Cgroup, sb.Cgroup) {
		return "", errNo // inside: the domain lets it be
	}
	uid := e.UID
	switch e.Op {
	case events.OpSignal:
		if r.Kill {
			break // CAP_KILL: any process
		}
		// The domain scopes signals from ABI 6 on; before, it lets them
		// be (the LSM backend's own hook reports them).
		if sb.Domain.Scoped&landlock.ScopeSignal == 0 {
			return "", errNo
		}
		// kill_ok_by_cred: the caller's uid (its euid too: no new
		// privileges inside) is the target's real or saved uid.
		if p.UIDs[0] != uid && p.UIDs[2] != uid {
			return "", errNo
		}
	case events.OpPtrace:
		// __ptrace_may_access: same uids and gids, dumpable; then
		// commoncap: the target's permitted capabilities within the
		// caller's (none), in one user namespace. Landlock comes next.
		// CAP_SYS_PTRACE passes both, for a target in the same (initial)
		// user namespace.
		if r.SysPtrace && p.InitUserNS {
			break
		}
		for i := 0; i < 3; i++ {
			if p.UIDs[i] != uid || p.GIDs[i] != r.GID {
				return "", errNo
			}
		}
		if p.OwnerUID != uid || p.CapPrm != 0 || !p.InitUserNS {
			return "", errNo
		}
	default:
		return "", errNo
	}
	if e.Path != "" {
		return e.Path + " of pid " + strconv.Itoa(int(pid)) + " (" + p.Comm + ")", nil
	}
	return "pid " + strconv.Itoa(int(pid)) + " (" + p.Comm + ")", nil
}

// procPID is the pid of a /proc/PID/... path.
func procPID(p string) (int32, bool) {
	rest, ok := strings.CutPrefix(p, "/proc/")
	if !ok {
		return 0, false
	}
	num, _, _ := strings.Cut(rest, "/")
	n, err := strconv.ParseInt(num, 10, 32)
	if err != nil || n <= 0 {
		return 0, false
	}
	return int32(n), true
}

// file judges a write-like file call.
func file(e events.Event, sb Sandbox, h Host) (string, error) {
	r := e.Refused
	if r.MntNS != h.MntNS() || e.Path == "" {
		return "", errNo // another mount namespace sees other files
	}
	p := e.Path
	if !filepath.IsAbs(p) {
		dirfd := r.Target
		if r.Nr == nrOpen || r.Nr == nrCreat || r.Nr == nrTruncate || r.Nr == nrMkdir ||
			r.Nr == nrRmdir || r.Nr == nrUnlink || r.Nr == nrSymlink || r.Nr == nrMknod {
			dirfd = atFDCWD
		}
		dir, err := h.Dir(e.PID, dirfd)
		if err != nil {
			return "", fmt.Errorf("%w: %w", errNo, err)
		}
		p = filepath.Join(dir, p)
	}
	p = filepath.Clean(p)
	who := who{uid: e.UID, gid: r.GID, override: r.DACOverride, search: r.DACOverride || r.DACReadSearch, h: h}
	switch r.Nr {
	case nrOpen, nrOpenat, nrOpenat2, nrCreat:
		return openCall(p, r.Flags, sb, who)
	case nrTruncate:
		real, in, err := who.existing(p)
		if err != nil || !in.Mode.IsRegular() || !who.may(real, in, permWrite) {
			return "", errNo
		}
		return refusedAt(sb, real, landlock.AccessTruncate, who)
	case nrMkdir, nrMkdirat:
		return made(p, landlock.AccessMakeDir, false, sb, who)
	case nrSymlink, nrSymlinkat:
		return made(p, landlock.AccessMakeSym, false, sb, who)
	case nrMknod, nrMknodat:
		right, ok := mknodRight(r.Flags)
		if !ok {
			return "", errNo
		}
		return made(p, right, false, sb, who)
	case nrRmdir:
		return made(p, landlock.AccessRemoveDir, true, sb, who)
	case nrUnlink:
		return made(p, landlock.AccessRemoveFile, true, sb, who)
	case nrUnlinkat:
		if r.Flags&atRemoveDir != 0 {
			return made(p, landlock.AccessRemoveDir, true, sb, who)
		}
		return made(p, landlock.AccessRemoveFile, true, sb, who)
	}
	return "", errNo
}

func mknodRight(mode uint32) (uint64, bool) {
	switch mode & sIFMT {
	case 0, sIFREG:
		return landlock.AccessMakeReg, true
	case sIFIFO:
		return landlock.AccessMakeFifo, true
	case sIFSOCK:
		return landlock.AccessMakeSock, true
	}
	// Devices need CAP_MKNOD first: never an unprivileged EACCES.
	return 0, false
}

// openCall: an open for writing is refused by Unix permissions before
// Landlock's check (may_open, then security_file_open); a file it creates
// is checked by Landlock first (security_path_mknod in may_o_create).
func openCall(p string, flags uint32, sb Sandbox, w who) (string, error) {
	real, in, err := w.existing(p)
	switch {
	case err == nil:
		if !in.Mode.IsRegular() || !w.may(real, in, permWrite) {
			return "", errNo
		}
		right := landlock.AccessWriteFile
		if flags&oTrunc != 0 {
			right |= landlock.AccessTruncate
		}
		if flags&oAccMode == 0 {
			right = landlock.AccessTruncate // O_RDONLY|O_TRUNC
		}
		return refusedAt(sb, real, right, w)
	case errors.Is(err, fs.ErrNotExist) && flags&oCreat != 0:
		return made(p, landlock.AccessMakeReg, false, sb, w)
	}
	return "", errNo
}

// made judges a call that makes (or, remove, takes away) the entry p of
// its directory, which Landlock checks before Unix permissions do
// (security_path_*): only the walk to the directory comes first.
func made(p string, right uint64, remove bool, sb Sandbox, w who) (string, error) {
	dir, err := w.h.Resolve(filepath.Dir(p))
	if err != nil || !w.searchable(dir) {
		return "", errNo
	}
	name := filepath.Join(dir, filepath.Base(p))
	_, err = w.h.Lstat(name)
	if remove && err != nil || !remove && err == nil {
		// Nothing to remove (ENOENT), or already there (EEXIST): the
		// kernel would have said so rather than EACCES. Changed since.
		return "", errNo
	}
	return refusedAt(sb, dir, right, w, name)
}

// refusedAt: does the domain refuse right at path (a file, or the
// directory an entry is made in)? The event's path is show, or path.
func refusedAt(sb Sandbox, path string, right uint64, w who, show ...string) (string, error) {
	right &= sb.Domain.HandledFS
	if right == 0 || granted(sb.Domain, path, w.h)&right == right {
		return "", errNo
	}
	if len(show) > 0 {
		return show[0], nil
	}
	return path, nil
}

// granted are the rights the domain leaves at path: those it does not
// handle, and those of every rule on path or a directory above it. A rule
// names the inode its path led to when the domain was made, so each rule
// counts both as written and as resolved now (more granted: fewer kept).
func granted(rs landlock.Ruleset, path string, h Host) uint64 {
	g := ^rs.HandledFS
	for _, r := range rs.Rules {
		if beneath(path, r.Path) {
			g |= r.Access
			continue
		}
		if real, err := h.Resolve(r.Path); err == nil && beneath(path, real) {
			g |= r.Access
		}
	}
	return g
}

func beneath(p, dir string) bool {
	return p == dir || dir == "/" || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

func within(cg, dir string) bool {
	return cg == dir || strings.HasPrefix(cg, dir+"/")
}

// who is the caller, for Unix permissions: override (CAP_DAC_OVERRIDE)
// lets it read, write and search anything, search (CAP_DAC_READ_SEARCH)
// search any directory.
type who struct {
	uid, gid         uint32
	override, search bool
	h                Host
}

// existing resolves p (following a last symlink, as an open does) and
// checks the walk to it; the file's inode.
func (w who) existing(p string) (string, landlock.Inode, error) {
	real, err := w.h.Resolve(p)
	if err != nil {
		return "", landlock.Inode{}, err
	}
	if !w.searchable(filepath.Dir(real)) {
		return "", landlock.Inode{}, errNo
	}
	in, err := w.h.Lstat(real)
	return real, in, err
}

// searchable: may the caller walk from / to dir (resolved)?
func (w who) searchable(dir string) bool {
	for d := dir; ; d = filepath.Dir(d) {
		in, err := w.h.Lstat(d)
		if err != nil || !in.Mode.IsDir() || !w.may(d, in, permExec) {
			return false
		}
		if d == "/" {
			return true
		}
	}
}

// may: do Unix permissions surely let the caller have perm (permExec,
// permWrite) on the inode at path? The owner class is exact (an ACL's
// owner entry is the mode's); for the group and other classes the caller's
// supplementary groups are unknown, so a group the caller is not known to
// be in needs both classes to allow, and an ACL makes it unsure.
func (w who) may(path string, in landlock.Inode, perm uint32) bool {
	if w.override || w.search && perm == permExec && in.Mode.IsDir() {
		return true
	}
	mode := uint32(in.Mode.Perm())
	if in.UID == w.uid {
		return mode&(perm<<6) != 0
	}
	if w.h.HasACL(path) {
		return false
	}
	if in.GID == w.gid {
		return mode&(perm<<3) != 0
	}
	return mode&(perm<<3) != 0 && mode&perm != 0
}

// parseStatus fills p from /proc/PID/status: Name, Uid, Gid, CapPrm.
func parseStatus(b []byte, p *Process) error {
	seen := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "Name":
			p.Comm = v
		case "Uid", "Gid":
			ids := &p.UIDs
			if k == "Gid" {
				ids = &p.GIDs
			}
			f := strings.Fields(v)
			if len(f) != 4 {
				return fmt.Errorf("%s: %q", k, v)
			}
			for i, s := range f {
				n, err := strconv.ParseUint(s, 10, 32)
				if err != nil {
					return fmt.Errorf("%s: %w", k, err)
				}
				ids[i] = uint32(n)
			}
			seen++
		case "CapPrm":
			n, err := strconv.ParseUint(v, 16, 64)
			if err != nil {
				return fmt.Errorf("CapPrm: %w", err)
			}
			p.CapPrm = n
			seen++
		}
	}
	if seen != 3 {
		return errors.New("no Uid, Gid or CapPrm line")
	}
	return nil
}

// Change is what a file candidate's call did to its name.
type Change int

const (
	ChangeOther  Change = iota // a write to an existing file, a truncate
	ChangeCreate               // a file made (open O_CREAT, creat, mknod)
	ChangeMkdir                // a directory made
	ChangeRemove               // an entry removed (unlink, rmdir)
)

// ChangeOf is what candidate e's call did, for an event Attribute kept: a
// made or removed entry is the name the event shows.
func ChangeOf(e events.Event) Change {
	r := e.Refused
	if r == nil || e.Kind == events.KindProc {
		return ChangeOther
	}
	switch r.Nr {
	case nrMkdir, nrMkdirat:
		return ChangeMkdir
	case nrRmdir, nrUnlink, nrUnlinkat:
		return ChangeRemove
	case nrMknod, nrMknodat, nrCreat:
		return ChangeCreate
	case nrOpen, nrOpenat, nrOpenat2:
		// Attribute kept it as made only when the file did not exist.
		if r.Flags&oCreat != 0 {
			return ChangeCreate
		}
	}
	return ChangeOther
}
