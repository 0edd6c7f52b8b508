/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * File rule matching for the LSM programs, with exactly the semantics of
 * policy.FileSet (internal/policy/types.go):
 *
 *   Paths       the path equals an entry or lies beneath it: an LPM trie over
 *               path bytes holding "P\0" (exact) and "P/" (beneath).
 *   Names       some component of the path equals an entry: a hash lookup per
 *               component while walking dentry->d_parent up to the root,
 *               crossing mount points the way d_path does.
 *   NamePrefix  the final component starts with an entry: an LPM trie over
 *               name bytes.
 *   NameSuffix  the final component ends with an entry: an LPM trie over the
 *               name's bytes reversed.
 *
 * plus inode rules for protected files and directories that existed when
 * the sandbox started, keyed by the kernel's (s_dev, i_ino), so that other
 * paths to them (hard links, bind mounts, chroots, /proc/PID/root) are
 * caught too. Directory inodes are checked at every level of the walk.
 *
 * A set's exceptions (except_read) are Paths, Names and name glob entries
 * stored under set | AIGATE_SET_EXCEPT; they cancel a Names or name glob
 * match, never a Paths or inode one.
 *
 * Every map key carries a "set" = policy_id << 3 | access, so one map holds
 * the rules of every sandbox and access (read, write, exec, allow_unix,
 * ancestors) without one sandbox's longest match hiding another set's entry.
 */
#ifndef AIGATE_PATHMATCH_H
#define AIGATE_PATHMATCH_H

#include "aigate.h"
#include "scratch.h"

/* The access values, key sizes and set flags are in aigate.h (the contract). */

/* d_path output buffer; paths longer than this are not matched by Paths. */
#define AIGATE_DPATH_MAX 4096
/*
 * Path components walked for Names and directory inodes, from the leaf up,
 * and by build_path. bpf_loop makes the bound a run-time cost only (paid by
 * paths that deep); a walk that does not reach the root within it cannot
 * rule out a denied component above, and denies (AIGATE_RULE_UNCHECKED).
 * 2048 components is the deepest path d_path can still name in 4096 bytes.
 */
#define AIGATE_WALK_DEPTH 2048
/*
 * A rule id the loader never assigns (policy.RuleID 0 is never valid):
 * match_file's answer when it could not check the file, which denies. Events
 * report it as rule 0.
 */
#define AIGATE_RULE_UNCHECKED 0xffffffffU
/*
 * build_path writes a path into full[..AIGATE_BUILD_END), from the end. It
 * stops 256 bytes short of the buffer's end so that the verifier can see
 * that a component (at most 255 bytes) written at any position below it,
 * and a whole Paths key copied from any position, stay inside the buffer.
 */
#define AIGATE_BUILD_END (AIGATE_DPATH_MAX - 256)
#define AIGATE_COMP_MAX 255

struct path_key {
	__u32 prefixlen;
	__u32 set;
	char path[AIGATE_PATH_KEY];
};

/* Key of the Names hash (prefixlen 0) and of the prefix and suffix tries. */
struct name_key {
	__u32 prefixlen;
	__u32 set;
	char name[AIGATE_NAME_MAX];
};

struct inode_key {
	__u64 ino;
	__u32 dev; /* sb->s_dev: major << 20 | minor */
	__u32 set;
};

/*
 * Per-CPU scratch: too big for the 512-byte BPF stack. LSM programs run
 * with migration disabled but, on a preemptible kernel (preempt=full or
 * lazy), not with preemption disabled: another task's program can run on
 * this CPU in the middle of ours. So each run owns its buffer from
 * claim_scratch to release_scratch (scratch.h), and passes it down,
 * bpf_loop callbacks included, rather than looking it up again.
 */
struct scratch {
	__u64 owner; /* scratch.h: first */
	struct path_key path;
	struct name_key name;  /* final component, for Names and NamePrefix */
	struct name_key rname; /* final component reversed, for NameSuffix */
	struct name_key comp;  /* component under test during the walk */
	char tail[AIGATE_NAME_MAX];
	__u32 base; /* match_filename: start of bprm->filename's basename */
	__u32 pos;  /* build_path: start of the path in full */
	char full[AIGATE_DPATH_MAX];
};

