//go:build linux

package loader

import (
	"errors"
	"os"
	"runtime"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/aigate-dev/aigate/bench"
	"github.com/aigate-dev/aigate/internal/policy"
)

// BenchmarkSysExit measures what the sys_exit program (the unix-socket
// object's, and the refused object's used where it is absent) adds to the
// system calls of a process outside every sandbox while a sandbox exists
// (so the sandbox-level mask does not short-cut the check):
//
//	ok:    getppid, returning a pid: the result is compared, nothing else
//	eperm: PTRACE_ATTACH of itself, failing with EPERM: a call of
//	       refused.h's list with Landlock's errno, which goes on to the
//	       sandbox check (the dearest path for a process outside)
//
// each against the same calls with no program attached, interleaved over
// bench.Rounds() rounds of b.N calls (the attach in between, outside the
// timed part).
func BenchmarkSysExit(b *testing.B) {
	env := newNetEnv(b)
	n := openNet(b, NetOptions{})
	env.sandbox(n, 1, policy.NetPolicy{Mode: policy.NetAllow}, nil, false)
	progs := map[string]*ebpf.Program{}
	if n.unix != nil {
		progs["unix"] = n.unix.objs.AigateUnixBindExit
	}
	r, err := openRefused(&n.objs)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.close() })
	progs["refused"] = r.objs.AigateRefusedExit
	self := os.Getpid()
	calls := map[string]func() error{
		"ok": func() error { unix.Getppid(); return nil },
		"eperm": func() error {
			if err := unix.PtraceAttach(self); !errors.Is(err, unix.EPERM) {
				return err
			}
			return nil
		},
	}
	for _, pname := range []string{"unix", "refused"} {
		prog := progs[pname]
		if prog == nil {
			continue
		}
		for _, cname := range []string{"ok", "eperm"} {
			call := calls[cname]
			b.Run(pname+"/"+cname, func(b *testing.B) {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				var l link.Link
				detach := func() {
					if l != nil {
						l.Close()
						l = nil
					}
				}
				defer detach()
				res, err := bench.Pair(bench.Rounds(),
					func() (float64, error) { detach(); return bench.Batched(b.N, call) },
					func() (float64, error) {
						if l == nil {
							var err error
							if l, err = link.AttachTracing(link.TracingOptions{Program: prog}); err != nil {
								return 0, err
							}
						}
						return bench.Batched(b.N, call)
					})
				if err != nil {
					b.Fatal(err)
				}
				res.Report(b)
			})
		}
	}
}
