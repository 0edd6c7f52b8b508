//go:build ignore
/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Egress enforcement with cgroup sock_addr programs, attached to each
 * sandbox cgroup (never to the root): connect4/6 see connect(2) for TCP,
 * UDP and ICMP sockets (and TCP Fast Open's sendto); sendmsg4/6 see every
 * sendto/sendmsg that names a destination on an unconnected UDP socket.
 * Returning 0 makes the syscall fail with EPERM.
 *
 * DNS steering: a connect or sendmsg to port 53 (UDP or TCP, any address)
 * from a sandbox whose policy has a dns_proxies entry is rewritten to the
 * sandbox's DNS proxy on loopback; recvmsg4/6 then give the proxy's replies
 * the resolver's address as their source, because resolvers (glibc, Go,
 * musl) drop a reply whose source is not the server they asked.
 *
 * ingress drops connection attempts from other hosts to the sandbox's
 * listening sockets, unless the policy allows inbound connections, and
 * connection attempts over loopback to a port an IDE lock names.
 *
 * sock_create refuses raw sockets, and ICMP "ping" sockets unless the
 * policy allows all egress: ping sockets send with ping_sendmsg, which no
 * sendmsg4/6 program sees. sock_release stops counting the learned address
 * a socket used (see netsock.h).
 *
 * These programs run because the socket belongs to the sandbox cgroup (the
 * cgroup of the task that created it); the sandbox check below still asks
 * about the current task, so a socket handed to a process outside every
 * sandbox is never restricted, and the policy applied is the one of the
 * sandbox the caller runs in.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "sandbox.h"
#include "events.h"
#include "netmatch.h"
#include "netsock.h"
#include "ideport.h"

#define AIGATE_IPPROTO_ICMPV6 58
#define AIGATE_DNS_PORT 53

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline int report(__u64 cgroup_id, const struct sandbox *sb, __u8 op,
				  __u32 rule, __u32 family, const __u8 *addr, __u16 port)
{
	struct event *e = event_start(cgroup_id, sb, AIGATE_KIND_NET, op, rule);

	if (e) {
		e->family = family;
		e->port = port;
		__builtin_memcpy(e->addr, addr, sizeof(e->addr));
		bpf_ringbuf_submit(e, 0);
	}
	return (sb->flags & AIGATE_SB_AUDIT) ? 1 : 0;
}

/*
 * track counts the connected socket as a user of the learned address d
 * (and stops counting the one it used before, for a UDP socket that
 * connects again).
 */
static __always_inline void track(struct bpf_sock_addr *ctx, __u32 policy_id,
				  const struct net_dst *d)
{
	struct sock_state *st = bpf_sk_storage_get(&sock_states, ctx->sk, 0,
						   BPF_SK_STORAGE_GET_F_CREATE);
	if (!st)
		return;
	sock_use_release(st);
	st->use.policy_id = policy_id;
	st->use.family = d->family;
	__builtin_memcpy(st->use.addr, d->addr, sizeof(st->use.addr));
	use_add(&st->use, 1);
}

/*
 * own_listener reports whether the socket that a connect or send to the
 * loopback destination d would reach was created in the sandbox whose
 * cgroup is sandbox_cg (its sock_state.owner, set by sock_create). The
 * kernel's own socket tables answer, so the answer is exact: a server of the
 * sandbox that exits takes its mark with its socket, and an outside process
 * that binds the port afterwards is never the sandbox's. A listener bound to
 * the wildcard address is reached through loopback like one bound to it.
 */
