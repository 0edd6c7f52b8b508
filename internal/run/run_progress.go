package run

import (
	"fmt"
	"io"
	"time"
)

// slowNotice writes msg to w once d has passed, unless the returned stop is
// called first: a step that usually takes milliseconds says what it is
// doing when it takes seconds, instead of leaving the terminal silent. stop
// waits for a notice being written, so nothing is printed after it returns.
func slowNotice(w io.Writer, d time.Duration, msg string) (stop func()) {
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		select {
		case <-done:
		case <-time.After(d):
			fmt.Fprint(w, msg)
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// setupNotice is what run says when creating the sandbox takes over a
// second. The client does not know the agent's backend yet, so it names
// the usual causes for both.
const setupNotice = "aigate: setting up the sandbox... (slow on a busy machine; on the fanotify " +
	"backend every directory of the project and home is marked, so a large home takes a few seconds)\n"
