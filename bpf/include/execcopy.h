/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Copies of deny_exec binaries (lsm.c's bprm_copy): deny_exec means the
 * program, not its file name, so `cp /usr/bin/curl /tmp/x; /tmp/x` is
 * refused too. The loader writes the size of each denied binary of a
 * sandbox and its SHA-256 (computed in Go when the sandbox is created);
 * an exec whose file has one of those sizes is hashed by IMA
 * (bpf_ima_file_hash, 6.0+) and refused when the hash is a denied
 * binary's. Every other exec pays one hash lookup on the size.
 *
 * Only hash maps: a sleepable program may not use LPM tries (6.1).
 */
#ifndef AIGATE_EXECCOPY_H
#define AIGATE_EXECCOPY_H

#include "aigate.h"

struct exec_size_key {
	__u32 set; /* rule_set(policy, AIGATE_ACCESS_EXEC) */
	__u32 pad; /* zero */
	__u64 size;
};

struct exec_sum_key {
	__u32 set;
	__u8 sum[AIGATE_SHA256_SIZE];
};

/* (set, size) -> rule of a denied binary of that size. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct exec_size_key);
	__type(value, __u32);
} exec_sizes SEC(".maps");

/* (set, SHA-256) -> rule of the denied binary with that content. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct exec_sum_key);
	__type(value, __u32);
} exec_sums SEC(".maps");

const struct exec_size_key *unused_exec_size_key __attribute__((unused));
const struct exec_sum_key *unused_exec_sum_key __attribute__((unused));

#endif /* AIGATE_EXECCOPY_H */
