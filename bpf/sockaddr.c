//go:build ignore
/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Egress enforcement with cgroup sock_addr programs, attached to each
 * sandbox cgroup (never to the root): connect4/6 see connect(2) for TCP,
 * UDP and ICMP sockets (and TCP Fast Open's sendto); sendmsg4/6 see every
 * sendto/sendmsg that names a destination on an unconnected UDP socket.
 * Returning 0 makes the syscall fail with EPERM.
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
 * decide applies the sandbox's policy to d. orig is the address as the
 * caller wrote it (v4-mapped stays IPv6 in the event).
 */
static __always_inline int decide(__u8 op, struct net_dst *d, __u32 orig_family,
				  const __u8 *orig)
{
	__u64 cgroup_id = 0;
	struct sandbox *sb = current_sandbox(&cgroup_id);

	if (!sb)
		return 1;
	__u32 policy_id = sb->policy_id;
	struct net_settings *s = bpf_map_lookup_elem(&net_policies, &policy_id);
	__u32 rule = 0;

	/*
	 * A sandbox without network settings is a loader bug or a race while a
	 * sandbox is set up or torn down: fail closed.
	 */
	if (s && !net_denied(s, policy_id, d, &rule))
		return 1;
	return report(cgroup_id, sb, op, rule, orig_family, orig, d->port);
}

static __always_inline int check4(struct bpf_sock_addr *ctx, __u8 op)
{
	struct net_dst d = {.family = AIGATE_AF_INET};
	__u32 ip = ctx->user_ip4;

	d.port = bpf_ntohs((__u16)ctx->user_port);
	__builtin_memcpy(d.addr, &ip, sizeof(ip));
	return decide(op, &d, AIGATE_AF_INET, d.addr);
}

static __always_inline int check6(struct bpf_sock_addr *ctx, __u8 op)
{
	struct net_dst d = {.family = AIGATE_AF_INET6};
	__u8 orig[16];
	__u32 w[4];

	w[0] = ctx->user_ip6[0];
	w[1] = ctx->user_ip6[1];
	w[2] = ctx->user_ip6[2];
	w[3] = ctx->user_ip6[3];
	__builtin_memcpy(orig, w, sizeof(orig));
	d.port = bpf_ntohs((__u16)ctx->user_port);
	/* ::ffff:a.b.c.d reaches a.b.c.d: match it as the IPv4 address. */
	if (w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0xffff)) {
		d.family = AIGATE_AF_INET;
		__builtin_memcpy(d.addr, &w[3], 4);
	} else {
		__builtin_memcpy(d.addr, w, sizeof(d.addr));
	}
	return decide(op, &d, AIGATE_AF_INET6, orig);
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
