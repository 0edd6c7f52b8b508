package refused

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/events"
	"github.com/aigate-dev/aigate/internal/landlock"
)

// fakeHost is a filesystem and process table in memory.
type fakeHost struct {
	files map[string]landlock.Inode
	acl   map[string]bool
	links map[string]string // symlinks, resolved by Resolve
	dirs  map[string]string // "tid/fd" -> directory
	procs map[int32]Process
	mntNS uint32
}

func (h *fakeHost) Lstat(p string) (landlock.Inode, error) {
	in, ok := h.files[p]
	if !ok {
		return in, fmt.Errorf("%s: %w", p, fs.ErrNotExist)
	}
	return in, nil
}
func (h *fakeHost) HasACL(p string) bool { return h.acl[p] }
func (h *fakeHost) Resolve(p string) (string, error) {
	if l, ok := h.links[p]; ok {
		return l, nil
	}
	if _, ok := h.files[p]; !ok {
		return "", fs.ErrNotExist
	}
	return p, nil
}
func (h *fakeHost) Dir(tid uint32, fd int32) (string, error) {
	d, ok := h.dirs[fmt.Sprint(tid, "/", fd)]
	if !ok {
		return "", errors.New("gone")
	}
	return d, nil
}
func (h *fakeHost) MntNS() uint32 { return h.mntNS }
func (h *fakeHost) Process(pid int32) (Process, error) {
	p, ok := h.procs[pid]
	if !ok {
		return p, errors.New("no such process")
	}
	return p, nil
}

const (
	user  = 1000
	group = 1000
)

func dir(uid uint32, perm fs.FileMode) landlock.Inode {
	return landlock.Inode{Mode: fs.ModeDir | perm, UID: uid, GID: uid}
}

func reg(uid uint32, perm fs.FileMode) landlock.Inode {
	return landlock.Inode{Mode: perm, UID: uid, GID: uid}
}

func world() *fakeHost {
	return &fakeHost{
		mntNS: 7,
		files: map[string]landlock.Inode{
			"/":                       dir(0, 0o755),
			"/home":                   dir(0, 0o755),
			"/home/u":                 dir(user, 0o755),
			"/home/u/.bashrc":         reg(user, 0o644),
			"/home/u/.readonly":       reg(user, 0o444),
			"/home/u/.rootfile":       reg(0, 0o644),
			"/home/u/.rootdir":        dir(0, 0o700),
			"/home/u/.rootdir/f":      reg(user, 0o644),
			"/home/u/.grouprw":        {Mode: 0o664, UID: 0, GID: group},
			"/home/u/.config":         dir(user, 0o755),
			"/home/u/proj":            dir(user, 0o755),
			"/home/u/proj/main.go":    reg(user, 0o644),
			"/home/u/.config/git":     dir(user, 0o755),
			"/home/u/.config/git/cfg": reg(user, 0o644),
			"/home/u/dotfiles":        dir(user, 0o755),
			"/home/u/dotfiles/rc":     reg(user, 0o644),
			"/etc":                    dir(0, 0o755),
			"/etc/shadow":             reg(0, 0o640),
		},
		acl:   map[string]bool{},
		links: map[string]string{"/home/u/.linkrc": "/home/u/dotfiles/rc"},
		dirs:  map[string]string{"42/-100": "/home/u", "42/5": "/home/u/.config"},
		procs: map[int32]Process{
			100: {UIDs: [4]uint32{user, user, user, user}, GIDs: [4]uint32{group, group, group, group}, OwnerUID: user, InitUserNS: true, Cgroup: "/sys/fs/cgroup/user.slice", Comm: "bash"},
			101: {UIDs: [4]uint32{user, user, user, user}, GIDs: [4]uint32{group, group, group, group}, OwnerUID: user, InitUserNS: true, Cgroup: "/sys/fs/cgroup/aigate/s1/inner", Comm: "child"},
			1:   {Comm: "init", InitUserNS: true, Cgroup: "/sys/fs/cgroup/init.scope"},
			102: {UIDs: [4]uint32{user, user, user, user}, GIDs: [4]uint32{group, group, group, group}, OwnerUID: 0, InitUserNS: true, Cgroup: "/sys/fs/cgroup/user.slice", Comm: "ssh-agent"},
			103: {UIDs: [4]uint32{user, user, user, user}, GIDs: [4]uint32{group, group, group, group}, OwnerUID: user, CapPrm: 1 << 13, InitUserNS: true, Cgroup: "/sys/fs/cgroup/user.slice", Comm: "ping"},
			104: {UIDs: [4]uint32{user, user, user, user}, GIDs: [4]uint32{group, group, group, group}, OwnerUID: user, Cgroup: "/sys/fs/cgroup/user.slice", Comm: "unshared"},
			105: {UIDs: [4]uint32{user, 0, 0, 0}, GIDs: [4]uint32{group, group, group, group}, OwnerUID: 0, InitUserNS: true, Cgroup: "/sys/fs/cgroup/user.slice", Comm: "sudo"},
		},
	}
}

