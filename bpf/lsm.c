//go:build ignore
/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The BPF-LSM enforcement programs: file opens (deny_read, deny_write) and
 * executions (deny_exec, executable mappings included) of sandboxed tasks,
 * matched against the rules of the sandbox's policy (see pathmatch.h for
 * the matching semantics), and the sandbox's boundary around its
 * processes (procscope.h).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "aigate.h"
#include "sandbox.h"
#include "events.h"
#include "pathmatch.h"
#include "unixpeer.h"
#include "procscope.h"
#include "execcopy.h"
#include "verdict.h"
#include "ptyscope.h"

#define EPERM 1
/* include/linux/fs.h and uapi fcntl.h; not in BTF. */
#define FMODE_WRITE (0x2U)
#define O_TRUNC (01000U)
#define AF_INET 2
#define AF_INET6 10
#define AF_PACKET 17
#define AF_UNIX 1
#define SOCK_RAW 3
#define SOCK_TYPE_MASK 0xf
/* uapi asm-generic/mman-common.h; not in BTF. */
#define PROT_EXEC (0x4UL)

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/*
 * deny reports the denial (path, dlen with the NUL as d_path returns it) and
 * returns the verdict: allow in audit mode, else -EPERM.
 */
static __always_inline int deny(__u64 cgroup_id, struct sandbox *sb, __u8 kind, __u8 op,
				__u32 rule, const char *path, long dlen)
{
	int verdict = (sb->flags & AIGATE_SB_AUDIT) ? 0 : -EPERM;
	struct event *e = event_start(cgroup_id, sb, kind, op,
				      rule == AIGATE_RULE_UNCHECKED ? 0 : rule);

	if (!e)
		return verdict;
	if (dlen > 0) {
		bpf_probe_read_kernel_str(e->path, sizeof(e->path), path);
		e->path_len = dlen - 1;
	}
	/*
	 * Adaptive wakeup (0), not BPF_RB_NO_WAKEUP: the loader's reader
	 * sleeps until woken. Denials are rare outside a denial storm.
	 */
	bpf_ringbuf_submit(e, 0);
	return verdict;
}

/*
 * deny_unclaimed denies what could not be checked because every scratch
 * buffer of this CPU is held by a preempted program (scratch.h): rule 0,
 * no path.
 */
static __always_inline int deny_unclaimed(__u64 cgroup_id, struct sandbox *sb, __u8 kind, __u8 op)
{
	return deny(cgroup_id, sb, kind, op, AIGATE_RULE_UNCHECKED, NULL, 0);
}

/*
 * deny_release is deny for a rule found (0: allow) from s, then gives s
 * back: the event's path is copied from s before another task can claim
 * it.
 */
static __always_inline int deny_release(struct scratch *s, __u64 cgroup_id, struct sandbox *sb,
					__u8 kind, __u8 op, __u32 rule, const char *path, long dlen)
{
	int ret = rule ? deny(cgroup_id, sb, kind, op, rule, path, dlen) : 0;

	release_scratch(s);
	return ret;
}

/*
 * deny_terminal refuses the open of another session's terminal or a
 * console with a read event naming its path (no rule: the kernel's check,
 * ptyscope.h).
 */
static __always_inline int deny_terminal(__u64 cgroup_id, struct sandbox *sb, struct file *file)
{
	struct scratch *s = claim_scratch();

	if (!s)
		return deny_unclaimed(cgroup_id, sb, AIGATE_KIND_FILE, AIGATE_OP_READ);
	long dlen = bpf_d_path((struct path *)&file->f_path, s->full, sizeof(s->full));
	int ret = deny(cgroup_id, sb, AIGATE_KIND_FILE, AIGATE_OP_READ, AIGATE_RULE_UNCHECKED, s->full, dlen);

	release_scratch(s);
	return ret;
}

