//go:build linux

package agent

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/launch"
	"github.com/aigate-dev/aigate/internal/sandbox"
	"github.com/aigate-dev/aigate/internal/testutil"
	"github.com/aigate-dev/aigate/internal/testutil/testcgroup"
)

// pinFake is a fake backend whose sandboxes outlive the agent, as the
// pinned BPF-LSM backend's do: Adopted returns what a test says the pins
// held, Claim records the policy it was handed.
type pinFake struct {
	*fakeBackend
	adopted []enforce.Sandbox
	claimed map[uint32]*enforce.Sandbox
}

func newPinFake() *pinFake {
	return &pinFake{fakeBackend: newFake(), claimed: map[uint32]*enforce.Sandbox{}}
}

func (p *pinFake) PinDir() string             { return "/sys/fs/bpf/test" }
func (p *pinFake) Adopted() []enforce.Sandbox { return p.adopted }
func (p *pinFake) Release() error             { return p.fakeBackend.Close() }
func (p *pinFake) Claim(sb *enforce.Sandbox) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := *sb
	p.claimed[sb.ID] = &c
	p.added[sb.ID] = c
	return nil
}

// With a pinning backend the agent keeps a record per sandbox; a new agent
// adopts a pinned sandbox by its record (same name and owner, policy
// recompiled and claimed, removed when its last process exits, record
// too), and ends one it has no record of (its process killed, then its
// enforcement and cgroup removed).
func TestAdoptRecordedSandbox(t *testing.T) {
	testutil.HostOnly(t)
	parent := testParent(t)
	records := filepath.Join(t.TempDir(), "sandboxes")
	be1 := newPinFake()
	a1, err := New(Config{Backend: be1, Socket: filepath.Join(t.TempDir(), "a1.sock"), Parent: parent, Log: testLog(t), Records: records})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ctx1, stop1 := context.WithCancel(ctx)
	served1 := make(chan error, 1)
	go func() { served1 <- a1.Serve(ctx1) }()
	req := createReq(t)
	req.Global = &api.File{Path: "/home/u/.aigate/config.yaml", Data: []byte("deny_read:\n  - \"**/.env\"\n")}
	s, err := api.NewClient(a1.Socket()).CreateSandbox(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	child, err := launch.Start(s, exec.Command("sleep", "60"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { child.Signal(syscall.SIGKILL); child.Wait() })
	name := s.Sandbox.Name
	recPath := filepath.Join(records, name+".json")
	fi, err := os.Stat(recPath)
	if err != nil {
		t.Fatalf("no record: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("record mode %v, want 0600", fi.Mode().Perm())
	}
	var rec record
	if data, err := os.ReadFile(recPath); err != nil || json.Unmarshal(data, &rec) != nil || rec.Owner != uint32(os.Getuid()) || rec.Request.Global == nil {
		t.Fatalf("record %+v, %v", rec, err)
	}
	pinned, ok := be1.sandbox(s.Sandbox.ID)
	if !ok {
		t.Fatal("the backend does not have the sandbox")
	}

	// The agent "dies": it forgets its sandboxes without ending them, as
	// a killed one does (the pins keep enforcing them).
	a1.mu.Lock()
	for _, b := range a1.boxes {
		b.once.Do(func() {}) // nothing will end it, nor remove its record
		close(b.gone)
	}
	a1.mu.Unlock()
	a1.closeAdopted()
	stop1()
	if err := <-served1; err != nil {
		t.Fatal(err)
	}
	if err := a1.Close(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := os.Stat(recPath); err != nil {
		t.Fatalf("the record went with the agent: %v", err)
	}

	// A sandbox in the pins of which there is no record.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	g, err := cgroup.Create(parent, sandbox.Name(7, dead.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	_, reaped := testcgroup.StartIn(t, g, "sleep", "60")

	be2 := newPinFake()
	unrecorded := enforce.Sandbox{ID: 7, Name: filepath.Base(g.Path), CgroupID: g.ID, CgroupPath: g.Path}
	pinned.Policy = nil // the pins do not hold it
	be2.adopted = []enforce.Sandbox{pinned, unrecorded}
	be2.added[pinned.ID], be2.added[7] = pinned, unrecorded
	a2, err := New(Config{Backend: be2, Socket: filepath.Join(t.TempDir(), "a2.sock"), Parent: parent, Log: testLog(t), Records: records})
	if err != nil {
		t.Fatal(err)
	}
	testutil.Serve(t, a2.Serve, a2.Close)

	select {
	case <-reaped:
	case <-time.After(5 * time.Second):
		t.Fatal("the unrecorded sandbox's process was not killed")
	}
	if _, err := os.Stat(g.Path); !os.IsNotExist(err) {
		t.Errorf("the unrecorded sandbox's cgroup is still there: %v", err)
	}
	c := api.NewClient(a2.Socket())
	list, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Name != name || list[0].Owner != uint32(os.Getuid()) || !list[0].Placed || list[0].Procs != 1 {
		t.Fatalf("list after adoption: %+v", list)
	}
	cl := be2.claimed[pinned.ID]
	if cl == nil || cl.Policy == nil || len(cl.Policy.Rules) == 0 || cl.Home != req.Home {
		t.Fatalf("claimed %+v, want the recompiled policy and the record's home", cl)
	}
	be2.mu.Lock()
	removed := slices.Clone(be2.removed)
	be2.mu.Unlock()
	if !slices.Equal(removed, []uint32{7}) {
		t.Fatalf("removed from the backend: %v, want [7]", removed)
	}

	// Its last process exits: the adopted sandbox ends like any other.
	child.Signal(syscall.SIGKILL)
	waitFor(t, "the adopted sandbox ends when empty", func() bool {
		l, err := c.List(ctx)
		return err == nil && len(l) == 0
	})
	// The record goes just after the sandbox leaves the list (end()).
	waitFor(t, "the record of the ended sandbox is removed", func() bool {
		_, err := os.Stat(recPath)
		return os.IsNotExist(err)
	})
	if _, err := os.Stat(pinned.CgroupPath); !os.IsNotExist(err) {
		t.Errorf("cgroup still there: %v", err)
	}
}
