//go:build linux

package loader

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/aigate-dev/aigate/internal/testutil"
)

func TestMemcgAccounted(t *testing.T) {
	for release, want := range map[string]bool{
		"6.8.0-51-generic":                   true,
		"6.1.0":                              true,
		"5.11.0":                             true,
		"5.15.167.4-microsoft-standard-WSL2": true,
		"5.10.230":                           false,
		"4.19.0-27-amd64":                    false,
		"5.11rc7":                            true,
		"5":                                  false,
		"":                                   false,
		"x.y":                                false,
	} {
		if got := memcgAccounted(release); got != want {
			t.Errorf("memcgAccounted(%q) = %v, want %v", release, got, want)
		}
	}
}

// The binary is one for the agent, its clients and their exec helpers:
// a package whose init calls bpf(2) makes every one of those processes
// pay for it. cilium/ebpf's rlimit package creates a map in its init.
func TestBinaryDoesNotProbeBPFAtInit(t *testing.T) {
	testutil.HostOnly(t) // a property of the build: the guests have no go toolchain
	out, err := exec.Command("go", "list", "-deps", "../../cmd/aigate").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps ../../cmd/aigate: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if pkg == "github.com/cilium/ebpf/rlimit" {
			t.Errorf("cmd/aigate links %s, whose init creates a BPF map in every aigate process (clients and exec helpers too): use removeMemlock", pkg)
		}
	}
}
