//go:build linux

package loader

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// ideLockRule is the flag of the rule id in the event of a loopback
// connection refused because an IDE lock file names its port (the C enum
// aigate_rule_flag, enforce.IDELockRule): the low 16 bits are the port,
// and the id names no rule of the policy.
const ideLockRule = uint32(kernelAigateRuleFlagAIGATE_RULE_IDE_LOCK)

// GuardIDEPort makes the ingress program of the sandbox in cgroupID drop
// loopback connections to its listening sockets on port, with an event
// whose rule id is ideLockRule|port: a lock file in Claude Code's ide/
// directory names the port, and a claude outside would connect to it.
// Writing a port already guarded is a no-op.
func (n *Net) GuardIDEPort(cgroupID uint64, port uint16) error {
	k := netIdePortKey{CgroupId: cgroupID, Port: uint32(port)}
	if err := n.objs.IdePorts.Update(&k, ideLockRule|uint32(port), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("guard IDE lock port %d of sandbox cgroup %d: %w", port, cgroupID, err)
	}
	return nil
}

// IDEPorts returns the ports guarded for the sandbox in cgroupID.
func (n *Net) IDEPorts(cgroupID uint64) ([]uint16, error) {
	keys, err := keysOf[netIdePortKey, uint32](n.objs.IdePorts, func(k *netIdePortKey) bool { return k.CgroupId == cgroupID })
	if err != nil {
		return nil, fmt.Errorf("read IDE lock ports of sandbox cgroup %d: %w", cgroupID, err)
	}
	ports := make([]uint16, 0, len(keys))
	for _, k := range keys {
		ports = append(ports, uint16(k.Port))
	}
	return ports, nil
}

// removeIDEPorts deletes every port guarded for the sandbox in cgroupID.
func (n *Net) removeIDEPorts(cgroupID uint64) error {
	keys, err := keysOf[netIdePortKey, uint32](n.objs.IdePorts, func(k *netIdePortKey) bool { return k.CgroupId == cgroupID })
	if err == nil {
		err = deleteKeys(n.objs.IdePorts, keys)
	}
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("remove IDE lock ports of sandbox cgroup %d: %w", cgroupID, err)
	}
	return nil
}
