//go:build ignore
/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Unix-socket confinement without BPF LSM (kernels 6.7+): connect_unix and
 * sendmsg_unix, attached to each sandbox cgroup, refuse a sandboxed
 * connect(2) or sendto(2) to a unix socket name that neither allow_unix
 * lists nor a process of the same sandbox bound (see unixmatch.h): a path
 * name by leading the call to a name that cannot exist (ENOENT, see
 * unix_nowhere), an abstract name with EPERM.
 *
 * A separate object from sockaddr.c: the attach types and the kfunc below
 * do not exist on 6.1, where loading them would fail the whole collection.
 *
 * The names bound inside a sandbox are learned when bind(2) returns 0 to a
 * sandboxed task (tp_btf/sys_exit: kprobes and fexit do not attach on every
 * kernel we target), so a bind that failed because an outside socket holds
 * the name teaches nothing. connect then checks that the socket that got
 * the name still holds it (unix_bound_alive): a name the sandbox bound,
 * closed (or unlinked, or renamed away) and an outside listener took later
 * is refused.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "sandbox.h"
#include "events.h"
#include "unixmatch.h"
#include "scratch.h"
#include "refused.h"

#define AIGATE_AF_UNIX 1

char LICENSE[] SEC("license") = "Dual BSD/GPL";

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;
extern int bpf_sock_addr_set_sun_path(struct bpf_sock_addr_kern *sa_kern, const __u8 *sun_path,
				      __u32 sun_path__sz) __ksym;

/*
 * A refused path name is rewritten to this one instead of failing the call
 * with EPERM: a name no process can create (procfs makes no entry in a fd
 * directory but for an open descriptor's number, and a mount needs an
 * existing file to cover), so the kernel's lookup fails with ENOENT, as
 * for a name where no socket is. A program that starts its own server
 * when there is none (tmux, git credential-cache, emacsclient -a '')
 * takes EPERM as final; ENOENT lets it start the server in the sandbox.
 * The original name is still reported: the agent looks it up and keeps
 * quiet only when nothing is there (internal/agent/unreachable.go).
 */
static const char unix_nowhere[] = "/proc/self/fd/aigate-refused";

/*
 * Scratch keys: two of them would not fit the 512-byte stack with an event.
 * One buffer per program run, taken and given back as scratch.h says, so
 * a task preempted on this CPU never checks or learns another task's name.
 */
struct unix_scratch_buf {
	__u64 owner; /* scratch.h: first */
	struct unix_bound_key bound;
	struct unix_allow_key allow;
	char walk[256]; /* a path rebuilt from dentries, right-aligned */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, AIGATE_SCRATCH_SLOTS);
	__type(key, __u32);
	__type(value, struct unix_scratch_buf);
} unix_scratch SEC(".maps");

/* claim takes a scratch buffer and clears what a previous run left in it. */
static __always_inline struct unix_scratch_buf *claim(void)
{
	struct unix_scratch_buf *s = scratch_claim(&unix_scratch);

	if (s)
		__builtin_memset(&s->bound, 0, sizeof(*s) - __builtin_offsetof(struct unix_scratch_buf, bound));
	return s;
}

/* report writes the denial; abstract names are shown as "@name", like ss. */
static __always_inline int report(__u64 cgroup_id, const struct sandbox *sb,
				  const struct unix_name *n)
{
	struct event *e = event_start(cgroup_id, sb, AIGATE_KIND_NET, AIGATE_OP_UNIX, 0);

	if (e) {
		e->family = AIGATE_AF_UNIX;
		if (n->abstract) {
			e->path[0] = '@';
			for (int i = 0; i < AIGATE_UNIX_NAME - 1; i++) {
				char c = n->name[i];
				e->path[i + 1] = (i < n->abstract && !c) ? '@' : c;
			}
			e->path_len = n->abstract + 1;
		} else {
			__builtin_memcpy(e->path, n->name, AIGATE_UNIX_NAME);
			e->path_len = AIGATE_UNIX_NAME;
		}
		bpf_ringbuf_submit(e, 0);
	}
	return (sb->flags & AIGATE_SB_AUDIT) ? 1 : 0;
}

