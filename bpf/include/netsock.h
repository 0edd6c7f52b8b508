/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Per-socket state of the sock_addr programs: where a steered DNS socket
 * really wanted to go, and which learned address a connected socket uses.
 *
 * The state lives in socket local storage, not in a hash keyed by socket
 * cookie: it is freed with the socket, so nothing can evict the original
 * resolver address of a live socket (an evicted entry would make the
 * resolver drop the proxy's reply) and no entry outlives its socket.
 */
#ifndef AIGATE_NETSOCK_H
#define AIGATE_NETSOCK_H

#include "aigate.h"
#include "netmatch.h"

/*
 * Value of dns_proxies, keyed by policy id: the loopback address and port
 * on which the sandbox's DNS proxy serves UDP and TCP. A policy without an
 * entry is not steered.
 */
struct dns_proxy {
	__u32 ip4;    /* network byte order, e.g. 127.0.0.1 */
	__u32 ip6[4]; /* network byte order, e.g. ::1 */
	__u16 port;   /* host byte order */
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct dns_proxy);
} dns_proxies SEC(".maps");

/*
 * dns_proxy_ports maps the port of every sandbox's proxy (host byte order)
 * to the policy it serves: a loopback connect or send to another policy's
 * proxy is refused whatever allow_loopback or allow_net say, so a sandbox
 * cannot ask a proxy that answers by someone else's policy (an audit-mode
 * sandbox's answers every name).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u32);
} dns_proxy_ports SEC(".maps");

/*
 * Key of addr_use: a learned (allow-trie) address for one policy, counted
 * while connected sockets use it, so that the DNS proxy does not expire an
 * address that a live connection came through.
 */
struct addr_use_key {
	__u32 policy_id;
	__u32 family; /* AIGATE_AF_INET or AIGATE_AF_INET6; v4-mapped unmapped */
	__u8 addr[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 16);
	__type(key, struct addr_use_key);
	__type(value, __s64);
} addr_use SEC(".maps");

/*
 * addr_use_policies holds every policy that may have entries in addr_use:
 * marked before a policy's first entry goes in, so that removing a policy
 * walks the whole of addr_use (every bucket, whether or not it holds
 * anything) only when it may find one of its entries there
 * (internal/loader/net_dns.go). Most sandboxes never connect anywhere.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096); /* the sandbox table's */
	__type(key, __u32);	   /* policy id */
	__type(value, __u8);
} addr_use_policies SEC(".maps");

struct sock_state {
	/* The resolver a steered socket addressed, as the caller wrote it. */
	__u32 dns_family; /* 0: not steered */
	__u32 dns_ip6[4]; /* AF_INET: dns_ip6[0] holds the IPv4 address */
	__u32 dns_port;   /* network byte order, as in bpf_sock_addr */
	/* The address counted in addr_use; use.family 0: none. */
	struct addr_use_key use;
	/*
	 * The sandbox cgroup whose task created the socket (sock_create), 0 for
	 * sockets created outside every sandbox: a loopback connect reaches a
	 * listener of its own sandbox only when this equals its cgroup.
	 */
	__u64 owner;
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sock_state);
} sock_states SEC(".maps");

/* bpf2go -type only sees types used in BTF. */
const struct dns_proxy *unused_dns_proxy __attribute__((unused));
const struct addr_use_key *unused_addr_use_key __attribute__((unused));

static __always_inline void use_add(const struct addr_use_key *k, __s64 delta)
{
	__s64 *n = bpf_map_lookup_elem(&addr_use, k);

	if (n) {
		__sync_fetch_and_add(n, delta);
		return;
	}
	if (delta < 0)
		return; /* userspace dropped the entry: nothing to release */
	/*
	 * Unmarked, the entry would outlive its policy: not counted instead,
	 * which can only let the DNS proxy expire the address sooner.
	 */
	__u8 mark = 1;
	if (bpf_map_update_elem(&addr_use_policies, &k->policy_id, &mark, BPF_ANY))
		return;
	__s64 one = 1;
	if (bpf_map_update_elem(&addr_use, k, &one, BPF_NOEXIST) == 0)
		return;
	/* Another CPU inserted it first. */
	n = bpf_map_lookup_elem(&addr_use, k);
	if (n)
		__sync_fetch_and_add(n, delta);
}

/* sock_use_release stops counting the address st's socket used. */
static __always_inline void sock_use_release(struct sock_state *st)
{
	if (!st->use.family)
		return;
	use_add(&st->use, -1);
	st->use.family = 0;
}

#endif /* AIGATE_NETSOCK_H */
