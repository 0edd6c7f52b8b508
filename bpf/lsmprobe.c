//go:build ignore
/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The readiness probe: an LSM program that only counts the file opens of
 * one process (the prober), so that the loader can prove BPF LSM programs
 * load, attach and fire on this kernel. It never denies anything.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by the loader before loading: the prober's process id. */
const volatile __u32 probe_tgid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} probe_hits SEC(".maps");

SEC("lsm/file_open")
int BPF_PROG(aigate_probe_open, struct file *file)
{
	__u32 zero = 0;

	if ((bpf_get_current_pid_tgid() >> 32) != probe_tgid)
		return 0;
	__u64 *hits = bpf_map_lookup_elem(&probe_hits, &zero);
	if (hits)
		__sync_fetch_and_add(hits, 1);
	return 0;
}
