package darwin

import (
	"context"
	"fmt"
	"strings"
)

// Command is one external command line, with optional standard input.
type Command struct {
	Name  string   `json:"name"`
	Args  []string `json:"args"`
	Stdin []byte   `json:"stdin,omitempty"`
}

// Runner runs external commands. The real one (exec_darwin.go) uses os/exec;
// tests use a fake that records calls. Run returns the combined output.
type Runner interface {
	Run(ctx context.Context, name string, args []string, stdin []byte) ([]byte, error)
}

func cmd(name string, args ...string) Command {
	return Command{Name: name, Args: args}
}

func (c Command) run(ctx context.Context, r Runner) ([]byte, error) {
	return r.Run(ctx, c.Name, c.Args, c.Stdin)
}

// String renders the command as a shell line a user can paste, which is also
// how error messages and golden files show it.
func (c Command) String() string {
	var b strings.Builder
	b.WriteString(shellQuote(c.Name))
	for _, a := range c.Args {
		b.WriteByte(' ')
		b.WriteString(shellQuote(a))
	}
	if len(c.Stdin) > 0 {
		b.WriteString(" <<'EOF'\n")
		b.Write(c.Stdin)
		if c.Stdin[len(c.Stdin)-1] != '\n' {
			b.WriteByte('\n')
		}
		b.WriteString("EOF")
	}
	return b.String()
}

func shellQuote(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=,+@%", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Short is String without the standard input, for error messages.
func (c Command) Short() string {
	line, _, _ := strings.Cut(c.String(), "\n")
	return strings.TrimSuffix(line, " <<'EOF'")
}

// runError wraps a failed command's error with the command and, unless the
// error already carries it, the command's own message.
func runError(what string, c Command, out []byte, err error) error {
	msg := strings.TrimSpace(string(out))
	if msg == "" || strings.Contains(err.Error(), msg) {
		return fmt.Errorf("%s: `%s`: %w", what, c.Short(), err)
	}
	return fmt.Errorf("%s: `%s`: %w: %s", what, c.Short(), err, msg)
}

// renderCommands is the golden-file form of a command list.
func renderCommands(cs []Command) string {
	var b strings.Builder
	for _, c := range cs {
		b.WriteString(c.String())
		b.WriteByte('\n')
	}
	return b.String()
}