SEC("lsm/file_open")
int BPF_PROG(aigate_file_open, struct file *file)
{
	__u64 cgroup_id;
	struct sandbox *sb = current_sandbox(&cgroup_id);

	if (!sb)
		return 0;

	/*
	 * Another session's terminal (ptyscope.h) or a virtual console not
	 * the opener's controlling terminal (vtscope.h), whatever the rules say:
	 * a check of the kernel's, not a path, so it needs no rule set.
	 */
	if (other_terminal(file, cgroup_id))
		return deny_terminal(cgroup_id, sb, file);

	/*
	 * O_RDONLY|O_TRUNC truncates without FMODE_WRITE; deny_write covers it.
	 */
	bool write = (file->f_mode & FMODE_WRITE) || (file->f_flags & O_TRUNC);
	/*
	 * An allowed verdict for this file, path and rules (verdict.h) comes
	 * first: a file opened again costs no rule set lookup either.
	 */
	__u32 need = write ? AIGATE_VERDICT_READ | AIGATE_VERDICT_WRITE : AIGATE_VERDICT_READ;
	struct verdict_state vs;
	bool cacheable = verdict_now(file, sb->policy_id, &vs);
	if (cacheable && verdict_hit(file->f_inode, &vs, need))
		return 0;
	__u32 rset = rule_set(sb->policy_id, AIGATE_ACCESS_READ);
	__u32 wset = rule_set(sb->policy_id, AIGATE_ACCESS_WRITE);
	if (!set_kinds(rset) && !(write && set_kinds(wset)))
		return 0;
	struct scratch *s = claim_scratch();
	if (!s)
		return deny_unclaimed(cgroup_id, sb, AIGATE_KIND_FILE, write ? AIGATE_OP_WRITE : AIGATE_OP_READ);

	long dlen = bpf_d_path((struct path *)&file->f_path, s->full, sizeof(s->full));
	load_path(s, dlen);
	struct dentry *d = BPF_CORE_READ(file, f_path.dentry);
	struct vfsmount *mnt = BPF_CORE_READ(file, f_path.mnt);
	load_leaf_name(s, BPF_CORE_READ(d, d_name.name), BPF_CORE_READ(d, d_name.len));

	__u8 op = AIGATE_OP_READ;
	__u32 rule = match_file(s, d, mnt, rset);
	if (!rule && write) {
		op = AIGATE_OP_WRITE;
		rule = match_file(s, d, mnt, wset);
	}
	if (!rule && cacheable)
		verdict_store(file, &vs, need);
	return deny_release(s, cgroup_id, sb, AIGATE_KIND_FILE, op, rule, s->full, dlen);
}

/*
 * match_filename checks bprm->filename, the name the caller executed, which
 * differs from the resolved file when it is a symlink (curl -> curl.real):
 * its basename against the name rules, and, when absolute, the whole name
 * against Paths. It reuses s->path and the leaf names, so the caller must be
 * done with them.
 */
static __always_inline __u32 match_filename(struct scratch *s, const char *filename, __u32 set,
					    __u32 kinds)
{
	long n = bpf_probe_read_kernel_str(s->path.path, sizeof(s->path.path), filename);
	__u32 rule;

	if (n <= 1)
		return 0;
	if ((kinds & AIGATE_SET_PATHS) && s->path.path[0] == '/') {
		s->path.prefixlen = 32 + (__u32)n * 8;
		rule = match_path(s, set);
		if (rule)
			return rule;
	}

	/*
	 * The last '/' is tracked in map memory, not a register: a register
	 * holding it would give each iteration a distinct verifier state and
	 * the 6.1 verifier would give up after a million instructions.
	 */
	s->base = 0;
	for (__u32 i = 0; i < AIGATE_PATH_KEY; i++) {
		if (i >= n - 1)
			break;
		__u64 j = i;
		asm volatile("%0 &= 0xff" : "+r"(j));
		if (j < AIGATE_PATH_KEY && s->path.path[j] == '/')
			s->base = i + 1;
	}
	__u32 base = s->base;
	if (base >= n - 1 || base >= AIGATE_PATH_KEY)
		return 0; /* ends in '/': not a file name */
	load_leaf_name(s, (const unsigned char *)filename + base, n - 1 - base);
	if (kinds & AIGATE_SET_NAMES) {
		__u32 pl = s->name.prefixlen;
		s->name.prefixlen = 0; /* the Names hash keys have none */
		s->name.set = set;
		rule = lookup_rule(&name_rules, &s->name);
		s->name.prefixlen = pl;
		if (rule)
			return rule;
	}
	return match_leaf_name(s, set, kinds);
}

