//go:build linux

package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/cgroup"
)

// BenchmarkFavorDynmods runs the tool's move, fork, thread and make items
// in a test binary, so that vmtest can run them in a guest whose kernel is
// not the host's (each kernel changes how favordynmods works):
//
//	make build
//	go run ./vmtest --kernel 6.12 --host-root --bin bin/aigate --pkg ./bench/dynmods \
//	    --env AIGATE_BENCH_DYNMODS=1 --env AIGATE_DYNMODS_AIGATE=/usr/local/bin/aigate -- \
//	    -test.run '^$' -test.bench FavorDynmods -test.benchtime 1x
//
// With AIGATE_DYNMODS_AIGATE naming an aigate binary it also times
// `aigate run -- true` through an agent it starts. It changes the machine's cgroup v2 options (and puts them back), so it
// runs only when AIGATE_BENCH_DYNMODS is set, as root.
func BenchmarkFavorDynmods(b *testing.B) {
	if os.Getenv("AIGATE_BENCH_DYNMODS") == "" {
		// skip-ok: a benchmark, run only when asked: it changes a machine-wide kernel option.
		b.Skip("set AIGATE_BENCH_DYNMODS=1 to toggle the machine's favordynmods (as root)")
	}
	orig, err := cgroup.ReadFavorDynmods()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := cgroup.SetFavorDynmods(orig.On); err != nil {
			b.Errorf("restore favordynmods=%v: %v", orig.On, err)
		}
	})
	only := "move,fork,thread"
	if _, err := os.Stat("/usr/bin/make"); err == nil {
		only += ",make"
	}
	run := ""
	if bin := os.Getenv("AIGATE_DYNMODS_AIGATE"); bin != "" {
		// No bwrap beside it: in vmtest's guest the root is the
		// initramfs, where bwrap's pivot_root fails (EINVAL).
		run = startAgent(b, bin)
		only += ",run"
	}
	for range b.N {
		if err := measure(20, run, "", only); err != nil {
			b.Fatal(err)
		}
	}
}

// startAgent starts `bin agent` with its socket and trust records in a
// temporary directory and returns the run case for it.
func startAgent(b *testing.B, bin string) string {
	dir := b.TempDir()
	sock := filepath.Join(dir, "agent.sock")
	home := filepath.Join(dir, "home")
	if err := os.MkdirAll(filepath.Join(home, "proj"), 0o755); err != nil {
		b.Fatal(err)
	}
	var log bytes.Buffer
	agent := exec.Command(bin, "agent", "--backend", "auto", "--socket", sock, "--metrics-addr", "", "--trust-dir", filepath.Join(dir, "trust"), "--log-level", "error")
	agent.Stdout, agent.Stderr = &log, &log
	// A benchmark killed by its timeout must not leave an agent behind.
	agent.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := agent.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = agent.Process.Signal(syscall.SIGTERM)
		_ = agent.Wait()
	})
	// Loading the BPF-LSM programs takes a while in an emulated guest.
	for range 1800 {
		if _, err := os.Stat(sock); err == nil {
			return "AIGATE_SOCKET=" + sock + " HOME=" + home + " " + bin + " run -- true"
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.Fatalf("the agent did not start: %s", log.String())
	return ""
}
