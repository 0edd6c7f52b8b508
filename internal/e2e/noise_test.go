//go:build linux

package e2e

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A refused connect to a unix name where no socket exists (glibc's
// /var/run/nscd/socket on a machine without nscd) is refused but neither
// printed, streamed, recorded nor counted; a refused connect to a live
// listener outside the sandbox is all of those (issue 11, noise).
func TestE2EUnreachableUnixIsQuiet(t *testing.T) {
	eachBackend(t, func(t *testing.T, w *world) {
		w.defaults()
		dir := t.TempDir()
		live := filepath.Join(dir, "live.sock")
		ln, err := net.Listen("unix", live)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		file := filepath.Join(dir, "not-a-socket")
		os.WriteFile(file, nil, 0o644)
		self, _ := os.Executable()
		w.env = append(w.env, helperEnv+"=probe")
		missing := filepath.Join(dir, "nscd", "socket")
		r := w.run(nil, self, "unix:"+missing, "unix:"+file, "unix:"+live)
		// The fanotify backend's program leads a refused path nowhere
		// (ENOENT, docs/network.md); the LSM backend refuses the socket.
		refused := "EPERM"
		if w.backend == "fanotify" {
			refused = "ENOENT"
		}
		for _, line := range []string{"unix " + missing + " ", "unix " + file + " ", "unix " + live + " " + refused} {
			if !strings.Contains(r.stdout, line) {
				t.Errorf("probe output lacks %q (every connect is refused or fails): %s", line, r)
			}
		}
		if strings.Contains(r.stdout, "unix "+missing+" ok") || strings.Contains(r.stdout, "unix "+file+" ok") {
			t.Errorf("a connect succeeded: %s", r)
		}
		if len(r.events) != 1 || r.events[0].Path != live || r.events[0].Op != "unix" {
			t.Errorf("want exactly one event, for the live listener %s: %+v", live, r.events)
		}
		if strings.Contains(r.stderr, missing) || strings.Contains(r.stderr, file) {
			t.Errorf("run printed an unreachable name: %s", r)
		}
		if !strings.Contains(r.stderr, "aigate: blocked unix "+live) || !strings.Contains(r.stderr, "1 operation blocked (1 unix)") {
			t.Errorf("run did not report the live listener alone: %s", r)
		}
	})
}

// The go caches `make` exports for its builds under sudo (Makefile) are
// the test's, not the user's: the harness does not hand them to run, which
// would otherwise warn on every command that it keeps them. A user who set
// GOCACHE still gets the warning (TestCacheEnv in internal/run).
func TestE2EMakesGoCachesAreNotTheUsers(t *testing.T) {
	t.Setenv("GOCACHE", filepath.Join(t.TempDir(), "go-build"))
	t.Setenv("GOMODCACHE", filepath.Join(t.TempDir(), "go-mod"))
	eachBackend(t, func(t *testing.T, w *world) {
		w.defaults()
		r := w.run(nil, "true")
		if r.code != 0 {
			t.Fatalf("aigate run -- true: %s", r)
		}
		if strings.Contains(r.stderr, "GOCACHE") || strings.Contains(r.stderr, "GOMODCACHE") {
			t.Errorf("run warned about the harness's go caches: %s", r)
		}
	})
}