SEC("lsm/bprm_check_security")
int BPF_PROG(aigate_bprm_check, struct linux_binprm *bprm)
{
	__u64 cgroup_id;
	struct sandbox *sb = current_sandbox(&cgroup_id);

	if (!sb)
		return 0;
	__u32 set = rule_set(sb->policy_id, AIGATE_ACCESS_EXEC);
	__u32 kinds = set_kinds(set);
	if (!kinds)
		return 0;
	struct scratch *s = claim_scratch();
	if (!s)
		return deny_unclaimed(cgroup_id, sb, AIGATE_KIND_EXEC, AIGATE_OP_EXEC);

	struct file *file = bprm->file;
	long dlen = bpf_d_path((struct path *)&file->f_path, s->full, sizeof(s->full));
	load_path(s, dlen);
	struct dentry *d = BPF_CORE_READ(file, f_path.dentry);
	struct vfsmount *mnt = BPF_CORE_READ(file, f_path.mnt);
	load_leaf_name(s, BPF_CORE_READ(d, d_name.name), BPF_CORE_READ(d, d_name.len));

	__u32 rule = match_file(s, d, mnt, set);
	if (!rule)
		rule = match_filename(s, BPF_CORE_READ(bprm, filename), set, kinds);
	return deny_release(s, cgroup_id, sb, AIGATE_KIND_EXEC, AIGATE_OP_EXEC, rule, s->full, dlen);
}

/*
 * deny_copy reports a refused copy of a deny_exec binary with the path of
 * the file executed, written by bpf_d_path straight into the event (a
 * sleepable program holds no scratch buffer across the hash).
 */
static __always_inline int deny_copy(__u64 cgroup_id, const struct sandbox *sb, __u32 rule,
				     struct file *file)
{
	int verdict = (sb->flags & AIGATE_SB_AUDIT) ? 0 : -EPERM;
	struct event *e = event_start(cgroup_id, sb, AIGATE_KIND_EXEC, AIGATE_OP_EXEC, rule);

	if (!e)
		return verdict;
	long dlen = bpf_d_path((struct path *)&file->f_path, e->path, sizeof(e->path));
	if (dlen > 0)
		e->path_len = dlen - 1;
	else
		e->path[0] = 0;
	bpf_ringbuf_submit(e, 0);
	return verdict;
}

/*
 * check_copy refuses file when it is a copy of a deny_exec binary under
 * any name (execcopy.h). Only sleepable programs call it: bpf_ima_file_hash
 * reads the file. After the sandbox check it costs one hash lookup when no
 * denied binary of the sandbox has the file's size. The denied files
 * themselves are left to the programs that match rules (the loader writes
 * their inodes too): that keeps one event per refusal, whichever program
 * the trampoline runs first. A file of a denied binary's size whose
 * SHA-256 cannot be had (no IMA in the kernel, or ima_hash= chose another
 * algorithm) is refused: fail closed, for that size only.
 */
static __always_inline int check_copy(struct file *file)
{
	__u64 cgroup_id;
	struct sandbox *cur = current_sandbox(&cgroup_id);

	if (!cur || !file)
		return 0;
	/* A copy: the map value may be freed while the hash sleeps. */
	struct sandbox sb = *cur;
	struct exec_size_key sk = {};
	sk.set = rule_set(sb.policy_id, AIGATE_ACCESS_EXEC);
	sk.size = BPF_CORE_READ(file, f_inode, i_size);
	__u32 *size_rule = bpf_map_lookup_elem(&exec_sizes, &sk);
	if (!size_rule)
		return 0;
	__u32 rule = *size_rule;
	if (match_inode(BPF_CORE_READ(file, f_path.dentry), sk.set))
		return 0;

	struct exec_sum_key hk = {};
	hk.set = sk.set;
	if (bpf_ima_file_hash(file, hk.sum, sizeof(hk.sum)) == HASH_ALGO_SHA256) {
		__u32 *sum_rule = bpf_map_lookup_elem(&exec_sums, &hk);
		if (!sum_rule)
			return 0; /* same size, other content */
		rule = *sum_rule;
	}
	return deny_copy(cgroup_id, &sb, rule, file);
}

/* bprm_copy: the exec of a copy (cp /usr/bin/curl /tmp/x; /tmp/x). */
SEC("lsm.s/bprm_check_security")
int BPF_PROG(aigate_bprm_copy, struct linux_binprm *bprm)
{
	return check_copy(bprm->file);
}

/*
 * mmap_copy: an executable mapping of a copy, which is how the dynamic
 * loader runs one (ld.so /tmp/x). mprotect to PROT_EXEC of a copy mapped
 * for reading is not covered: file_mprotect is no sleepable hook.
 */
SEC("lsm.s/mmap_file")
int BPF_PROG(aigate_mmap_copy, struct file *file, unsigned long reqprot, unsigned long prot,
	     unsigned long flags)
{
	if (!(prot & PROT_EXEC))
		return 0;
	return check_copy(file);
}

