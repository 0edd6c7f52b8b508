package cmdutil

import (
	"testing"

	"github.com/spf13/pflag"
)

// TestFlagEnvTwin: a root flag given on the command line beats its AIGATE_
// environment twin, which beats the default; an empty variable counts as
// unset (as viper, which did this before, counted it).
func TestFlagEnvTwin(t *testing.T) {
	for _, c := range []struct {
		name, args, env, want string
		setEnv                bool
	}{
		{"default", "", "", "warn", false},
		{"env", "", "debug", "debug", true},
		{"empty env", "", "", "warn", true},
		{"flag beats env", "--log-level=error", "debug", "error", true},
		{"flag", "--log-level=info", "", "info", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			fs := pflag.NewFlagSet("aigate", pflag.ContinueOnError)
			fs.String("log-level", "warn", "")
			var args []string
			if c.args != "" {
				args = []string{c.args}
			}
			if err := fs.Parse(args); err != nil {
				t.Fatal(err)
			}
			if c.setEnv {
				t.Setenv("AIGATE_LOG_LEVEL", c.env)
			} else {
				t.Setenv("AIGATE_LOG_LEVEL", "")
			}
			f := &Factory{Flags: fs}
			if got := f.Flag("log-level"); got != c.want {
				t.Errorf("Flag(log-level) = %q, want %q", got, c.want)
			}
		})
	}
	if got := (&Factory{}).Flag("config"); got != "" {
		t.Errorf("no Flags: %q", got)
	}
}
