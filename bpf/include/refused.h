/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Landlock refusals without the kernel's audit. The sandbox's Landlock
 * domain refuses writes in the read-only home, ptrace of processes
 * outside, /proc/PID/environ|mem|maps of them and (ABI 6) their signals,
 * before any BPF LSM hook or fanotify permission event runs; the kernel
 * tells only audit (Linux 6.15+, and only while audit is enabled). The
 * refused call still passes sys_exit, with EACCES (files, /proc) or EPERM
 * (ptrace, process_vm_*, signals).
 *
 * report_refused sends such a call of a sandboxed task to the agent as a
 * candidate (aigate.h: AIGATE_FAMILY_REFUSED, struct refused_call): with
 * the path the task passed, read from its memory now, or the pid it named.
 * Unix permissions give the same errnos, so nothing here decides: the
 * agent keeps the candidate only where the sandbox's Landlock domain
 * refuses that access and Unix permissions alone would have allowed it
 * (internal/refused), and counts only those. Nothing is counted here.
 *
 * The numbers are x86_64's, like the rest of the sys_exit program.
 */
#ifndef AIGATE_REFUSED_H
#define AIGATE_REFUSED_H

#include "sandbox.h"
#include "events.h"

#define AIGATE_ERR_PERM 1
#define AIGATE_ERR_ACCES 13

#define AIGATE_NR_OPEN 2
#define AIGATE_NR_KILL 62
#define AIGATE_NR_TRUNCATE 76
#define AIGATE_NR_MKDIR 83
#define AIGATE_NR_RMDIR 84
#define AIGATE_NR_CREAT 85
#define AIGATE_NR_UNLINK 87
#define AIGATE_NR_SYMLINK 88
#define AIGATE_NR_PTRACE 101
#define AIGATE_NR_RT_SIGQUEUEINFO 129
#define AIGATE_NR_MKNOD 133
#define AIGATE_NR_TKILL 200
#define AIGATE_NR_TGKILL 234
#define AIGATE_NR_OPENAT 257
#define AIGATE_NR_MKDIRAT 258
#define AIGATE_NR_MKNODAT 259
#define AIGATE_NR_UNLINKAT 263
#define AIGATE_NR_SYMLINKAT 266
#define AIGATE_NR_RT_TGSIGQUEUEINFO 297
#define AIGATE_NR_PROCESS_VM_READV 310
#define AIGATE_NR_PROCESS_VM_WRITEV 311
#define AIGATE_NR_OPENAT2 437

#define AIGATE_AT_FDCWD (-100)
#define AIGATE_O_ACCMODE 03
#define AIGATE_O_WRONLY 01
#define AIGATE_O_CREAT 0100
#define AIGATE_O_TRUNC 01000
#define AIGATE_O_PATH 010000000
#define AIGATE_PTRACE_ATTACH 16
#define AIGATE_PTRACE_SEIZE 0x4206

/*
 * refused_initial_ns: is the current task in the initial pid and user
 * namespaces? A pid it names is then the agent's pid, and commoncap's
 * ptrace check compares it with its target in one user namespace.
 */
static __always_inline int refused_initial_ns(struct task_struct *t)
{
	return BPF_CORE_READ(t, thread_pid, level) == 0 && BPF_CORE_READ(t, cred, user_ns, level) == 0;
}

/*
 * refused_caps are the caller's effective capabilities that override
 * Unix permissions (enum aigate_refused_cap), in the initial user
 * namespace only. kernel_cap_t is a u64 from 6.3 and two u32s before: the
 * same 8 bytes, read raw.
 */
