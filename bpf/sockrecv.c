//go:build ignore
/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Sockets handed in from outside, without BPF LSM. A socket keeps the
 * cgroup of the task that created it, and the cgroup sock_addr programs
 * (sockaddr.c) run for the socket's cgroup: a socket created outside the
 * sandbox and passed in (SCM_RIGHTS, seccomp's SECCOMP_IOCTL_NOTIF_ADDFD,
 * pidfd_getfd) is never checked, whatever it connects or sends to.
 *
 * No hook this backend may use can refuse the receipt (no BPF LSM,
 * bpf_override_return needs CONFIG_FUNCTION_ERROR_INJECTION, which the
 * distribution kernels leave off), nor the later connect or send on a
 * socket of another cgroup. So the receiver is killed instead, before the
 * descriptor exists: security_file_receive runs in the receiving task for
 * every descriptor the kernel installs into a process from elsewhere
 * (receive_fd and receive_fd_replace call it before they allocate the
 * descriptor number), and bpf_send_signal(SIGKILL) marks the whole thread
 * group dying there. The receiving thread never returns to user space;
 * what other threads of the process can still do is in docs/network.md.
 *
 * Unix sockets are let through: fd-passing services and in-sandbox
 * helpers use them, and on this backend what a unix socket reaches is
 * checked by name where it is connected (sockunix.c), or not at all before
 * 6.7. Sockets the sandbox created itself (its cgroup or below) pass, so
 * descriptors moved between processes of one sandbox are untouched.
 */
#include "vmlinux.h"
#ifdef __TARGET_ARCH_arm64
/*
 * vmlinux.h is x86's; BPF_KPROBE reads arm64's registers through the
 * UAPI layout (arch/arm64/include/uapi/asm/ptrace.h), which is fixed.
 */
struct user_pt_regs {
	__u64 regs[31];
	__u64 sp;
	__u64 pc;
	__u64 pstate;
};
#endif
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "sandbox.h"
#include "events.h"
#include "sockowner.h"

#define AIGATE_AF_UNIX 1
#define AIGATE_AF_INET 2
#define AIGATE_AF_INET6 10
#define AIGATE_SOCKFS_MAGIC 0x534F434B
#define AIGATE_SIGKILL 9

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/*
 * foreign_socket returns the socket behind file when it is a socket of a
 * family other than unix created outside the sandbox cgroup, else NULL.
 * Sockets are told apart by their superblock (sockfs): an O_PATH
 * descriptor of a socket's name on disk is not one.
 */
static __always_inline struct sock *foreign_socket(struct file *file, __u64 sandbox_cgroup)
{
	if (BPF_CORE_READ(file, f_inode, i_sb, s_magic) != AIGATE_SOCKFS_MAGIC)
		return NULL;
	struct socket *sock = BPF_CORE_READ(file, private_data);
	if (!sock)
		return NULL;
	struct sock *sk = BPF_CORE_READ(sock, sk);
	if (!sk)
		return NULL;
	if (BPF_CORE_READ(sk, __sk_common.skc_family) == AIGATE_AF_UNIX)
		return NULL;
	if (peer_inside(sk, sandbox_cgroup))
		return NULL;
	return sk;
}

/* report names the socket's peer when it has one, as lsm.c's check does. */
static __always_inline void report(__u64 cgroup_id, const struct sandbox *sb, struct sock *sk)
{
	struct event *e = event_start(cgroup_id, sb, AIGATE_KIND_NET, AIGATE_OP_RECEIVE, 0);

	if (!e)
		return;
	static const char what[] = "socket from outside the sandbox";
	__builtin_memcpy(e->path, what, sizeof(what));
	e->path_len = sizeof(what) - 1;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	__u16 dport = BPF_CORE_READ(sk, __sk_common.skc_dport);
	/* An unconnected socket has no peer: the event shows the path only. */
	if (dport && family == AIGATE_AF_INET) {
		e->family = family;
		e->port = bpf_ntohs(dport);
		__u32 daddr = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__builtin_memcpy(e->addr, &daddr, 4);
	} else if (dport && family == AIGATE_AF_INET6) {
		e->family = family;
		e->port = bpf_ntohs(dport);
		BPF_CORE_READ_INTO(&e->addr, sk, __sk_common.skc_v6_daddr);
	}
	bpf_ringbuf_submit(e, 0);
}

SEC("kprobe/security_file_receive")
int BPF_KPROBE(aigate_file_receive, struct file *file)
{
	__u64 cgroup_id = 0;
	struct sandbox *sb = current_sandbox(&cgroup_id);

	if (!sb)
		return 0;
	struct sock *sk = foreign_socket(file, cgroup_id);
	if (!sk)
		return 0;
	/*
	 * Signal first: the receiving thread is past the point of no return
	 * before the event is written (a full ring buffer changes nothing).
	 */
	if (!(sb->flags & AIGATE_SB_AUDIT))
		bpf_send_signal(AIGATE_SIGKILL);
	report(cgroup_id, sb, sk);
	return 0;
}