static __always_inline int own_listener(struct bpf_sock_addr *ctx, __u64 sandbox_cg,
					const struct net_dst *d)
{
	struct bpf_sock_tuple t = {};
	struct bpf_sock *sk;
	__u32 size;

	if (d->family == AIGATE_AF_INET) {
		__builtin_memcpy(&t.ipv4.daddr, d->addr, 4);
		/* Linux connects 0.0.0.0 to 127.0.0.1 (ip_route_output_key_hash_rcu). */
		if (!t.ipv4.daddr)
			t.ipv4.daddr = bpf_htonl(0x7f000001);
		t.ipv4.dport = bpf_htons(d->port);
		size = sizeof(t.ipv4);
	} else {
		__builtin_memcpy(t.ipv6.daddr, d->addr, 16);
		/* :: is connected to ::1 (tcp_v6_connect, ip6_datagram_connect). */
		if (!t.ipv6.daddr[0] && !t.ipv6.daddr[1] && !t.ipv6.daddr[2] && !t.ipv6.daddr[3])
			t.ipv6.daddr[3] = bpf_htonl(1);
		t.ipv6.dport = bpf_htons(d->port);
		size = sizeof(t.ipv6);
	}
	__u32 proto = ctx->protocol;
	if (proto == IPPROTO_TCP)
		sk = bpf_sk_lookup_tcp(ctx, &t, size, BPF_F_CURRENT_NETNS, 0);
	else if (proto == IPPROTO_UDP)
		sk = bpf_sk_lookup_udp(ctx, &t, size, BPF_F_CURRENT_NETNS, 0);
	else
		return 0;
	if (!sk)
		return 0;
	struct sock_state *st = bpf_sk_storage_get(&sock_states, sk, 0, 0);
	int own = st && st->owner == sandbox_cg;
	bpf_sk_release(sk);
	return own;
}

/*
 * decide applies the sandbox's policy to d. orig is the address as the
 * caller wrote it (v4-mapped stays IPv6 in the event).
 */
static __always_inline int decide(struct bpf_sock_addr *ctx, __u64 cgroup_id,
				  const struct sandbox *sb, __u8 op, struct net_dst *d,
				  __u32 orig_family, const __u8 *orig)
{
	__u32 policy_id = sb->policy_id;
	struct net_settings *s = bpf_map_lookup_elem(&net_policies, &policy_id);
	__u32 rule = 0;
	int entry = 0, ask_owner = 0;

	/*
	 * A sandbox without network settings is a loader bug or a race while a
	 * sandbox is set up or torn down: fail closed.
	 */
	if (!s)
		return report(cgroup_id, sb, op, rule, orig_family, orig, d->port);
	if (net_is_loopback(d)) {
		__u32 port = d->port;
		__u32 *owner = bpf_map_lookup_elem(&dns_proxy_ports, &port);
		if (owner && *owner != policy_id)
			return report(cgroup_id, sb, op, s->deny_rule, orig_family, orig, d->port);
	}
	if (!net_denied(s, policy_id, d, &rule, &entry, &ask_owner)) {
		if (entry && op == AIGATE_OP_CONNECT)
			track(ctx, policy_id, d);
		return 1;
	}
	if (ask_owner && own_listener(ctx, cgroup_id, d))
		return 1;
	return report(cgroup_id, sb, op, rule, orig_family, orig, d->port);
}

/*
 * steer_state remembers where a steered socket was going; a failure to
 * allocate it still steers (the query cannot leave), the resolver will
 * then only drop the reply.
 */
static __always_inline void steer_state(struct bpf_sock_addr *ctx, __u32 family, __u32 uport)
{
	struct sock_state *st = bpf_sk_storage_get(&sock_states, ctx->sk, 0,
						   BPF_SK_STORAGE_GET_F_CREATE);
	if (!st)
		return;
	st->dns_family = family;
	st->dns_port = uport;
	if (family == AIGATE_AF_INET) {
		st->dns_ip6[0] = ctx->user_ip4;
		return;
	}
	st->dns_ip6[0] = ctx->user_ip6[0];
	st->dns_ip6[1] = ctx->user_ip6[1];
	st->dns_ip6[2] = ctx->user_ip6[2];
	st->dns_ip6[3] = ctx->user_ip6[3];
}