struct walk_ctx {
	struct unix_scratch_buf *s;
	const struct unix_name *n;
	struct dentry *d;
	int pos; /* n->name[pos..len) matched the names walked so far */
	int bad;
};

/* len_step: bpf_loop body finding the length of a path name. */
static long len_step(__u32 i, void *arg)
{
	struct walk_ctx *w = arg;

	asm volatile("%0 &= 0x7f" : "+r"(i));
	if (i >= AIGATE_UNIX_NAME || !w->n->name[i])
		return 1;
	w->pos = i + 1;
	return 0;
}

/* cmp_step: bpf_loop body comparing the component in s->walk. */
static long cmp_step(__u32 i, void *arg)
{
	struct walk_ctx *w = arg;
	__u32 at = w->pos + i;

	if (i >= AIGATE_UNIX_NAME || at >= AIGATE_UNIX_NAME) {
		w->bad = 1;
		return 1;
	}
	/* The verifier does not carry the checks above through: mask. */
	asm volatile("%0 &= 0x7f" : "+r"(i));
	asm volatile("%0 &= 0x7f" : "+r"(at));
	if (w->s->walk[i] != w->n->name[at]) {
		w->bad = 1;
		return 1;
	}
	return 0;
}

/*
 * walk_step checks that d's name is the component of n->name that ends at
 * pos, preceded by a '/', and moves to d's parent.
 */
static long walk_step(__u32 i, void *arg)
{
	struct walk_ctx *w = arg;
	struct dentry *d = w->d;
	struct dentry *parent = BPF_CORE_READ(d, d_parent);

	if (parent == d || !parent)
		return 1; /* root of the filesystem: the rest is the mount point */
	__u32 clen = BPF_CORE_READ(d, d_name.len);
	const unsigned char *cname = BPF_CORE_READ(d, d_name.name);
	if (clen == 0 || clen > AIGATE_UNIX_PATH || (int)clen + 1 > w->pos) {
		w->bad = 1;
		return 1;
	}
	asm volatile("%0 &= 0x7f" : "+r"(clen));
	if (bpf_probe_read_kernel(w->s->walk, clen, cname)) {
		w->bad = 1;
		return 1;
	}
	w->pos -= clen;
	bpf_loop(clen, cmp_step, w, 0);
	if (w->bad)
		return 1;
	__u32 slash = w->pos - 1;
	if (slash >= AIGATE_UNIX_NAME) {
		w->bad = 1;
		return 1;
	}
	asm volatile("%0 &= 0x7f" : "+r"(slash));
	if (w->n->name[slash] != '/') {
		w->bad = 1;
		return 1;
	}
	w->pos = slash;
	w->d = parent;
	return 0;
}

/*
 * path_still_names reports whether dentry, the file a sandbox's socket was
 * bound to, is still reachable as n->name: it is hashed (not unlinked) and
 * the names from it up to the root of its filesystem equal the tail of
 * n->name (the rest is the mount point, which cannot be renamed while
 * mounted). So an unlinked or renamed socket file no longer vouches for a
 * new file at the old path.
 */
static __always_inline int path_still_names(struct unix_scratch_buf *s, struct dentry *d,
					    const struct unix_name *n)
{
	struct walk_ctx w = {.s = s, .n = n, .d = d};

	if (!BPF_CORE_READ(d, d_hash.pprev))
		return 0; /* unlinked */
	bpf_loop(AIGATE_UNIX_NAME, len_step, &w, 0);
	bpf_loop(AIGATE_UNIX_PATH / 2, walk_step, &w, 0);
	return !w.bad;
}

/*
 * unix_bound_alive reports whether the socket recorded in v still exists
 * and still holds the name. The struct socket may have been freed: every
 * read goes through bpf_probe_read_kernel, and a freed or reused socket
 * fails one of the checks (its sock is orphaned and marked dead on
 * release, and a reused one has another inode number).
 */
