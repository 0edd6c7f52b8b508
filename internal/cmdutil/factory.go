package cmdutil

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/viper"
	"go.uber.org/zap"

	"github.com/aigate-dev/aigate/internal/config"
	"github.com/aigate-dev/aigate/internal/doctor"
)

// Factory is what every command needs from its surroundings. Main fills it
// from the process; tests fill it with buffers and temporary directories.
type Factory struct {
	In  io.Reader
	Out io.Writer
	Err io.Writer

	// Env is where the home and working directories come from.
	Env config.Env
	Now func() time.Time

	// ProbeLSM loads a trivial BPF LSM program to prove BPF LSM works; nil
	// when this build has none (doctor then skips that check).
	ProbeLSM func() error
	// RememberedLSM is the BPF-LSM refusal a root run recorded this boot,
	// which doctor and status use without root; nil skips it.
	RememberedLSM func() error
	// ProbeFanotify, ProbeSockAddr and ProbeUnix are doctor's other real
	// probes (see probe.go); nil skips them.
	ProbeFanotify func() error
	ProbeSockAddr func() error
	ProbeUnix     func() (string, error)
	// LandlockABI is the kernel's Landlock ABI (doctor); nil skips it.
	LandlockABI func() int
	// LandlockAudit says whether Landlock's refusals reach audit (doctor,
	// root only); nil skips it.
	LandlockAudit func() string
	// AgentResetPlan and AgentReset list and remove what `aigate setup`
	// installed system-wide (unit, socket directory, pins, group), for
	// reset. nil in tests, which must never touch the machine's agent.
	AgentResetPlan func() []string
	AgentReset     func(*Factory) error
	// DoctorAgent asks the running agent what it enforces with, for
	// doctor and status; nil (tests) means no agent.
	DoctorAgent func() *doctor.Agent
	// TrustDir holds root's records when no agent runs: the global policy
	// each user last accepted and the projects each trusted (those an
	// embedded `sudo aigate run` decides from; the service agent's
	// directory). "" keeps none: ~/.aigate/trusted.yaml decides project
	// trust (macOS; tests, which must not write the machine's records).
	TrustDir string
	// Interactive says whether a person answers on In; nil checks whether
	// In is a terminal. Tests set it to answer prompts.
	Interactive func() bool
	// DoctorRoot and KernelRelease let tests run doctor on a fake tree.
	DoctorRoot    string
	KernelRelease string

	// Flags are the root command's flags with their AIGATE_ environment
	// twins; nil in tests.
	Flags *viper.Viper
	Log   *zap.Logger
}

// ConfigFile is the --config flag ("" for the default).
func (f *Factory) ConfigFile() string {
	if f.Flags == nil {
		return ""
	}
	return f.Flags.GetString("config")
}

// Paths locates the config files for this invocation.
func (f *Factory) Paths() (*config.Paths, error) {
	p, err := config.Locate(config.LocateOptions{ConfigFile: f.ConfigFile(), Env: f.Env})
	if err != nil {
		return nil, err
	}
	f.Log.Debug("config paths", zap.String("global", p.Global), zap.String("project", p.Project),
		zap.String("trust", p.Trust), zap.String("home", p.User.Home), zap.Bool("sudo", p.User.Sudo))
	return p, nil
}

// Load locates and parses the config files.
func (f *Factory) Load() (*config.Loaded, error) {
	p, err := f.Paths()
	if err != nil {
		return nil, err
	}
	l, err := config.Load(p)
	if err != nil {
		return nil, err
	}
	f.Log.Debug("config loaded", zap.Bool("global_exists", l.Global != nil), zap.Stringer("trust", l.Trust))
	return l, nil
}

// Doctor runs the readiness checks. mount allows mounting securityfs.
func (f *Factory) Doctor(mount bool) *doctor.Report {
	var agent *doctor.Agent
	if f.DoctorAgent != nil {
		agent = f.DoctorAgent()
	}
	return doctor.Run(doctor.Options{
		Agent:    agent,
		Root:     f.DoctorRoot,
		Release:  f.KernelRelease,
		Euid:     f.Env.Euid,
		ProbeLSM: f.ProbeLSM,
		Mount:    mount,

		RememberedLSM: f.RememberedLSM,

		ProbeFanotify: f.ProbeFanotify,
		ProbeSockAddr: f.ProbeSockAddr,
		ProbeUnix:     f.ProbeUnix,
		LandlockABI:   f.LandlockABI,
		LandlockAudit: f.LandlockAudit,
	})
}

// Printf writes what the command reports to stdout.
func (f *Factory) Printf(format string, args ...any) { fmt.Fprintf(f.Out, format, args...) }

// Warnf writes a warning to stderr, where it does not mix into output that
// scripts read.
func (f *Factory) Warnf(format string, args ...any) {
	fmt.Fprintf(f.Err, "aigate: warning: "+format+"\n", args...)
}