/*
 * check_exec_mapping applies the exec rules to a PROT_EXEC mapping of file.
 * A dynamic loader run as the program (ld.so /usr/bin/curl) opens curl for
 * reading and maps it executable; bprm_check_security only ever saw ld.so.
 * ld.so and every shared library are mapped the same way, so this runs on
 * each library load in a sandbox: nothing is done for a policy without exec
 * rules, and the inode is tried before the path, the final name and the
 * component walk. bpf_d_path is allowed in mmap_file (a
 * sleepable hook) but not in file_mprotect; both use build_path, which can
 * only add matches (it ignores a chroot), and a mapping the exec hooks
 * allowed matches the same rules here.
 */
static __noinline int check_exec_mapping(__u64 cgroup_id, struct sandbox *sb, struct file *file)
{
	__u32 set = rule_set(sb->policy_id, AIGATE_ACCESS_EXEC);
	__u32 kinds = set_kinds(set);

	if (!kinds || !file)
		return 0;
	struct dentry *d = BPF_CORE_READ(file, f_path.dentry);
	struct vfsmount *mnt = BPF_CORE_READ(file, f_path.mnt);
	if (!d || !mnt)
		return 0;
	struct scratch *s = claim_scratch();
	if (!s)
		return deny_unclaimed(cgroup_id, sb, AIGATE_KIND_EXEC, AIGATE_OP_EXEC);

	/*
	 * A denied file is mostly found by inode (the loader resolves exec
	 * names in the ExecDirs): try that before walking the dentry chain.
	 * The path is built for Paths rules, or else only for the event.
	 */
	__u32 rule = 0;
	long len = -1;
	bool built = false;
	if (kinds & AIGATE_SET_INODES)
		rule = match_inode(d, set);
	if (!rule) {
		s->path.prefixlen = 0;
		if (kinds & AIGATE_SET_PATHS) {
			len = build_path(s, d, mnt);
			load_built_path(s, len);
			built = true;
		}
		load_leaf_name(s, BPF_CORE_READ(d, d_name.name), BPF_CORE_READ(d, d_name.len));
		rule = match_file(s, d, mnt, set);
	}
	/* One test of rule: a second one doubled the verifier's work here. */
	int ret = 0;
	if (rule) {
		if (!built)
			len = build_path(s, d, mnt);
		ret = deny(cgroup_id, sb, AIGATE_KIND_EXEC, AIGATE_OP_EXEC, rule, built_path(s), len);
	}
	release_scratch(s);
	return ret;
}

/*
 * check_exec_hook is the body of mmap_file and file_mprotect: prot is what
 * the mapping will allow. file_mprotect passes the vma instead of the file,
 * read only for a sandboxed task; an anonymous mapping has no file.
 */
static __always_inline int check_exec_hook(struct file *file, struct vm_area_struct *vma,
					   unsigned long prot)
{
	__u64 cgroup_id;
	struct sandbox *sb = current_sandbox(&cgroup_id);

	if (!sb || !(prot & PROT_EXEC))
		return 0;
	if (vma)
		file = BPF_CORE_READ(vma, vm_file);
	return check_exec_mapping(cgroup_id, sb, file);
}

/*
 * mmap_file: prot is reqprot plus PROT_EXEC when the personality has
 * READ_IMPLIES_EXEC.
 */
SEC("lsm/mmap_file")
int BPF_PROG(aigate_mmap_file, struct file *file, unsigned long reqprot, unsigned long prot,
	     unsigned long flags)
{
	return check_exec_hook(file, NULL, prot);
}

/* file_mprotect: a PROT_READ mapping of a denied file made executable later. */
SEC("lsm/file_mprotect")
int BPF_PROG(aigate_file_mprotect, struct vm_area_struct *vma, unsigned long reqprot,
	     unsigned long prot)
{
	return check_exec_hook(NULL, vma, prot);
}

/*
 * Writes that do not open the file: truncate(2), unlink, rmdir, rename (both
 * ends), link (both ends), chmod, chown. Each is checked against the write
 * rules and the read rules (a file no sandboxed process may open must not
 * be renamed or linked to a readable name either, nor destroyed), and
 * reported as a write. bpf_d_path is not allowed in path_* hooks, so the
 * path is built from the dentry chain (build_path).
 *
 * replace is set for the hooks that can put other content at a path or
 * move a tree away from it (rename at either end, unlink, symlink): for
 * those, a directory above a protected path (AIGATE_ACCESS_ANCESTORS:
 * .git above .git/hooks) counts as the protected path, with its rule.
 * rmdir is not one: it removes only an empty directory, which holds no
 * protected content, and what is made again in its place is checked by
 * path (path_mkdir, file_open). The directory above an existing protected
 * path is never empty, so its rmdir fails (ENOTEMPTY) without a refusal
 * or an event: Claude Code tries rmdir on its project directory, above
 * the auto memory aigate protects, and carries on when it fails.
 */
