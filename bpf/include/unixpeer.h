/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Unix-socket checks of the LSM programs (unix_stream_connect,
 * unix_may_send), which, unlike the cgroup connect_unix program, see the
 * peer: a sandboxed task may reach a socket whose owner (the cgroup that
 * created it) is its own sandbox cgroup or lies below it, and otherwise only
 * what allow_unix lists, with the semantics of docs/network.md:
 *
 *   - a filesystem socket when its path, built from the socket's own dentry
 *     (so a relative or symlinked name does not matter), equals a Paths
 *     entry or lies beneath one: the Paths trie of pathmatch.h, set
 *     rule_set(policy, AIGATE_ACCESS_UNIX);
 *   - an abstract socket when "@" + its name equals a Names entry: the
 *     Names hash, same set. Bare names and patterns match nothing.
 *
 * A peer with no name (socketpair, unbound) can only be reached through a
 * descriptor handed in, never looked up, so it is not checked.
 */
#ifndef AIGATE_UNIXPEER_H
#define AIGATE_UNIXPEER_H

#include "aigate.h"
#include "pathmatch.h"
#include "sockowner.h"

/* sizeof(sockaddr_un.sun_path) */
#define AIGATE_SUN_PATH 108
/* offsetof(struct sockaddr_un, sun_path) */
#define AIGATE_SUN_PATH_OFF 2

/*
 * unix_peer_rule checks an outside peer against allow_unix. It returns 1
 * when the peer is allowed (or has no name), else 0 with the peer's name in
 * s (path at built_path(s), *len with the NUL; abstract names as "@name" in
 * s->comp.name).
 */
static __noinline int unix_peer_allowed(struct scratch *s, struct sock *sk, __u32 set,
					long *len, bool *abstract)
{
	struct unix_sock *u = (struct unix_sock *)sk;
	struct unix_address *addr = BPF_CORE_READ(u, addr);
	__u32 kinds = set_kinds(set);

	*abstract = false;
	*len = 0;
	if (!addr)
		return 1;
	struct dentry *d = BPF_CORE_READ(u, path.dentry);
	if (d) {
		*len = build_path(s, d, BPF_CORE_READ(u, path.mnt));
		load_built_path(s, *len);
		return (kinds & AIGATE_SET_PATHS) && match_path(s, set);
	}

	int alen = BPF_CORE_READ(addr, len) - AIGATE_SUN_PATH_OFF - 1;
	if (alen <= 0)
		return 1;
	*abstract = true;
	__builtin_memset(s->comp.name, 0, sizeof(s->comp.name));
	s->comp.name[0] = '@';
	__u32 n = alen;
	if (n > AIGATE_NAME_MAX - 2)
		n = AIGATE_NAME_MAX - 2;
	asm volatile("%0 &= 0x7f" : "+r"(n));
	if (n > AIGATE_NAME_MAX - 2)
		return 0;
	/* sun_path[0] is the NUL that makes the name abstract. */
	bpf_probe_read_kernel(&s->comp.name[1], n, (char *)addr->name[0].sun_path + 1);
	*len = n + 2;
	if (!(kinds & AIGATE_SET_NAMES) || alen > AIGATE_NAME_MAX - 2)
		return 0;
	s->comp.prefixlen = 0;
	s->comp.set = set;
	return lookup_rule(&name_rules, &s->comp) != 0;
}

#endif /* AIGATE_UNIXPEER_H */