/*
 * dns_proxy_for returns the policy's proxy when the destination port uport
 * (network byte order) makes ctx a DNS query to steer. The callers read
 * ctx->user_port once into uport: clang would otherwise keep &ctx->user_port
 * in a register, and the verifier refuses loads through a modified ctx
 * pointer.
 */
static __always_inline struct dns_proxy *dns_proxy_for(struct bpf_sock_addr *ctx,
						       __u32 uport, __u32 policy_id)
{
	if (uport != bpf_htons(AIGATE_DNS_PORT))
		return NULL;
	__u32 type = ctx->type;
	if (type != SOCK_DGRAM && type != SOCK_STREAM)
		return NULL;
	return bpf_map_lookup_elem(&dns_proxies, &policy_id);
}

/*
 * to_proxy4 reports whether ip4:uport is the policy's proxy. A steered
 * v4-mapped socket sends through udp_sendmsg, which runs sendmsg4 again on
 * the address connect6 rewrote: that second pass must let it through.
 */
static __always_inline int to_proxy4(__u32 policy_id, __u32 ip4, __u32 uport)
{
	struct dns_proxy *p = bpf_map_lookup_elem(&dns_proxies, &policy_id);

	return p && p->ip4 == ip4 && uport == bpf_htons(p->port);
}

static __always_inline int check4(struct bpf_sock_addr *ctx, __u8 op)
{
	__u64 cgroup_id = 0;
	struct sandbox *sb = current_sandbox(&cgroup_id);

	if (!sb)
		return 1;
	__u32 uport = ctx->user_port;
	struct dns_proxy *p = dns_proxy_for(ctx, uport, sb->policy_id);
	if (p) {
		steer_state(ctx, AIGATE_AF_INET, uport);
		ctx->user_ip4 = p->ip4;
		ctx->user_port = bpf_htons(p->port);
		return 1;
	}

	struct net_dst d = {.family = AIGATE_AF_INET};
	__u32 ip = ctx->user_ip4;

	if (to_proxy4(sb->policy_id, ip, uport))
		return 1;

	d.port = bpf_ntohs((__u16)uport);
	__builtin_memcpy(d.addr, &ip, sizeof(ip));
	return decide(ctx, cgroup_id, sb, op, &d, AIGATE_AF_INET, d.addr);
}

static __always_inline int check6(struct bpf_sock_addr *ctx, __u8 op)
{
	__u64 cgroup_id = 0;
	struct sandbox *sb = current_sandbox(&cgroup_id);

	if (!sb)
		return 1;
	__u32 w[4];
	w[0] = ctx->user_ip6[0];
	w[1] = ctx->user_ip6[1];
	w[2] = ctx->user_ip6[2];
	w[3] = ctx->user_ip6[3];
	int mapped = w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0xffff);
	__u32 uport = ctx->user_port;

	struct dns_proxy *p = dns_proxy_for(ctx, uport, sb->policy_id);
	if (p) {
		steer_state(ctx, AIGATE_AF_INET6, uport);
		/* A v4-mapped query stays v4-mapped: the socket may be dual-stack only. */
		if (mapped) {
			ctx->user_ip6[0] = 0;
			ctx->user_ip6[1] = 0;
			ctx->user_ip6[2] = bpf_htonl(0xffff);
			ctx->user_ip6[3] = p->ip4;
		} else {
			ctx->user_ip6[0] = p->ip6[0];
			ctx->user_ip6[1] = p->ip6[1];
			ctx->user_ip6[2] = p->ip6[2];
			ctx->user_ip6[3] = p->ip6[3];
		}
		ctx->user_port = bpf_htons(p->port);
		return 1;
	}

	struct net_dst d = {.family = AIGATE_AF_INET6};
	__u8 orig[16];

	__builtin_memcpy(orig, w, sizeof(orig));
	d.port = bpf_ntohs((__u16)uport);
	/* ::ffff:a.b.c.d reaches a.b.c.d: match it as the IPv4 address. */
	if (mapped) {
		d.family = AIGATE_AF_INET;
		__builtin_memcpy(d.addr, &w[3], 4);
	} else {
		__builtin_memcpy(d.addr, w, sizeof(d.addr));
	}
	return decide(ctx, cgroup_id, sb, op, &d, AIGATE_AF_INET6, orig);
}

