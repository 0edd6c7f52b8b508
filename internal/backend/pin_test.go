//go:build linux

package backend

import (
	"context"
	"slices"
	"testing"

	"github.com/aigate-dev/aigate/internal/enforce"
)

// The agent adopts sandboxes through this interface.
var _ enforce.Pinner = (*Pinned)(nil)

// pinnedPart is a fake part that pins: the LSM side (Adopted, Claim) and
// the egress side (Pinned, Adopt) in one type, each test using its half.
type pinnedPart struct {
	*part
	adopted []enforce.Sandbox
	pinned  []uint32
}

func (p *pinnedPart) PinDir() string             { return "" }
func (p *pinnedPart) Adopted() []enforce.Sandbox { return p.adopted }
func (p *pinnedPart) Pinned() []uint32           { return p.pinned }
func (p *pinnedPart) Claim(*enforce.Sandbox) error {
	*p.log = append(*p.log, p.name+" claim")
	return nil
}
func (p *pinnedPart) Adopt(context.Context, *enforce.Sandbox) error {
	*p.log = append(*p.log, p.name+" adopt")
	return nil
}
func (p *pinnedPart) Release() error {
	*p.log = append(*p.log, p.name+" release")
	close(p.ev)
	return nil
}

// The network rules of a pinned id the LSM did not adopt (its cgroup is
// gone) are removed at open; Claim reaches both parts; Release releases
// both and closes neither.
func TestPinnedComposite(t *testing.T) {
	var log []string
	files := &pinnedPart{part: newPart("files", &log), adopted: []enforce.Sandbox{{ID: 2, Name: "s2-p9"}}}
	net := &pinnedPart{part: newPart("net", &log), pinned: []uint32{2, 5}}
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
	if want := []string{"files claim", "net adopt", "files release", "net release"}; !slices.Equal(log, want) {
		t.Fatalf("%v, want %v", log, want)
	}
	if _, ok := <-p.Events(); ok {
		t.Fatal("Events open after Release")
	}
}
