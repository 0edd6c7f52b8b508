//go:build linux

package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aigate-dev/aigate/internal/api"
	"github.com/aigate-dev/aigate/internal/testutil"
)

// In the emulated VM, loading and verifying the BPF-LSM objects is almost
// all of an `aigate run --backend lsm` with an embedded agent (9-21 s of
// guest time per run on 6.1, four times that on 6.12; 1-6 s through a
// running agent). There, the lsm scenarios talk to one long-lived
// `aigate agent --backend lsm` started once per test binary, as runs on a
// machine with `sudo aigate setup` do; a run still creates, enforces and
// ends its own sandbox through it. A scenario about the embedded agent
// itself (its descriptors in the process that forks the command) asks for
// one with embedded().
var sharedAgent struct {
	once sync.Once
	dir  string
	sock string
	// metrics is where the agent serves /metrics: a run through it
	// counts there, not at its own --metrics-addr.
	metrics string
	cmd     *exec.Cmd
	log     testutil.SyncBuffer
	err     error
}

// useSharedAgent reports whether the worlds of backend talk to the shared
// agent: the lsm backend inside the VM.
func useSharedAgent(backend string) bool { return backend == "lsm" && inVM() }

// sharedAgentSocket starts the shared agent on first use and returns its
// socket.
func sharedAgentSocket(t *testing.T) string {
	t.Helper()
	sharedAgent.once.Do(func() { sharedAgent.err = startSharedAgent(binary(t)) })
	if sharedAgent.err != nil {
		t.Fatalf("the shared lsm agent: %v", sharedAgent.err)
	}
	if sharedAgent.cmd.ProcessState != nil || ProcessGone(sharedAgent.cmd.Process.Pid) {
		t.Fatalf("the shared lsm agent died:\n%s", sharedAgent.log.String())
	}
	return sharedAgent.sock
}

// agentStartLimit bounds the shared agent's start: loading and verifying
// every BPF-LSM program took 12-41 s of an emulated guest on a busy host,
// and over two minutes for 6.12 at a host load of 24 on two CPUs.
const agentStartLimit = 6 * time.Minute

func startSharedAgent(bin string) error {
	dir, err := os.MkdirTemp("", "aigate-e2e-agent-")
	if err != nil {
		return err
	}
	sharedAgent.dir = dir
	sharedAgent.sock = filepath.Join(dir, "aigate.sock")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	metrics := ln.Addr().String()
	ln.Close()
	sharedAgent.metrics = metrics
	// Its trust and policy records go with its directory, not into the
	// machine's /var/lib/aigate/trust.
	cmd := exec.Command(bin, "agent", "--socket", sharedAgent.sock, "--metrics-addr", metrics, "--backend", "lsm", "--pin-dir", "",
		"--trust-dir", filepath.Join(dir, "trust"))
	// Not the test's AIGATE_ variables (a socket, a config), nor the
	// worlds' socket: world.processes must not count it as a world's.
	cmd.Env = CleanEnv(os.Environ())
	cmd.Stdout, cmd.Stderr = &sharedAgent.log, &sharedAgent.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	sharedAgent.cmd = cmd
	c := api.NewClient(sharedAgent.sock)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := c.Status(ctx)
		cancel()
		if err == nil {
			fmt.Fprintf(os.Stderr, "e2e: the shared lsm agent answered after %v\n", time.Since(start).Round(time.Millisecond))
			return nil
		}
		if time.Since(start) > agentStartLimit || ProcessGone(cmd.Process.Pid) {
			return fmt.Errorf("it did not answer on %s: %v\n%s", sharedAgent.sock, err, sharedAgent.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sharedAgentPID is the shared agent's pid, 0 when none runs: it owns the
// sandboxes it creates, which must be gone after each run.
func sharedAgentPID() int {
	if sharedAgent.cmd == nil {
		return 0
	}
	return sharedAgent.cmd.Process.Pid
}

// stopSharedAgent ends the shared agent at the end of the test binary; it
// must leave neither sandboxes nor processes.
func stopSharedAgent() {
	if sharedAgent.cmd == nil {
		return
	}
	_ = sharedAgent.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = sharedAgent.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-sharedAgent.cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	os.RemoveAll(sharedAgent.dir)
}

// embedded makes this world's lsm runs start their own agent, as a run
// does on a machine without `aigate setup`, also in the VM.
func (w *world) embedded() {
	w.shared = false
	w.sock = filepath.Join(filepath.Dir(w.events), "aigate.sock")
	w.setEnv(api.SocketEnv, w.sock)
}

// setEnv replaces (or adds) one variable of the world's environment.
func (w *world) setEnv(k, v string) {
	for i, kv := range w.env {
		if len(kv) > len(k) && kv[:len(k)+1] == k+"=" {
			w.env[i] = k + "=" + v
			return
		}
	}
	w.env = append(w.env, k+"="+v)
}