SEC("cgroup/connect4")
int aigate_connect4(struct bpf_sock_addr *ctx)
{
	return check4(ctx, AIGATE_OP_CONNECT);
}

SEC("cgroup/connect6")
int aigate_connect6(struct bpf_sock_addr *ctx)
{
	return check6(ctx, AIGATE_OP_CONNECT);
}

SEC("cgroup/sendmsg4")
int aigate_sendmsg4(struct bpf_sock_addr *ctx)
{
	return check4(ctx, AIGATE_OP_SEND);
}

SEC("cgroup/sendmsg6")
int aigate_sendmsg6(struct bpf_sock_addr *ctx)
{
	return check6(ctx, AIGATE_OP_SEND);
}

/*
 * steered_state returns the state of a steered socket of the current
 * sandbox, with its policy's proxy, or NULL.
 */
static __always_inline struct sock_state *steered_state(struct bpf_sock_addr *ctx,
							 __u32 family,
							 struct dns_proxy **p)
{
	__u64 cgroup_id = 0;
	struct sandbox *sb = current_sandbox(&cgroup_id);

	if (!sb)
		return NULL;
	struct sock_state *st = bpf_sk_storage_get(&sock_states, ctx->sk, 0, 0);
	if (!st || !st->dns_family)
		return NULL;
	/* A v6 socket's v4-mapped sendto goes through sendmsg4: AF_INET state. */
	if (st->dns_family != family && family != AIGATE_AF_INET6)
		return NULL;
	__u32 policy_id = sb->policy_id;
	*p = bpf_map_lookup_elem(&dns_proxies, &policy_id);
	if (!*p || ctx->user_port != bpf_htons((*p)->port))
		return NULL;
	return st;
}

/* recvmsg programs cannot refuse: they must return 1. */
SEC("cgroup/recvmsg4")
int aigate_recvmsg4(struct bpf_sock_addr *ctx)
{
	struct dns_proxy *p = NULL;
	struct sock_state *st = steered_state(ctx, AIGATE_AF_INET, &p);

	if (st && p && ctx->user_ip4 == p->ip4) {
		ctx->user_ip4 = st->dns_ip6[0];
		ctx->user_port = st->dns_port;
	}
	return 1;
}

SEC("cgroup/recvmsg6")
int aigate_recvmsg6(struct bpf_sock_addr *ctx)
{
	struct dns_proxy *p = NULL;
	struct sock_state *st = steered_state(ctx, AIGATE_AF_INET6, &p);

	if (!st || !p)
		return 1;
	__u32 w0 = ctx->user_ip6[0], w1 = ctx->user_ip6[1];
	__u32 w2 = ctx->user_ip6[2], w3 = ctx->user_ip6[3];
	int from_proxy = (w0 == p->ip6[0] && w1 == p->ip6[1] && w2 == p->ip6[2] && w3 == p->ip6[3]) ||
			 (w0 == 0 && w1 == 0 && w2 == bpf_htonl(0xffff) && w3 == p->ip4);
	if (from_proxy && st->dns_family == AIGATE_AF_INET) {
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = bpf_htonl(0xffff);
		ctx->user_ip6[3] = st->dns_ip6[0];
		ctx->user_port = st->dns_port;
	} else if (from_proxy) {
		ctx->user_ip6[0] = st->dns_ip6[0];
		ctx->user_ip6[1] = st->dns_ip6[1];
		ctx->user_ip6[2] = st->dns_ip6[2];
		ctx->user_ip6[3] = st->dns_ip6[3];
		ctx->user_port = st->dns_port;
	}
	return 1;
}

