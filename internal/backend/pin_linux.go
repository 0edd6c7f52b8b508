package backend

import (
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/aigate-dev/aigate/internal/enforce"
)

// Pinned is a Composite whose both parts pin their state under one bpffs
// directory (the LSM's maps and links there, the network object's in its
// "net" subdirectory): it implements enforce.Pinner, so a sandbox outlives
// the agent, enforced by the kernel alone, and the next agent adopts it.
// Only the BPF-LSM backend pins; fanotify's enforcement is a process.
// Both parts are enforce.Pinner (lsm.Backend and egress.Egress opened
// with a PinPath): pinning is that one capability.
type Pinned struct {
	*Composite
	pfiles enforce.Pinner
	pnet   enforce.Pinner
}

// newPinned composes the pinned parts and removes the network rules that
// the LSM found no live sandbox for (their cgroup is gone, or a crash came
// in the middle of Add): every other pinned sandbox is the agent's to
// claim or end.
func newPinned(files enforce.Pinner, net interface {
	netPart
	enforce.Pinner
}) (*Pinned, error) {
	p := &Pinned{Composite: compose(files, net), pfiles: files, pnet: net}
	live := map[uint32]bool{}
	for _, sb := range files.Adopted() {
		live[sb.ID] = true
	}
	var errs []error
	for _, sb := range net.Adopted() {
		if !live[sb.ID] {
			errs = append(errs, net.Remove(sb.ID))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, errors.Join(fmt.Errorf("remove stale pinned network rules: %w", err), p.Release())
	}
	return p, nil
}

// PinDir is the bpffs directory holding both parts' pins.
func (p *Pinned) PinDir() string { return p.pfiles.PinDir() }

// Adopted lists the sandboxes found pinned and alive at open (the LSM's
// list: it owns the sandbox table), Policy nil.
func (p *Pinned) Adopted() []enforce.Sandbox { return p.pfiles.Adopted() }

// Claim hands an adopted sandbox its recompiled policy: the LSM checks it
// is the sandbox it adopted and keeps it, and the egress part rewrites the
// network policy and steers DNS to a new proxy (egress.Claim). On error
// the sandbox stays enforced as it is; the caller kills its processes and
// then Removes it.
func (p *Pinned) Claim(sb *enforce.Sandbox) error {
	if err := p.pfiles.Claim(sb); err != nil {
		return err
	}
	return p.pnet.Claim(sb)
}

// Release closes both parts and leaves the pins: every sandbox stays
// enforced with no process holding anything, as after a crash.
func (p *Pinned) Release() error {
	return p.shut(func() error { return errors.Join(p.pfiles.Release(), p.pnet.Release()) })
}

// Close ends every sandbox and removes the pins of both parts, and then
// the pin directory, which the LSM could not remove while the network
// object's subdirectory was still in it.
func (p *Pinned) Close() error {
	dir := p.PinDir()
	err := p.Composite.Close()
	if rerr := os.Remove(dir); rerr != nil && !errors.Is(rerr, os.ErrNotExist) && !errors.Is(rerr, syscall.ENOTEMPTY) {
		err = errors.Join(err, fmt.Errorf("remove pin directory: %w", rerr))
	}
	return err
}

// runPinPrefix names the pin directories of RunPin backends below
// runPinRoot: runPinPrefix, a hash of the cgroup parent, the pid of the
// process that pinned, a random suffix.
const runPinPrefix = "aigate-run-"

func runPinStem(parent string) string {
	h := fnv.New32a()
	h.Write([]byte(parent))
	return fmt.Sprintf("%s%08x-", runPinPrefix, h.Sum32())
}

// runPinRoot is where RunPin directories are made; tests change it.
var runPinRoot = "/sys/fs/bpf"

// runPinned is a Pinned backend that nothing adopts: its Close ends the
// sandboxes and removes the pins and their directory, as Pinned's does,
// but it offers no Release, Adopted or Claim (no enforce.Pinner), so the
// agent keeps no records for it and `aigate status` does not call it
// pinned across restarts.
type runPinned struct {
	*Composite
	p *Pinned
}

func (r *runPinned) Close() error { return r.p.Close() }

// openRunPinned opens the BPF-LSM backend pinned under a new directory of
// this process's (Options.RunPin). When the process is killed the links
// stay, so the sandboxes stay enforced until they are dead.
func openRunPinned(o Options) (enforce.Backend, error) {
	dir, err := os.MkdirTemp(runPinRoot, fmt.Sprintf("%s%d-", runPinStem(o.RunPin), os.Getpid()))
	if err != nil {
		return nil, fmt.Errorf("pin the BPF-LSM programs so that they outlive this process: %w (is the BPF filesystem mounted at %s? see `aigate doctor`)", err, runPinRoot)
	}
	o.RunPin, o.PinPath = "", dir
	b, err := openLSM(o)
	if err != nil {
		// No sandbox is in the fresh directory's maps yet: nothing that
		// its pins enforce can be released by removing them.
		return nil, errors.Join(err, os.RemoveAll(dir))
	}
	p, ok := b.(*Pinned)
	if !ok {
		return nil, errors.Join(fmt.Errorf("pin the BPF-LSM programs: %T is not pinned", b), b.Close(), os.RemoveAll(dir))
	}
	return &runPinned{Composite: p.Composite, p: p}, nil
}

// ReapRunPins removes the pin directories of RunPin backends of the cgroup
// parent once left(pid) says nothing the process pinned for may still be
// needed (sandbox.Left: the process is dead and every sandbox it made is
// gone). It returns what it could not remove.
func ReapRunPins(parent string, left func(pid int) bool) error {
	stem := runPinStem(parent)
	dirs, err := filepath.Glob(filepath.Join(runPinRoot, stem+"*"))
	if err != nil {
		return err
	}
	var errs []error
	for _, dir := range dirs {
		pidStr, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(dir), stem), "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid <= 0 || left(pid) {
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, fmt.Errorf("remove the pins of a killed run: %w", err))
		}
	}
	return errors.Join(errs...)
}