static __always_inline __u16 refused_caps(struct task_struct *t)
{
	const struct cred *cred = BPF_CORE_READ(t, cred);
	__u64 eff = 0;
	__u16 caps = 0;

	if (!cred || BPF_CORE_READ(cred, user_ns, level) != 0 ||
	    bpf_probe_read_kernel(&eff, sizeof(eff), __builtin_preserve_access_index(&cred->cap_effective)))
		return 0;
	if (eff & (1ULL << 1))
		caps |= AIGATE_REFUSED_CAP_DAC_OVERRIDE;
	if (eff & (1ULL << 2))
		caps |= AIGATE_REFUSED_CAP_DAC_READ_SEARCH;
	if (eff & (1ULL << 5))
		caps |= AIGATE_REFUSED_CAP_KILL;
	if (eff & (1ULL << 19))
		caps |= AIGATE_REFUSED_CAP_SYS_PTRACE;
	return caps;
}

/*
 * refused_send sends one candidate: the call nr named path (a user
 * pointer, 0 for none) or target, with flags; what packs the event's
 * kind (bits 8-15) and op (bits 0-7). A global function: the verifier
 * checks it once, not once for each case of report_refused's switch (a
 * static one cost the sys_exit program ten times the instructions).
 */
__noinline int refused_send(__u64 nr, __u64 path, __s32 target, __u32 flags, __u32 what)
{
	__u8 kind = what >> 8, op = what & 0xff;

	if (path && op != AIGATE_OP_WRITE && op != AIGATE_OP_PTRACE)
		return 0;
	if (!path && target <= 0)
		return 0; /* a process group, or every process: no one target */

	__u64 cgroup_id = 0;
	struct sandbox *sb = current_sandbox(&cgroup_id);
	if (!sb)
		return 0;
	struct task_struct *t = bpf_get_current_task_btf();
	if (!path && !refused_initial_ns(t))
		return 0;
	int read_open = path && op == AIGATE_OP_PTRACE;
	/* Landlock refuses in audit mode too: never "allowed because audited". */
	struct event *e = event_reserve(cgroup_id, sb, kind, op, 0, 0);
	if (!e)
		return 0;
	e->family = AIGATE_FAMILY_REFUSED;
	struct refused_call c = {
		.nr = nr,
		.caps = refused_caps(t),
		.target = target,
		.flags = flags,
		.gid = bpf_get_current_uid_gid() >> 32,
	};
	_Static_assert(sizeof(c) <= sizeof(e->addr), "struct refused_call travels in addr");
	__builtin_memcpy(e->addr, &c, sizeof(c));
	if (path) {
		long n = bpf_probe_read_user_str(e->path, sizeof(e->path), (const char *)path);
		/* A path cut short names another file: none rather than that. */
		if (n <= 1 || n >= (long)sizeof(e->path) || (read_open && (e->path[0] != '/' || e->path[1] != 'p' || e->path[2] != 'r' ||
					     e->path[3] != 'o' || e->path[4] != 'c' || e->path[5] != '/'))) {
			bpf_ringbuf_discard(e, BPF_RB_NO_WAKEUP);
			return 0;
		}
		e->path_len = n - 1;
		e->mnt_ns = BPF_CORE_READ(t, nsproxy, mnt_ns, ns.inum);
	}
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/*
 * refused_call_of: see the top of the file. nr, di, si and dx are the
 * call's number and first three arguments (regs->orig_ax, di, si, dx),
 * ret its result, -EACCES or -EPERM (the caller compared it). Cost: a
 * switch on the call's number, then, for the calls above only, the
 * sandbox check. Global, like refused_send: verified once.
 */
__noinline int refused_call_of(__u64 nr, __u64 di, __u64 si, __u64 dx, long ret)
{
	__u64 path = 0;
	__s32 target = AIGATE_AT_FDCWD; /* a path call's dirfd, or the pid */
	__u32 flags = 0;
	__u32 proc = 0; /* a process call: AIGATE_OP_PTRACE or AIGATE_OP_SIGNAL */

	switch (nr) {
	case AIGATE_NR_OPEN:
		path = di;
		flags = si;
		break;
	case AIGATE_NR_CREAT:
		path = di;
		flags = AIGATE_O_WRONLY | AIGATE_O_CREAT | AIGATE_O_TRUNC;
		break;
	case AIGATE_NR_OPENAT:
		target = di;
		path = si;
		flags = dx;
		break;
	case AIGATE_NR_OPENAT2: {
		__u64 cgroup_id = 0, f = 0;
		/* Nothing of a task outside a sandbox is read, not even this. */
		if (ret != -AIGATE_ERR_ACCES || !current_sandbox(&cgroup_id))
			return 0;
		/* struct open_how starts with the flags */
		if (bpf_probe_read_user(&f, sizeof(f), (const void *)dx))
			return 0;
		target = di;
		path = si;
		flags = f;
		break;
	}
	case AIGATE_NR_TRUNCATE:
	case AIGATE_NR_MKDIR:
	case AIGATE_NR_RMDIR:
	case AIGATE_NR_UNLINK:
		path = di;
		break;
	case AIGATE_NR_MKNOD:
		path = di;
		flags = si;
		break;
	case AIGATE_NR_SYMLINK:
		path = si;
		break;
	case AIGATE_NR_MKDIRAT:
		target = di;
		path = si;
		break;
	case AIGATE_NR_MKNODAT:
	case AIGATE_NR_UNLINKAT:
		target = di;
		path = si;
		flags = dx;
		break;
	case AIGATE_NR_SYMLINKAT:
		target = si;
		path = dx;
		break;
	case AIGATE_NR_PTRACE:
		if (di != AIGATE_PTRACE_ATTACH && di != AIGATE_PTRACE_SEIZE)
			return 0;
		target = si;
		proc = AIGATE_OP_PTRACE;
		break;
	case AIGATE_NR_PROCESS_VM_READV:
	case AIGATE_NR_PROCESS_VM_WRITEV:
		target = di;
		proc = AIGATE_OP_PTRACE;
		break;
	case AIGATE_NR_KILL:
	case AIGATE_NR_TKILL:
	case AIGATE_NR_RT_SIGQUEUEINFO:
		target = di;
		proc = AIGATE_OP_SIGNAL;
		break;
	case AIGATE_NR_TGKILL:
	case AIGATE_NR_RT_TGSIGQUEUEINFO:
		target = si; /* the thread */
		proc = AIGATE_OP_SIGNAL;
		break;
	default:
		return 0;
	}
	if (path && ret != -AIGATE_ERR_ACCES)
		return 0; /* Landlock refuses file access with EACCES */
	if ((flags & AIGATE_O_PATH) && (nr == AIGATE_NR_OPEN || nr == AIGATE_NR_OPENAT || nr == AIGATE_NR_OPENAT2))
		return 0; /* no access checked but the walk: never Landlock's */
	if (proc == AIGATE_OP_SIGNAL && ret != -AIGATE_ERR_PERM)
		return 0; /* and signals with EPERM */
	if (proc)
		return refused_send(nr, 0, target, 0, (AIGATE_KIND_PROC << 8) | proc);
	/* Landlock refuses reads only of another process's /proc files. */
	int read_open = (nr == AIGATE_NR_OPEN || nr == AIGATE_NR_OPENAT || nr == AIGATE_NR_OPENAT2) &&
			(flags & AIGATE_O_ACCMODE) == 0 && !(flags & (AIGATE_O_CREAT | AIGATE_O_TRUNC));
	if (read_open)
		return refused_send(nr, path, target, flags, (AIGATE_KIND_PROC << 8) | AIGATE_OP_PTRACE);
	return refused_send(nr, path, target, flags, (AIGATE_KIND_FILE << 8) | AIGATE_OP_WRITE);
}

/* report_refused: refused_call_of for the call sys_exit saw. */
static __always_inline int report_refused(struct pt_regs *regs, long ret)
{
	return refused_call_of(regs->orig_ax, regs->di, regs->si, regs->dx, ret);
}

#endif /* AIGATE_REFUSED_H */
