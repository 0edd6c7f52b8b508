/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The pseudo-terminals a sandboxed task may open by name (file_open): a
 * sandbox runs as the user, who owns the /dev/pts/N of their other
 * terminal windows, tmux panes and ssh sessions; opened from inside, one
 * is read (a password typed there goes to whichever reader is first) or
 * written (fake output, an OSC 52 clipboard write). aigate run adds a
 * deny_read rule for each terminal the user has when the sandbox is made;
 * this check needs no list, so it also keeps out the terminals opened
 * after the start (a new window, a new ssh session).
 *
 * A pty slave is the sandbox's when the kernel says so, not a rule:
 *   - it is the opener's controlling terminal (the user's terminal with
 *     run --raw-terminal, which /dev/tty reaches anyway), or
 *   - its session's leader is in the sandbox (a pty the sandbox made and
 *     gave a session: tmux's panes, script's child; run's own pty, whose
 *     session the command leads), or
 *   - it has no session and a task of the sandbox unlocked it (TIOCSPTLCK
 *     on its master, which every pty's maker does before the slave can be
 *     opened: unlockpt, os.openpty, Go's pty packages). "No session" alone
 *     would not do: a terminal emulator unlocks a new window's pty, forks,
 *     and only then its shell makes the pty its controlling terminal; a
 *     sandbox that opens the next pty number in a loop would get the new
 *     window in between and keep the descriptor.
 * Otherwise the open is refused with a read event naming the path. /dev/tty
 * and /dev/ptmx are other devices and are not checked here.
 *
 * Who unlocked a pty is kept per slave inode in pty_made, recorded by
 * file_ioctl (file_ioctl_compat for a 32-bit program). The key is the
 * inode's address, which the kernel reuses once the pty is gone, so an
 * entry also holds the inode's ctime (set when devpts made it): an entry
 * of an earlier pty names a later one only if both were made within the
 * same clock tick at the same address.
 */
#ifndef AIGATE_PTYSCOPE_H
#define AIGATE_PTYSCOPE_H

#include "aigate.h"
#include "procscope.h"
#include "vtscope.h"

/* include/uapi/linux/magic.h, include/linux/major.h, kdev_t.h,
 * uapi asm-generic/ioctls.h; not in BTF. */
#define AIGATE_DEVPTS_MAGIC (0x1cd1UL)
#define AIGATE_PTY_SLAVE_MAJOR (136U)
#define AIGATE_PTY_MAJOR_COUNT (8U)
#define AIGATE_MINORBITS (20U)
#define AIGATE_PTMX_DEV ((5U << AIGATE_MINORBITS) | 2U)
#define AIGATE_TIOCSPTLCK (0x40045431U)
#define AIGATE_S_IFCHR (0020000U)
#ifndef AIGATE_S_IFMT
#define AIGATE_S_IFMT (0170000U)
#endif

/* A pty unlocked by a sandboxed task: its sandbox and its inode's ctime. */
struct pty_made {
	__u64 cgroup_id;
	__s64 ctime_sec;
	__u64 ctime_nsec;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64); /* the slave's struct inode * */
	__type(value, struct pty_made);
} pty_made SEC(".maps");

/* An inode's ctime was i_ctime before Linux 6.6, __i_ctime until 6.11. */
struct inode___i_ctime {
	struct timespec64 i_ctime;
} __attribute__((preserve_access_index));

struct inode___dunder_ctime {
	struct timespec64 __i_ctime;
} __attribute__((preserve_access_index));

/*
 * inode_ctime reads an inode's ctime. Only the offsets depend on the
 * layout, so that the branches CO-RE leaves dead on a kernel are a few
 * instructions (the verifier drops them). tv_nsec is below 10^9: its low
 * 32 bits (little endian) are all of it in every layout.
 */
static __always_inline void inode_ctime(struct inode *inode, __s64 *sec, __u64 *nsec)
{
	__u32 off_sec, off_nsec, ns = 0;

	if (bpf_core_field_exists(inode->i_ctime_sec)) {
		off_sec = bpf_core_field_offset(inode->i_ctime_sec);
		off_nsec = bpf_core_field_offset(inode->i_ctime_nsec);
	} else if (bpf_core_field_exists(((struct inode___dunder_ctime *)inode)->__i_ctime)) {
		off_sec = bpf_core_field_offset(((struct inode___dunder_ctime *)inode)->__i_ctime.tv_sec);
		off_nsec = bpf_core_field_offset(((struct inode___dunder_ctime *)inode)->__i_ctime.tv_nsec);
	} else {
		off_sec = bpf_core_field_offset(((struct inode___i_ctime *)inode)->i_ctime.tv_sec);
		off_nsec = bpf_core_field_offset(((struct inode___i_ctime *)inode)->i_ctime.tv_nsec);
	}
	*sec = 0;
	bpf_probe_read_kernel(sec, sizeof(*sec), (void *)inode + off_sec);
	bpf_probe_read_kernel(&ns, sizeof(ns), (void *)inode + off_nsec);
	*nsec = ns;
}