/* Value of every rule map: the policy.RuleID reported in events. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, struct path_key);
	__type(value, __u32);
} path_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct name_key);
	__type(value, __u32);
} name_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384);
	__type(key, struct name_key);
	__type(value, __u32);
} prefix_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384);
	__type(key, struct name_key);
	__type(value, __u32);
} suffix_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct inode_key);
	__type(value, __u32);
} inode_rules SEC(".maps");

/* set -> AIGATE_SET_* bits; a set without an entry has no rules. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u32);
} set_flags SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, AIGATE_SCRATCH_SLOTS);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch_map SEC(".maps");

const struct path_key *unused_path_key __attribute__((unused));
const struct name_key *unused_name_key __attribute__((unused));
const struct inode_key *unused_inode_key __attribute__((unused));

static __always_inline __u32 rule_set(__u32 policy_id, __u32 access)
{
	return (policy_id << AIGATE_ACCESS_BITS) | access;
}

static __always_inline __u32 set_kinds(__u32 set)
{
	__u32 *f = bpf_map_lookup_elem(&set_flags, &set);

	return f ? *f : 0;
}

/*
 * claim_scratch takes a scratch buffer for this program run; NULL when
 * every one is held (by preempted runs on this CPU): the caller denies.
 * The buffer keeps the last run's bytes; every user loads what it reads.
 */
static __always_inline struct scratch *claim_scratch(void)
{
	return scratch_claim(&scratch_map);
}

/* release_scratch gives the buffer back; every claim path must reach it. */
static __always_inline void release_scratch(struct scratch *s)
{
	scratch_release(s);
}

static __always_inline __u32 lookup_rule(void *map, const void *key)
{
	__u32 *rule = bpf_map_lookup_elem(map, key);

	return rule ? *rule : 0;
}

static __always_inline __u32 match_inode(struct dentry *d, __u32 set)
{
	struct inode_key k = {};

	k.ino = BPF_CORE_READ(d, d_inode, i_ino);
	k.dev = BPF_CORE_READ(d, d_sb, s_dev);
	k.set = set;
	if (!k.ino)
		return 0;
	return lookup_rule(&inode_rules, &k);
}

/*
 * read_name fills k->name with the NUL-terminated name, zero-padded so the
 * whole key can be hashed, and returns its length without the NUL.
 */
static __always_inline long read_name(struct name_key *k, const unsigned char *name)
{
	__builtin_memset(k->name, 0, sizeof(k->name));
	long n = bpf_probe_read_kernel_str(k->name, sizeof(k->name), name);

	return n > 0 ? n - 1 : 0;
}

/*
 * name_len_may_match reports whether a component of len bytes can equal
 * one of the Names entries of a set with these kinds (aigate_name_len):
 * most components of most paths cannot, and skip the hash of a whole key.
 * The length is read apart from the name; a rename in between is no
 * different from one just after the walk passed the component.
 */
static __always_inline bool name_len_may_match(__u32 kinds, __u32 len)
{
	if (!(kinds & AIGATE_SET_NAME_LENS) || len == 0)
		return true;
	if (len > AIGATE_NAME_LEN_LONG)
		len = AIGATE_NAME_LEN_LONG;
	return kinds & (1U << (AIGATE_NAME_LEN_SHIFT + len - 1));
}

/* State of match_walk's loop, on the caller's stack. */
struct walk_state {
	struct scratch *s;
	__u64 d;   /* struct dentry * */
	__u64 mnt; /* struct mount * */
	__u32 set;
	__u32 kinds;
	__u32 rule;
	__u32 done;  /* reached the root */
	__u32 inode; /* rule came from a directory inode, not a name */
};

