/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Denial reporting shared by every aigate program: a ring buffer of struct
 * event and per-CPU counters that stay exact when the ring buffer is full.
 */
#ifndef AIGATE_EVENTS_H
#define AIGATE_EVENTS_H

#include "aigate.h"

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, AIGATE_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count_slot(__u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &slot);

	if (v)
		*v += 1;
}

/*
 * event_reserve reserves an event with the common fields filled and counts
 * nothing but a full ring buffer: event_start for a denial, refused.h for
 * a candidate the agent may drop.
 */
static __always_inline struct event *event_reserve(__u64 cgroup_id,
						   const struct sandbox *sb,
						   __u8 kind, __u8 op, __u8 audit,
						   __u32 rule_id)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		count_slot(AIGATE_COUNTER_DROPPED);
		return NULL;
	}
	__u64 id = bpf_get_current_pid_tgid();

	e->ts_ns = bpf_ktime_get_boot_ns();
	e->cgroup_id = cgroup_id;
	e->pid = (__u32)id;
	e->tgid = id >> 32;
	e->uid = (__u32)bpf_get_current_uid_gid();
	e->policy_id = sb->policy_id;
	e->rule_id = rule_id;
	e->kind = kind;
	e->op = op;
	e->audit = audit;
	e->family = 0;
	e->port = 0;
	e->path_len = 0;
	__builtin_memset(e->addr, 0, sizeof(e->addr));
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->path[0] = 0;
	e->mnt_ns = 0;
	return e;
}

/*
 * event_start counts the denial and reserves an event with the common
 * fields filled; the caller adds the target (path or address) and submits
 * it. NULL means the ring buffer is full: the denial is counted, the drop
 * too, and the caller still denies.
 */
static __always_inline struct event *event_start(__u64 cgroup_id,
						 const struct sandbox *sb,
						 __u8 kind, __u8 op,
						 __u32 rule_id)
{
	__u8 audit = (sb->flags & AIGATE_SB_AUDIT) ? 1 : 0;

	count_slot((__u32)op * 2 + audit);
	return event_reserve(cgroup_id, sb, kind, op, audit, rule_id);
}

#endif /* AIGATE_EVENTS_H */