static __always_inline int unix_bound_alive(struct unix_scratch_buf *s,
					    const struct unix_bound_val *v,
					    const struct unix_name *n)
{
	struct socket *sock = (struct socket *)v->sock;
	struct socket_alloc *sa = container_of(sock, struct socket_alloc, socket);
	struct sock *sk = BPF_CORE_READ(sock, sk);
	unsigned long flags = 0;

	if (!sk || BPF_CORE_READ(sk, sk_socket) != sock || BPF_CORE_READ(sa, vfs_inode.i_ino) != v->ino)
		return 0;
	if (bpf_probe_read_kernel(&flags, sizeof(flags), &sk->__sk_common.skc_flags) || (flags & (1UL << SOCK_DEAD)))
		return 0;
	if (n->abstract)
		return 1;
	struct unix_sock *u = (struct unix_sock *)sk;
	struct dentry *d = BPF_CORE_READ(u, path.dentry);
	if (!d || (__u64)d != v->dentry)
		return 0;
	return path_still_names(s, d, n);
}

/*
 * unix_allowed tells whether the sandbox may reach the name in uaddr, which
 * it leaves in s->bound.n for the event: 1 allowed, 0 refused, -1 no name
 * (the kernel refuses the call itself).
 */
/*
 * unix_name_dotdot reports whether the path name n has a ".." component:
 * "/allowed/../elsewhere/bus" starts with an allow_unix directory but names
 * a socket outside it, so such a name never matches an allow_unix entry.
 */
static __always_inline int unix_name_dotdot(const struct unix_name *n)
{
	if (n->abstract)
		return 0;
	/* No state carried between iterations: the verifier prunes them. */
	for (int i = 0; i + 3 < AIGATE_UNIX_NAME; i++) {
		if (n->name[i] == '/' && n->name[i + 1] == '.' && n->name[i + 2] == '.' &&
		    (n->name[i + 3] == '/' || n->name[i + 3] == 0))
			return 1;
	}
	return 0;
}

static __always_inline int unix_allowed(struct unix_scratch_buf *s, __u64 cgroup_id,
					const struct sandbox *sb, const void *uaddr, __u32 len)
{
	if (unix_name_read(&s->bound.n, uaddr, len) < 0)
		return -1;

	s->bound.cgroup_id = cgroup_id;
	struct unix_bound_val *v = bpf_map_lookup_elem(&unix_bound, &s->bound);
	if (v && unix_bound_alive(s, v, &s->bound.n))
		return 1;
	if (unix_name_dotdot(&s->bound.n))
		return 0;

	s->allow.prefixlen = AIGATE_UNIX_KEY_BITS + 8 * AIGATE_UNIX_NAME;
	s->allow.policy_id = sb->policy_id;
	__builtin_memcpy(&s->allow.n, &s->bound.n, sizeof(s->allow.n));
	return bpf_map_lookup_elem(&unix_allow, &s->allow) ? 1 : 0;
}

/*
 * report_unclaimed refuses a name without a scratch buffer (every one is
 * held by a preempted program). The name goes straight from the sockaddr
 * into the event, formatted as report does: nothing is matched.
 */
static __noinline int report_unclaimed(__u64 cgroup_id, const struct sandbox *sb,
				       const void *uaddr, __u32 len)
{
	__u32 size = len - 2; /* sun_path bytes */

	if (len <= 2 || size > AIGATE_UNIX_PATH)
		return 1; /* no name: the kernel refuses the call itself */
	struct event *e = event_start(cgroup_id, sb, AIGATE_KIND_NET, AIGATE_OP_UNIX, 0);
	if (e) {
		e->family = AIGATE_AF_UNIX;
		asm volatile("%0 &= 0x7f" : "+r"(size));
		if (size && size <= AIGATE_UNIX_PATH &&
		    !bpf_probe_read_kernel(e->path, size, (const char *)uaddr + 2)) {
			/*
			 * Abstract: "@name", NULs shown as '@' (bytes past size
			 * too: path_len hides them). A path ends at its NUL.
			 */
			if (!e->path[0]) {
				for (int i = 0; i < AIGATE_UNIX_PATH; i++) {
					if (!e->path[i])
						e->path[i] = '@';
				}
			}
			e->path_len = size;
		}
		bpf_ringbuf_submit(e, 0);
	}
	return (sb->flags & AIGATE_SB_AUDIT) ? 1 : 0;
}