/*
 * sock_create sees socket(2) for AF_INET and AF_INET6 only (inet_create
 * and inet6_create run it); packet sockets are not covered: see
 * docs/network.md. It marks every socket a sandbox creates with the
 * sandbox's cgroup (own_listener), and refuses raw sockets, and ping
 * sockets unless the policy allows all egress.
 */
SEC("cgroup/sock_create")
int aigate_sock_create(struct bpf_sock *ctx)
{
	__u64 cgroup_id = 0;
	struct sandbox *sb = current_sandbox(&cgroup_id);

	if (!sb)
		return 1;
	__u32 type = ctx->type, proto = ctx->protocol, family = ctx->family;
	int ping = type == SOCK_DGRAM && (proto == IPPROTO_ICMP || proto == AIGATE_IPPROTO_ICMPV6);

	if (type != SOCK_RAW && !ping) {
		/*
		 * Without storage the socket is simply not the sandbox's: a
		 * loopback connect to it is refused, never wrongly allowed.
		 */
		struct sock_state *st = bpf_sk_storage_get(&sock_states, ctx, 0,
							   BPF_SK_STORAGE_GET_F_CREATE);
		if (st)
			st->owner = cgroup_id;
		return 1;
	}
	__u32 policy_id = sb->policy_id;
	struct net_settings *s = bpf_map_lookup_elem(&net_policies, &policy_id);
	if (ping && s && s->mode == AIGATE_NET_ALLOW)
		return 1;

	struct event *e = event_start(cgroup_id, sb, AIGATE_KIND_NET, AIGATE_OP_CONNECT,
				      s ? s->deny_rule : 0);
	if (e) {
		/* No destination yet: the event names the socket instead. */
		static const char raw[] = "raw socket";
		static const char icmp[] = "icmp socket";
		e->family = family;
		if (ping) {
			__builtin_memcpy(e->path, icmp, sizeof(icmp));
			e->path_len = sizeof(icmp);
		} else {
			__builtin_memcpy(e->path, raw, sizeof(raw));
			e->path_len = sizeof(raw);
		}
		bpf_ringbuf_submit(e, 0);
	}
	return (sb->flags & AIGATE_SB_AUDIT) ? 1 : 0;
}

/*
 * sock_release runs for every socket of the cgroup as it is freed, in
 * whatever task drops the last reference; only sockets a sandboxed connect
 * marked carry state, so no sandbox check is needed to stay harmless.
 */
SEC("cgroup/sock_release")
int aigate_sock_release(struct bpf_sock *ctx)
{
	struct sock_state *st = bpf_sk_storage_get(&sock_states, ctx, 0, 0);

	if (st)
		sock_use_release(st);
	return 1;
}

/* Linux gives the loopback device this index in every network namespace. */
#define AIGATE_LOOPBACK_IFINDEX 1
#define AIGATE_ETH_P_IP 0x0800
#define AIGATE_ETH_P_IPV6 0x86DD

/*
 * report_inbound writes the event of a refused inbound connection: the
 * peer's address with the sandbox's listening port, what names the refusal
 * (the event's path) and the rule. There is no sandboxed task to name
 * (softirq): pid, uid and comm stay zero.
 */