// sandbox is a domain as landlock.Plan makes one for /home/u with the
// project writable: every write right handled, granted everywhere but
// in the home; signals scoped when scoped.
func sandbox(scoped bool) Sandbox {
	rs := landlock.Ruleset{
		HandledFS: landlock.AccessWrite,
		Rules: []landlock.Rule{
			{Path: "/etc", Access: landlock.AccessWrite},
			{Path: "/home/u/proj", Access: landlock.AccessWrite},
		},
	}
	if scoped {
		rs.Scoped = landlock.ScopeSignal
	}
	return Sandbox{Domain: rs, Confined: true, Cgroup: "/sys/fs/cgroup/aigate/s1"}
}

func call(nr uint32, target int32, flags uint32, path string) events.Event {
	kind, op := events.KindFile, events.OpWrite
	switch nr {
	case nrPtrace, nrProcessVMReadv, nrProcessVMWritev:
		kind, op = events.KindProc, events.OpPtrace
	case nrKill, nrTkill, nrTgkill, nrRtSigqueueinfo, nrRtTgsigqueueinfo:
		kind, op = events.KindProc, events.OpSignal
	}
	if path != "" && (nr == nrOpen || nr == nrOpenat) && flags&(oAccMode|oCreat|oTrunc) == 0 {
		kind, op = events.KindProc, events.OpPtrace
	}
	return events.Event{PID: 42, TGID: 42, UID: user, Comm: "sh", Kind: kind, Op: op, Path: path, CgroupID: 9,
		Refused: &events.Refused{Nr: nr, Target: target, Flags: flags, GID: group, MntNS: 7}}
}

const (
	wronly  = 1
	append_ = 0o2000
)

