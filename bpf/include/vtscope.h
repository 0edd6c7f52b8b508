/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The virtual consoles (/dev/tty1 to /dev/tty63) a sandboxed task may open
 * by name (file_open, through other_terminal in ptyscope.h): login chowns
 * the console a user logs in on to the user, so a sandbox of the same user
 * could read what is typed there (a password) or write to it. aigate run
 * adds a deny_read rule for each console the user owns at the start; this
 * check needs no list, so it also keeps out a console logged in on after
 * the start. The one console a sandboxed task keeps is its own
 * controlling terminal (a user who runs aigate run --raw-terminal on a
 * console), which /dev/tty reaches anyway.
 *
 * A console is known by its device number alone, on whatever filesystem
 * its node is: a node is made only with CAP_MKNOD in the initial user
 * namespace, and one on a mount of another user namespace does not open
 * (nodev), so every node with the number is the console. tty0 (the
 * foreground console, minor 0) is root's and the tty group's, never the
 * user's, and is not checked.
 */
#ifndef AIGATE_VTSCOPE_H
#define AIGATE_VTSCOPE_H

#include "aigate.h"

/* include/uapi/linux/major.h TTY_MAJOR, uapi/linux/vt.h MAX_NR_CONSOLES,
 * linux/kdev_t.h MINORBITS; not in BTF. */
#define AIGATE_TTY_MAJOR (4U)
#define AIGATE_MAX_NR_CONSOLES (63U)
#define AIGATE_VT_MINORBITS (20U)
#define AIGATE_VT_MINORMASK ((1U << AIGATE_VT_MINORBITS) - 1)

/* is_console reports whether rdev (the kernel's encoding) is /dev/tty1..63. */
static __always_inline bool is_console(__u32 rdev)
{
	__u32 minor = rdev & AIGATE_VT_MINORMASK;

	return rdev >> AIGATE_VT_MINORBITS == AIGATE_TTY_MAJOR && minor >= 1 &&
	       minor <= AIGATE_MAX_NR_CONSOLES;
}

/*
 * ctty_dev is the device number of task's controlling terminal (0: none),
 * as tty_devnum makes it: its driver's first device plus its index. Read
 * at file_open, before the tty layer's open could make the console the
 * opener's controlling terminal.
 */
static __always_inline __u32 ctty_dev(struct task_struct *task)
{
	struct tty_struct *tty = BPF_CORE_READ(task, signal, tty);

	if (!tty)
		return 0;
	struct tty_driver *drv = BPF_CORE_READ(tty, driver);
	__u32 first = ((__u32)BPF_CORE_READ(drv, major) << AIGATE_VT_MINORBITS) |
		      (__u32)BPF_CORE_READ(drv, minor_start);

	return first + (__u32)BPF_CORE_READ(tty, index);
}

#endif /* AIGATE_VTSCOPE_H */
