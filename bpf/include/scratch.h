/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Scratch buffers that one program run owns from claim to release.
 *
 * Keys bigger than the 512-byte BPF stack live in a per-CPU array. Per-CPU
 * is not private: the LSM, cgroup sock_addr and tp_btf programs run with
 * migration disabled, not preemption, so on a preemptible kernel
 * (preempt=full or lazy) another task's program can run on this CPU in the
 * middle of ours. Had both used the same buffer, one of them could judge
 * (or learn) the other's path or socket name.
 *
 * So a buffer's first member is its owner, taken with an atomic
 * compare-and-exchange from 0 and given back with an exchange to 0, and
 * each CPU has AIGATE_SCRATCH_SLOTS buffers: a program that preempts
 * another takes the next free one. Only the owner ever writes a buffer, so
 * nothing has to be detected afterwards. A program that finds every buffer
 * taken (that many programs preempted at once on one CPU) gets none and
 * fails closed. The owner check works even if a task did migrate: the
 * exchange is on the buffer, not on "this CPU".
 *
 * Every program that claims a buffer must release it on every path; a
 * buffer never released would be lost to that CPU (the tests check that
 * all are free after use).
 */
#ifndef AIGATE_SCRATCH_H
#define AIGATE_SCRATCH_H

#include "aigate.h" /* AIGATE_SCRATCH_SLOTS */

/*
 * scratch_claim returns a free buffer of map, a per-CPU array of
 * AIGATE_SCRATCH_SLOTS values that start with a __u64 owner, now owned by
 * the current task; NULL when all are taken. The caller clears what it
 * uses: a buffer keeps its last owner's bytes.
 *
 * The owner is pid_tgid, which is 0 only for the idle task, and no sandbox
 * check ever lets that through.
 */
static __always_inline void *scratch_claim(void *map)
{
	__u64 me = bpf_get_current_pid_tgid();

	if (!me)
		return NULL;
	for (__u32 i = 0; i < AIGATE_SCRATCH_SLOTS; i++) {
		__u32 key = i;
		__u64 *owner = bpf_map_lookup_elem(map, &key);

		if (owner && __sync_val_compare_and_swap(owner, 0, me) == 0)
			return owner;
	}
	return NULL;
}

/*
 * scratch_release gives the buffer back. The exchange is a full barrier:
 * every access to the buffer above it is done before another task can
 * claim it.
 */
static __always_inline void scratch_release(void *s)
{
	__sync_lock_test_and_set((__u64 *)s, 0);
}

#endif /* AIGATE_SCRATCH_H */