/* walk_step checks one component for match_walk (a bpf_loop callback). */
static long walk_step(__u32 i, void *arg)
{
	struct walk_state *w = arg;
	struct scratch *s = w->s;
	struct dentry *d = (struct dentry *)w->d;
	struct mount *mnt = (struct mount *)w->mnt;
	__u32 rule;

	if (!s)
		return 1;
	if (w->kinds & AIGATE_SET_DIR_INODES) {
		rule = match_inode(d, w->set);
		if (rule) {
			w->rule = rule;
			w->inode = 1;
			return 1;
		}
	}
	if ((w->kinds & AIGATE_SET_NAMES) &&
	    name_len_may_match(w->kinds, BPF_CORE_READ(d, d_name.len))) {
		s->comp.prefixlen = 0;
		s->comp.set = w->set;
		read_name(&s->comp, BPF_CORE_READ(d, d_name.name));
		rule = lookup_rule(&name_rules, &s->comp);
		if (rule) {
			w->rule = rule;
			return 1;
		}
	}
	struct dentry *root = BPF_CORE_READ(mnt, mnt.mnt_root);
	if (d == root) {
		struct mount *parent = BPF_CORE_READ(mnt, mnt_parent);
		if (parent == mnt || !parent) {
			w->done = 1;
			return 1;
		}
		w->d = (__u64)BPF_CORE_READ(mnt, mnt_mountpoint);
		w->mnt = (__u64)parent;
		return 0;
	}
	struct dentry *up = BPF_CORE_READ(d, d_parent);
	if (up == d || !up) {
		w->done = 1;
		return 1;
	}
	w->d = (__u64)up;
	return 0;
}

/*
 * match_walk checks every component from d up to the root against the Names
 * rules and, for directories protected by inode, the inode rules. At a
 * mount's root it continues at the mount point, so names of mount points
 * count like d_path's components; in a chroot it walks past the chroot's
 * root, which can only add denials. bpf_loop keeps the verifier's work to
 * one pass over the step instead of one per level. A walk that stops short
 * of the root (deeper than AIGATE_WALK_DEPTH) answers AIGATE_RULE_UNCHECKED:
 * a Names rule may sit above where it stopped.
 */
static __always_inline __u32 match_walk(struct scratch *s, struct dentry *d, struct vfsmount *vmnt,
					__u32 set, __u32 kinds, __u32 *by_inode)
{
	struct walk_state w = {
		.s = s,
		.d = (__u64)d,
		.mnt = (__u64)container_of(vmnt, struct mount, mnt),
		.set = set,
		.kinds = kinds,
	};

	bpf_loop(AIGATE_WALK_DEPTH, walk_step, &w, 0);
	*by_inode = w.inode;
	if (!w.rule && !w.done)
		return AIGATE_RULE_UNCHECKED;
	return w.rule;
}

/*
 * load_leaf_name fills s->name with the final component and s->rname with
 * its last bytes reversed (a suffix needs the end of a long name).
 */
static __always_inline void load_leaf_name(struct scratch *s, const unsigned char *name,
					   __u32 len)
{
	long n = read_name(&s->name, name);

	s->name.prefixlen = 32 + (__u32)n * 8;

	__u32 off = len > AIGATE_NAME_MAX - 1 ? len - (AIGATE_NAME_MAX - 1) : 0;
	long t = bpf_probe_read_kernel_str(s->tail, sizeof(s->tail), name + off);
	t = t > 0 ? t - 1 : 0;

	__builtin_memset(s->rname.name, 0, sizeof(s->rname.name));
	/*
	 * The 6.1 verifier cannot bound tail[t - 1 - j] by itself: mask both
	 * indices opaquely so it sees them below AIGATE_NAME_MAX.
	 */
	for (__u32 j = 0; j < AIGATE_NAME_MAX - 1; j++) {
		if (j >= t)
			break;
		__u64 src = t - 1 - j;
		__u64 dst = j;
		asm volatile("%0 &= 0x7f" : "+r"(src));
		asm volatile("%0 &= 0x7f" : "+r"(dst));
		s->rname.name[dst] = s->tail[src];
	}
	s->rname.prefixlen = 32 + (__u32)t * 8;
}

/* match_leaf_name checks s->name / s->rname against NamePrefix / NameSuffix. */
static __always_inline __u32 match_leaf_name(struct scratch *s, __u32 set, __u32 kinds)
{
	__u32 rule;

	if (kinds & AIGATE_SET_PREFIX) {
		s->name.set = set;
		rule = lookup_rule(&prefix_rules, &s->name);
		if (rule)
			return rule;
	}
	if (kinds & AIGATE_SET_SUFFIX) {
		s->rname.set = set;
		rule = lookup_rule(&suffix_rules, &s->rname);
		if (rule)
			return rule;
	}
	return 0;
}