static __always_inline int check_unix(struct bpf_sock_addr *ctx)
{
	__u64 cgroup_id = 0;
	struct sandbox *sb = current_sandbox(&cgroup_id);

	if (!sb)
		return 1;
	struct bpf_sock_addr_kern *sa = bpf_cast_to_kern_ctx(ctx);
	struct unix_scratch_buf *s = claim();
	if (!s)
		return report_unclaimed(cgroup_id, sb, sa->uaddr, sa->uaddrlen);

	/* -1, no name: the kernel refuses the call itself. */
	int ret = 1;
	if (!unix_allowed(s, cgroup_id, sb, sa->uaddr, sa->uaddrlen)) {
		ret = report(cgroup_id, sb, &s->bound.n);
		/*
		 * A path name leads nowhere instead (ENOENT, see unix_nowhere);
		 * where the kfunc fails, EPERM stays. Abstract names keep EPERM:
		 * they have no lookup that could fail, and the programs above
		 * use paths.
		 */
		if (!ret && !s->bound.n.abstract) {
			/* The kfunc takes no read-only memory: the name goes via s. */
			__builtin_memcpy(s->walk, unix_nowhere, sizeof(unix_nowhere));
			if (!bpf_sock_addr_set_sun_path(sa, (const __u8 *)s->walk, sizeof(unix_nowhere)))
				ret = 1;
		}
	}
	scratch_release(s);
	return ret;
}

SEC("cgroup/connect_unix")
int aigate_connect_unix(struct bpf_sock_addr *ctx)
{
	return check_unix(ctx);
}

SEC("cgroup/sendmsg_unix")
int aigate_sendmsg_unix(struct bpf_sock_addr *ctx)
{
	return check_unix(ctx);
}

/* learn_bound records in unix_bound that the sandbox's sock holds addr. */
static __always_inline void learn_bound(struct unix_scratch_buf *s, __u64 cgroup_id,
					struct socket *sock, struct unix_sock *u,
					struct unix_address *addr)
{
	int len = BPF_CORE_READ(addr, len);

	if (len <= 0 || unix_name_read(&s->bound.n, &addr->name[0], (__u32)len) < 0)
		return;
	/* A relative path names another file from another directory. */
	if (!s->bound.n.abstract && s->bound.n.name[0] != '/')
		return;
	s->bound.cgroup_id = cgroup_id;

	struct socket_alloc *sa = container_of(sock, struct socket_alloc, socket);
	struct unix_bound_val v = {
		.sock = (__u64)sock,
		.ino = BPF_CORE_READ(sa, vfs_inode.i_ino),
		.dentry = s->bound.n.abstract ? 0 : (__u64)BPF_CORE_READ(u, path.dentry),
	};
	/* Unmarked, the name would outlive its sandbox: not learned instead. */
	__u8 mark = 1;
	if (bpf_map_update_elem(&unix_bound_cgroups, &cgroup_id, &mark, BPF_ANY))
		return;
	bpf_map_update_elem(&unix_bound, &s->bound, &v, BPF_ANY);
}

#define AIGATE_NR_BIND 49 /* x86_64 */
#define AIGATE_S_IFMT 00170000
#define AIGATE_S_IFSOCK 0140000

/* x86_64 numbers of the calls the exec helper's seccomp filter refuses. */
#define AIGATE_NR_SOCKET 41
#define AIGATE_NR_SOCKETPAIR 53
#define AIGATE_NR_CLONE 56
#define AIGATE_NR_UNSHARE 272
#define AIGATE_NR_SETNS 308
#define AIGATE_NR_IO_URING_SETUP 425
#define AIGATE_CLONE_NEWUSER 0x10000000
#define AIGATE_AF_INET 2
#define AIGATE_AF_INET6 10
#define AIGATE_AF_NETLINK 16
#define AIGATE_EPERM 1

/*
 * report_seccomp reports a call that the exec helper's seccomp filter
 * refused (internal/seccomp): seccomp itself reports nothing, but the
 * refused call still passes sys_exit, with EPERM. The same events as
 * the BPF LSM backend's: a new user namespace (process userns), a socket
 * of a family outside unix, inet and netlink ("family NN socket", net
 * connect), and io_uring ("io_uring", net connect: refused for its
 * socket operation). An EPERM the kernel itself gave for the same calls
 * is reported too: with these arguments, the policy refuses them anyway.
 */
