package cmdutil

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"golang.org/x/term"
)

// CanAsk says whether there is a person at In to ask.
func (f *Factory) CanAsk() bool {
	if f.Interactive != nil {
		return f.Interactive()
	}
	in, ok := f.In.(*os.File)
	return ok && term.IsTerminal(int(in.Fd()))
}

// Confirm asks a yes/no question on Err and reads the answer from In;
// anything but y or yes is no.
func (f *Factory) Confirm(question string) bool {
	fmt.Fprint(f.Err, question)
	line, err := bufio.NewReader(f.In).ReadString('\n')
	if err != nil && line == "" {
		fmt.Fprintln(f.Err) // end of input: the prompt's line ends here
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true
	}
	return false
}
