//go:build linux

package fanotify

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/policy"
)

// TestIgnoreMasksStopWithSandbox: the ignore masks a sandbox's plan set in
// the background stop when the sandbox is removed; an embedded run from a
// large home went on setting tens of thousands after its command ended.
func TestIgnoreMasksStopWithSandbox(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	e := newEnv(t, func(o *Options) {
		o.beforeIgnoreBatch = func() {
			once.Do(func() { close(started) })
			<-release
		}
	})
	for i := range 20 {
		e.write(filepath.Join(e.home, "docs", fmt.Sprintf("f%d.txt", i)), "x")
	}
	p := policy.Policy{DenyRead: rules(".env")}
	c, err := policy.Compile(&p, policy.Env{Home: e.home, ProjectRoot: e.project})
	if err != nil {
		t.Fatal(err)
	}
	g, err := cgroup.Create("aigate-test", fmt.Sprintf("ign%d-%d", os.Getpid(), time.Now().UnixNano()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := g.Remove(); err != nil {
			t.Error(err)
		}
		_ = os.Remove(filepath.Dir(g.Path))
	})
	sb := &enforce.Sandbox{ID: 1, Name: "sb1", CgroupID: g.ID, CgroupPath: g.Path, Policy: c, Mode: c.Mode}
	if err := e.b.Add(context.Background(), sb); err != nil {
		t.Fatal(err)
	}
	e.b.mu.RLock()
	unrelated := len(e.b.sandboxes[1].plan.unrelated)
	e.b.mu.RUnlock()
	if unrelated == 0 {
		close(release)
		t.Fatal("the plan has no unrelated files: the test proves nothing")
	}
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		close(release)
		t.Fatal("no ignore masks were set in the background")
	}
	if err := e.b.Remove(1); err != nil {
		t.Error(err)
	}
	close(release)
	e.b.ignoring.Wait()
	if _, ignored := e.b.marks.counts(); ignored != 0 {
		t.Fatalf("%d ignore masks set after the sandbox was removed, want 0", ignored)
	}
}
