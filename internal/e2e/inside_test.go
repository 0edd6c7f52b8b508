//go:build linux

package e2e

import (
	"regexp"
	"strings"
	"testing"
)

// aigate run inside a sandbox (an agent following help-ai) says where it
// is, instead of advice meant for outside (issue 13, item 7).
func TestE2EAigateInsideASandbox(t *testing.T) {
	eachBackend(t, func(t *testing.T, w *world) {
		w.defaults()
		r := w.run(nil, "sh", "-c", w.bin+" run -- true; echo run=$?; "+w.bin+" watch; echo watch=$?; "+w.bin+" status --json")
		name := regexp.MustCompile(`inside the aigate sandbox (s\d+-p\d+)`).FindStringSubmatch(r.stderr)
		if name == nil {
			t.Fatalf("run inside does not say it is inside a sandbox: %s", r)
		}
		for _, want := range []string{"run=3", "watch=3", `"inside_sandbox": "` + name[1] + `"`, `"source": "sandbox"`} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("stdout lacks %q: %s", want, r)
			}
		}
		if strings.Count(r.stderr, "inside the aigate sandbox "+name[1]) != 2 {
			t.Errorf("want run and watch each to name the sandbox: %s", r)
		}
		for _, bad := range []string{"aigate group", "sudo aigate setup"} {
			if strings.Contains(r.stderr, bad) {
				t.Errorf("advice meant for outside: %q in %s", bad, r)
			}
		}
	})
}
