//go:build linux

package loader

import (
	"errors"
	"testing"

	"github.com/aigate-dev/aigate/internal/testutil"
)

// TestNetVerifierFloors: no network program is pruned to a trivial body by
// this kernel's verifier (see testutil.CheckVerifierFloors): the cgroup
// programs and the receive check on the host and in the VM, the unix-socket
// ones where the kernel has their hooks (6.7+).
func TestNetVerifierFloors(t *testing.T) {
	testutil.RequireRoot(t)
	spec, err := loadNet()
	if err != nil {
		t.Fatal(err)
	}
	testutil.CheckVerifierFloors(t, spec, map[string]int{
		// Verified on 6.1 / 6.12 / the 6.18 host.
		"aigate_connect4":     1150, // 2424 / 2342 / 2476
		"aigate_connect6":     2050, // 4177 / 4701 / 4181
		"aigate_ingress":      1150, // 2342 / 2346 / 2341
		"aigate_recvmsg4":     690,  // 1392 / 1392 / 1391
		"aigate_recvmsg6":     900,  // 1815 / 1815 / 1814
		"aigate_sendmsg4":     1100, // 2362 / 2256 / 2249
		"aigate_sendmsg6":     2000, // 4088 / 4508 / 4027
		"aigate_sock_create":  880,  // 2384 / 1777 / 1772
		"aigate_sock_release": 12,   // 25 / 25 / 25: it only forgets the socket
	})

	// The receive check loads everywhere (attaching needs kprobes).
	spec, err = loadNetRecv()
	if err != nil {
		t.Fatal(err)
	}
	testutil.CheckVerifierFloors(t, spec, map[string]int{
		"aigate_file_receive": 1350, // 2921 / 2753 / 2751
	})

	// The Landlock refusal reporter loads everywhere (tp_btf); the loader
	// uses it where the unix-socket object is not loaded.
	spec, err = loadNetRefused()
	if err != nil {
		t.Fatal(err)
	}
	testutil.CheckVerifierFloors(t, spec, map[string]int{
		"aigate_refused_exit": 3900, // 8248 / 7927 / 7922
	})

	err = ProbeUnixSockets()
	if errors.Is(err, ErrNoUnixHooks) {
		t.Logf("unix-socket programs not checked: %v (the loader does not load them here)", err)
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	spec, err = loadNetUnix()
	if err != nil {
		t.Fatal(err)
	}
	testutil.CheckVerifierFloors(t, spec, map[string]int{
		// Verified on 6.12 / the 6.18 host.
		"aigate_connect_unix":   12500, // 25252 / 25133
		"aigate_sendmsg_unix":   12500, // 25252 / 25133
		"aigate_unix_bind_exit": 2900,  // 20675 / 25768 (5797 / 5843 before refused.h)
	})
}
