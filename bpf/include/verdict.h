/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * A cache of file_open's allowed verdicts, so that a file a sandbox opens
 * again costs a few loads instead of bpf_d_path, the Paths key and the walk
 * to the root (pathmatch.h).
 *
 * Only "no rule of the set matched" is cached, never a denial and never an
 * allowance by audit mode, in the inode's BPF storage (freed with the
 * inode, so an entry never outlives its file). A verdict depends on the
 * file's path as d_path and the walk see it, on the rules and on nothing
 * else; the entry records everything that path depends on, and a hit needs
 * every part unchanged:
 *
 *   - the dentry and the mount (struct vfsmount *) the file was opened by:
 *     another hard link or bind mount of the inode is another key;
 *   - the file has exactly one link (a regular file with i_nlink == 1, so
 *     it has one name in its filesystem) now and when it was stored, and
 *     no link(2) was made in any sandbox since (AIGATE_GEN_LINKS, counted
 *     by path_link after its sandbox check): a link and an unlink of the
 *     old name would give it another name without a rename. A link made
 *     outside every sandbox is not counted (no program acts for a task
 *     outside one): its new name is another dentry, so another key; a
 *     stale hit would need the old name removed and the new dentry
 *     allocated at the old one's freed address between two opens;
 *   - rename_lock's sequence: the kernel advances it on every d_move and
 *     d_exchange, whoever renames (inside or outside any sandbox, over NFS,
 *     in sysfs), so any rename anywhere invalidates every entry;
 *   - the task's root is the root of its mount namespace (d_path names the
 *     file from the task's root: no chroot), the file's mount is in that
 *     namespace, and the namespace's id and mount event counter
 *     (mnt_namespace.event, advanced on every mount, unmount and move in
 *     it) are the same: the mount tree above the file did not change;
 *   - the policy id and AIGATE_GEN_RULES, which the loader advances after
 *     it writes or deletes rules (policy ids are reused).
 *
 * The generations are read before the full check and again after it
 * (behind a full barrier), and the verdict is stored only if they did not
 * move in between (the seqlock pattern): a rename racing with the check
 * leaves no entry.
 * Every rename or link on the machine costs every entry, so the cache
 * helps most where a sandbox opens the same files between renames (a
 * build, a test run, git status), and never changes a verdict.
 */
#ifndef AIGATE_VERDICT_H
#define AIGATE_VERDICT_H

#include "aigate.h"

/* include/uapi/linux/stat.h; not in BTF. */
#define AIGATE_S_IFMT (0170000U)
#define AIGATE_S_IFREG (0100000U)

/* What a verdict was decided under; a hit needs all of it the same. */
struct verdict_state {
	__u64 dentry;
	__u64 mnt; /* struct vfsmount * */
	__u64 ns;  /* mount namespace of the task and of mnt */
	__u64 ns_id;
	__u64 ns_event;
	__u64 gen; /* verdict_gen: rules (random) + links (counted) */
	__u32 policy;
	__u32 renames; /* rename_lock's sequence, even */
};

/*
 * seq is a sequence count: odd while a store is under way. Stores take it
 * from even to odd with a compare-and-exchange (a store that loses the race
 * is dropped) and back to even; readers read it with an atomic add of 0
 * before and after copying the entry and use the copy only if both reads
 * are the same even value. BPF's fetching atomics are fully ordered on
 * every JIT, so the copy lies between the two reads on arm64 too; no
 * helper call (bpf_spin_lock is two, with interrupts masked between).
 */
struct verdict {
	__u64 seq;
	__u32 ok;
	__u32 pad;
	struct verdict_state st;
};

struct {
	__uint(type, BPF_MAP_TYPE_INODE_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct verdict);
} verdicts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, AIGATE_GEN_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} verdict_gen SEC(".maps");

const struct verdict *unused_verdict __attribute__((unused));

/*
 * The address of the dcache's rename seqlock (fs/dcache.c), which the
 * loader reads from /proc/kallsyms itself (internal/loader/kallsyms.go);
 * 0 where kallsyms does not give it (kptr_restrict, a kernel without
 * CONFIG_KALLSYMS_ALL, /proc/kallsyms unreadable), and then nothing is
 * cached. Not an `extern __ksym __weak`: cilium/ebpf resolves those from
 * /proc/kallsyms too, and refuses the whole object when it cannot read it.
 */
const volatile __u64 rename_lock_addr = 0;

/* Before Linux 6.14 a mount namespace's unique id was its seq. */
struct mnt_namespace___seq {
	__u64 seq;
} __attribute__((preserve_access_index));

/* verdict_gen_bump advances slot (AIGATE_GEN_LINKS) of verdict_gen. */
static __always_inline void verdict_gen_bump(__u32 slot)
{
	__u64 *g = bpf_map_lookup_elem(&verdict_gen, &slot);

	if (g)
		__sync_fetch_and_add(g, 1);
}

