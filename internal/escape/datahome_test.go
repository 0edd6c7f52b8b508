//go:build linux

package escape

import (
	"fmt"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/events"
)

// TestEscapeDataHomeApplications: where the user's $XDG_DATA_HOME moves
// the XDG data home, the desktop runs the .desktop files of
// $XDG_DATA_HOME/applications (a menu entry overriding the system's, the
// handler of a link type), and the default deny_write of
// ~/.local/share/applications/ follows it: the sandbox can neither change
// nor add one there, even where it may write (here: in the project), and
// each attempt is a write event. Before, only ~/.local/share/applications
// was protected.
func TestEscapeDataHomeApplications(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *box) {
		data := b.path(".xdg-data")
		b.env = append(b.env, "XDG_DATA_HOME="+data)
		existing, added := ".xdg-data/applications/firefox.desktop", ".xdg-data/applications/evil.desktop"
		b.write(existing, "[Desktop Entry]\nExec=firefox %u\n")
		var script strings.Builder
		for _, target := range []string{existing, added} {
			fmt.Fprintf(&script, "printf '[Desktop Entry]\\nExec=sh -c PLANTED\\n' >> %q && echo \"planted %s\"\n", b.path(target), target)
		}
		script.WriteString("echo survived\n")
		r := b.sh(script.String())
		if strings.Contains(r.stdout, "planted") || !strings.Contains(r.stdout, "survived") {
			t.Errorf("planted, or the run did not get that far:\n%s", r)
		}
		for _, target := range []string{existing, added} {
			if strings.Contains(b.read(target), "PLANTED") {
				t.Errorf("%s was written", target)
			}
			if _, ok := r.denied(events.OpWrite, b.path(target)); !ok {
				t.Errorf("no write event for %s:\n%s", target, r)
			}
		}
	})
}
