//go:build linux

package main

import (
	"bufio"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/exechelper"
)

// The packages whose initialisation the exec helper must not wait for: the
// agent's metrics (prometheus' default registry and collectors, procfs'
// regexps), cilium/ebpf's tables, the DNS proxy, YAML, the command line,
// the HTTP server, and aigate's own packages that only the other commands
// need (package-level regexps, the BPF program tables, the agent API).
var helperForbidden = []string{
	"github.com/prometheus/client_golang/",
	"github.com/prometheus/procfs",
	"github.com/cilium/ebpf",
	"github.com/miekg/dns",
	"go.yaml.in/yaml/",
	"github.com/spf13/",
	"go.uber.org/zap ",
	"net/http ",
	"expvar ",
	"github.com/aigate-dev/aigate/internal/policy ",
	"github.com/aigate-dev/aigate/internal/loader ",
	"github.com/aigate-dev/aigate/internal/api ",
	"github.com/aigate-dev/aigate/internal/sandbox ",
	"github.com/aigate-dev/aigate/internal/launch ",
	"github.com/aigate-dev/aigate/internal/fanotify ",
	"github.com/aigate-dev/aigate/internal/metrics ",
	"github.com/aigate-dev/aigate/internal/cli ",
}

// TestHelperInitsFew: the exec helper, a second Go start-up of this binary
// in every run, execs the command from package exechelper's init, before
// the packages the other commands need are initialised. Read from the Go
// runtime's own trace of each package init (GODEBUG=inittrace=1) in a
// helper started as launch.Prepare starts it, with its go-ahead already in
// the pipe. Fails when the helper moves back behind a heavy import (it ran
// from package launch's init until 2026-12-06, after ~140 inits), or when
// exechelper imports one.
func TestHelperInitsFew(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := w.Write(append([]byte{exechelper.GoByte}, "{}"...)); err != nil {
		t.Fatal(err)
	}
	w.Close()
	marker := t.TempDir() + "/ran"
	cmd := exec.Command(self, "-c", "touch "+marker)
	cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1", exechelper.Env+"=/bin/sh", exechelper.FDEnv+"=3")
	cmd.ExtraFiles = []*os.File{r}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("the helper did not run the command: %v\n%s", err, out)
	}
	var inits []string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if pkg, ok := strings.CutPrefix(sc.Text(), "init "); ok {
			inits = append(inits, pkg)
		}
	}
	if len(inits) == 0 {
		t.Fatalf("no init trace from the helper:\n%s", out)
	}
	for _, pkg := range inits {
		for _, f := range helperForbidden {
			if strings.HasPrefix(pkg, f) {
				t.Errorf("the exec helper initialised %s before exec'ing the command", strings.Fields(pkg)[0])
			}
		}
	}
	t.Logf("%d package inits before the exec", len(inits))
}
