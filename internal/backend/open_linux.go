package backend

import (
	"errors"
	"os"
	"path/filepath"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/egress"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/fanotify"
	"github.com/aigate-dev/aigate/internal/loader"
	"github.com/aigate-dev/aigate/internal/lsm"
)

// Both backends enforce the network the same way, through internal/egress
// (the only code that attaches the sock_addr programs and runs DNS
// proxies); they differ in who owns the sandbox table, the ring buffer and
// the counters.
func init() {
	Default = Opener{
		ProbeLSM:     rememberRefusal(loader.ProbeLSM),
		OpenLSM:      openLSM,
		OpenFanotify: openFanotify,
	}
}

// openLSM loads the LSM object and the network object on the LSM's shared
// maps: one sandbox table (the LSM's Add is the switch for both), one ring
// buffer and one set of counters, read by the LSM.
func openLSM(o Options) (enforce.Backend, error) {
	if o.RunPin != "" {
		return openRunPinned(o)
	}
	l, err := lsm.Open(lsm.Options{PinPath: o.PinPath})
	if err != nil {
		return nil, err
	}
	if o.PinPath != "" {
		return openPinnedNet(l, o)
	}
	// SkipUnix: the LSM's unix_stream_connect/unix_may_send programs check
	// the peer's own cgroup and socket, which is exact; the cgroup
	// connect_unix programs only see names, and are for fanotify hosts.
	n, err := loader.OpenNet(loader.NetOptions{MapReplacements: l.SharedMaps().Replacements(), SkipUnix: true})
	if err != nil {
		return nil, errors.Join(err, l.Close())
	}
	return compose(l, egress.New(n, o.egress())), nil
}

// openPinnedNet pins the network object beside the LSM's pins (in their
// "net" subdirectory, which `aigate reset --force` removes with the rest)
// and composes the two as a Pinned backend.
func openPinnedNet(l *lsm.Backend, o Options) (enforce.Backend, error) {
	n, err := loader.OpenNet(loader.NetOptions{
		MapReplacements: l.SharedMaps().Replacements(),
		SkipUnix:        true,
		PinPath:         filepath.Join(o.PinPath, "net"),
	})
	if err != nil {
		// Release, not Close: the pinned sandboxes stay enforced for an
		// agent that can open the network object.
		return nil, errors.Join(err, l.Release())
	}
	return newPinned(l, egress.New(n, o.egress()))
}

// openFanotify pairs the fanotify backend with a standalone network object,
// whose sandbox table, events and counters the egress part keeps.
func openFanotify(o Options) (enforce.Backend, error) {
	f, err := fanotify.Open(fanotify.Options{
		Logger:       o.Logger,
		Home:         o.Home,
		ProjectRoot:  o.ProjectRoot,
		WalkCacheDir: walkCacheDir(o),
		// An embedded run's process ends with its sandbox: its marks
		// go in one call, none is kept for a next sandbox.
		FlushWhenEmpty: o.RunPin != "",
		KeepDir:        fanotify.DefaultKeepDir,
	})
	if err != nil {
		return nil, err
	}
	// CheckReceived: no BPF LSM program refuses a connect or send on a
	// socket passed in from outside, so its receiver is killed.
	nopts := loader.NetOptions{Backend: "fanotify", CheckReceived: true}
	if o.RunPin != "" {
		// An embedded run: keep the network programs verified for the
		// next one (loader.KeptRoot); an agent loads them once anyway.
		nopts.Keep, nopts.KeepLive = true, cgroupLive
	}
	n, err := loader.OpenNet(nopts)
	if err != nil {
		return nil, errors.Join(err, f.Close())
	}
	if o.Logger != nil && nopts.Keep {
		adopted, why := n.KeptStatus()
		o.Logger.Debug("kept network programs", zap.Bool("adopted", adopted), zap.NamedError("why not", why))
	}
	recordExits(f, n, o)
	return compose(f, egress.New(n, o.egress())), nil
}

// walkCacheDir is where an embedded run (RunPin set) keeps the fanotify
// walk cache between runs; an agent keeps it in memory.
// recordExits attaches the exit records (bpf/exitrec.c) that let the
// fanotify backend place a mover that exited before its rename was read.
// They share the network object's sandbox table, which Composite.Add fills
// before any process of the sandbox runs. A kernel that refuses them
// leaves the backend as it was: such a mover is placed only if it was
// seen before (docs/threat-model.md).
func recordExits(f *fanotify.Backend, n *loader.Net, o Options) {
	shared, ok := n.Shared()
	if !ok {
		return
	}
	r, err := loader.OpenExitRecorder(shared)
	if err != nil {
		if o.Logger != nil {
			o.Logger.Warn("a sandboxed process that renames a protected path and exits before aigate reads the rename may not be placed", zap.Error(err))
		}
		return
	}
	f.RecordExits(r)
}

// cgroupLive says whether the cgroup with this id (on cgroup2, its
// directory's inode) exists, anywhere in the hierarchy: a kept set may
// hold the sandbox of a killed run with another cgroup parent. It opens
// the cgroup by its kernfs file handle (the 64-bit id); anything but "no
// such cgroup" counts as live, so a kept set is never emptied under a
// sandbox it cannot rule out.
func cgroupLive(id uint64) bool {
	root, err := cgroup.Mountpoint()
	if err != nil {
		return true
	}
	mnt, err := os.Open(root)
	if err != nil {
		return true
	}
	defer mnt.Close()
	fd, err := cgroup.OpenByID(int(mnt.Fd()), id, unix.O_RDONLY|unix.O_CLOEXEC)
	if err == nil {
		unix.Close(fd)
		return true
	}
	return !errors.Is(err, unix.ESTALE) && !errors.Is(err, unix.ENOENT)
}

func walkCacheDir(o Options) string {
	if o.RunPin == "" {
		return ""
	}
	return fanotify.DefaultWalkCacheDir
}

func (o Options) egress() egress.Options {
	return egress.Options{Upstreams: o.DNSUpstreams, Logger: o.Logger}
}
