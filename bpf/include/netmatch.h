/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Egress matching for the cgroup sock_addr programs: per-policy settings and
 * LPM tries of allowed and denied prefixes. The verdict implements exactly
 * policy.NetPolicy's rule (see internal/policy/types.go):
 *
 *   refused when the destination matches Deny; else, for a loopback
 *   destination, allowed when allow_loopback is all, when it matches Allow
 *   (a listed port), or when allow_loopback is own and the listener the
 *   connection would reach belongs to the sandbox (the caller asks the
 *   kernel's socket tables, see own_listener in sockaddr.c), refused
 *   otherwise in both modes; any other destination is allowed when the mode
 *   is allow or when it matches Allow (IP entries and the addresses resolved
 *   for allowed domains), refused otherwise.
 *
 * Ports: every trie key carries a port, 0 meaning "any port". A destination
 * is looked up twice, with its own port and with port 0; both keys match the
 * policy id and the port in full and the address by prefix, so one lookup
 * finds the longest prefix listed for that port and the other the longest
 * listed for any port. To report the same rule as the Go matcher (most
 * specific prefix first, a port-specific entry before an any-port one of
 * the same length), a denial takes the longer of the two hits.
 *
 * Loopback is 127.0.0.0/8, ::1 and the unspecified addresses 0.0.0.0 and ::
 * (Linux routes a connect to those to the local host), as in
 * policy.LoopbackPrefixes.
 */
#ifndef AIGATE_NETMATCH_H
#define AIGATE_NETMATCH_H

#include "aigate.h"

#define AIGATE_AF_INET 2
#define AIGATE_AF_INET6 10

/* Value of net_settings, keyed by policy id. */
struct net_settings {
	__u32 deny_rule; /* reported when nothing allowed the destination */
	__u8 mode;       /* AIGATE_NET_ALLOW or AIGATE_NET_DENY */
	__u8 loopback;   /* AIGATE_LOOPBACK_*: which loopback listeners */
	__u8 inbound;    /* 1: listeners may accept connections from other hosts */
	__u8 pad;
	__u32 loopback_rule; /* reported when a loopback destination is refused */
};

struct net_key4 {
	__u32 prefixlen; /* AIGATE_NET_KEY_BITS + address prefix length */
	__u32 policy_id;
	__u32 port; /* host byte order; 0: any port */
	__u8 addr[4];
};

struct net_key6 {
	__u32 prefixlen; /* AIGATE_NET_KEY_BITS + address prefix length */
	__u32 policy_id;
	__u32 port; /* host byte order; 0: any port */
	__u8 addr[16];
};

/* Value of the tries: the rule an entry came from. */
struct net_rule {
	__u32 rule_id;
	__u32 bits; /* address prefix length of the entry */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct net_settings);
} net_policies SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1 << 16);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct net_key4);
	__type(value, struct net_rule);
} net_allow4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1 << 16);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct net_key6);
	__type(value, struct net_rule);
} net_allow6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct net_key4);
	__type(value, struct net_rule);
} net_deny4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct net_key6);
	__type(value, struct net_rule);
} net_deny6 SEC(".maps");

/* bpf2go -type only sees types used in BTF. */
const struct net_key4 *unused_net_key4 __attribute__((unused));
const struct net_key6 *unused_net_key6 __attribute__((unused));

/* A destination as the matcher sees it: v4-mapped IPv6 already unmapped. */
struct net_dst {
	__u32 family; /* AIGATE_AF_INET or AIGATE_AF_INET6 */
	__u16 port;   /* host byte order */
	__u8 addr[16]; /* network byte order; IPv4 in the first 4 bytes */
};

/* longer picks the more specific of a port-specific and an any-port hit. */
static __always_inline struct net_rule *longer(struct net_rule *port, struct net_rule *any)
{
	if (!port)
		return any;
	if (!any)
		return port;
	return any->bits > port->bits ? any : port;
}

/* net_lookup4 finds the most specific entry of trie matching d. */
static __always_inline struct net_rule *net_lookup4(void *trie, __u32 policy_id,
						    const struct net_dst *d)
{
	struct net_key4 k = {
		.prefixlen = AIGATE_NET_KEY_BITS + 32,
		.policy_id = policy_id,
		.port = d->port,
	};
	__builtin_memcpy(k.addr, d->addr, sizeof(k.addr));
	struct net_rule *port = bpf_map_lookup_elem(trie, &k);
	k.port = 0;
	return longer(port, bpf_map_lookup_elem(trie, &k));
}

static __always_inline struct net_rule *net_lookup6(void *trie, __u32 policy_id,
						    const struct net_dst *d)
{
	struct net_key6 k = {
		.prefixlen = AIGATE_NET_KEY_BITS + 128,
		.policy_id = policy_id,
		.port = d->port,
	};
	__builtin_memcpy(k.addr, d->addr, sizeof(k.addr));
	struct net_rule *port = bpf_map_lookup_elem(trie, &k);
	k.port = 0;
	return longer(port, bpf_map_lookup_elem(trie, &k));
}

static __always_inline int net_is_loopback(const struct net_dst *d)
{
	if (d->family == AIGATE_AF_INET)
		return d->addr[0] == 127 || (!d->addr[0] && !d->addr[1] && !d->addr[2] && !d->addr[3]);
	for (int i = 0; i < 15; i++)
		if (d->addr[i])
			return 0;
	return d->addr[15] <= 1; /* :: or ::1 */
}

/*
 * net_denied returns 1 and sets *rule when the policy refuses d, 0 when it
 * allows it; *entry is set to 1 when an allow-trie entry (an allow_net
 * prefix or an address learned for a domain) is what allowed it, and
 * *ask_owner to 1 when d is refused only because it is on loopback: the
 * caller then allows it if the listener is the sandbox's own.
 */
static __always_inline int net_denied(const struct net_settings *s, __u32 policy_id,
				      const struct net_dst *d, __u32 *rule, int *entry,
				      int *ask_owner)
{
	struct net_rule *r;

	if (d->family == AIGATE_AF_INET)
		r = net_lookup4(&net_deny4, policy_id, d);
	else
		r = net_lookup6(&net_deny6, policy_id, d);
	if (r) {
		*rule = r->rule_id;
		return 1;
	}
	int loopback = net_is_loopback(d);
	if (loopback && s->loopback == AIGATE_LOOPBACK_ALL)
		return 0;
	if (!loopback && s->mode == AIGATE_NET_ALLOW)
		return 0;
	if (d->family == AIGATE_AF_INET)
		r = net_lookup4(&net_allow4, policy_id, d);
	else
		r = net_lookup6(&net_allow6, policy_id, d);
	if (r) {
		*entry = 1;
		return 0;
	}
	if (loopback) {
		*rule = s->loopback_rule;
		*ask_owner = s->loopback == AIGATE_LOOPBACK_OWN;
		return 1;
	}
	*rule = s->deny_rule;
	return 1;
}

#endif /* AIGATE_NETMATCH_H */