/*
 * verdict_renames reads rename_lock's sequence (the first member of a
 * seqlock_t, with or without lockdep); false while a rename is under way
 * or when the address is unknown.
 */
static __always_inline bool verdict_renames(__u32 *seq)
{
	const void *p = (const void *)rename_lock_addr;

	if (!p || bpf_probe_read_kernel(seq, sizeof(*seq), p))
		return false;
	return !(*seq & 1);
}

/*
 * verdict_now fills st for file, opened by the current task under policy;
 * false when the file's verdict may not be cached (see the top).
 */
static __always_inline bool verdict_now(struct file *file, __u32 policy, struct verdict_state *st)
{
	struct inode *inode = file->f_inode;

	if (!inode || (inode->i_mode & AIGATE_S_IFMT) != AIGATE_S_IFREG || inode->i_nlink != 1)
		return false;
	struct task_struct *task = bpf_get_current_task_btf();
	struct fs_struct *fs = task->fs;
	struct nsproxy *nsp = task->nsproxy;
	if (!fs || !nsp)
		return false;
	struct mnt_namespace *ns = nsp->mnt_ns;
	if (!ns)
		return false;
	struct mount *nsroot = ns->root;
	if (!nsroot || fs->root.mnt != &nsroot->mnt || fs->root.dentry != nsroot->mnt.mnt_root)
		return false;
	struct vfsmount *vmnt = file->f_path.mnt;
	struct mount *m = container_of(vmnt, struct mount, mnt);
	if ((__u64)BPF_CORE_READ(m, mnt_ns) != (__u64)ns)
		return false;
	if (bpf_core_field_exists(((struct mnt_namespace___seq *)ns)->seq))
		st->ns_id = ((struct mnt_namespace___seq *)ns)->seq;
	else if (bpf_core_field_exists(ns->ns.ns_id))
		st->ns_id = ns->ns.ns_id;
	else
		return false;
	st->ns_event = ns->event;
	st->ns = (__u64)ns;
	st->dentry = (__u64)file->f_path.dentry;
	st->mnt = (__u64)vmnt;
	st->policy = policy;

	__u32 k = AIGATE_GEN_RULES;
	__u64 *rules = bpf_map_lookup_elem(&verdict_gen, &k);
	k = AIGATE_GEN_LINKS;
	__u64 *links = bpf_map_lookup_elem(&verdict_gen, &k);
	if (!rules || !links)
		return false;
	st->gen = *rules + *links;
	return verdict_renames(&st->renames);
}

static __always_inline bool verdict_same(const struct verdict_state *a, const struct verdict_state *b)
{
	return a->dentry == b->dentry && a->mnt == b->mnt && a->ns == b->ns &&
	       a->ns_id == b->ns_id && a->ns_event == b->ns_event && a->gen == b->gen &&
	       a->policy == b->policy && a->renames == b->renames;
}

/* verdict_hit reports whether inode's entry allows every bit of need under st. */
static __always_inline bool verdict_hit(struct inode *inode, const struct verdict_state *st,
					__u32 need)
{
	struct verdict *v = bpf_inode_storage_get(&verdicts, inode, 0, 0);
	struct verdict_state c;
	__u32 ok;

	if (!v)
		return false;
	__u64 seq = __sync_fetch_and_add(&v->seq, 0);
	if (seq & 1)
		return false;
	c = v->st;
	ok = v->ok;
	if (__sync_fetch_and_add(&v->seq, 0) != seq)
		return false;
	return (ok & need) == need && verdict_same(&c, st);
}

/*
 * verdict_store records that the sets of ok matched nothing for file under
 * st, read before the check: only if nothing moved since (now, read after
 * it, is the same). The entry is taken first: its compare-and-exchange is a
 * full barrier, so every read of the check is done before the state is
 * read again, on weakly ordered CPUs too.
 */
static __always_inline void verdict_store(struct file *file, const struct verdict_state *st, __u32 ok)
{
	struct verdict *v =
		bpf_inode_storage_get(&verdicts, file->f_inode, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	struct verdict_state now;

	if (!v)
		return;
	__u64 seq = __sync_fetch_and_add(&v->seq, 0);
	if ((seq & 1) || __sync_val_compare_and_swap(&v->seq, seq, seq + 1) != seq)
		return; /* another store is under way */
	if (verdict_now(file, st->policy, &now) && verdict_same(&now, st)) {
		if (verdict_same(&v->st, st)) {
			v->ok |= ok;
		} else {
			v->st = *st;
			v->ok = ok;
		}
	}
	__sync_fetch_and_add(&v->seq, 1);
}

#endif /* AIGATE_VERDICT_H */
