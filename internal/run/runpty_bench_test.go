//go:build linux

package run

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/creack/pty"

	"github.com/aigate-dev/aigate/internal/cmdutil"
)

// terminalText is 64 KiB of what a tool prints: coloured lines with a
// title and a link now and then.
var terminalText = func() []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < 64<<10; i++ {
		b.WriteString("\x1b[32m+\x1b[0m some output line, ")
		b.WriteString(strings.Repeat("text ", 10))
		if i%50 == 0 {
			b.WriteString("\x1b]0;title\x07\x1b]8;;https://example.com\x1b\\link\x1b]8;;\x1b\\")
		}
		b.WriteString("\n")
	}
	return b.Bytes()
}()

// BenchmarkTerminalOutput is the command's output to the user's terminal
// (a pty standing for it, drained as a terminal emulator would): written
// to it directly (direct: --raw-terminal, or before the filter), through
// run's pty and copier without the filter (pty), and with it
// (pty+filter, the default). The ratios to direct are the cost a tool
// that prints a lot sees.
func BenchmarkTerminalOutput(b *testing.B) {
	for _, mode := range []string{"direct", "pty", "pty+filter"} {
		b.Run(mode, func(b *testing.B) {
			master, user, err := pty.Open()
			if err != nil {
				b.Fatal(err)
			}
			defer master.Close()
			defer user.Close()
			drained := make(chan int64)
			go func() {
				n, _ := io.Copy(io.Discard, master)
				drained <- n
			}()
			w := user
			var s *runStdio
			if mode != "direct" {
				f := &cmdutil.Factory{In: user, Out: user, Err: user}
				s, err = newRunStdio(f, nil, &lineWriter{w: io.Discard}, stdioOptions{pty: true, filter: mode == "pty+filter"})
				if err != nil {
					b.Fatal(err)
				}
				w = s.Stdout
			}
			b.SetBytes(int64(len(terminalText)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := w.Write(terminalText); err != nil {
					b.Fatal(err)
				}
			}
			if s != nil {
				// Until the last byte reached the user's terminal.
				s.started(0)
				s.finish()
			}
			b.StopTimer()
			user.Close()
			master.Close()
			<-drained
		})
	}
}
