/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The sandbox check every aigate program runs first. A task is sandboxed
 * when its cgroup, or one of its ancestors, is in the sandboxes map; so a
 * cgroup that a sandboxed process creates below its own stays confined.
 *
 * Cost outside a sandbox: one array lookup when no sandbox exists, else one
 * ancestor-id read and one hash lookup per level at which a sandbox lives
 * (normally exactly one level).
 */
#ifndef AIGATE_SANDBOX_H
#define AIGATE_SANDBOX_H

#include "aigate.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64); /* cgroup v2 id */
	__type(value, struct sandbox);
} sandboxes SEC(".maps");

/*
 * sandbox_levels[0]: bit n set when some sandbox cgroup lives at level n of
 * the cgroup v2 hierarchy. Kept by the loader; lets the common case (no
 * sandbox at all) return after a single array lookup.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} sandbox_levels SEC(".maps");

/*
 * sandbox_walk walks the ancestors of the current task's cgroup or, with
 * of_skb, of the cgroup of the socket skb is delivered to. Always inlined
 * with of_skb a constant, so that each program keeps only the helper call
 * its program type allows (testing skb for NULL instead would not do: the
 * compiler cannot know that a context pointer is never NULL, and would
 * leave both calls in the cgroup skb program).
 */
static __always_inline struct sandbox *sandbox_walk(bool of_skb, struct __sk_buff *skb,
						    __u64 *cgroup_id)
{
	__u32 zero = 0;
	__u64 *levels = bpf_map_lookup_elem(&sandbox_levels, &zero);

	if (!levels || !*levels)
		return NULL;
	__u64 mask = *levels;

	for (int lvl = 1; lvl < AIGATE_MAX_LEVEL; lvl++) {
		if (!(mask & (1ULL << lvl)))
			continue;
		__u64 id = of_skb ? bpf_skb_ancestor_cgroup_id(skb, lvl)
				  : bpf_get_current_ancestor_cgroup_id(lvl);
		if (!id)
			break; /* the cgroup is shallower than lvl */
		struct sandbox *sb = bpf_map_lookup_elem(&sandboxes, &id);
		if (sb) {
			*cgroup_id = id;
			return sb;
		}
	}
	return NULL;
}

/* current_sandbox is the sandbox of the current task; NULL outside one. */
static __always_inline struct sandbox *current_sandbox(__u64 *cgroup_id)
{
	return sandbox_walk(false, NULL, cgroup_id);
}

/*
 * skb_sandbox is current_sandbox for the socket a packet is delivered to:
 * cgroup skb programs run in softirq context, where the current task means
 * nothing, so the sandbox is the one of the socket's cgroup (the cgroup of
 * the task that created it).
 */
static __always_inline struct sandbox *skb_sandbox(struct __sk_buff *skb, __u64 *cgroup_id)
{
	return sandbox_walk(true, skb, cgroup_id);
}

#endif /* AIGATE_SANDBOX_H */