/*
 * pty_unlocked records, for an ioctl TIOCSPTLCK by a task of the sandbox at
 * sandbox_cgroup on a pty master (a file of /dev/ptmx or a devpts ptmx),
 * that the sandbox made the pty. A lock (arg 1) is recorded too: only the
 * master's holder can ask either.
 */
static __always_inline void pty_unlocked(struct file *file, unsigned int cmd, __u64 sandbox_cgroup)
{
	if (cmd != AIGATE_TIOCSPTLCK)
		return;
	struct inode *inode = BPF_CORE_READ(file, f_inode);
	if (!inode || (BPF_CORE_READ(inode, i_mode) & AIGATE_S_IFMT) != AIGATE_S_IFCHR ||
	    BPF_CORE_READ(inode, i_rdev) != AIGATE_PTMX_DEV)
		return;
	/* ptmx_open: private_data is the tty_file_private of the master. */
	struct tty_file_private *priv = BPF_CORE_READ(file, private_data);
	struct tty_struct *master = BPF_CORE_READ(priv, tty);
	struct tty_struct *slave = BPF_CORE_READ(master, link);
	/* The slave's driver_data is its devpts dentry (ptmx_open). */
	struct dentry *d = BPF_CORE_READ(slave, driver_data);
	struct inode *si = BPF_CORE_READ(d, d_inode);
	if (!si)
		return;
	struct pty_made made = {.cgroup_id = sandbox_cgroup};
	__u64 key = (__u64)si;

	inode_ctime(si, &made.ctime_sec, &made.ctime_nsec);
	bpf_map_update_elem(&pty_made, &key, &made, BPF_ANY);
}

/* made_by reports whether the sandbox at sandbox_cgroup unlocked the pty of inode. */
static __always_inline bool made_by(struct inode *inode, __u64 sandbox_cgroup)
{
	__u64 key = (__u64)inode;
	struct pty_made *m = bpf_map_lookup_elem(&pty_made, &key);
	__s64 sec;
	__u64 nsec;

	if (!m || m->cgroup_id != sandbox_cgroup)
		return false;
	inode_ctime(inode, &sec, &nsec);
	return m->ctime_sec == sec && m->ctime_nsec == nsec;
}

/* Before Linux 5.12 a tty's session was a member of its own. */
struct tty_struct___old {
	struct pid *session;
} __attribute__((preserve_access_index));

static __always_inline struct pid *tty_session(struct tty_struct *tty)
{
	if (bpf_core_field_exists(tty->ctrl))
		return BPF_CORE_READ(tty, ctrl.session);
	return BPF_CORE_READ((struct tty_struct___old *)tty, session);
}

/*
 * pid_leader is pid_task(pid, PIDTYPE_PID): the task a struct pid names,
 * NULL once it was reaped (the kernel clears a tty's session when the
 * session's leader exits, before that).
 */
static __always_inline struct task_struct *pid_leader(struct pid *pid)
{
	struct hlist_node *first = BPF_CORE_READ(pid, tasks[PIDTYPE_PID].first);

	if (!first)
		return NULL;
	return (struct task_struct *)((void *)first -
				      bpf_core_field_offset(struct task_struct, pid_links[PIDTYPE_PID]));
}

/*
 * other_terminal reports whether file, opened by the current task of the
 * sandbox at sandbox_cgroup, is a pty slave that is not the sandbox's
 * (see the top) or a virtual console that is not the opener's controlling
 * terminal (vtscope.h). A few loads for any other file. Not inlined: in a frame
 * of its own its many ways back leave file_open's state the same, so the
 * verifier does not walk the rest of file_open once per way (inlined, it
 * walked 2.5 times the instructions on 6.12).
 */
static __noinline int other_terminal(struct file *file, __u64 sandbox_cgroup)
{
	struct inode *inode = BPF_CORE_READ(file, f_inode);

	if (!inode || (BPF_CORE_READ(inode, i_mode) & AIGATE_S_IFMT) != AIGATE_S_IFCHR)
		return false;
	__u32 rdev = BPF_CORE_READ(inode, i_rdev);
	struct task_struct *task = bpf_get_current_task_btf();
	if (is_console(rdev))
		return ctty_dev(task) != rdev;
	__u32 major = rdev >> AIGATE_MINORBITS;
	if (major < AIGATE_PTY_SLAVE_MAJOR || major >= AIGATE_PTY_SLAVE_MAJOR + AIGATE_PTY_MAJOR_COUNT ||
	    BPF_CORE_READ(inode, i_sb, s_magic) != AIGATE_DEVPTS_MAGIC)
		return false;
	/* devpts keeps the slave's tty in its dentry (devpts_get_priv). */
	struct tty_struct *tty = BPF_CORE_READ(file, f_path.dentry, d_fsdata);
	if (!tty)
		return false; /* a pty being torn down: its open fails anyway */
	if (BPF_CORE_READ(task, signal, tty) == tty)
		return false;
	struct pid *session = tty_session(tty);
	if (!session)
		return !made_by(inode, sandbox_cgroup);
	/* A session without its leader task is a race with its exit: refused. */
	struct task_struct *leader = pid_leader(session);
	return !leader || !task_inside(leader, sandbox_cgroup);
}

#endif /* AIGATE_PTYSCOPE_H */
