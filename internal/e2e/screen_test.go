//go:build linux

package e2e

import (
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/aigate-dev/aigate/internal/testutil"
)

// On a terminal the screen is the command's: no deny line is written into
// it while the command runs (a full-screen program would show it in its
// drawing area); the lines come when it ends, before the summary.
func TestE2EDenyLinesWaitForTheScreen(t *testing.T) {
	eachBackend(t, func(t *testing.T, w *world) {
		w.defaults()
		env := w.write(".env", "API_KEY=sk-e2e-secret\n")
		// A full-screen program's shape: clear, draw, be refused, draw
		// again while the event is on its way, end.
		cmd := w.runCmd(nil, "sh", "-c", `printf '\033[2J\033[HDRAWN\n'; cat .env 2>/dev/null; sleep 1; printf 'LAST-FRAME\n'`)
		tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 24, Cols: 80})
		if err != nil {
			t.Fatal(err)
		}
		defer tty.Close()
		t.Cleanup(func() { cmd.Process.Kill() })
		var out testutil.SyncBuffer
		copied := make(chan struct{})
		go func() { io.Copy(&out, tty); close(copied) }()
		waited := make(chan error, 1)
		go func() { waited <- cmd.Wait() }()
		select {
		case <-waited:
		case <-time.After(runLimit):
			t.Fatalf("aigate on a pty did not finish:\n%s", out.String())
		}
		select {
		case <-copied:
		case <-time.After(5 * time.Second):
		}
		got := out.String()
		drawn, last := strings.Index(got, "DRAWN"), strings.Index(got, "LAST-FRAME")
		line := strings.Index(got, "aigate: blocked read "+env+" (cat, pid ")
		if drawn < 0 || last < 0 || line < 0 {
			t.Fatalf("the screen lacks the frames or the deny line:\n%q", got)
		}
		if line < last {
			t.Errorf("the deny line was written into the command's screen (before its last frame):\n%q", got)
		}
		if !strings.Contains(got, "aigate watch") || strings.Index(got, "aigate watch") > drawn {
			t.Errorf("run did not say, before the command started, where the lines go:\n%q", got)
		}
		w.assertClean(cmd.Process.Pid, w.readEvents())
	})
}

// On a pipe (a log, a CI job) the deny line is joined to the command's
// output only at a line boundary: cat's error, written in pieces, and a
// line the command has begun stay whole.
func TestE2EDenyLinesAtLineBoundaries(t *testing.T) {
	eachBackend(t, func(t *testing.T, w *world) {
		w.defaults()
		env := w.write(".env", "API_KEY=sk-e2e-secret\n")
		r := w.run(nil, "sh", "-c", `printf 'begun ' >&2; cat .env 2>/dev/null; sleep 1; printf 'and ended\n' >&2; cat .env; echo out`)
		if !strings.Contains(r.stderr, "begun and ended\n") {
			t.Errorf("a line of the command was split:\n%s", r)
		}
		if !regexp.MustCompile(`(?m)^cat: \.env: Operation not permitted$`).MatchString(r.stderr) {
			t.Errorf("cat's error was split:\n%s", r)
		}
		lines := regexp.MustCompile(`(?m)^aigate: blocked read ` + regexp.QuoteMeta(env) + ` \(cat, (pid \d+, )?rule \.env\)( \(repeated \d+ more times?( by [a-z0-9 ]+)?\))?$`)
		if n := len(lines.FindAllString(r.stderr, -1)); n != 2 {
			t.Errorf("want 2 deny lines, each on a line of its own, got %d:\n%s", n, r)
		}
		if r.stdout != "out\n" {
			t.Errorf("stdout %q, want only the command's", r.stdout)
		}
	})
}