static __noinline int check_write(__u64 cgroup_id, struct sandbox *sb, struct dentry *d,
				  struct vfsmount *mnt, __u32 replace)
{
	__u32 wset = rule_set(sb->policy_id, AIGATE_ACCESS_WRITE);
	__u32 rset = rule_set(sb->policy_id, AIGATE_ACCESS_READ);

	if (!d || !mnt || (!set_kinds(wset) && !set_kinds(rset)))
		return 0;
	struct scratch *s = claim_scratch();
	if (!s)
		return deny_unclaimed(cgroup_id, sb, AIGATE_KIND_FILE, AIGATE_OP_WRITE);

	long len = build_path(s, d, mnt);
	load_built_path(s, len);
	load_leaf_name(s, BPF_CORE_READ(d, d_name.name), BPF_CORE_READ(d, d_name.len));
	__u32 rule = match_file(s, d, mnt, wset);
	if (!rule)
		rule = match_file(s, d, mnt, rset);
	if (!rule && replace) {
		__u32 aset = rule_set(sb->policy_id, AIGATE_ACCESS_ANCESTORS);
		if (set_kinds(aset) & AIGATE_SET_PATHS)
			rule = match_path(s, aset);
	}
	return deny_release(s, cgroup_id, sb, AIGATE_KIND_FILE, AIGATE_OP_WRITE, rule, built_path(s), len);
}

/*
 * check_write_hook is check_write for the hooks given one path (own: the
 * file itself) or a directory and the dentry in it. The sandbox check comes
 * first, so a task outside pays no reads. own is a constant at every call:
 * a test of dentry instead would make the verifier check both ways.
 */
static __always_inline int check_write_hook(const struct path *path, struct dentry *dentry, bool own,
					    __u32 replace)
{
	__u64 cgroup_id;
	struct sandbox *sb = current_sandbox(&cgroup_id);

	if (!sb)
		return 0;
	if (own)
		dentry = BPF_CORE_READ(path, dentry);
	return check_write(cgroup_id, sb, dentry, BPF_CORE_READ(path, mnt), replace);
}

SEC("lsm/path_truncate")
int BPF_PROG(aigate_path_truncate, const struct path *path)
{
	return check_write_hook(path, NULL, true, 0);
}

SEC("lsm/path_unlink")
int BPF_PROG(aigate_path_unlink, const struct path *dir, struct dentry *dentry)
{
	return check_write_hook(dir, dentry, false, 1);
}

SEC("lsm/path_rmdir")
int BPF_PROG(aigate_path_rmdir, const struct path *dir, struct dentry *dentry)
{
	return check_write_hook(dir, dentry, false, 0);
}

SEC("lsm/path_rename")
int BPF_PROG(aigate_path_rename, const struct path *old_dir, struct dentry *old_dentry,
	     const struct path *new_dir, struct dentry *new_dentry)
{
	__u64 cgroup_id;
	struct sandbox *sb = current_sandbox(&cgroup_id);

	if (!sb)
		return 0;
	int ret = check_write(cgroup_id, sb, old_dentry, BPF_CORE_READ(old_dir, mnt), 1);
	if (ret)
		return ret;
	return check_write(cgroup_id, sb, new_dentry, BPF_CORE_READ(new_dir, mnt), 1);
}

SEC("lsm/path_link")
int BPF_PROG(aigate_path_link, struct dentry *old_dentry, const struct path *new_dir,
	     struct dentry *new_dentry)
{
	__u64 cgroup_id;
	struct sandbox *sb = current_sandbox(&cgroup_id);

	if (!sb)
		return 0;
	/*
	 * A link gives a file another name, which the cached verdicts must
	 * not outlive (verdict.h). Counted after the sandbox check, like
	 * everything a program does: a link made outside every sandbox is
	 * another dentry, so another key, anyway.
	 */
	verdict_gen_bump(AIGATE_GEN_LINKS);
	/* A hard link never crosses a mount: the source is on new_dir's. */
	struct vfsmount *mnt = BPF_CORE_READ(new_dir, mnt);
	int ret = check_write(cgroup_id, sb, old_dentry, mnt, 0);
	if (ret)
		return ret;
	return check_write(cgroup_id, sb, new_dentry, mnt, 0);
}

