//go:build ignore
/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Exit records for the fanotify backend. Its directory watcher learns of a
 * rename after the fact, with the mover's pid, and places the pid in a
 * sandbox by reading /proc/PID/cgroup; a short mv that has exited and been
 * reaped by then cannot be read. This program notes, as each sandboxed
 * task exits, its process id (tgid, as fanotify reports it) and the cgroup
 * id of its sandbox, so that userspace can place the pid after it is gone.
 *
 * Keyed by tgid and written at every thread's exit (all write the same
 * value; the last one, when the process is gone, is the one that counts).
 * An LRU hash: the oldest records go first when it is full; userspace
 * deletes a record once it has used it. The pid is the initial pid
 * namespace's (bpf_get_current_pid_tgid).
 *
 * A separate object: only the fanotify backend uses it, and it may refuse
 * to load (tp_btf) without taking the network object down with it.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "sandbox.h"

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);   /* tgid */
	__type(value, __u64); /* cgroup id of the sandbox (a key of sandboxes) */
} exited SEC(".maps");

/* Runs at every task exit on the host: one array lookup outside a sandbox. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(aigate_exit_record, struct task_struct *p)
{
	__u64 cgroup_id = 0;

	if (!current_sandbox(&cgroup_id))
		return 0;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	bpf_map_update_elem(&exited, &tgid, &cgroup_id, BPF_ANY);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
