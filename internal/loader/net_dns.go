//go:build linux

package loader

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// SetDNSProxy steers the DNS of policyID's sandbox to a proxy: every
// connect or sendto to port 53, UDP or TCP, to any resolver address, is
// rewritten to ip4:port (IPv4 and v4-mapped destinations) or ip6:port
// (IPv6 destinations), and the proxy's UDP replies are given the resolver's
// address as their source again. The proxy must serve UDP and TCP on port
// at both addresses, from outside every sandbox (its own sockets are then
// never steered). Calling it again moves the steering; until it is called,
// DNS queries are ordinary destinations checked by the policy.
func (n *Net) SetDNSProxy(policyID uint32, ip4, ip6 netip.Addr, port uint16) error {
	if !ip4.Is4() || !ip6.Is6() || ip6.Is4In6() || port == 0 {
		return fmt.Errorf("steer DNS of policy %d: want an IPv4 address, an IPv6 address and a port, got %s, %s, %d", policyID, ip4, ip6, port)
	}
	v := netDnsProxy{Port: port}
	b4 := ip4.As4()
	v.Ip4 = nativeWord(b4[:])
	b6 := ip6.As16()
	for i := range v.Ip6 {
		v.Ip6[i] = nativeWord(b6[4*i : 4*i+4])
	}
	var old netDnsProxy
	moved := n.objs.DnsProxies.Lookup(policyID, &old) == nil && old.Port != port
	// The port is marked as this policy's before the steering uses it.
	if err := n.objs.DnsProxyPorts.Update(uint32(port), policyID, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("steer DNS of policy %d: mark proxy port %d: %w", policyID, port, err)
	}
	if err := n.objs.DnsProxies.Update(policyID, &v, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("steer DNS of policy %d: %w", policyID, err)
	}
	if moved {
		if err := n.unmarkProxyPort(policyID, old.Port); err != nil {
			return fmt.Errorf("steer DNS of policy %d: %w", policyID, err)
		}
	}
	return nil
}

// unmarkProxyPort forgets that port is policyID's proxy port, unless
// another policy's proxy took it over meanwhile.
func (n *Net) unmarkProxyPort(policyID uint32, port uint16) error {
	var owner uint32
	if err := n.objs.DnsProxyPorts.Lookup(uint32(port), &owner); err != nil || owner != policyID {
		return nil
	}
	err := n.objs.DnsProxyPorts.Delete(uint32(port))
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("unmark proxy port %d: %w", port, err)
	}
	return nil
}

// nativeWord is the u32 whose in-memory bytes are b: how the programs keep
// addresses in network byte order.
func nativeWord(b []byte) uint32 {
	var w uint32
	for i := 3; i >= 0; i-- {
		w = w<<8 | uint32(b[i])
	}
	return w
}

// ClearDNSProxy stops steering policyID's DNS.
func (n *Net) ClearDNSProxy(policyID uint32) error {
	var old netDnsProxy
	had := n.objs.DnsProxies.Lookup(policyID, &old) == nil
	err := n.objs.DnsProxies.Delete(policyID)
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("stop steering DNS of policy %d: %w", policyID, err)
	}
	if had {
		if err := n.unmarkProxyPort(policyID, old.Port); err != nil {
			return fmt.Errorf("stop steering DNS of policy %d: %w", policyID, err)
		}
	}
	return nil
}

// AddrInUse reports whether an open socket of policyID's sandbox is
// connected to addr after an allow-trie entry (an allow_net prefix or an
// address learned for a domain) allowed it. The DNS proxy asks before it
// expires an address, so that a client that reconnects to the address it
// still holds keeps working while its first connection lives. UDP sends
// without connect are not counted.
func (n *Net) AddrInUse(policyID uint32, addr netip.Addr) (bool, error) {
	var cnt int64
	err := n.objs.AddrUse.Lookup(useKey(policyID, addr), &cnt)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read use count of %s: %w", addr, err)
	}
	return cnt > 0, nil
}

func useKey(policyID uint32, addr netip.Addr) netAddrUseKey {
	addr = addr.Unmap()
	k := netAddrUseKey{PolicyId: policyID, Family: unix.AF_INET6}
	if addr.Is4() {
		k.Family = unix.AF_INET
		a := addr.As4()
		copy(k.Addr[:], a[:])
		return k
	}
	k.Addr = addr.As16()
	return k
}

// removeDNS drops policyID's steering and use counts.
func (n *Net) removeDNS(policyID uint32) error {
	var errs []error
	if err := n.ClearDNSProxy(policyID); err != nil {
		errs = append(errs, err)
	}
	_, err := dropMarked[netAddrUseKey, int64](n.objs.AddrUsePolicies, policyID, n.objs.AddrUse,
		func(k *netAddrUseKey) bool { return k.PolicyId == policyID })
	if err != nil {
		errs = append(errs, fmt.Errorf("drop use counts: %w", err))
	}
	return errors.Join(errs...)
}