SEC("lsm/path_chmod")
int BPF_PROG(aigate_path_chmod, const struct path *path)
{
	return check_write_hook(path, NULL, true, 0);
}

SEC("lsm/path_chown")
int BPF_PROG(aigate_path_chown, const struct path *path)
{
	return check_write_hook(path, NULL, true, 0);
}

/*
 * Names that appear without an open: mkdir, symlink, mknod (also a unix
 * socket's bind, a FIFO, or a regular file with mknod(S_IFREG)). A symlink
 * planted in a deny_write directory (.git/hooks/pre-commit -> elsewhere)
 * would otherwise change what runs there without writing a protected file.
 * dentry is the new name (negative: no inode yet).
 */
SEC("lsm/path_mkdir")
int BPF_PROG(aigate_path_mkdir, const struct path *dir, struct dentry *dentry)
{
	return check_write_hook(dir, dentry, false, 0);
}

SEC("lsm/path_symlink")
int BPF_PROG(aigate_path_symlink, const struct path *dir, struct dentry *dentry)
{
	return check_write_hook(dir, dentry, false, 1);
}

SEC("lsm/path_mknod")
int BPF_PROG(aigate_path_mknod, const struct path *dir, struct dentry *dentry)
{
	return check_write_hook(dir, dentry, false, 0);
}

/*
 * socket_create: a sandbox may create sockets of the families that aigate
 * checks or that stay on this machine: AF_UNIX (connect_unix, unix peers),
 * AF_INET and AF_INET6 (the cgroup programs), AF_NETLINK (the kernel's own
 * interfaces, which glibc's getaddrinfo needs). Every other family is
 * refused: AF_PACKET (frames no connect or sendmsg check sees), AF_VSOCK
 * (a VM guest's line to its host), Bluetooth, CAN, TIPC, RDS, XDP, ...
 * Raw IPv4/IPv6 sockets are refused too. Reported as net connect events
 * naming the socket, as the cgroup sock_create program does; this hook
 * also sees io_uring's IORING_OP_SOCKET.
 */
#define AIGATE_AF_NETLINK 16
#define AIGATE_AF_VSOCK 40

SEC("lsm/socket_create")
int BPF_PROG(aigate_socket_create, int family, int type, int protocol, int kern)
{
	__u64 cgroup_id;
	struct sandbox *sb;

	if (kern)
		return 0;
	sb = current_sandbox(&cgroup_id);
	if (!sb)
		return 0;
	bool inet = family == AF_INET || family == AF_INET6;
	bool raw = (type & SOCK_TYPE_MASK) == SOCK_RAW && inet;
	if ((inet && !raw) || family == AF_UNIX || family == AIGATE_AF_NETLINK)
		return 0;

	int verdict = (sb->flags & AIGATE_SB_AUDIT) ? 0 : -EPERM;
	struct event *e = event_start(cgroup_id, sb, AIGATE_KIND_NET, AIGATE_OP_CONNECT, 0);
	if (e) {
		static const char packet[] = "packet socket";
		static const char rawname[] = "raw socket";
		static const char vsock[] = "vsock socket";
		/* "family NN socket": the number written below. */
		static const char other[] = "family 00 socket";
		if (raw) {
			e->family = family;
			__builtin_memcpy(e->path, rawname, sizeof(rawname));
			e->path_len = sizeof(rawname) - 1;
		} else if (family == AF_PACKET) {
			__builtin_memcpy(e->path, packet, sizeof(packet));
			e->path_len = sizeof(packet) - 1;
		} else if (family == AIGATE_AF_VSOCK) {
			__builtin_memcpy(e->path, vsock, sizeof(vsock));
			e->path_len = sizeof(vsock) - 1;
		} else {
			__u32 f = (__u32)family % 100;
			__builtin_memcpy(e->path, other, sizeof(other));
			e->path[7] = '0' + f / 10;
			e->path[8] = '0' + f % 10;
			e->path_len = sizeof(other) - 1;
		}
		bpf_ringbuf_submit(e, 0);
	}
	return verdict;
}

/*
 * socket_connect and socket_sendmsg: the cgroup programs check the inet
 * sockets of the sandbox's cgroup, the ones its tasks create. A socket
 * created outside and handed in (SCM_RIGHTS, an inherited descriptor)
 * keeps its creator's cgroup, so they never see it: here, keyed on the
 * current task, a sandboxed task may neither connect such a socket nor send
 * on it. Sockets of the sandbox return after one cgroup walk.
 */
