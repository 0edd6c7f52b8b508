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
 *   - its tty has no session (nobody's controlling terminal: a pty just
 *     made, as os.openpty, expect and script make them), or
 *   - its session's leader is in the sandbox (a pty the sandbox made and
 *     gave a session: tmux's panes, script's child, run's own pty, whose
 *     session the command leads), or
 *   - it is the opener's controlling terminal (the user's terminal with
 *     run --raw-terminal, which /dev/tty reaches anyway).
 * Otherwise the open is refused with a read event naming the path. /dev/tty
 * and /dev/ptmx are other devices and are not checked here.
 */
#ifndef AIGATE_PTYSCOPE_H
#define AIGATE_PTYSCOPE_H

#include "aigate.h"
#include "procscope.h"

/* include/uapi/linux/magic.h, include/linux/major.h, kdev_t.h; not in BTF. */
#define AIGATE_DEVPTS_MAGIC (0x1cd1UL)
#define AIGATE_PTY_SLAVE_MAJOR (136U)
#define AIGATE_PTY_MAJOR_COUNT (8U)
#define AIGATE_MINORBITS (20U)
#define AIGATE_S_IFCHR (0020000U)
#ifndef AIGATE_S_IFMT
#define AIGATE_S_IFMT (0170000U)
#endif

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
 * (see the top). A few loads for any other file.
 */
static __always_inline bool other_terminal(struct file *file, __u64 sandbox_cgroup)
{
	struct inode *inode = BPF_CORE_READ(file, f_inode);

	if (!inode || (BPF_CORE_READ(inode, i_mode) & AIGATE_S_IFMT) != AIGATE_S_IFCHR)
		return false;
	__u32 major = BPF_CORE_READ(inode, i_rdev) >> AIGATE_MINORBITS;
	if (major < AIGATE_PTY_SLAVE_MAJOR || major >= AIGATE_PTY_SLAVE_MAJOR + AIGATE_PTY_MAJOR_COUNT ||
	    BPF_CORE_READ(inode, i_sb, s_magic) != AIGATE_DEVPTS_MAGIC)
		return false;
	/* devpts keeps the slave's tty in its dentry (devpts_get_priv). */
	struct tty_struct *tty = BPF_CORE_READ(file, f_path.dentry, d_fsdata);
	if (!tty)
		return false; /* a pty being torn down: its open fails anyway */
	struct task_struct *task = bpf_get_current_task_btf();
	if (BPF_CORE_READ(task, signal, tty) == tty)
		return false;
	struct pid *session = tty_session(tty);
	if (!session)
		return false;
	/* A session without its leader task is a race with its exit: refused. */
	struct task_struct *leader = pid_leader(session);
	return !leader || !task_inside(leader, sandbox_cgroup);
}

#endif /* AIGATE_PTYSCOPE_H */
