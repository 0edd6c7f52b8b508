package backend

import (
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/policy"
)

// ErrUnavailable is wrapped by every error of Open: no backend that
// enforces the policy can be had, so nothing may be started.
var ErrUnavailable = errors.New("no usable enforcement backend")

// Options configure the backend that Open returns.
type Options struct {
	// Home and ProjectRoot are where the fanotify backend looks for files
	// that name rules (".env", "*.pem") match.
	Home        string
	ProjectRoot string
	Logger      *zap.Logger
	// Warn receives what the user should know about the choice, such as a
	// fallback from BPF LSM to fanotify. May be nil.
	Warn func(string)
	// DNSUpstreams are the resolvers ("host:port") the sandboxes' DNS
	// proxies forward allowed queries to; nil reads /etc/resolv.conf.
	DNSUpstreams []string
	// PinPath is a bpffs directory (e.g. /sys/fs/bpf/aigate) where the
	// BPF-LSM backend pins its programs, links and maps and those of its
	// network part, so that its sandboxes stay enforced when the process
	// dies and the next one adopts them (the backend is then an
	// enforce.Pinner). Ignored by fanotify, whose enforcement is a process.
	PinPath string
	// RunPin, when not empty, pins the BPF-LSM backend like PinPath, but
	// under a directory of its own below /sys/fs/bpf that Close removes,
	// and the backend is no enforce.Pinner: nothing adopts its sandboxes.
	// It is for the agent `aigate run` embeds: killed, it leaves its
	// sandboxes enforced by the kernel until they are dead, never running
	// on unconfined; the next run with the same RunPin sweeps them and
	// then their pins (ReapRunPins). The value is the sandboxes' cgroup
	// parent, so that a run reaps only pins whose sandboxes it can see.
	// Pinning failing fails the open. Ignored by fanotify, whose guard
	// does this.
	RunPin string
}

// Opener holds the functions Open uses; tests replace them, and a build
// without one of the backends leaves its function nil.
type Opener struct {
	ProbeLSM     func() error
	OpenLSM      func(Options) (enforce.Backend, error)
	OpenFanotify func(Options) (enforce.Backend, error)
}

// Default is the Opener of this build, filled in by open_linux.go.
var Default Opener

// Open returns the backend for choice; see Opener.Open.
func Open(choice policy.BackendChoice, opts Options) (enforce.Backend, error) {
	return Default.Open(choice, opts)
}

// Open returns the backend for choice. "auto" (or "") takes BPF LSM when
// ProbeLSM proves it works and fanotify otherwise, and says so through
// opts.Warn; "lsm" and "fanotify" take exactly that backend or fail. Every
// error wraps ErrUnavailable and says how to fix it.
func (o Opener) Open(choice policy.BackendChoice, opts Options) (enforce.Backend, error) {
	switch choice {
	case policy.BackendLSM:
		b, err := o.lsm(opts)
		if err != nil {
			return nil, fmt.Errorf("%w: the lsm backend was requested, but %v; use --backend fanotify (or auto), or see `aigate doctor`", ErrUnavailable, err)
		}
		return b, nil
	case policy.BackendFanotify:
		b, err := o.fanotify(opts)
		if err != nil {
			return nil, fmt.Errorf("%w: the fanotify backend was requested, but %v", ErrUnavailable, err)
		}
		return b, nil
	case policy.BackendAuto, "":
		b, lsmErr := o.lsm(opts)
		if lsmErr == nil {
			return b, nil
		}
		b, err := o.fanotify(opts)
		if err != nil {
			return nil, fmt.Errorf("%w: BPF LSM: %v; fanotify: %v; see `aigate doctor`", ErrUnavailable, lsmErr, err)
		}
		if opts.Warn != nil {
			opts.Warn(fmt.Sprintf("using the fanotify backend: %s (`aigate doctor` says why and how to fix it; the README lists what each backend enforces)", shortReason(lsmErr)))
		}
		return b, nil
	}
	return nil, fmt.Errorf("%w: unknown backend %q: want auto, lsm or fanotify", ErrUnavailable, choice)
}

// lsm proves BPF LSM works, then opens the backend. The probe comes first
// because some kernels list "bpf" as an active LSM and still refuse every
// LSM program; its error says which of the cases applies.
func (o Opener) lsm(opts Options) (enforce.Backend, error) {
	if o.ProbeLSM == nil || o.OpenLSM == nil {
		return nil, errors.New("BPF LSM is not available in this build of aigate")
	}
	if err := o.ProbeLSM(); err != nil {
		return nil, err
	}
	b, err := o.OpenLSM(opts)
	if err != nil {
		return nil, fmt.Errorf("BPF LSM works, but loading aigate's programs failed: %w", err)
	}
	return b, nil
}

func (o Opener) fanotify(opts Options) (enforce.Backend, error) {
	if o.OpenFanotify == nil {
		return nil, errors.New("fanotify is not available in this build of aigate")
	}
	b, err := o.OpenFanotify(opts)
	if err != nil {
		return nil, fmt.Errorf("%w (fanotify permission events need root and a kernel built with CONFIG_FANOTIFY_ACCESS_PERMISSIONS=y)", err)
	}
	return b, nil
}

// shortReason is the one-line cause of a failed BPF-LSM probe for the
// warning every fallback run prints; the full detail and fix are doctor's.
func shortReason(err error) string {
	var s interface{ Summary() string }
	if errors.As(err, &s) {
		return s.Summary()
	}
	return err.Error()
}
