/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Unix-socket matching for the cgroup connect_unix / sendmsg_unix programs
 * (bpf/sockunix.c). A sandboxed connect or sendto to a unix socket is
 * allowed when
 *
 *   - the socket name was bound by a process of the same sandbox and that
 *     socket still holds it (unix_bound, learned when bind(2) returns), or
 *   - the policy's allow_unix lists it (unix_allow): an absolute path equal
 *     to an entry or beneath it, or an abstract name equal to an "@name"
 *     entry;
 *
 * and refused otherwise (sockunix.c: a path with ENOENT, an abstract name
 * with EPERM). The programs run before the kernel looks the
 * listener up, so they see the name only, never the peer: see
 * docs/network.md for what that cannot catch.
 */
#ifndef AIGATE_UNIXMATCH_H
#define AIGATE_UNIXMATCH_H

#include "aigate.h"

/*
 * A unix socket name as matched: a filesystem path up to its first NUL
 * (abstract 0, len = strlen), or an abstract name (abstract = its length in
 * bytes, which may include NULs). Unused name bytes are zero.
 */
struct unix_name {
	__u32 abstract;
	char name[AIGATE_UNIX_NAME];
};

/*
 * Key of the unix_allow LPM trie. A path entry P is stored twice: "P\0"
 * (the socket P) and "P/" (sockets beneath the directory P); an abstract
 * entry with its full length, so that only the same name matches.
 */
struct unix_allow_key {
	__u32 prefixlen; /* AIGATE_UNIX_KEY_BITS + 8 * matched name bytes */
	__u32 policy_id;
	struct unix_name n;
};

/* Key of unix_bound: a name bound inside one sandbox. */
struct unix_bound_key {
	__u64 cgroup_id; /* the sandbox cgroup (not a sub-cgroup) */
	struct unix_name n;
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct unix_allow_key);
	__type(value, __u32); /* policy.RuleID of the allow_unix entry */
} unix_allow SEC(".maps");

/*
 * Value of unix_bound: the socket that got the name, so that connect can
 * check it still holds the name (see sockunix.c: unix_bound_alive).
 */
struct unix_bound_val {
	__u64 sock;   /* struct socket * */
	__u64 ino;    /* its inode number: a reused struct socket gets another */
	__u64 dentry; /* path sockets: the socket file's dentry */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct unix_bound_key);
	__type(value, struct unix_bound_val);
} unix_bound SEC(".maps");

/*
 * unix_bound_cgroups holds every sandbox cgroup that may have names in
 * unix_bound: marked before its first name is learned, so that removing a
 * sandbox walks the whole of unix_bound only when it may find one of its
 * names there (internal/loader/net_unix.go). Most sandboxes bind nothing.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096); /* the sandbox table's */
	__type(key, __u64);	   /* cgroup id, as in unix_bound_key */
	__type(value, __u8);
} unix_bound_cgroups SEC(".maps");

/* bpf2go -type only sees types used in BTF. */
const struct unix_allow_key *unused_unix_allow_key __attribute__((unused));
const struct unix_bound_key *unused_unix_bound_key __attribute__((unused));

/*
 * unix_name_read fills n from a kernel sockaddr_un of len bytes (family
 * included). It returns -1 for a name too short to be one.
 */
static __always_inline int unix_name_read(struct unix_name *n, const void *sun, __u32 len)
{
	const char *path = (const char *)sun + 2; /* after sun_family */
	char first = 0;

	if (len <= 2 || len > 2 + AIGATE_UNIX_PATH)
		return -1;
	if (bpf_probe_read_kernel(&first, 1, path))
		return -1;
	/*
	 * The verifier loses the bounds above across the branches: mask the
	 * sizes opaquely, then check them again.
	 */
	__u32 size = len - 2;
	if (first == 0) {
		/* Abstract: the bytes after the leading NUL, NULs included. */
		size -= 1;
		asm volatile("%0 &= 0x7f" : "+r"(size));
		if (size == 0 || size > AIGATE_UNIX_PATH - 1)
			return -1;
		n->abstract = size;
		return bpf_probe_read_kernel(n->name, size, path + 1) ? -1 : 0;
	}
	asm volatile("%0 &= 0x7f" : "+r"(size));
	if (size == 0 || size > AIGATE_UNIX_PATH)
		return -1;
	if (bpf_probe_read_kernel(n->name, size, path))
		return -1;
	/* The kernel uses the path up to its first NUL: drop what follows. */
	int end = 0;
	for (int i = 0; i < AIGATE_UNIX_NAME; i++) {
		if (!n->name[i])
			end = 1;
		if (end)
			n->name[i] = 0;
	}
	return 0;
}

#endif /* AIGATE_UNIXMATCH_H */
