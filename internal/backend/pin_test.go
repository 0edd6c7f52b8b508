//go:build linux

package backend

import (
	"slices"
	"testing"

	"github.com/aigate-dev/aigate/internal/enforce"
)

// The agent adopts sandboxes through this interface.
var _ enforce.Pinner = (*Pinned)(nil)

// pinnedPart is a fake part that pins (enforce.Pinner), standing for
// either side: lsm.Backend or egress.Egress opened with a PinPath.
type pinnedPart struct {
	*part
	adopted []enforce.Sandbox
}

func (p *pinnedPart) PinDir() string             { return "" }
func (p *pinnedPart) Adopted() []enforce.Sandbox { return p.adopted }
func (p *pinnedPart) Claim(*enforce.Sandbox) error {
	*p.log = append(*p.log, p.name+" claim")
	return nil
}
func (p *pinnedPart) Release() error {
	*p.log = append(*p.log, p.name+" release")
	close(p.ev)
	return nil
}

// TestPinnedPartsOrder checks newPinned's bookkeeping with fake parts (no
// kernel, no pins; it takes milliseconds in the VM too): the network rules
// of a pinned id the LSM did not adopt (its cgroup is gone) are removed at
// open; Claim reaches both parts; Release releases both and closes
// neither. The real pinned path (backend.Open with a PinPath on BPF LSM:
// pins kept across a SIGKILL of the agent, adopted by the next one) is
// agent.TestAgentCrash, in the VM harness.
func TestPinnedPartsOrder(t *testing.T) {
	var log []string
	files := &pinnedPart{part: newPart("files", &log), adopted: []enforce.Sandbox{{ID: 2, Name: "s2-p9"}}}
	net := &pinnedPart{part: newPart("net", &log), adopted: []enforce.Sandbox{{ID: 2}, {ID: 5}}}
	p, err := newPinned(files, net)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"net remove"}; !slices.Equal(log, want) {
		t.Fatalf("at open: %v, want %v (id 5 only)", log, want)
	}
	if got := p.Adopted(); len(got) != 1 || got[0].ID != 2 {
		t.Fatalf("Adopted = %+v", got)
	}
	log = nil
	if err := p.Claim(&enforce.Sandbox{ID: 2}); err != nil {
		t.Fatal(err)
	}
	if err := p.Release(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"files claim", "net claim", "files release", "net release"}; !slices.Equal(log, want) {
		t.Fatalf("%v, want %v", log, want)
	}
	if _, ok := <-p.Events(); ok {
		t.Fatal("Events open after Release")
	}
}