static __always_inline int check_foreign_inet(struct socket *sock, const void *uaddr, __u8 op)
{
	__u64 cgroup_id;
	struct sandbox *sb = current_sandbox(&cgroup_id);

	if (!sb)
		return 0;
	struct sock *sk = BPF_CORE_READ(sock, sk);
	if (!sk)
		return 0;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return 0;
	if (peer_inside(sk, cgroup_id))
		return 0;

	struct event *e = event_start(cgroup_id, sb, AIGATE_KIND_NET, op, 0);
	if (e) {
		static const char what[] = "socket from outside the sandbox";
		e->family = family;
		__builtin_memcpy(e->path, what, sizeof(what));
		e->path_len = sizeof(what) - 1;
		__u16 afam = 0;
		if (uaddr && !bpf_probe_read_kernel(&afam, sizeof(afam), uaddr)) {
			if (afam == AF_INET) {
				const struct sockaddr_in *in = uaddr;
				e->port = bpf_ntohs(BPF_CORE_READ(in, sin_port));
				bpf_probe_read_kernel(e->addr, 4, &in->sin_addr);
			} else if (afam == AF_INET6) {
				const struct sockaddr_in6 *in6 = uaddr;
				e->port = bpf_ntohs(BPF_CORE_READ(in6, sin6_port));
				bpf_probe_read_kernel(e->addr, 16, &in6->sin6_addr);
			}
			if (afam == AF_INET || afam == AF_INET6)
				e->family = afam;
		}
		bpf_ringbuf_submit(e, 0);
	}
	return (sb->flags & AIGATE_SB_AUDIT) ? 0 : -EPERM;
}

SEC("lsm/socket_connect")
int BPF_PROG(aigate_socket_connect, struct socket *sock, struct sockaddr *address, int addrlen)
{
	return check_foreign_inet(sock, address, AIGATE_OP_CONNECT);
}

SEC("lsm/socket_sendmsg")
int BPF_PROG(aigate_socket_sendmsg, struct socket *sock, struct msghdr *msg, int size)
{
	return check_foreign_inet(sock, BPF_CORE_READ(msg, msg_name), AIGATE_OP_SEND);
}

static __always_inline int check_unix_peer(struct sock *peer)
{
	__u64 cgroup_id;
	struct sandbox *sb = current_sandbox(&cgroup_id);

	if (!sb || !peer)
		return 0;
	if (peer_inside(peer, cgroup_id))
		return 0;
	struct scratch *s = claim_scratch();
	if (!s)
		return deny_unclaimed(cgroup_id, sb, AIGATE_KIND_NET, AIGATE_OP_UNIX);
	long len;
	bool abstract;
	if (unix_peer_allowed(s, peer, rule_set(sb->policy_id, AIGATE_ACCESS_UNIX), &len, &abstract)) {
		release_scratch(s);
		return 0;
	}

	int verdict = (sb->flags & AIGATE_SB_AUDIT) ? 0 : -EPERM;
	struct event *e = event_start(cgroup_id, sb, AIGATE_KIND_NET, AIGATE_OP_UNIX, 0);
	if (e) {
		if (len > 0) {
			bpf_probe_read_kernel_str(e->path, sizeof(e->path),
						  abstract ? s->comp.name : built_path(s));
			e->path_len = len - 1;
		}
		bpf_ringbuf_submit(e, 0);
	}
	release_scratch(s);
	return verdict;
}

/* connect(2) on stream and seqpacket sockets; other is the listener. */
SEC("lsm/unix_stream_connect")
int BPF_PROG(aigate_unix_connect, struct socket *sock, struct sock *other, struct sock *newsk)
{
	return check_unix_peer(other);
}

/* connect(2) and every send on datagram sockets. */
SEC("lsm/unix_may_send")
int BPF_PROG(aigate_unix_may_send, struct socket *sock, struct socket *other)
{
	return check_unix_peer(BPF_CORE_READ(other, sk));
}

/*
 * userns_create (Linux 6.1+): unshare(CLONE_NEWUSER), clone and clone3
 * with it. A sandbox may create user namespaces only when its policy says
 * allow_userns: inside one an unprivileged process may mount, and so bind
 * a directory over a path that a rule or allow_unix names. Joining an
 * existing one (setns) needs ptrace access to its owner, which
 * ptrace_access_check refuses outside the sandbox.
 */