/*
 * load_path copies the d_path result (len bytes with the NUL, or <= 0 when
 * d_path failed) into the Paths key. A path longer than the key is still
 * matched against every entry shorter than the key.
 */
static __always_inline void load_path(struct scratch *s, long len)
{
	if (len <= 0) {
		s->path.prefixlen = 0; /* no Paths match */
		return;
	}
	if (len > AIGATE_PATH_KEY)
		len = AIGATE_PATH_KEY;
	bpf_probe_read_kernel(s->path.path, sizeof(s->path.path), s->full);
	s->path.prefixlen = 32 + (__u32)len * 8;
}

/* State of build_path's loop, on the caller's stack. */
struct build_state {
	struct scratch *s;
	__u64 d;   /* struct dentry * */
	__u64 mnt; /* struct mount * */
	int err;   /* -1: too deep or too long */
	int done;
};

/*
 * build_step handles one dentry of build_path. It runs as a bpf_loop
 * callback, which the verifier checks once; an unrolled loop of
 * AIGATE_WALK_DEPTH steps cost ~140k verified instructions per hook. The
 * position lives in map memory and is masked at each use so that every
 * access is provably inside s->full.
 */
static long build_step(__u32 i, void *arg)
{
	struct build_state *b = arg;
	struct scratch *s = b->s;
	struct dentry *d = (struct dentry *)b->d;
	struct mount *mnt = (struct mount *)b->mnt;

	if (!s) {
		b->err = -1;
		return 1;
	}
	struct dentry *root = BPF_CORE_READ(mnt, mnt.mnt_root);
	if (d == root) {
		struct mount *parent = BPF_CORE_READ(mnt, mnt_parent);
		if (parent == mnt || !parent) {
			b->done = 1;
			return 1;
		}
		b->d = (__u64)BPF_CORE_READ(mnt, mnt_mountpoint);
		b->mnt = (__u64)parent;
		return 0;
	}
	struct dentry *up = BPF_CORE_READ(d, d_parent);
	if (up == d || !up) {
		b->done = 1;
		return 1;
	}
	__u64 len = BPF_CORE_READ(d, d_name.len);
	const unsigned char *name = BPF_CORE_READ(d, d_name.name);
	__u64 pos = s->pos;
	if (len == 0 || len > AIGATE_COMP_MAX || pos < len + 1) {
		b->err = -1;
		return 1;
	}
	pos -= len;
	asm volatile("%0 &= 0xfff" : "+r"(pos));
	asm volatile("%0 &= 0xff" : "+r"(len));
	if (pos >= AIGATE_BUILD_END || pos < 1) {
		b->err = -1;
		return 1;
	}
	bpf_probe_read_kernel(&s->full[pos], len, name);
	pos -= 1;
	asm volatile("%0 &= 0xfff" : "+r"(pos));
	if (pos >= AIGATE_BUILD_END) {
		b->err = -1;
		return 1;
	}
	s->full[pos] = '/';
	s->pos = pos;
	b->d = (__u64)up;
	return 0;
}

/*
 * build_path writes the path of d (on vmnt) into s->full from dentry names,
 * for the hooks where bpf_d_path is not allowed (path_*, unix sockets): it
 * walks d_parent up to the root, crossing mount points as d_path does, and
 * returns the length with the NUL (the path starts at s->full + s->pos),
 * or -1 when the path is deeper than AIGATE_WALK_DEPTH or longer than the
 * buffer. Unlike d_path it ignores a chroot and always names the path from
 * the global root; that only adds matches.
 */
static __always_inline long build_path(struct scratch *s, struct dentry *d, struct vfsmount *vmnt)
{
	struct build_state b = {
		.s = s,
		.d = (__u64)d,
		.mnt = (__u64)container_of(vmnt, struct mount, mnt),
	};

	s->pos = AIGATE_BUILD_END - 1;
	s->full[AIGATE_BUILD_END - 1] = 0;
	bpf_loop(AIGATE_WALK_DEPTH, build_step, &b, 0);
	if (b.err || !b.done)
		return -1;
	__u64 pos = s->pos;
	asm volatile("%0 &= 0xfff" : "+r"(pos));
	if (pos >= AIGATE_BUILD_END)
		return -1;
	if (pos == AIGATE_BUILD_END - 1) { /* the root itself */
		s->full[AIGATE_BUILD_END - 2] = '/';
		s->pos = pos = AIGATE_BUILD_END - 2;
	}
	return AIGATE_BUILD_END - pos;
}

