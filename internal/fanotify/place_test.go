//go:build linux

package fanotify

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/cgroup"
	"github.com/aigate-dev/aigate/internal/enforce"
	"github.com/aigate-dev/aigate/internal/policy"
)

// TestPlaceByID: openers are placed the same by their cgroup id (Linux
// 6.13+, place.go) as by /proc/TID/cgroup: inside a sandbox's cgroup and
// below it refused, outside allowed. A cgroup placed as outside becomes a
// sandbox's when one is added on it, and outside again when it is
// removed: the cache of placements by id must not keep the old answer.
func TestPlaceByID(t *testing.T) {
	for _, byProc := range []bool{false, true} {
		name := map[bool]string{false: "by-id", true: "by-proc"}[byProc]
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, func(o *Options) { o.noPlaceByID = byProc })
			secret := e.write(filepath.Join(e.project, ".env"), "TOKEN=x")
			s := e.sandbox(policy.Policy{DenyRead: rules(".env")})

			if got := e.run(s, "open", secret, "r"); got != "EPERM" {
				t.Fatalf("open inside: %s, want EPERM", got)
			}
			if got := e.run(s, "subcg", "below", secret); got != "EPERM" {
				t.Fatalf("open in a cgroup below the sandbox's: %s, want EPERM", got)
			}
			if got := e.run(nil, "open", secret, "r"); got != "ok" {
				t.Fatalf("open outside: %s, want ok", got)
			}

			// A cgroup that is no sandbox's yet: its opener is outside.
			g, err := cgroup.Create("aigate-test", fmt.Sprintf("fanplace%d-%d", os.Getpid(), time.Now().UnixNano()))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = g.Remove() })
			later := &sbox{Sandbox: &enforce.Sandbox{ID: 90, Name: "later", CgroupID: g.ID, CgroupPath: g.Path, Policy: s.Policy, Mode: s.Mode}, g: g}
			if got := e.run(later, "open", secret, "r"); got != "ok" {
				t.Fatalf("open in a cgroup of no sandbox: %s, want ok", got)
			}
			if err := e.b.Add(context.Background(), later.Sandbox); err != nil {
				t.Fatal(err)
			}
			if got := e.run(later, "open", secret, "r"); got != "EPERM" {
				t.Fatalf("open in the cgroup once a sandbox's: %s, want EPERM", got)
			}
			if err := e.b.Remove(later.ID); err != nil {
				t.Fatal(err)
			}
			if got := e.run(later, "open", secret, "r"); got != "ok" {
				t.Fatalf("open in the cgroup once its sandbox is removed: %s, want ok", got)
			}

			e.b.mu.RLock()
			cached := len(e.b.placedIDs)
			e.b.mu.RUnlock()
			switch {
			case byProc && cached != 0:
				t.Errorf("%d placements by id with the id path off", cached)
			case !byProc && e.b.noPlaceByID.Load():
				// Before 6.13: every opener was placed by /proc, as by-proc.
				t.Logf("this kernel cannot tell a thread's cgroup id (PIDFD_GET_INFO, Linux 6.13): placed by /proc")
			case !byProc && cached == 0:
				t.Errorf("no placement by id was made")
			}
		})
	}
}