SEC("lsm/userns_create")
int BPF_PROG(aigate_userns_create, const struct cred *cred)
{
	__u64 cgroup_id;
	struct sandbox *sb = current_sandbox(&cgroup_id);

	if (!sb || (sb->flags & AIGATE_SB_USERNS))
		return 0;
	int verdict = (sb->flags & AIGATE_SB_AUDIT) ? 0 : -EPERM;
	struct event *e = event_start(cgroup_id, sb, AIGATE_KIND_PROC, AIGATE_OP_USERNS, 0);
	if (e) {
		static const char what[] = "new user namespace";
		__builtin_memcpy(e->path, what, sizeof(what));
		e->path_len = sizeof(what) - 1;
		bpf_ringbuf_submit(e, 0);
	}
	return verdict;
}

/*
 * ptrace_access_check: PTRACE_ATTACH/SEIZE and every ptrace_may_access
 * (/proc/PID/mem, environ, maps, fd; process_vm_readv/writev;
 * pidfd_getfd; kcmp). current is the tracer, child the target.
 */
/*
 * file_ioctl denies nothing: it records the ptys a sandbox unlocks
 * (ptyscope.h), which file_open then lets it open while they have no
 * session.
 */
SEC("lsm/file_ioctl")
int BPF_PROG(aigate_file_ioctl, struct file *file, unsigned int cmd, unsigned long arg)
{
	__u64 cgroup_id;
	struct sandbox *sb = current_sandbox(&cgroup_id);

	if (!sb)
		return 0;
	pty_unlocked(file, cmd, cgroup_id);
	return 0;
}

/*
 * file_ioctl_compat is file_ioctl for a 32-bit program: compat_sys_ioctl
 * calls this hook instead since Linux 6.8 (and the stable kernels that took
 * the change, Debian's 6.1 among them), so without it the pty a 32-bit
 * program makes is not recorded and file_open refuses its slave. The
 * loader attaches it only where the kernel has the hook.
 */
SEC("lsm/file_ioctl_compat")
int BPF_PROG(aigate_file_ioctl_compat, struct file *file, unsigned int cmd, unsigned long arg)
{
	__u64 cgroup_id;
	struct sandbox *sb = current_sandbox(&cgroup_id);

	if (!sb)
		return 0;
	pty_unlocked(file, cmd, cgroup_id);
	return 0;
}

SEC("lsm/ptrace_access_check")
int BPF_PROG(aigate_ptrace_access, struct task_struct *child, unsigned int mode)
{
	__u64 cgroup_id;
	struct sandbox *sb = current_sandbox(&cgroup_id);

	if (!sb || task_inside(child, cgroup_id))
		return 0;
	return deny_task(cgroup_id, sb, AIGATE_OP_PTRACE, child, !(mode & PTRACE_MODE_NOAUDIT));
}

/*
 * ptrace_traceme: current asks its parent to trace it. A sandboxed task
 * whose parent is outside the sandbox (the aigate run that started it)
 * would hand that process its stops.
 */
SEC("lsm/ptrace_traceme")
int BPF_PROG(aigate_ptrace_traceme, struct task_struct *parent)
{
	__u64 cgroup_id;
	struct sandbox *sb = current_sandbox(&cgroup_id);

	if (!sb || task_inside(parent, cgroup_id))
		return 0;
	return deny_task(cgroup_id, sb, AIGATE_OP_PTRACE, parent, true);
}

/*
 * task_kill: kill, tgkill, pidfd_send_signal, sigqueue from current to p.
 * With cred set, the kernel signals on behalf of cred (USB async I/O
 * completion) from whatever task happens to run: not current's doing.
 */
SEC("lsm/task_kill")
int BPF_PROG(aigate_task_kill, struct task_struct *p, struct kernel_siginfo *info, int sig,
	     const struct cred *cred)
{
	__u64 cgroup_id, credv = 0;
	struct sandbox *sb;

	/*
	 * Read cred as a number: the 6.12 verifier takes a pointer argument
	 * for non-NULL and pruned `if (cred) return 0;` into returning 0
	 * always (5 instructions verified, no signal ever refused), though
	 * the kernel passes NULL for every ordinary kill.
	 */
	bpf_probe_read_kernel(&credv, sizeof(credv), &ctx[3]);
	if (credv)
		return 0;
	sb = current_sandbox(&cgroup_id);
	if (!sb || task_inside(p, cgroup_id))
		return 0;
	return deny_task(cgroup_id, sb, AIGATE_OP_SIGNAL, p, true);
}
