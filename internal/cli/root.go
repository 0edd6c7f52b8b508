package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/aigate-dev/aigate/internal/cmdutil"
	"github.com/aigate-dev/aigate/internal/config"
	"github.com/aigate-dev/aigate/internal/run"
)

// NewRootCmd builds the aigate command tree.
func NewRootCmd(f *cmdutil.Factory) *cobra.Command {
	root := &cobra.Command{
		Use:   "aigate",
		Short: "Kernel-enforced sandbox for AI coding agents",
		Long: `aigate runs AI coding agents (Claude Code, Cursor, Aider, ...) in a sandbox
whose file opens, program executions and network connections the kernel
checks against your deny rules.

Rules live in ~/.aigate/config.yaml (yours, global) and .aigate.yaml (per
project). Start with:

  aigate init              write the default global config
  aigate status            show what is denied and whether the kernel is ready
  aigate deny read PATH    protect another file
  aigate doctor            check the kernel and say how to fix what is missing`,
		SilenceErrors: true,
		SilenceUsage:  true,
		// Bare "aigate" with an unknown word must be a usage error, not help.
		Args:    unknownCommand,
		RunE:    func(cmd *cobra.Command, args []string) error { return cmd.Help() },
		Version: cmdutil.Version,
	}
	root.SetVersionTemplate(versionText())
	root.SuggestionsMinimumDistance = 2
	if f.Log == nil {
		f.Log = zap.NewNop() // until --log-level is known
	}
	root.SetIn(f.In)
	root.SetOut(f.Out)
	root.SetErr(f.Err)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return &cmdutil.UsageError{Err: err} })

	v := viper.New()
	v.SetEnvPrefix("AIGATE")
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()
	f.Flags = v
	pf := root.PersistentFlags()
	pf.String("config", "", "global config file (default ~/.aigate/config.yaml; env AIGATE_CONFIG)")
	pf.String("log-level", "warn", "log level: debug, info, warn, error (env AIGATE_LOG_LEVEL)")
	_ = v.BindPFlag("config", pf.Lookup("config"))
	_ = v.BindPFlag("log-level", pf.Lookup("log-level"))
	// --trust-dir of every command (run, agent and policy accept have
	// their own): where root's commands record and check the accepted
	// global policy and the project trust when no agent runs, so that
	// init, deny, allow, reset and trust record where `run --trust-dir
	// DIR` decides (and a user's status and trust read it). Hidden: the
	// default is the service agent's, and tests use it to keep the
	// machine's records unchanged. No environment twin: a variable a
	// sandbox could plant in a shell profile must not move root's records.
	pf.StringVar(&f.TrustDir, "trust-dir", f.TrustDir, "with no agent running, the root-owned `DIR` of the policy and trust records (as `aigate run --trust-dir`)")
	_ = pf.MarkHidden("trust-dir")

	root.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
		log, err := newLogger(v.GetString("log-level"), f.Err)
		if err != nil {
			return err
		}
		f.Log = log
		return nil
	}

	// Every command, in one list; a constructor returns nil where its
	// command does not exist (the agent and watch outside Linux). Help
	// sorts them by name.
	for _, cmd := range []*cobra.Command{
		newInitCmd(f),
		newDenyCmd(f),
		newAllowCmd(f),
		newTrustCmd(f),
		newPolicyCmd(f),
		newStatusCmd(f),
		newHelpAICmd(f),
		newDoctorCmd(f),
		newResetCmd(f),
		newVersionCmd(f),
		run.NewCmd(f),
		newSetupCmd(f),
		newAgentCmd(f),
		newWatchCmd(f),
	} {
		if cmd != nil {
			root.AddCommand(cmd)
		}
	}
	markRunErrors(root)
	return root
}

// unknownCommand rejects a word that is not a command, suggesting the
// closest ones ("aigate stauts": did you mean status?). cobra suggests only
// for commands without Args of their own.
func unknownCommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return cmdutil.UsageErrorf("%s", msg)
}

// markRunErrors wraps every command's RunE so that Main can tell errors
// from running a command (exit 1) from cobra's command-line errors (2).
func markRunErrors(c *cobra.Command) {
	if run := c.RunE; run != nil {
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if err := run(cmd, args); err != nil {
				return &cmdutil.RunError{Err: err}
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		markRunErrors(sub)
	}
}

// Main runs aigate with args (without the program name) and returns the
// exit code. Errors are printed here, once, as "aigate: <error>".
func Main(ctx context.Context, f *cmdutil.Factory, args []string) cmdutil.ExitCode {
	root := NewRootCmd(f)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	msg, code := cmdutil.Classify(err)
	if msg != "" {
		fmt.Fprintf(f.Err, "aigate: %s\n", msg)
	}
	if code == cmdutil.ExitUsage && msg != "" && cmd != nil {
		fmt.Fprintf(f.Err, "Run '%s --help' for usage.\n", cmd.CommandPath())
	}
	_ = f.Log.Sync()
	return code
}

// NewFactory returns a Factory for the running process.
func NewFactory() *cmdutil.Factory {
	return &cmdutil.Factory{
		In:       os.Stdin,
		Out:      os.Stdout,
		Err:      os.Stderr,
		Env:      config.OSEnv(),
		Now:      time.Now,
		ProbeLSM: lsmProbe,

		RememberedLSM: rememberedLSM,

		ProbeFanotify: fanotifyProbe,
		ProbeSockAddr: sockAddrProbe,
		ProbeUnix:     unixProbe,
		LandlockABI:   landlockABI,
		LandlockAudit: landlockAudit,

		DoctorAgent:    doctorAgent,
		AgentResetPlan: ResetAgentPlan,
		AgentReset:     ResetAgent,
		TrustDir:       defaultTrustDir,
		Log:            zap.NewNop(),
	}
}

// newLogger builds the zap logger for --log-level. Logs go to stderr and
// are for diagnosing aigate; what a command reports goes to stdout.
func newLogger(level string, w io.Writer) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(strings.ToLower(level))
	if err != nil {
		return nil, cmdutil.UsageErrorf("--log-level %q: want debug, info, warn or error", level)
	}
	enc := zap.NewDevelopmentEncoderConfig()
	enc.TimeKey = ""
	core := zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.AddSync(w), lvl)
	return zap.New(core), nil
}