/* built_path is where build_path left the path, for events. */
static __always_inline const char *built_path(struct scratch *s)
{
	__u64 pos = s->pos;

	asm volatile("%0 &= 0xfff" : "+r"(pos));
	if (pos >= AIGATE_BUILD_END)
		pos = AIGATE_BUILD_END - 1;
	return &s->full[pos];
}

/* load_built_path is load_path for a build_path result. */
static __always_inline void load_built_path(struct scratch *s, long len)
{
	if (len <= 0) {
		s->path.prefixlen = 0;
		return;
	}
	if (len > AIGATE_PATH_KEY)
		len = AIGATE_PATH_KEY;
	bpf_probe_read_kernel(s->path.path, sizeof(s->path.path), built_path(s));
	s->path.prefixlen = 32 + (__u32)len * 8;
}

static __always_inline __u32 match_path(struct scratch *s, __u32 set)
{
	if (!s->path.prefixlen)
		return 0;
	s->path.set = set;
	return lookup_rule(&path_rules, &s->path);
}

/*
 * match_except reports whether the exceptions of set match the file: its
 * path, its final name, or (within the walk's bound) a component. Only
 * called once a Names or name glob rule matched, so files no rule names
 * pay nothing for it.
 */
static __always_inline bool match_except(struct scratch *s, struct dentry *d, struct vfsmount *mnt,
					 __u32 set)
{
	__u32 eset = set | AIGATE_SET_EXCEPT;
	__u32 kinds = set_kinds(eset);
	__u32 by_inode;

	if (!kinds)
		return false;
	if ((kinds & AIGATE_SET_PATHS) && match_path(s, eset))
		return true;
	if (match_leaf_name(s, eset, kinds))
		return true;
	if (!(kinds & AIGATE_SET_NAMES))
		return false;
	__u32 rule = match_walk(s, d, mnt, eset, kinds & ~(__u32)AIGATE_SET_DIR_INODES, &by_inode);
	return rule && rule != AIGATE_RULE_UNCHECKED;
}

/*
 * match_file runs every rule kind of set against the file at (d, mnt). The
 * caller has loaded s->path (d_path) and the leaf names. A set with Paths
 * rules and a path that could not be loaded (d_path's ENAMETOOLONG beyond
 * 4096 bytes, build_path's limits) answers AIGATE_RULE_UNCHECKED unless
 * another rule matches: the path may lie beneath a denied one.
 *
 * A Names or name glob match is cancelled by the set's exceptions; Paths
 * and inode rules never are, so after a cancelled match the walk runs
 * again for directory inodes alone.
 */
static __noinline __u32 match_file(struct scratch *s, struct dentry *d, struct vfsmount *mnt,
				   __u32 set)
{
	__u32 kinds = set_kinds(set);
	__u32 rule, unchecked = 0, by_inode = 0;

	if (!kinds)
		return 0;
	if (kinds & AIGATE_SET_INODES) {
		rule = match_inode(d, set);
		if (rule)
			return rule;
	}
	if (kinds & AIGATE_SET_PATHS) {
		if (!s->path.prefixlen)
			unchecked = AIGATE_RULE_UNCHECKED;
		rule = match_path(s, set);
		if (rule)
			return rule;
	}
	rule = match_leaf_name(s, set, kinds);
	if (!rule && (kinds & (AIGATE_SET_NAMES | AIGATE_SET_DIR_INODES)))
		rule = match_walk(s, d, mnt, set, kinds, &by_inode);
	if (rule && rule != AIGATE_RULE_UNCHECKED && !by_inode && match_except(s, d, mnt, set)) {
		rule = 0;
		if (kinds & AIGATE_SET_DIR_INODES)
			rule = match_walk(s, d, mnt, set, AIGATE_SET_DIR_INODES, &by_inode);
	}
	return rule ? rule : unchecked;
}

#endif /* AIGATE_PATHMATCH_H */