static __noinline int report_seccomp(struct pt_regs *regs)
{
	__u64 nr = regs->orig_ax, arg0 = regs->di, arg1 = regs->si;
	int what = 0; /* 0: a socket family, 1: a user namespace, 2: io_uring */

	switch (nr) {
	case AIGATE_NR_CLONE:
	case AIGATE_NR_UNSHARE:
		if (!(arg0 & AIGATE_CLONE_NEWUSER))
			return 0;
		what = 1;
		break;
	case AIGATE_NR_SETNS:
		if (arg1 && !(arg1 & AIGATE_CLONE_NEWUSER))
			return 0;
		what = 1;
		break;
	case AIGATE_NR_IO_URING_SETUP:
		what = 2;
		break;
	case AIGATE_NR_SOCKET:
	case AIGATE_NR_SOCKETPAIR:
		if (arg0 == AIGATE_AF_UNIX || arg0 == AIGATE_AF_INET || arg0 == AIGATE_AF_INET6 ||
		    arg0 == AIGATE_AF_NETLINK)
			return 0;
		break;
	default:
		return 0;
	}
	__u64 cgroup_id = 0;
	struct sandbox *sb = current_sandbox(&cgroup_id);
	if (!sb)
		return 0;
	struct event *e = event_start(cgroup_id, sb, what == 1 ? AIGATE_KIND_PROC : AIGATE_KIND_NET,
				      what == 1 ? AIGATE_OP_USERNS : AIGATE_OP_CONNECT, 0);
	if (!e)
		return 0;
	static const char userns[] = "new user namespace";
	static const char uring[] = "io_uring";
	static const char other[] = "family 00 socket";
	if (what == 1) {
		__builtin_memcpy(e->path, userns, sizeof(userns));
		e->path_len = sizeof(userns) - 1;
	} else if (what == 2) {
		__builtin_memcpy(e->path, uring, sizeof(uring));
		e->path_len = sizeof(uring) - 1;
	} else {
		__u32 f = (__u32)arg0 % 100;
		__builtin_memcpy(e->path, other, sizeof(other));
		e->path[7] = '0' + f / 10;
		e->path[8] = '0' + f % 10;
		e->path_len = sizeof(other) - 1;
	}
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/*
 * sys_exit runs for every system call of every task while it is attached
 * (the loader attaches it while a sandbox is confined, and 10 s after
 * the last one): the syscall number and result are compared before
 * anything else. Besides learning bound names it reports the seccomp
 * filter's refusals and the calls Landlock may have refused (refused.h).
 */
SEC("tp_btf/sys_exit")
int BPF_PROG(aigate_unix_bind_exit, struct pt_regs *regs, long ret)
{
	if (ret == -AIGATE_EPERM) {
		report_seccomp(regs);
		return report_refused(regs, ret);
	}
	if (ret == -AIGATE_ERR_ACCES)
		return report_refused(regs, ret);
	if (ret != 0 || regs->orig_ax != AIGATE_NR_BIND)
		return 0;
	__u64 cgroup_id = 0;
	struct sandbox *sb = current_sandbox(&cgroup_id);
	if (!sb)
		return 0;

	/* The socket bind(2) was called on: current->files->fdt->fd[fd]. */
	unsigned long fd = regs->di;
	struct task_struct *task = bpf_get_current_task_btf();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt || fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *file = NULL;
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return 0;
	if ((BPF_CORE_READ(file, f_inode, i_mode) & AIGATE_S_IFMT) != AIGATE_S_IFSOCK)
		return 0;
	struct socket *sock = BPF_CORE_READ(file, private_data);
	struct sock *sk = BPF_CORE_READ(sock, sk);
	if (!sk || BPF_CORE_READ(sk, __sk_common.skc_family) != AIGATE_AF_UNIX)
		return 0;
	struct unix_sock *u = (struct unix_sock *)sk;
	struct unix_address *addr = BPF_CORE_READ(u, addr);
	if (!addr)
		return 0;

	/* No free buffer: the name is not learned, and connect refuses it. */
	struct unix_scratch_buf *s = claim();
	if (!s)
		return 0;
	learn_bound(s, cgroup_id, sock, u, addr);
	scratch_release(s);
	return 0;
}