static __always_inline void report_inbound(struct __sk_buff *skb, __u64 cgroup_id,
					   const struct sandbox *sb, __u32 rule, bool ide)
{
	__u8 audit = (sb->flags & AIGATE_SB_AUDIT) ? 1 : 0;

	count_slot((__u32)AIGATE_OP_CONNECT * 2 + audit);
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_slot(AIGATE_COUNTER_DROPPED);
		return;
	}
	static const char what[] = "inbound connection";
	static const char ide_what[] = "connection to an IDE lock's port";
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = bpf_ktime_get_boot_ns();
	e->cgroup_id = cgroup_id;
	e->policy_id = sb->policy_id;
	e->rule_id = rule;
	e->kind = AIGATE_KIND_NET;
	e->op = AIGATE_OP_CONNECT;
	e->audit = audit;
	e->port = skb->local_port; /* host byte order in __sk_buff */
	if (skb->protocol == bpf_htons(AIGATE_ETH_P_IP)) {
		e->family = AIGATE_AF_INET;
		bpf_skb_load_bytes(skb, 12, e->addr, 4); /* iphdr.saddr */
	} else {
		e->family = AIGATE_AF_INET6;
		bpf_skb_load_bytes(skb, 8, e->addr, 16); /* ipv6hdr.saddr */
	}
	if (ide) {
		__builtin_memcpy(e->path, ide_what, sizeof(ide_what));
		e->path_len = sizeof(ide_what);
	} else {
		__builtin_memcpy(e->path, what, sizeof(what));
		e->path_len = sizeof(what);
	}
	bpf_ringbuf_submit(e, 0);
}

/*
 * ide_port_rule returns the rule of the IDE lock that names port for the
 * sandbox in cgroup cgroup_id, or 0.
 */
static __always_inline __u32 ide_port_rule(__u64 cgroup_id, __u32 port)
{
	struct ide_port_key k = {.cgroup_id = cgroup_id, .port = port};
	__u32 *rule = bpf_map_lookup_elem(&ide_ports, &k);

	return rule ? *rule : 0;
}

/*
 * ingress sees every packet delivered to a socket of the sandbox; only
 * those delivered to a listening TCP socket (a SYN, or the ACK of a SYN
 * cookie: a connection attempt) are looked at, and only once the socket is
 * known to be a sandbox's.
 *
 * Over loopback: dropped when the listener's local port is one an IDE lock
 * file names (ide_ports), so that a claude outside that follows the lock
 * (--ide, autoConnectIde) never reaches a server of the sandbox. Checking
 * the listener's port here, not the bind, covers every way of getting the
 * port: a bind to it, a bind to port 0 or a listen() without bind that the
 * kernel happens to give it, any loopback or wildcard address. The client
 * sees no reset, only its SYN go unanswered (its connect times out).
 *
 * From another host: dropped under net: deny unless the policy allows
 * inbound connections, so nothing outside the machine can connect in and
 * read what the sandbox writes on the accepted socket (writes on it pass no
 * sendmsg program). Refusing here, not at bind, leaves a server bound to
 * 0.0.0.0 or ::, and a listen() without bind, reachable from this machine.
 * UDP is left alone: answering a datagram needs a sendto or connect, which
 * connect4/6 and sendmsg4/6 check.
 */
SEC("cgroup_skb/ingress")
int aigate_ingress(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;
	if (!sk)
		return 1;
	sk = bpf_sk_fullsock(sk);
	if (!sk || sk->state != BPF_TCP_LISTEN)
		return 1;
	__u64 cgroup_id = 0;
	struct sandbox *sb = skb_sandbox(skb, &cgroup_id);
	if (!sb)
		return 1;
	if (skb->ifindex == AIGATE_LOOPBACK_IFINDEX) {
		__u32 rule = ide_port_rule(cgroup_id, skb->local_port);
		if (!rule)
			return 1;
		report_inbound(skb, cgroup_id, sb, rule, true);
		return (sb->flags & AIGATE_SB_AUDIT) ? 1 : 0;
	}
	__u32 policy_id = sb->policy_id;
	struct net_settings *s = bpf_map_lookup_elem(&net_policies, &policy_id);
	if (s && (s->mode == AIGATE_NET_ALLOW || s->inbound))
		return 1;
	report_inbound(skb, cgroup_id, sb, s ? s->deny_rule : 0, false);
	return (sb->flags & AIGATE_SB_AUDIT) ? 1 : 0;
}
