//go:build linux

package cli

import (
	"errors"
	"fmt"

	"github.com/aigate-dev/aigate/internal/backend"
	"github.com/aigate-dev/aigate/internal/doctor"
	"github.com/aigate-dev/aigate/internal/fanotify"
	"github.com/aigate-dev/aigate/internal/landlock"
	"github.com/aigate-dev/aigate/internal/llaudit"
	"github.com/aigate-dev/aigate/internal/loader"
	"github.com/aigate-dev/aigate/internal/sandbox"
)

func init() {
	lsmProbe = probeLSM
	rememberedLSM = func() error { return doctorProbeError(backend.RememberedLSMRefusal()) }
	fanotifyProbe = fanotify.Probe
	sockAddrProbe = func() error { return loader.ProbeSockAddr(sandbox.DefaultParent) }
	unixProbe = probeUnix
	landlockABI = landlock.ABI
	landlockAudit = func() string { return llaudit.Reporting(false) }
}

// probeLSM runs loader.ProbeLSM and hands its reason and its fix to
// doctor separately, so that the verdict can say both.
func probeLSM() error {
	return doctorProbeError(loader.ProbeLSM())
}

// doctorProbeError is err, a loader.ProbeError, as doctor's.
func doctorProbeError(err error) error {
	var pe *loader.ProbeError
	if !errors.As(err, &pe) {
		return err
	}
	reason := pe.Reason.Error()
	if pe.Detail != "" {
		reason += ": " + pe.Detail
	} else if pe.Err != nil {
		reason += fmt.Sprintf(" (%v)", pe.Err)
	}
	return &doctor.ProbeError{Reason: reason, Fix: pe.Fix, Err: err}
}

func probeUnix() (string, error) {
	err := loader.ProbeUnixSockets()
	return loader.UnixSocketEnforcement(), err
}