func TestAttribute(t *testing.T) {
	for _, c := range []struct {
		name   string
		e      events.Event
		sb     Sandbox
		change func(*fakeHost, *events.Event)
		want   string // the kept event's path; "" dropped
	}{
		{"append to ~/.bashrc", call(nrOpenat, atFDCWD, wronly|append_|oCreat, "/home/u/.bashrc"), sandbox(true), nil, "/home/u/.bashrc"},
		{"open(2) of ~/.bashrc", call(nrOpen, 0, wronly, "/home/u/.bashrc"), sandbox(true), nil, "/home/u/.bashrc"},
		{"relative to the working directory", call(nrOpenat, atFDCWD, wronly, ".bashrc"), sandbox(true), nil, "/home/u/.bashrc"},
		{"relative to a descriptor", call(nrOpenat, 5, wronly, "git/cfg"), sandbox(true), nil, "/home/u/.config/git/cfg"},
		{"relative, the task gone", call(nrOpenat, 6, wronly, "git/cfg"), sandbox(true), nil, ""},
		{"through a symlink: the file it leads to", call(nrOpenat, atFDCWD, wronly, "/home/u/.linkrc"), sandbox(true), nil, "/home/u/dotfiles/rc"},
		{"creat of a new file in the home", call(nrCreat, 0, wronly|oCreat|oTrunc, "/home/u/.new"), sandbox(true), nil, "/home/u/.new"},
		{"O_CREAT of a new file in the home", call(nrOpenat, atFDCWD, wronly|oCreat, "/home/u/.config/new"), sandbox(true), nil, "/home/u/.config/new"},
		{"a new file without O_CREAT: ENOENT, not this", call(nrOpenat, atFDCWD, wronly, "/home/u/.new"), sandbox(true), nil, ""},
		{"mkdir in the home", call(nrMkdir, 0, 0, "/home/u/bin"), sandbox(true), nil, "/home/u/bin"},
		{"mkdir of an existing entry: EEXIST", call(nrMkdir, 0, 0, "/home/u/.config"), sandbox(true), nil, ""},
		{"unlink in the home", call(nrUnlink, 0, 0, "/home/u/.bashrc"), sandbox(true), nil, "/home/u/.bashrc"},
		{"unlinkat AT_REMOVEDIR", call(nrUnlinkat, atFDCWD, atRemoveDir, "/home/u/.config"), sandbox(true), nil, "/home/u/.config"},
		{"unlink of nothing: ENOENT", call(nrUnlink, 0, 0, "/home/u/.none"), sandbox(true), nil, ""},
		{"symlink in the home", call(nrSymlinkat, atFDCWD, 0, "/home/u/.local"), sandbox(true), nil, "/home/u/.local"},
		{"mknod of a fifo", call(nrMknod, 0, sIFIFO|0o644, "/home/u/fifo"), sandbox(true), nil, "/home/u/fifo"},
		{"mknod of a device: CAP_MKNOD's", call(nrMknod, 0, sIFCHR|0o644, "/home/u/dev"), sandbox(true), nil, ""},
		{"truncate in the home", call(nrTruncate, 0, 0, "/home/u/.bashrc"), sandbox(true), nil, "/home/u/.bashrc"},
		// The domain grants it: the refusal was someone else's.
		{"a write in the project", call(nrOpenat, atFDCWD, wronly, "/home/u/proj/main.go"), sandbox(true), nil, ""},
		{"/etc/shadow: Unix permissions, granted by the domain", call(nrOpenat, atFDCWD, wronly, "/etc/shadow"), sandbox(true), nil, ""},
		// Unix permissions refuse before Landlock looks.
		{"a root-owned file in the home", call(nrOpenat, atFDCWD, wronly, "/home/u/.rootfile"), sandbox(true), nil, ""},
		{"a read-only file of the user's", call(nrOpenat, atFDCWD, wronly, "/home/u/.readonly"), sandbox(true), nil, ""},
		{"a file beneath a directory closed to the user", call(nrOpenat, atFDCWD, wronly, "/home/u/.rootdir/f"), sandbox(true), nil, ""},
		{"mkdir beneath a directory closed to the user", call(nrMkdir, 0, 0, "/home/u/.rootdir/x"), sandbox(true), nil, ""},
		{"group-writable, the caller's primary group", call(nrOpenat, atFDCWD, wronly, "/home/u/.grouprw"), sandbox(true), nil, "/home/u/.grouprw"},
		{"group-writable with an ACL: unsure", call(nrOpenat, atFDCWD, wronly, "/home/u/.grouprw"), sandbox(true),
			func(h *fakeHost, _ *events.Event) { h.acl["/home/u/.grouprw"] = true }, ""},
		{"group-writable, another group: unsure", call(nrOpenat, atFDCWD, wronly, "/home/u/.grouprw"), sandbox(true),
			func(_ *fakeHost, e *events.Event) { e.Refused.GID = 5 }, ""},
		{"another mount namespace", call(nrOpenat, atFDCWD, wronly, "/home/u/.bashrc"), sandbox(true),
			func(_ *fakeHost, e *events.Event) { e.Refused.MntNS = 8 }, ""},
		{"in an audit-mode sandbox: refused all the same", call(nrOpenat, atFDCWD, wronly, "/home/u/.bashrc"), sandbox(true),
			func(_ *fakeHost, e *events.Event) { e.Audit = true }, "/home/u/.bashrc"},
		{"root's call", call(nrOpenat, atFDCWD, wronly, "/home/u/.bashrc"), sandbox(true),
			func(_ *fakeHost, e *events.Event) { e.UID = 0 }, ""},
		{"root with CAP_DAC_OVERRIDE: a root-owned file in the home", call(nrOpenat, atFDCWD, wronly, "/home/u/.rootfile"), sandbox(true),
			func(_ *fakeHost, e *events.Event) { e.UID, e.Refused.GID, e.Refused.DACOverride = 0, 0, true }, "/home/u/.rootfile"},
		{"CAP_DAC_READ_SEARCH: beneath a directory closed to the user", call(nrMkdir, 0, 0, "/home/u/.rootdir/x"), sandbox(true),
			func(_ *fakeHost, e *events.Event) { e.Refused.DACReadSearch = true }, "/home/u/.rootdir/x"},
		{"CAP_DAC_READ_SEARCH does not write", call(nrOpenat, atFDCWD, wronly, "/home/u/.rootfile"), sandbox(true),
			func(_ *fakeHost, e *events.Event) { e.Refused.DACReadSearch = true }, ""},
		{"no domain", call(nrOpenat, atFDCWD, wronly, "/home/u/.bashrc"), Sandbox{Cgroup: "/sys/fs/cgroup/aigate/s1"}, nil, ""},
		{"a domain without truncate (ABI 2)", call(nrTruncate, 0, 0, "/home/u/.bashrc"),
			Sandbox{Domain: landlock.Ruleset{HandledFS: landlock.AccessWrite &^ landlock.AccessTruncate}, Confined: true, Cgroup: "/x"}, nil, ""},

		{"ptrace attach of the user's shell outside", call(nrPtrace, 100, 0, ""), sandbox(true), nil, "pid 100 (bash)"},
		{"process_vm_readv", call(nrProcessVMReadv, 100, 0, ""), sandbox(true), nil, "pid 100 (bash)"},
		{"/proc/PID/environ", call(nrOpenat, atFDCWD, 0, "/proc/100/environ"), sandbox(true), nil, "/proc/100/environ of pid 100 (bash)"},
		{"/proc/PID/task/TID/maps", call(nrOpenat, atFDCWD, 0, "/proc/100/task/100/maps"), sandbox(true), nil, "/proc/100/task/100/maps of pid 100 (bash)"},
		{"/proc/self: not a pid", call(nrOpenat, atFDCWD, 0, "/proc/self/environ"), sandbox(true), nil, ""},
		{"a process inside the sandbox", call(nrPtrace, 101, 0, ""), sandbox(true), nil, ""},
		{"root's init", call(nrPtrace, 1, 0, ""), sandbox(true), nil, ""},
		{"not dumpable", call(nrPtrace, 102, 0, ""), sandbox(true), nil, ""},
		{"with capabilities", call(nrPtrace, 103, 0, ""), sandbox(true), nil, ""},
		{"in a user namespace", call(nrPtrace, 104, 0, ""), sandbox(true), nil, ""},
		{"another gid", call(nrPtrace, 100, 0, ""), sandbox(true), func(_ *fakeHost, e *events.Event) { e.Refused.GID = 5 }, ""},
		{"gone", call(nrPtrace, 999, 0, ""), sandbox(true), nil, ""},

		{"SIGSTOP of the user's shell", call(nrKill, 100, 0, ""), sandbox(true), nil, "pid 100 (bash)"},
		{"tgkill", call(nrTgkill, 100, 0, ""), sandbox(true), nil, "pid 100 (bash)"},
		{"signals not scoped (ABI < 6)", call(nrKill, 100, 0, ""), sandbox(false), nil, ""},
		{"kill -0 of root's init", call(nrKill, 1, 0, ""), sandbox(true), nil, ""},
		{"a setuid process (euid 0, real uid the user's)", call(nrKill, 105, 0, ""), sandbox(true), nil, "pid 105 (sudo)"},
		{"CAP_KILL: root's init", call(nrKill, 1, 0, ""), sandbox(true), func(_ *fakeHost, e *events.Event) { e.Refused.Kill = true }, "pid 1 (init)"},
		{"CAP_SYS_PTRACE: not dumpable", call(nrPtrace, 102, 0, ""), sandbox(true), func(_ *fakeHost, e *events.Event) { e.Refused.SysPtrace = true }, "pid 102 (ssh-agent)"},
		{"CAP_SYS_PTRACE: a target in a user namespace", call(nrPtrace, 104, 0, ""), sandbox(true), func(_ *fakeHost, e *events.Event) { e.Refused.SysPtrace = true }, ""},
		{"a signal inside", call(nrKill, 101, 0, ""), sandbox(true), nil, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := world()
			e := c.e
			r := *e.Refused
			e.Refused = &r
			if c.change != nil {
				c.change(h, &e)
			}
			got, err := Attribute(e, c.sb, h)
			switch {
			case c.want == "" && err == nil:
				t.Fatalf("kept %+v, want it dropped", got)
			case c.want != "" && err != nil:
				t.Fatalf("dropped (%v), want %q", err, c.want)
			case c.want != "" && (got.Path != c.want || got.Backend != Backend || got.Refused != nil || got.Kind != e.Kind || got.Op != e.Op || got.TGID != 42 || got.Audit):
				t.Fatalf("kept %+v, want path %q", got, c.want)
			}
		})
	}
}

func TestParseStatus(t *testing.T) {
	var p Process
	err := parseStatus([]byte("Name:\tsleep\nUmask:\t0022\nUid:\t1000\t1001\t1002\t1003\nGid:\t100\t101\t102\t103\nCapPrm:\t0000000000002000\n"), &p)
	if err != nil || p.Comm != "sleep" || p.UIDs != [4]uint32{1000, 1001, 1002, 1003} || p.GIDs != [4]uint32{100, 101, 102, 103} || p.CapPrm != 1<<13 {
		t.Fatalf("%+v %v", p, err)
	}
	if err := parseStatus([]byte("Name:\tx\nUid:\t1\t2\n"), &p); err == nil || !strings.Contains(err.Error(), "Uid") {
		t.Fatalf("short Uid line: %v", err)
	}
}
