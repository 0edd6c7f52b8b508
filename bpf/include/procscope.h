/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Process checks of the LSM programs (ptrace_access_check, ptrace_traceme,
 * task_kill): a sandboxed task may trace, read the memory of and signal
 * only tasks of its own sandbox (its cgroup or one below it). Reported as
 * process events naming the target as "pid N (comm)".
 */
#ifndef AIGATE_PROCSCOPE_H
#define AIGATE_PROCSCOPE_H

#include "aigate.h"
#include "events.h"

#ifndef EPERM
#define EPERM 1
#endif
/* include/linux/ptrace.h; not in BTF. */
#define PTRACE_MODE_NOAUDIT (0x04U)

/* task_inside tells whether t's cgroup v2 is sandbox_cgroup or below it. */
static __always_inline bool task_inside(struct task_struct *t, __u64 sandbox_cgroup)
{
	struct cgroup *cg = BPF_CORE_READ(t, cgroups, dfl_cgrp);

	for (int i = 0; i < AIGATE_MAX_LEVEL && cg; i++) {
		if (BPF_CORE_READ(cg, kn, id) == sandbox_cgroup)
			return true;
		cg = (struct cgroup *)BPF_CORE_READ(cg, self.parent);
	}
	return false;
}

/*
 * deny_task refuses an operation of the current (sandboxed) task on t,
 * outside its sandbox; report 0 refuses silently (the kernel's probes that
 * it does not audit either: /proc/PID/stat asking whether to show wchan).
 */
static __always_inline int deny_task(__u64 cgroup_id, struct sandbox *sb, __u8 op,
				     struct task_struct *t, bool report)
{
	int verdict = (sb->flags & AIGATE_SB_AUDIT) ? 0 : -EPERM;

	if (!report)
		return verdict;
	struct event *e = event_start(cgroup_id, sb, AIGATE_KIND_PROC, op, 0);
	if (!e)
		return verdict;
	static const char fmt[] = "pid %d (%s)";
	char comm[AIGATE_COMM_LEN];
	__u64 args[2];

	BPF_CORE_READ_STR_INTO(&comm, t, comm);
	args[0] = (__u32)BPF_CORE_READ(t, tgid);
	args[1] = (__u64)(long)comm;
	long n = bpf_snprintf(e->path, sizeof(e->path), fmt, args, sizeof(args));
	if (n > 0)
		e->path_len = n - 1;
	bpf_ringbuf_submit(e, 0);
	return verdict;
}

#endif /* AIGATE_PROCSCOPE_H */
