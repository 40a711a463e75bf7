// SPDX-License-Identifier: (MIT OR GPL-2.0)
/*
 * Glasshouse host collector: observes the processes of registered cgroups
 * (and their descendants) and writes what they do to one ring buffer.
 *
 * Hooks, all usable without kprobes or BPF LSM:
 *   raw_tracepoint/sys_exit or          file, exec-failure and network calls;
 *     tp_btf/sys_exit                   32-bit calls (one build is loaded:
 *                                       see KREAD); no sys_enter hook
 *   raw_tracepoint/inet_sock_set_state  outcome of non-blocking connects
 *   raw_tracepoint/sched_process_fork   new processes (threads are skipped)
 *   raw_tracepoint/sched_process_exec   successful execs (path, argv, cwd)
 *   raw_tracepoint/sched_process_exit   exit of a process's last thread
 *   cgroup/connect4|6, sendmsg4|6, bind4|6
 *                                       kernel-copied socket addresses
 *
 * Strings are read at sys_exit (the kernel has copied them by then) or from
 * kernel structures (the open file, the cwd, the exec'd file). Every record
 * that cannot be written (ring buffer full) is counted per session in the
 * drops map, so user space can tell a complete observation from a partial
 * one.
 *
 * Syscall numbers and struct pt_regs are x86_64.
 */
#include "include/vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "include/glasshouse.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/*
 * Kernel reads. The syscall exit program is built twice: as a raw tracepoint,
 * for any kernel, where every kernel read is a bpf_probe_read_kernel call
 * (~30 ns each here), and as a tp_btf program for kernels with
 * bpf_rdonly_cast (6.2), where the verifier knows the kernel's types and a
 * field read is one load instruction. btf is a compile-time constant in
 * every always-inline function that takes it, so each build keeps only its
 * own branch. KCAST turns a kernel address into a typed pointer (the
 * verifier rewrites bpf_rdonly_cast into a plain move).
 */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;
#define KREAD(btf, p, field) ((btf) ? (p)->field : BPF_CORE_READ(p, field))
#define KCAST(btf, type, p) \
	((btf) ? (type *)bpf_rdonly_cast((const void *)(p), bpf_core_type_id_kernel(type)) : (type *)(p))

static __always_inline struct task_struct *current_task(const int btf)
{
	return btf ? bpf_get_current_task_btf() : (struct task_struct *)bpf_get_current_task();
}

/* Force bpf2go to emit Go types for these. */
const struct gh_event *unused_event __attribute__((unused));
const struct gh_target *unused_target __attribute__((unused));

#define AT_FDCWD -100
#define AF_UNIX 1
#define AF_INET 2
#define AF_INET6 10
#define O_WRONLY 01
#define O_CREAT 0100
#define O_TRUNC 01000
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define S_IFREG 0100000
#define TS_COMPAT 0x0002
#define SOCK_STREAM 1
#define EINPROGRESS 115
#define ECONNABORTED 103
#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_CLOSE 7
#define MSG_FASTOPEN 0x20000000

/* x86_64 syscall numbers. */
#define NR_open 2
#define NR_connect 42
#define NR_accept 43
#define NR_sendto 44
#define NR_sendmsg 46
#define NR_bind 49
#define NR_listen 50
#define NR_execve 59
#define NR_truncate 76
#define NR_ftruncate 77
#define NR_rename 82
#define NR_mkdir 83
#define NR_rmdir 84
#define NR_creat 85
#define NR_link 86
#define NR_unlink 87
#define NR_symlink 88
#define NR_chmod 90
#define NR_fchmod 91
#define NR_mknod 133
#define NR_pivot_root 155
#define NR_mount 165
#define NR_umount2 166
#define NR_openat 257
#define NR_mkdirat 258
#define NR_mknodat 259
#define NR_unlinkat 263
#define NR_renameat 264
#define NR_linkat 265
#define NR_symlinkat 266
#define NR_fchmodat 268
#define NR_accept4 288
#define NR_open_by_handle_at 304
#define NR_sendmmsg 307
#define NR_renameat2 316
#define NR_execveat 322
#define NR_io_uring_setup 425
#define NR_move_mount 429
#define NR_openat2 437
#define NR_fchmodat2 452

#define MAX_SLOTS 4097 /* sessions + one global counter (the last) */
#define GLOBAL_SLOT (MAX_SLOTS - 1)

struct match {
	__u32 sess[GH_MAX_SESS];
	__u32 slot[GH_MAX_SESS];
	__u16 n;
};

/* A traced call of a target thread, as its sys_exit sees it. */
struct inflight {
	__u64 args[6];
	struct match m;
	__u16 nr;
	__u16 have_addr;
	__u16 family;
	__u16 port;
	__u16 sotype;
	__u16 proto;
	__u8 addr[16];
};

/* What a cgroup socket hook saw of a target thread's call in progress. */
enum { CAP_CONNECT = 1, CAP_BIND = 2, CAP_SEND = 3 };

struct captured {
	__u16 kind;
	__u16 family;
	__u16 port;
	__u16 sotype;
	__u16 proto;
	__u8 addr[16];
};

struct evbuf {
	__u8 data[GH_EVBUF];
};

/* A path component noted by the walk: kernel addresses of the dentry and
 * its name, and the name's length. */
struct comp {
	__u64 dentry;
	__u64 name;
	__u32 len;
};

struct pathbuf {
	struct comp comp[GH_PATH_COMPONENTS];
	/* The path's dentry and vfsmount, for gh_put_path(_btf): typed
	 * kernel pointers become plain numbers on their way through a map
	 * value, as a global function's scalar arguments must be (and five
	 * arguments is a BPF function's limit). */
	__u64 arg_dentry;
	__u64 arg_vfsmnt;
	__u64 arg_file;  /* for gh_cache_open(_btf) */
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20); /* user space sets the size at load */
} events SEC(".maps");

/* cgroup id -> session. Written by user space. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_SLOTS - 1);
	__type(key, __u64);
	__type(value, struct gh_target);
} targets SEC(".maps");

/* Per-session count of records that could not be written. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} drops SEC(".maps");

/* Thread id -> the address a cgroup socket hook captured during the
 * thread's current connect, bind or send; its sys_exit takes it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct captured);
} captured SEC(".maps");

/* Processes already reported for 32-bit syscalls, to report each once. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u8);
} compat_seen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct evbuf);
} evbufs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pathbuf);
} pathbufs SEC(".maps");

/* Bytes this CPU submitted since it last looked at the ring's fill level
 * (see submit). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} unchecked SEC(".maps");

/* ---- sessions ---------------------------------------------------------- */

static __always_inline void count_drops(__u32 slot, __u64 events)
{
	__u64 *n = bpf_map_lookup_elem(&drops, &slot);
	if (n)
		__sync_fetch_and_add(n, events);
}

static __always_inline void count_drop(__u32 slot)
{
	count_drops(slot, 1);
}

/* Counts events lost for the sessions of m. */
static __always_inline void drop_events(const struct match *m, __u64 events)
{
	__u32 global = GLOBAL_SLOT;
	count_drops(global, events);
	for (int i = 0; i < GH_MAX_SESS; i++) {
		if (i >= m->n)
			break;
		count_drops(m->slot[i], events);
	}
}

static __always_inline void drop_all(const struct match *m)
{
	drop_events(m, 1);
}

static __always_inline void add_match(struct match *m, __u64 id)
{
	struct gh_target *t = bpf_map_lookup_elem(&targets, &id);
	if (!t)
		return;
	__u16 n = m->n;
	if (n < GH_MAX_SESS) {
		m->sess[n & (GH_MAX_SESS - 1)] = t->sess;
		m->slot[n & (GH_MAX_SESS - 1)] = t->slot;
		m->n = n + 1;
	} else {
		/* More nested targets than an event can carry: never silent. */
		count_drop(t->slot);
	}
}

/*
 * The cgroup walks run under bpf_loop so that the verifier checks their
 * body once instead of once per level.
 */
static long current_level(__u32 lvl, void *arg)
{
	struct match *m = arg;
	__u64 id = bpf_get_current_ancestor_cgroup_id(lvl);
	if (!id)
		return 1;
	add_match(m, id);
	return 0;
}

/*
 * Matches are cached per cgroup. User space bumps targets_gen after every
 * change to targets; a program reads the generation before walking, so a
 * result computed against an older set is never used after the change.
 */
struct cached_match {
	__u64 gen;
	struct match m;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} targets_gen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct cached_match);
} match_cache SEC(".maps");

/* A cache miss: walks the current task's cgroup and its ancestors into m
 * and caches the result for cgroup cg at generation gen. A global
 * function, so that its stack is not the exit program's (6.1 limits the
 * frames of a chain of calls to 512 bytes together). */
__attribute__((noinline)) int gh_match_walk(struct match *m, __u64 cg, __u64 gen)
{
	if (!m)
		return 0;
	struct cached_match fresh = {.gen = gen};
	bpf_loop(GH_CGROUP_LEVELS, current_level, &fresh.m, 0);
	bpf_map_update_elem(&match_cache, &cg, &fresh, BPF_ANY);
	*m = fresh.m;
	return m->n;
}

/*
 * The tp_btf build (6.2+) keeps the same cache in the cgroup itself
 * (cgroup local storage): a lookup through the task's css_set, where the
 * hash map needs the cgroup id (a helper call) and a hashed bucket walk.
 * Like the id, the cgroup the storage hangs off cannot go stale: a task
 * that moves reaches its new cgroup's storage. The raw build's loader
 * replaces this map by a placeholder (the map type is 6.2+ too).
 *
 * A cgroup's entry is read and written in place by programs on every CPU,
 * so seq works as a sequence lock: twice the generation m was computed
 * against, odd while a program writes m. A reader uses m only if seq was
 * what it wanted before and after its copy (x86 keeps loads in order, and
 * stores too); a writer takes the odd value with a compare-and-swap, and a
 * program that finds the entry locked walks without caching.
 */
struct cgrp_match {
	__u64 seq;
	struct match m;
};

struct {
	__uint(type, BPF_MAP_TYPE_CGRP_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct cgrp_match);
} cgrp_matches SEC(".maps");

/* A miss in a cgroup's storage: walks the current task's cgroup and its
 * ancestors into m and caches the result in c for generation gen. A global
 * function for the same stack reason as gh_match_walk. */
__attribute__((noinline)) int gh_match_walk_into(struct cgrp_match *c, struct match *m, __u64 gen)
{
	if (!c || !m)
		return 0;
	struct match fresh = {};
	bpf_loop(GH_CGROUP_LEVELS, current_level, &fresh, 0);
	*m = fresh;
	__u64 seq = c->seq;
	if (!(seq & 1) && __sync_val_compare_and_swap(&c->seq, seq, seq | 1) == seq) {
		c->m = fresh;
		asm volatile("" ::: "memory");
		c->seq = gen << 1;
	}
	return fresh.n;
}

/*
 * The last match each CPU computed, in front of the per-cgroup caches: a
 * CPU mostly runs one task's calls back to back, and this costs a few
 * loads where they cost a helper call. Keyed by cgroup id (ids are never
 * reused) and generation. Another program can preempt one on the same CPU,
 * so seq works as in struct cgrp_match: a writer takes an odd value with a
 * compare-and-swap and leaves the next even one; a reader uses what it
 * copied between two equal, even reads.
 */
struct last_match {
	__u64 seq;
	__u64 cg;
	__u64 gen;
	struct match m;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct last_match);
} last_matches SEC(".maps");

static __always_inline int last_match(struct last_match *l, __u64 cg, __u64 gen, struct match *m)
{
	__u64 seq = *(volatile __u64 *)&l->seq;
	if ((seq & 1) || l->cg != cg || l->gen != gen)
		return 0;
	*m = l->m;
	asm volatile("" ::: "memory");
	return *(volatile __u64 *)&l->seq == seq;
}

static __always_inline void remember_match(struct last_match *l, __u64 cg, __u64 gen, const struct match *m)
{
	__u64 seq = l->seq;
	if ((seq & 1) || __sync_val_compare_and_swap(&l->seq, seq, seq | 1) != seq)
		return;
	l->cg = cg;
	l->gen = gen;
	l->m = *m;
	asm volatile("" ::: "memory");
	l->seq = seq + 2;
}

/* Sessions of cgroup cg at generation gen, through the hash map's cache. */
static __always_inline int cgroup_match(struct match *m, __u64 cg, __u64 gen)
{
	struct cached_match *c = bpf_map_lookup_elem(&match_cache, &cg);
	if (c && c->gen == gen) {
		*m = c->m;
		return m->n;
	}
	return gh_match_walk(m, cg, gen);
}

/* Sessions of the current task: its cgroup and every ancestor. */
static __always_inline int current_match(struct match *m)
{
	__u32 zero = 0;
	__u64 *genp = bpf_map_lookup_elem(&targets_gen, &zero);
	if (!genp)
		return 0;
	return cgroup_match(m, bpf_get_current_cgroup_id(), *genp);
}

/* current_match behind the CPU's last match, for the raw build's syscall
 * exit (the other programs run too rarely to gain from it, and each copy
 * adds to the verifier's work at load). */
static __always_inline int current_match_last(struct match *m)
{
	__u32 zero = 0;
	__u64 *genp = bpf_map_lookup_elem(&targets_gen, &zero);
	if (!genp)
		return 0;
	__u64 gen = *genp;
	__u64 cg = bpf_get_current_cgroup_id();
	struct last_match *l = bpf_map_lookup_elem(&last_matches, &zero);
	if (l && last_match(l, cg, gen, m))
		return m->n;
	cgroup_match(m, cg, gen);
	if (l)
		remember_match(l, cg, gen, m);
	return m->n;
}

/* Sessions of the current task, for the tp_btf build: current_match with
 * the cache in cgroup local storage. Fresh storage is zeroed, which says
 * "no sessions" at generation 0: right, since user space bumps the
 * generation when it adds a target, before Start returns and so before
 * the target's workload runs (as the hash's entries at generation 0
 * are). A global function: the
 * verifier walks task_struct's members to check the load of its late
 * "cgroups" field, which took as long as the rest of the exit program
 * when it was checked at each call site. */
__attribute__((noinline)) int gh_current_match_btf(struct match *m)
{
	if (!m)
		return 0;
	__u32 zero = 0;
	__u64 *genp = bpf_map_lookup_elem(&targets_gen, &zero);
	if (!genp)
		return 0;
	__u64 gen = *genp, want = gen << 1;
	struct cgroup *cg = bpf_get_current_task_btf()->cgroups->dfl_cgrp;
	__u64 id = cg->kn->id;
	struct last_match *l = bpf_map_lookup_elem(&last_matches, &zero);
	if (l && last_match(l, id, gen, m))
		return m->n;
	struct cgrp_match *c = bpf_cgrp_storage_get(&cgrp_matches, cg, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!c)
		return current_match(m);
	if (c->seq == want) {
		*m = c->m;
		asm volatile("" ::: "memory");
		if (*(volatile __u64 *)&c->seq != want)
			gh_match_walk_into(c, m, gen);
	} else {
		gh_match_walk_into(c, m, gen);
	}
	if (l)
		remember_match(l, id, gen, m);
	return m->n;
}

static __always_inline int match_current(struct match *m, const int btf)
{
	return btf ? gh_current_match_btf(m) : current_match_last(m);
}

struct cgwalk {
	struct match m;
	__u64 cg;
};

static long task_level(__u32 i, void *arg)
{
	struct cgwalk *w = arg;
	struct cgroup *cg = (struct cgroup *)w->cg;
	if (!cg)
		return 1;
	__u64 id = BPF_CORE_READ(cg, kn, id);
	add_match(&w->m, id);
	w->cg = (__u64)BPF_CORE_READ(cg, self.parent);
	return 0;
}

/* Sessions of another task (the child of a fork). */
static __always_inline int task_match(struct task_struct *t, struct match *m)
{
	struct cgwalk w = {};
	w.cg = (__u64)BPF_CORE_READ(t, cgroups, dfl_cgrp);
	bpf_loop(GH_CGROUP_LEVELS, task_level, &w, 0);
	*m = w.m;
	return m->n;
}

/* ---- repeated opens (see struct gh_cache_ref) --------------------------- */

/* A file a thread opened, as the kernel knows it. The path of (dentry,
 * mnt) changes only by a rename or a change of the mount tree, which bump
 * path_epoch; the parent, name hash and inode make a dentry freed and
 * reallocated at the same address a miss. */
struct file_id {
	__u64 dentry;
	__u64 mnt;
	__u64 inode;
	__u64 parent;
	__u64 hashlen;
};

struct fslot {
	__u64 gc;      /* generation | repeats << 32; one store, read whole by user space */
	struct file_id id;
	__u64 flags;   /* the open's flags, exactly */
	__u64 epoch;
	__u64 cand;    /* dentry of the last open that missed here (admission) */
};

struct fcache {
	__u32 tid;       /* the thread that owns the entry, 0: free */
	__u32 admit;     /* 1 + the slot the current open may take, or 0 */
	struct match m;  /* the sessions the slots were recorded for */
	struct fslot s[GH_CACHE_SLOTS];
};

/*
 * Open caches, entry tid % GH_CACHE_THREADS for thread tid: an array, whose
 * lookup is a few instructions where a hash map's is a call and a hash.
 * A thread claims a free entry at its first observed open and frees it at
 * its exit, emptied. Only the owner writes its entry (user space reads
 * it); a thread whose entry another live thread holds sends every open.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, GH_CACHE_THREADS);
	__type(key, __u32);
	__type(value, struct fcache);
} fcaches SEC(".maps");

/* [0] counts renames and mount changes by any process on the host: a
 * slot recorded at another value is a miss. [1] hands out generations. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} cache_seq SEC(".maps");

static __always_inline void bump_path_epoch(void)
{
	__u32 zero = 0;
	__u64 *e = bpf_map_lookup_elem(&cache_seq, &zero);
	if (e)
		__sync_fetch_and_add(e, 1);
}

static __always_inline __u64 path_epoch(void)
{
	__u32 zero = 0;
	__u64 *e = bpf_map_lookup_elem(&cache_seq, &zero);
	return e ? *e : 0;
}

static __always_inline int same_match(const struct match *a, const struct match *b)
{
	if (a->n != b->n)
		return 0;
	for (int i = 0; i < GH_MAX_SESS; i++)
		if (a->sess[i] != b->sess[i])
			return 0;
	return 1;
}

/* Sends a thread's cache as a GH_EV_COUNTS record. A cache that counted
 * nothing is sent too (user space then forgets its slots), but losing it
 * loses no event. */
static __always_inline void send_counts(struct fcache *fc, __u32 pid, __u32 tid)
{
	struct gh_event *h = bpf_ringbuf_reserve(&events, sizeof(struct gh_event) + GH_CACHE_SLOTS * sizeof(struct gh_count), 0);
	if (!h) {
		__u64 counted = 0;
		for (int i = 0; i < GH_CACHE_SLOTS; i++)
			counted += fc->s[i].gc >> 32;
		if (counted)
			drop_events(&fc->m, counted);
		return;
	}
	__builtin_memset(h, 0, sizeof(*h));
	h->kind = GH_EV_COUNTS;
	h->pid = pid;
	h->tid = tid;
	h->owner = tid;
	h->nsess = fc->m.n;
	for (int i = 0; i < GH_MAX_SESS; i++)
		h->sess[i] = fc->m.sess[i];
	struct gh_count *c = (struct gh_count *)(h + 1);
	for (int i = 0; i < GH_CACHE_SLOTS; i++) {
		__u64 gc = fc->s[i].gc;
		c[i].gen = (__u32)gc;
		c[i].count = gc >> 32;
	}
	bpf_ringbuf_submit(h, BPF_RB_NO_WAKEUP);
}

/* Thread tid's cache, or 0 if it has none. */
static __always_inline struct fcache *thread_cache(__u32 tid)
{
	__u32 k = tid & (GH_CACHE_THREADS - 1);
	struct fcache *fc = bpf_map_lookup_elem(&fcaches, &k);
	if (!fc || fc->tid != tid)
		return 0;
	return fc;
}

/* Empties a cache. */
static __always_inline void reset_cache(struct fcache *fc)
{
	for (int i = 0; i < GH_CACHE_SLOTS; i++) {
		fc->s[i].gc = 0;
		fc->s[i].cand = 0;
	}
	fc->admit = 0;
}

/* Thread tid's cache, claimed for the sessions of m if it has none; 0 if
 * another live thread holds its entry. */
static __always_inline struct fcache *claim_cache(__u32 tid, const struct match *m)
{
	__u32 k = tid & (GH_CACHE_THREADS - 1);
	struct fcache *fc = bpf_map_lookup_elem(&fcaches, &k);
	if (!fc)
		return 0;
	if (fc->tid == tid)
		return fc;
	if (fc->tid || __sync_val_compare_and_swap(&fc->tid, 0, tid) != 0)
		return 0;
	reset_cache(fc);
	fc->m = *m;
	return fc;
}

/* Ends thread tid's cache, if it has one: sends it, empties and frees it. */
static __always_inline void end_cache(__u32 pid, __u32 tid)
{
	struct fcache *fc = thread_cache(tid);
	if (!fc)
		return;
	send_counts(fc, pid, tid);
	reset_cache(fc);
	asm volatile("" ::: "memory");
	fc->tid = 0;
}

/* The slot a file takes, by its name's hash (struct qstr's hash_len: the
 * hash is salted with the parent dentry). A scalar: the verifier allows no
 * arithmetic on the kernel pointers. */
static __always_inline __u32 slot_of(__u64 hashlen)
{
	__u32 h = (__u32)hashlen;
	return (h ^ (h >> 8) ^ (h >> 16)) & (GH_CACHE_SLOTS - 1);
}

/* ---- event assembly ---------------------------------------------------- */

/* The fields of a record that describes a process: when, whose, whose child. */
static __always_inline void set_process_fields(struct gh_event *h)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	h->ktime = bpf_ktime_get_ns();
	h->uid = (__u32)bpf_get_current_uid_gid();
	h->ppid = BPF_CORE_READ(task, real_parent, tgid);
}

static __always_inline struct evbuf *start_event(__u32 kind, const struct match *m)
{
	__u32 zero = 0;
	struct evbuf *b = bpf_map_lookup_elem(&evbufs, &zero);
	if (!b)
		return 0;
	struct gh_event *h = (struct gh_event *)b->data;
	__builtin_memset(h, 0, sizeof(*h));
	__u64 pidtgid = bpf_get_current_pid_tgid();
	h->kind = kind;
	h->owner = (__u32)pidtgid;
	h->pid = pidtgid >> 32;
	h->tid = (__u32)pidtgid;
	/* Syscall records carry no time, uid or parent: the receipt's file
	 * and network entries have none, and in a VM the clock read alone
	 * costs ~100 ns per call. A failed exec, which adds to the process
	 * tree, sets them itself (set_process_fields). */
	if (kind != GH_EV_SYSCALL)
		set_process_fields(h);
	h->nsess = m->n;
	for (int i = 0; i < GH_MAX_SESS; i++)
		h->sess[i] = m->sess[i];
	return b;
}

/*
 * Waking the reader for every record costs the workload more than writing
 * the record. Records are queued without a wakeup until wake_bytes are
 * waiting (user space sets it to a fraction of the ring); the reader also
 * polls on a short timer, and flush markers always wake it. Each CPU looks
 * at the fill level once per wake_bytes / WAKE_CHECKS bytes it wrote, not
 * per record: the level lives on the reader's cache line, a miss on every
 * call.
 */
const volatile __u64 wake_bytes = 1 << 20;
#define WAKE_CHECKS 64

static __always_inline int submit(struct evbuf *b, __u32 size, const struct match *m)
{
	/* Records never exceed GH_STR_AREA_END + GH_STR_MAX bytes; the mask
	 * (kept by the empty asm) bounds size for older verifiers. */
	asm volatile("" : "+r"(size));
	size &= GH_EVBUF - 1;
	if (size < sizeof(struct gh_event))
		size = sizeof(struct gh_event);
	/* On a preemptible kernel another task's program could have reused
	 * this CPU's buffer while this one was preempted: count, never send,
	 * a record that is no longer ours. */
	struct gh_event *h = (struct gh_event *)b->data;
	if (h->owner != (__u32)bpf_get_current_pid_tgid()) {
		drop_all(m);
		return 1;
	}
	__u64 flags = BPF_RB_NO_WAKEUP;
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&unchecked, &zero);
	if (n && (*n += size) >= wake_bytes / WAKE_CHECKS) {
		*n = 0;
		if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wake_bytes)
			flags = BPF_RB_FORCE_WAKEUP;
	}
	if (bpf_ringbuf_output(&events, b, size, flags)) {
		drop_all(m);
		return 1;
	}
	return 0;
}

/*
 * The offset of the next string. The empty asm hides p's known range from
 * the compiler so that it keeps the mask the verifier needs.
 */
static __always_inline __u32 str_off(__u32 p)
{
	asm volatile("" : "+r"(p));
	return p & GH_STR_AREA_END;
}

static __always_inline void set_len(struct gh_event *h, int slot, __u32 len)
{
	switch (slot) {
	case 0: h->len[0] = len; break;
	case 1: h->len[1] = len; break;
	case 2: h->len[2] = len; break;
	default: h->len[3] = len; break;
	}
}

/* Appends a user string as string slot; returns the new end. */
static __always_inline __u32 put_user_str(struct evbuf *b, __u32 p, int slot, const void *uptr)
{
	struct gh_event *h = (struct gh_event *)b->data;
	if (p > GH_STR_AREA_END) {
		h->flags |= GH_F_TRUNC0 << slot;
		return p;
	}
	long n = bpf_probe_read_user_str(&b->data[str_off(p)], GH_STR_MAX + 1, uptr);
	if (n <= 1)
		return p;
	__u32 len = (__u32)(n - 1) & GH_STR_MAX;
	if (len == GH_STR_MAX)
		h->flags |= GH_F_TRUNC0 << slot; /* possibly cut */
	set_len(h, slot, len);
	return p + len;
}

/*
 * Paths are assembled in two passes over the dentries. The first walks up
 * from the file to the root of the mount namespace and notes each
 * component (dentry, name, length) in the per-CPU pathbuf; the second
 * writes the components out root first, straight into the record. Written
 * forwards, a name may be copied in whole 8-byte words: what a word writes
 * past the name's end, the next component overwrites. The tp_btf build
 * copies a short name (held inside the dentry, as most are) with five
 * loads that way instead of a helper call per component.
 */
struct walk {
	struct pathbuf *pb;
	struct evbuf *b;
	struct dentry *dentry;
	struct dentry *mnt_root;
	struct mount *mnt;
	__u32 n;      /* components noted */
	__u32 total;  /* bytes they take written out, a '/' before each */
	__u32 out;    /* offset of the path in b */
	__u32 pos;    /* bytes written so far */
	__u32 done;   /* the walk reached the root */
	__u32 pseudo;
};

static __always_inline long note_step(struct walk *w, const int btf)
{
	struct pathbuf *pb = w->pb;
	if (!pb)
		return 1;
	/* Copy out of the (local, non-kernel) struct before CO-RE reads. */
	struct dentry *d = KCAST(btf, struct dentry, w->dentry);
	struct mount *mnt = KCAST(btf, struct mount, w->mnt);
	if ((__u64)d == (__u64)w->mnt_root) {
		struct mount *mp = KREAD(btf, mnt, mnt_parent);
		if ((__u64)mp == (__u64)mnt || !mp) {
			w->done = 1;
			return 1;
		}
		w->dentry = KREAD(btf, mnt, mnt_mountpoint);
		w->mnt = mp;
		struct vfsmount *vfsmnt = KCAST(btf, struct vfsmount, (__u64)mp + bpf_core_field_offset(struct mount, mnt));
		w->mnt_root = KREAD(btf, vfsmnt, mnt_root);
		return 0;
	}
	struct dentry *parent;
	struct qstr q;
	if (btf) {
		parent = d->d_parent;
		q.len = d->d_name.len;
		q.name = d->d_name.name;
	} else if (bpf_core_field_offset(struct dentry, d_name) == bpf_core_field_offset(struct dentry, d_parent) + 8) {
		/* d_parent and d_name are neighbours: read them at once when
		 * the kernel's layout says so (a constant after relocation). */
		struct {
			struct dentry *parent;
			struct qstr name;
		} pn;
		if (bpf_probe_read_kernel(&pn, sizeof(pn), (char *)d + bpf_core_field_offset(struct dentry, d_parent)))
			return 1;
		parent = pn.parent;
		q = pn.name;
	} else {
		parent = BPF_CORE_READ(d, d_parent);
		q = BPF_CORE_READ(d, d_name);
	}
	if ((__u64)d == (__u64)parent || !parent)
		w->pseudo = 1;
	__u32 n = w->n;
	if (n >= GH_PATH_COMPONENTS)
		return 1;
	__u32 len = q.len;
	if (len > 255)
		len = 255;
	pb->comp[n].dentry = (__u64)d;
	pb->comp[n].name = (__u64)q.name;
	pb->comp[n].len = len;
	w->n = n + 1;
	w->total += len + 1;
	w->dentry = parent;
	if (w->pseudo) {
		w->done = 1;
		return 1;
	}
	return 0;
}

/* The tp_btf build (the syscall exit's on 6.2 and later) takes two steps a
 * call: there a call and its return cost more than a step's loads (return
 * thunks, on this hardware's mitigations). Each doubles what the verifier
 * checks, so the raw build, whose steps are helper calls, takes one. */
static long note_step_raw(__u32 i, void *arg) { return note_step(arg, 0); }
static long note_step_btf(__u32 i, void *arg) { return note_step(arg, 1) || note_step(arg, 1); }

/* Copies a name held inside its dentry in whole words (tp_btf build, on
 * kernels whose dentries have d_shortname, 6.14 on); returns 0 if the name
 * is not such a name. */
static __always_inline int copy_short_name(__u8 *dst, __u64 dentry, __u64 name, __u32 len)
{
	if (!bpf_core_field_exists(struct dentry, d_shortname))
		return 0;
	struct dentry *d = bpf_rdonly_cast((const void *)dentry, bpf_core_type_id_kernel(struct dentry));
	if (name != dentry + bpf_core_field_offset(struct dentry, d_shortname) ||
	    len > bpf_core_field_size(struct dentry, d_shortname))
		return 0;
	__u64 *w = (__u64 *)dst;
	w[0] = d->d_shortname.words[0];
	w[1] = d->d_shortname.words[1];
	w[2] = d->d_shortname.words[2];
	w[3] = d->d_shortname.words[3];
	w[4] = d->d_shortname.words[4];
	return 1;
}

static __always_inline long write_step(struct walk *w, const int btf)
{
	struct pathbuf *pb = w->pb;
	struct evbuf *b = w->b;
	if (!pb || !b || w->n == 0)
		return 1;
	__u32 n = w->n - 1;
	w->n = n;
	if (n >= GH_PATH_COMPONENTS)
		return 1;
	__u32 len = pb->comp[n].len & 255;
	if (w->total > GH_STR_MAX) {
		/* Too long: the components nearest the root are left out. */
		w->total -= len + 1;
		w->done = 0;
		return 0;
	}
	/* Within the string area, which ends GH_STR_MAX + 1 bytes after
	 * GH_STR_AREA_END: a name's 255 bytes (or 40) past it stay inside
	 * the buffer. */
	__u32 at = (w->out & GH_STR_AREA_END) + (w->pos & GH_STR_MAX);
	b->data[at] = '/';
	__u8 *dst = &b->data[at + 1];
	if (!btf || !copy_short_name(dst, pb->comp[n].dentry, pb->comp[n].name, len))
		bpf_probe_read_kernel(dst, len, (const void *)pb->comp[n].name);
	w->pos += len + 1;
	return 0;
}

static long write_step_raw(__u32 i, void *arg) { return write_step(arg, 0); }
static long write_step_btf(__u32 i, void *arg) { return write_step(arg, 1) || write_step(arg, 1); }

/*
 * Appends the absolute path of (dentry, vfsmnt) as string slot; returns the
 * new end of the record.
 */
static __always_inline __u32 put_path_body(struct evbuf *b, struct pathbuf *pb, __u32 p, __u32 slot, __u64 dentry, __u64 vfsmnt, const int btf)
{
	if (!b || !pb || !dentry || !vfsmnt || slot >= GH_NSTR)
		return p;
	struct gh_event *h = (struct gh_event *)b->data;
	if (p > GH_STR_AREA_END) {
		h->flags |= GH_F_TRUNC0 << slot;
		return p;
	}
	struct walk w = {
		.pb = pb,
		.b = b,
		.dentry = (struct dentry *)dentry,
		.out = p,
	};
	w.mnt = (struct mount *)(vfsmnt - bpf_core_field_offset(struct mount, mnt));
	w.mnt_root = KREAD(btf, KCAST(btf, struct vfsmount, vfsmnt), mnt_root);
	if (btf)
		bpf_loop(GH_PATH_COMPONENTS / 2, note_step_btf, &w, 0);
	else
		bpf_loop(GH_PATH_COMPONENTS, note_step_raw, &w, 0);
	if (w.pseudo && slot == 0)
		h->flags |= GH_F_PSEUDO0;
	if (w.n == 0) {
		/* The root itself. */
		b->data[str_off(p)] = '/';
		w.pos = 1;
	} else {
		if (btf)
			bpf_loop(GH_PATH_COMPONENTS / 2, write_step_btf, &w, 0);
		else
			bpf_loop(GH_PATH_COMPONENTS, write_step_raw, &w, 0);
	}
	if (!w.done)
		h->flags |= GH_F_TRUNC0 << slot;
	__u32 len = w.pos & GH_STR_MAX;
	set_len(h, slot, len);
	return p + len;
}

/* Global functions, so that the verifier checks the walk once, not once
 * per caller state. */
__attribute__((noinline)) __u32 gh_put_path(struct evbuf *b, struct pathbuf *pb, __u32 p, __u32 slot)
{
	if (!pb)
		return p;
	return put_path_body(b, pb, p, slot, pb->arg_dentry, pb->arg_vfsmnt, 0);
}

__attribute__((noinline)) __u32 gh_put_path_btf(struct evbuf *b, struct pathbuf *pb, __u32 p, __u32 slot)
{
	if (!pb)
		return p;
	return put_path_body(b, pb, p, slot, pb->arg_dentry, pb->arg_vfsmnt, 1);
}

static __always_inline __u32 put_path(struct evbuf *b, __u32 p, int slot, struct dentry *dentry, struct vfsmount *vfsmnt, const int btf)
{
	__u32 zero = 0;
	struct pathbuf *pb = bpf_map_lookup_elem(&pathbufs, &zero);
	if (!pb)
		return p;
	pb->arg_dentry = (__u64)dentry;
	pb->arg_vfsmnt = (__u64)vfsmnt;
	if (btf)
		return gh_put_path_btf(b, pb, p, slot);
	return gh_put_path(b, pb, p, slot);
}

/* The file open as fd in task, as a kernel address (0 if none). */
static __always_inline struct file *fd_file(struct task_struct *task, long fd, const int btf)
{
	if (fd < 0)
		return 0;
	struct file **fds;
	if (btf) {
		/* A load of one of task_struct's later fields costs the
		 * verifier a walk of its members; the file exit is checked
		 * once (a global function), so that is cheap now. */
		struct fdtable *fdt = KCAST(btf, struct task_struct, task)->files->fdt;
		if (!fdt || (unsigned long)fd >= fdt->max_fds)
			return 0;
		fds = fdt->fd;
	} else {
		struct fdtable *fdtp = BPF_CORE_READ(task, files, fdt);
		if (!fdtp)
			return 0;
		/* One read for max_fds and fd; field accesses on the copy are
		 * CO-RE relocated like reads of the original. */
		struct fdtable fdt;
		if (bpf_probe_read_kernel(&fdt, sizeof(fdt), fdtp))
			return 0;
		if ((unsigned long)fd >= fdt.max_fds)
			return 0;
		fds = fdt.fd;
	}
	struct file *f = 0;
	if (btf) {
		/* A load instead of a helper call: the slot read as the first
		 * member of a list_head (a pointer, like the slot); the cast
		 * makes the verifier turn the load into a fault-safe one. */
		struct list_head *slot = bpf_rdonly_cast((const void *)&fds[fd], bpf_core_type_id_kernel(struct list_head));
		f = (struct file *)slot->next;
	} else {
		bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	}
	return f;
}

static __always_inline struct path file_path(struct file *f, const int btf)
{
	struct path fp = {};
	if (btf) {
		struct file *t = KCAST(btf, struct file, f);
		fp.dentry = t->f_path.dentry;
		fp.mnt = t->f_path.mnt;
	} else {
		bpf_core_read(&fp, sizeof(fp), &f->f_path);
	}
	return fp;
}

static __always_inline __u32 put_file_path(struct evbuf *b, __u32 p, int slot, struct file *f)
{
	if (!f)
		return p;
	struct path fp = file_path(f, 0);
	return put_path(b, p, slot, fp.dentry, fp.mnt, 0);
}

/* Appends the directory a dirfd-relative path is resolved against. */
static __always_inline __u32 put_base(struct evbuf *b, __u32 p, int slot, struct task_struct *task, long dfd, const int btf)
{
	struct path base = {};
	if ((int)dfd == AT_FDCWD) {
		if (btf) {
			base = KCAST(btf, struct task_struct, task)->fs->pwd;
		} else {
			base.dentry = BPF_CORE_READ(task, fs, pwd.dentry);
			base.mnt = BPF_CORE_READ(task, fs, pwd.mnt);
		}
	} else {
		struct file *f = fd_file(task, dfd, btf);
		if (f)
			base = file_path(f, btf);
	}
	return put_path(b, p, slot, base.dentry, base.mnt, btf);
}

/*
 * Appends a user path as string slot and, when it is relative, the
 * directory it is relative to as slot+1. With no user path (uptr 0), just
 * that directory.
 */
static __always_inline __u32 put_user_path_body(struct evbuf *b, __u32 p, __u32 slot, long dfd, __u64 uptr, const int btf)
{
	if (!b || slot + 1 >= GH_NSTR)
		return p;
	__u32 start = p;
	if (uptr)
		p = put_user_str(b, p, slot, (const void *)uptr);
	__u8 first = 0;
	if (p > start && start <= GH_STR_AREA_END)
		first = b->data[str_off(start)]; /* a mask clang cannot drop */
	if (first == '/')
		return p;
	return put_base(b, p, slot + 1, current_task(btf), dfd, btf);
}

/* Global functions: the verifier checks them once, not once per state of
 * the calls that lead to them. */
__attribute__((noinline)) __u32 gh_put_user_path(struct evbuf *b, __u32 p, __u32 slot, long dfd, __u64 uptr)
{
	return put_user_path_body(b, p, slot, dfd, uptr, 0);
}

__attribute__((noinline)) __u32 gh_put_user_path_btf(struct evbuf *b, __u32 p, __u32 slot, long dfd, __u64 uptr)
{
	return put_user_path_body(b, p, slot, dfd, uptr, 1);
}

static __always_inline __u32 put_user_path(struct evbuf *b, __u32 p, int slot, long dfd, const void *uptr, const int btf)
{
	if (btf)
		return gh_put_user_path_btf(b, p, slot, dfd, (__u64)uptr);
	return gh_put_user_path(b, p, slot, dfd, (__u64)uptr);
}

/* ---- sockets ----------------------------------------------------------- */

static __always_inline struct socket *fd_socket(struct task_struct *task, long fd)
{
	struct file *f = fd_file(task, fd, 0);
	if (!f)
		return 0;
	umode_t mode = BPF_CORE_READ(f, f_inode, i_mode);
	if ((mode & S_IFMT) != S_IFSOCK)
		return 0;
	return BPF_CORE_READ(f, private_data);
}

/* Fills sotype/proto, and family; returns the struct sock. */
static __always_inline struct sock *sock_info(struct gh_event *h, struct socket *s)
{
	if (!s)
		return 0;
	struct sock *sk = BPF_CORE_READ(s, sk);
	h->sotype = BPF_CORE_READ(s, type);
	if (sk) {
		h->proto = BPF_CORE_READ(sk, sk_protocol);
		if (!h->family)
			h->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	}
	h->flags |= GH_F_SOCK;
	return sk;
}

/* The socket's own (local) or peer address. */
static __always_inline void sock_addr(struct gh_event *h, struct sock *sk, int peer)
{
	if (!sk)
		return;
	__u16 fam = BPF_CORE_READ(sk, __sk_common.skc_family);
	h->family = fam;
	if (fam == AF_INET) {
		__u32 a = peer ? BPF_CORE_READ(sk, __sk_common.skc_daddr) : BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__builtin_memcpy(h->addr, &a, 4);
	} else if (fam == AF_INET6) {
		if (peer)
			BPF_CORE_READ_INTO(&h->addr, sk, __sk_common.skc_v6_daddr);
		else
			BPF_CORE_READ_INTO(&h->addr, sk, __sk_common.skc_v6_rcv_saddr);
	} else {
		return;
	}
	if (peer)
		h->port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	else
		h->port = BPF_CORE_READ(sk, __sk_common.skc_num);
	h->flags |= GH_F_ADDR;
}

/* Reads a sockaddr the caller passed (already copied by the kernel). */
static __always_inline __u32 user_sockaddr(struct evbuf *b, __u32 p, const void *uaddr, __u64 ulen)
{
	struct gh_event *h = (struct gh_event *)b->data;
	if (!uaddr || ulen < 2)
		return p;
	__u16 fam = 0;
	bpf_probe_read_user(&fam, sizeof(fam), uaddr);
	h->family = fam;
	if (fam == AF_INET && ulen >= 8) {
		__u16 port = 0;
		bpf_probe_read_user(&port, 2, uaddr + 2);
		bpf_probe_read_user(h->addr, 4, uaddr + 4);
		h->port = bpf_ntohs(port);
		h->flags |= GH_F_ADDR;
	} else if (fam == AF_INET6 && ulen >= 24) {
		__u16 port = 0;
		bpf_probe_read_user(&port, 2, uaddr + 2);
		bpf_probe_read_user(h->addr, 16, uaddr + 8);
		h->port = bpf_ntohs(port);
		h->flags |= GH_F_ADDR;
	} else if (fam == AF_UNIX && ulen > 2) {
		/* sun_path; an abstract name starts with NUL. */
		__u32 n = ulen - 2;
		if (n > 108)
			n = 108;
		if (p > GH_STR_AREA_END)
			return p;
		bpf_probe_read_user(&b->data[str_off(p)], n & 127, uaddr + 2);
		h->len[0] = n;
		h->flags |= GH_F_ADDR;
		return p + n;
	}
	return p;
}

static __always_inline void inflight_addr(struct gh_event *h, const struct inflight *in)
{
	h->family = in->family;
	h->port = in->port;
	h->sotype = in->sotype;
	h->proto = in->proto;
	__builtin_memcpy(h->addr, in->addr, 16);
	h->flags |= GH_F_ADDR | GH_F_ADDR_KERNEL;
}

/* ---- non-blocking TCP connects ------------------------------------------ */

/*
 * A non-blocking connect returns EINPROGRESS; its outcome is known only
 * when the handshake ends (inet_sock_set_state leaving SYN_SENT). The
 * entry is created when a target's socket enters SYN_SENT in a connect or
 * send call, in the calling thread and before the SYN can leave, so no
 * outcome is missed; phase settles who reports it:
 *   PC_SYSCALL   the call that sent the SYN is running; the exit of a
 *                connect reports, that of any other call (a TCP Fast Open
 *                send) removes the entry
 *   PC_DEFERRED  the syscall returned EINPROGRESS and stored its record;
 *                the state change reports, with the real result
 *   PC_DONE      the handshake ended while the syscall was still running;
 *                the exit reports that result instead of EINPROGRESS
 */
enum { PC_SYSCALL = 0, PC_DEFERRED = 1, PC_DONE = 2 };

struct pending_connect {
	struct gh_event ev;
	__u32 slot[GH_MAX_SESS];
	__u32 phase;
	__s32 result;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64);
	__type(value, struct pending_connect);
} pending_connects SEC(".maps");

/* An all-zero value to insert from (the stack has no room for one). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pending_connect);
} pending_zero SEC(".maps");

static __always_inline __u64 stream_sock(struct task_struct *task, long fd)
{
	struct socket *s = fd_socket(task, fd);
	if (!s || BPF_CORE_READ(s, type) != SOCK_STREAM)
		return 0;
	struct sock *sk = BPF_CORE_READ(s, sk);
	if (!sk)
		return 0;
	__u16 fam = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (fam != AF_INET && fam != AF_INET6)
		return 0;
	return (__u64)sk;
}

/* A call that sent no record of its own (a TCP send) ends the tracking of
 * a handshake it started. */
static __always_inline void untrack_connect(struct task_struct *task, long fd)
{
	__u64 key = stream_sock(task, fd);
	if (!key)
		return;
	/* Never an earlier connect's record waiting for the handshake. */
	struct pending_connect *pc = bpf_map_lookup_elem(&pending_connects, &key);
	if (pc && pc->phase != PC_DEFERRED)
		bpf_map_delete_elem(&pending_connects, &key);
}

/* Returns 1 when the record is deferred to the end of the handshake. */
static __always_inline int finish_connect(struct evbuf *b, const struct match *m, struct task_struct *task, long fd, long ret)
{
	__u64 key = stream_sock(task, fd);
	if (!key)
		return 0;
	struct pending_connect *pc = bpf_map_lookup_elem(&pending_connects, &key);
	if (!pc)
		return 0;
	/* An earlier connect's record waits there for the handshake; this
	 * call (EALREADY, EISCONN) reports only itself. */
	if (pc->phase == PC_DEFERRED)
		return 0;
	struct gh_event *h = (struct gh_event *)b->data;
	if (ret != -EINPROGRESS) {
		bpf_map_delete_elem(&pending_connects, &key);
		return 0;
	}
	__builtin_memcpy(&pc->ev, h, sizeof(struct gh_event));
	for (int i = 0; i < GH_MAX_SESS; i++)
		pc->slot[i] = m->slot[i];
	if (__sync_val_compare_and_swap(&pc->phase, PC_SYSCALL, PC_DEFERRED) == PC_SYSCALL)
		return 1;
	h->ret = pc->result;
	bpf_map_delete_elem(&pending_connects, &key);
	return 0;
}

SEC("raw_tracepoint/inet_sock_set_state")
int gh_sock_state(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 key = ctx->args[0];
	if ((int)ctx->args[1] == TCP_CLOSE && (int)ctx->args[2] == TCP_SYN_SENT) {
		/* The calling thread is about to send the SYN. Only a call whose
		 * exit settles the entry starts one (not an io_uring connect,
		 * whose entry nothing would remove). */
		struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
		long nr = BPF_CORE_READ(regs, orig_ax);
		if (nr != NR_connect && nr != NR_sendto && nr != NR_sendmsg && nr != NR_sendmmsg)
			return 0;
		struct match m = {};
		__u32 zero = 0;
		struct pending_connect *z = bpf_map_lookup_elem(&pending_zero, &zero);
		if (z && current_match(&m))
			bpf_map_update_elem(&pending_connects, &key, z, BPF_ANY);
		return 0;
	}
	if ((int)ctx->args[1] != TCP_SYN_SENT)
		return 0;
	struct pending_connect *pc = bpf_map_lookup_elem(&pending_connects, &key);
	if (!pc)
		return 0;
	__s32 result = 0;
	if ((int)ctx->args[2] != TCP_ESTABLISHED) {
		struct sock *sk = (struct sock *)key;
		int err = BPF_CORE_READ(sk, sk_err);
		/* No error: the socket was closed before the handshake ended. */
		result = err > 0 ? -err : -ECONNABORTED;
	}
	pc->result = result;
	if (__sync_val_compare_and_swap(&pc->phase, PC_SYSCALL, PC_DONE) == PC_SYSCALL)
		return 0;
	/* Deferred: report it, if this run wins the entry. This may run in
	 * softirq context, so it writes to the ring directly, not through the
	 * per-CPU assembly buffer an interrupted program may be using. */
	struct gh_event *e = bpf_ringbuf_reserve(&events, sizeof(struct gh_event), 0);
	if (!e) {
		if (bpf_map_delete_elem(&pending_connects, &key) == 0) {
			__u32 global = GLOBAL_SLOT;
			count_drop(global);
			for (int i = 0; i < GH_MAX_SESS; i++) {
				if (i >= pc->ev.nsess)
					break;
				count_drop(pc->slot[i]);
			}
		}
		return 0;
	}
	__builtin_memcpy(e, &pc->ev, sizeof(struct gh_event));
	if (bpf_map_delete_elem(&pending_connects, &key)) {
		bpf_ringbuf_discard(e, BPF_RB_NO_WAKEUP);
		return 0;
	}
	e->ret = result;
	__u64 flags = BPF_RB_NO_WAKEUP;
	if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wake_bytes)
		flags = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(e, flags);
	return 0;
}

/* ---- syscalls ---------------------------------------------------------- */

static __always_inline int traced64(long nr)
{
	switch (nr) {
	case NR_open: case NR_creat: case NR_openat: case NR_openat2:
	case NR_open_by_handle_at: case NR_mknod: case NR_mknodat:
	case NR_execve: case NR_execveat:
	case NR_unlink: case NR_unlinkat: case NR_rmdir: case NR_mkdir: case NR_mkdirat:
	case NR_rename: case NR_renameat: case NR_renameat2:
	case NR_link: case NR_linkat: case NR_symlink: case NR_symlinkat:
	case NR_chmod: case NR_fchmod: case NR_fchmodat: case NR_fchmodat2:
	case NR_truncate: case NR_ftruncate:
	case NR_connect: case NR_bind: case NR_listen: case NR_accept: case NR_accept4:
	case NR_sendto: case NR_sendmsg: case NR_sendmmsg:
	case NR_io_uring_setup:
	case NR_mount: case NR_umount2: case NR_pivot_root: case NR_move_mount:
		return 1;
	}
	return 0;
}

/* Calls that change the mount tree paths are resolved in. */
static __always_inline int mount_call(long nr)
{
	return nr == NR_mount || nr == NR_umount2 || nr == NR_pivot_root || nr == NR_move_mount;
}

/* Calls that change the path of a file already open: a rename, or a
 * change of the mount tree (x86_64 and i386 numbers). */
static __always_inline int path_change64(long nr)
{
	return nr == NR_rename || nr == NR_renameat || nr == NR_renameat2 || mount_call(nr);
}

static __always_inline int path_change32(long nr)
{
	switch (nr) {
	case 21: case 38: case 52: case 217: case 302: case 353: case 429:
		return 1;
	}
	return 0;
}

/* i386 numbers of the same operations (int 0x80 from any process). */
static __always_inline int traced32(long nr)
{
	switch (nr) {
	case 5: case 8: case 9: case 10: case 11: case 14: case 15: case 21: case 38: case 39: case 40:
	case 52: case 83: case 92: case 93: case 94: case 102: case 193: case 194: case 217:
	case 295: case 296: case 297: case 301: case 302: case 303: case 304: case 306:
	case 342: case 345: case 353: case 358:
	case 361: case 362: case 363: case 364: case 369: case 370:
	case 425: case 429: case 437: case 452:
		return 1;
	}
	return 0;
}

static __always_inline int in_compat(struct task_struct *task, const int btf)
{
	__u32 status = KREAD(btf, task, thread_info.status);
	return status & TS_COMPAT;
}

/* A global function: rare, and kept off the exit program's own stack. */
__attribute__((noinline)) int gh_report_compat(long nr, struct match *m)
{
	if (!m)
		return 0;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u8 one = 1;
	if (bpf_map_update_elem(&compat_seen, &tgid, &one, BPF_NOEXIST))
		return 0; /* already reported */
	struct evbuf *b = start_event(GH_EV_COMPAT, m);
	if (!b)
		return 0;
	struct gh_event *h = (struct gh_event *)b->data;
	h->nr = nr;
	submit(b, sizeof(struct gh_event), m);
	return 0;
}

/* Calls whose record may take the address a cgroup socket hook captured
 * mid-call (see captured). */
static __always_inline int net_call(long nr)
{
	switch (nr) {
	case NR_connect: case NR_bind: case NR_sendto: case NR_sendmsg: case NR_sendmmsg:
		return 1;
	}
	return 0;
}

/* The hook that captures net_call nr's address. */
static __always_inline __u16 capture_kind(long nr)
{
	switch (nr) {
	case NR_connect:
		return CAP_CONNECT;
	case NR_bind:
		return CAP_BIND;
	}
	return CAP_SEND;
}

/*
 * Reads a call's arguments from its saved registers (kernel address regs)
 * in one read: r10 to di are neighbours in struct pt_regs, whose layout is
 * x86_64's ptrace ABI. Returns nonzero on failure.
 */
/* The raw build's read of the call's arguments from its saved registers:
 * a global function, so that the copy is not on the exit program's stack
 * (6.1 limits a chain of calls to 512 bytes of stack together). */
__attribute__((noinline)) int gh_read_args(struct inflight *in, __u64 regs)
{
	if (!in)
		return 1;
	struct {
		__u64 r10, r9, r8, ax, cx, dx, si, di;
	} w;
	if (bpf_probe_read_kernel(&w, sizeof(w), (const void *)regs + bpf_core_field_offset(struct pt_regs, r10)))
		return 1;
	in->args[0] = w.di;
	in->args[1] = w.si;
	in->args[2] = w.dx;
	in->args[3] = w.r10;
	in->args[4] = w.r8;
	in->args[5] = w.r9;
	return 0;
}

/* A successful open's flags, as its record has them (open, creat, openat
 * and openat2). */
static __always_inline __u64 open_flags(const struct inflight *in)
{
	const __u64 *a = in->args;
	switch (in->nr) {
	case NR_open:
		return a[1];
	case NR_creat:
		return O_CREAT | O_WRONLY | O_TRUNC;
	case NR_openat:
		return a[2];
	}
	/* openat2: the first member of its struct open_how. */
	__u64 flags = 0;
	bpf_probe_read_user(&flags, sizeof(flags), (const void *)a[2]);
	return flags;
}

/* The opens whose files go through the thread's open cache. */
static __always_inline int cached_open(long nr)
{
	return nr == NR_open || nr == NR_creat || nr == NR_openat || nr == NR_openat2;
}

/*
 * What a file syscall's record holds: s0 (+ s1, its base directory) is the
 * path operated on, either a file the kernel already opened (file), a
 * user path relative to dfd0, or dfd0's directory itself (dir0: a failed
 * open_by_handle_at, whose opaque handle names no path); s2 (+ s3) is the
 * second path of rename and link, or the verbatim content of a symlink
 * (raw2).
 */
struct plan {
	struct file *file;
	const void *path0;
	const void *path2;
	long dfd0;
	long dfd2;
	int dir0;
	int raw2;
};

static __always_inline void plan_file(struct plan *pl, struct gh_event *h, struct task_struct *task, struct inflight *in, long ret, const int btf)
{
	__u64 *a = in->args;
	pl->dfd0 = AT_FDCWD;
	pl->dfd2 = AT_FDCWD;
	switch (in->nr) {
	case NR_open:
	case NR_mknod: /* arg: the mode */
		pl->path0 = (const void *)a[0];
		h->arg = a[1];
		break;
	case NR_creat:
		pl->path0 = (const void *)a[0];
		h->arg = open_flags(in);
		break;
	case NR_openat:
	case NR_mknodat:
		pl->dfd0 = a[0];
		pl->path0 = (const void *)a[1];
		h->arg = a[2];
		break;
	case NR_openat2:
		pl->dfd0 = a[0];
		pl->path0 = (const void *)a[1];
		h->arg = open_flags(in);
		break;
	case NR_open_by_handle_at:
		/* Opened: the file, below. Refused (without
		 * CAP_DAC_READ_SEARCH, the container escape it is known for):
		 * the filesystem it was aimed at, by its mount's fd. */
		pl->dfd0 = a[0];
		pl->dir0 = 1;
		h->arg = a[2];
		break;
	case NR_execve:
	case NR_unlink:
	case NR_rmdir:
	case NR_mkdir:
	case NR_chmod:
	case NR_truncate:
		pl->path0 = (const void *)a[0];
		break;
	case NR_execveat:
		h->arg = a[4];
		pl->dfd0 = a[0];
		pl->path0 = (const void *)a[1];
		break;
	case NR_unlinkat:
		h->arg = a[2];
		pl->dfd0 = a[0];
		pl->path0 = (const void *)a[1];
		break;
	case NR_fchmodat2:
		h->arg = a[3];
		/* fall through */
	case NR_mkdirat:
	case NR_fchmodat:
		pl->dfd0 = a[0];
		pl->path0 = (const void *)a[1];
		break;
	case NR_fchmod:
	case NR_ftruncate:
		pl->file = fd_file(task, a[0], btf);
		break;
	case NR_rename:
	case NR_link:
		pl->path0 = (const void *)a[0];
		pl->path2 = (const void *)a[1];
		break;
	case NR_renameat2:
	case NR_linkat:
		h->arg = a[4];
		/* fall through */
	case NR_renameat:
		pl->dfd0 = a[0];
		pl->path0 = (const void *)a[1];
		pl->dfd2 = a[2];
		pl->path2 = (const void *)a[3];
		break;
	case NR_symlink:
		pl->path0 = (const void *)a[1];
		pl->path2 = (const void *)a[0];
		pl->raw2 = 1;
		break;
	case NR_symlinkat:
		pl->dfd0 = a[1];
		pl->path0 = (const void *)a[2];
		pl->path2 = (const void *)a[0];
		pl->raw2 = 1;
		break;
	}
	/* A successful open names the file the kernel opened. */
	if ((in->nr == NR_open || in->nr == NR_creat || in->nr == NR_openat || in->nr == NR_openat2 ||
	     in->nr == NR_open_by_handle_at) && ret >= 0) {
		struct file *f = fd_file(task, ret, btf);
		if (f)
			pl->file = f;
	}
}

/* What identifies file f's path (see struct fslot), fp being its path. */
static __always_inline void file_ident(struct file_id *id, struct file *f, const struct path *fp, const int btf)
{
	id->dentry = (__u64)fp->dentry;
	id->mnt = (__u64)fp->mnt;
	if (btf) {
		struct dentry *d = KCAST(btf, struct dentry, fp->dentry);
		id->inode = (__u64)KCAST(btf, struct file, f)->f_inode;
		id->parent = (__u64)d->d_parent;
		id->hashlen = d->d_name.hash_len;
	} else {
		id->inode = (__u64)BPF_CORE_READ(f, f_inode);
		id->parent = (__u64)BPF_CORE_READ(fp->dentry, d_parent);
		id->hashlen = BPF_CORE_READ(fp->dentry, d_name.hash_len);
	}
}

/*
 * A successful open of a file the thread's cache holds, for the same
 * sessions, with the same flags and at the same path epoch: counts it in
 * the slot and returns 1 (no record). On a miss, decides whether the file
 * may take its slot (fc->admit, for cache_open): when it is the second
 * open in a row to miss there. Files opened once each (a Python import)
 * then cost no install and no record for the reader to follow, only this
 * check.
 */
static __always_inline int open_repeat(struct inflight *in, long ret, const int btf)
{
	__u64 pidtgid = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)pidtgid;
	struct fcache *fc = claim_cache(tid, &in->m);
	if (!fc)
		return 0;
	fc->admit = 0;
	if (!same_match(&fc->m, &in->m)) {
		/* The thread's sessions changed: the counts go to the sessions
		 * they were recorded for, and the cache starts over. */
		send_counts(fc, pidtgid >> 32, tid);
		reset_cache(fc);
		fc->m = in->m;
		return 0;
	}
	struct file *f = fd_file(current_task(btf), ret, btf);
	if (!f)
		return 0;
	struct path fp = file_path(f, btf);
	__u64 hashlen;
	if (btf)
		hashlen = KCAST(btf, struct dentry, fp.dentry)->d_name.hash_len;
	else
		hashlen = BPF_CORE_READ(fp.dentry, d_name.hash_len);
	__u32 i = slot_of(hashlen);
	struct fslot *s = &fc->s[i];
	__u64 gc = s->gc;
	if ((__u32)gc && (gc >> 32) < 0x7fffffff && s->id.dentry == (__u64)fp.dentry) {
		struct file_id id = {};
		file_ident(&id, f, &fp, btf);
		if (s->id.mnt == id.mnt && s->id.inode == id.inode && s->id.parent == id.parent &&
		    s->id.hashlen == id.hashlen && s->epoch == path_epoch() && s->flags == open_flags(in)) {
			s->gc = gc + (1ULL << 32);
			return 1;
		}
	}
	if (s->cand == (__u64)fp.dentry) {
		fc->admit = i + 1;
		return 2;
	}
	s->cand = (__u64)fp.dentry;
	return 0;
}

__attribute__((noinline)) int gh_open_repeat(struct inflight *in, long ret)
{
	if (!in)
		return 0;
	return open_repeat(in, ret, 0);
}

__attribute__((noinline)) int gh_open_repeat_btf(struct inflight *in, long ret)
{
	if (!in)
		return 0;
	return open_repeat(in, ret, 1);
}

/* Puts the file of an open whose record h is being written in the slot
 * open_repeat admitted it to, under a new generation, and says so in h.
 * epoch is the path epoch read before the path was. */
static __always_inline void cache_open(struct gh_event *h, struct file *f, __u64 epoch, const int btf)
{
	if (!h)
		return;
	struct fcache *fc = thread_cache((__u32)bpf_get_current_pid_tgid());
	if (!fc)
		return;
	__u32 admit = fc->admit;
	fc->admit = 0;
	if (!admit)
		return;
	__u32 one = 1;
	__u64 *next = bpf_map_lookup_elem(&cache_seq, &one);
	if (!next)
		return;
	__u32 gen = __sync_fetch_and_add(next, 1) + 1;
	if (!gen)
		return;
	struct path fp = file_path(f, btf);
	__u32 i = (admit - 1) & (GH_CACHE_SLOTS - 1);
	struct fslot *s = &fc->s[i];
	__u64 gc = s->gc;
	struct gh_cache_ref *ref = (struct gh_cache_ref *)h->addr;
	ref->slot = i;
	ref->gen = gen;
	ref->prev_gen = (__u32)gc;
	ref->prev_count = gc >> 32;
	file_ident(&s->id, f, &fp, btf);
	s->flags = h->arg;
	s->epoch = epoch;
	s->gc = gen;
	h->flags |= GH_F_CACHED;
}

/* cache_open as global functions: off the stack of the exit program's
 * deepest chain of calls (6.1 limits their stacks to 512 bytes together).
 * The file comes in pb->arg_file (see struct pathbuf). */
__attribute__((noinline)) int gh_cache_open(struct gh_event *h, struct pathbuf *pb, __u64 epoch)
{
	if (!pb)
		return 0;
	cache_open(h, (struct file *)pb->arg_file, epoch, 0);
	return 0;
}

__attribute__((noinline)) int gh_cache_open_btf(struct gh_event *h, struct pathbuf *pb, __u64 epoch)
{
	if (!pb)
		return 0;
	cache_open(h, (struct file *)pb->arg_file, epoch, 1);
	return 0;
}

/* A record that took a cache slot was not written (and counted as one
 * event lost): the repeats of the slot's previous open it carried are lost
 * too, and the slot is emptied, so that the file's next open is sent
 * again. */
static __always_inline void uncache(const struct gh_event *h, const struct match *m)
{
	const struct gh_cache_ref *ref = (const struct gh_cache_ref *)h->addr;
	if (ref->prev_count)
		drop_events(m, ref->prev_count);
	struct fcache *fc = thread_cache((__u32)bpf_get_current_pid_tgid());
	if (!fc)
		return;
	struct fslot *s = &fc->s[ref->slot & (GH_CACHE_SLOTS - 1)];
	if ((__u32)s->gc == ref->gen)
		s->gc = 0;
}

static __always_inline __u32 exit_file(struct evbuf *b, __u32 p, struct task_struct *task, struct inflight *in, long ret, int admit, const int btf)
{
	struct gh_event *h = (struct gh_event *)b->data;
	struct plan pl = {};
	plan_file(&pl, h, task, in, ret, btf);
	if (pl.file) {
		h->flags |= GH_F_RESOLVED0;
		/* A local copy: CO-RE must not relocate the access to pl. */
		struct file *f = pl.file;
		umode_t mode;
		if (btf)
			mode = KCAST(btf, struct file, f)->f_inode->i_mode;
		else
			mode = BPF_CORE_READ(f, f_inode, i_mode);
		if ((mode & S_IFMT) != S_IFREG)
			h->flags |= GH_F_NOTREG0;
		/* Read before the walk: a rename during it makes the slot
		 * a miss. */
		__u64 epoch = admit ? path_epoch() : 0;
		struct path fp = file_path(f, btf);
		p = put_path(b, p, 0, fp.dentry, fp.mnt, btf);
		if (admit) {
			__u32 zero = 0;
			struct pathbuf *pb = bpf_map_lookup_elem(&pathbufs, &zero);
			if (pb) {
				pb->arg_file = (__u64)f;
				if (btf)
					gh_cache_open_btf(h, pb, epoch);
				else
					gh_cache_open(h, pb, epoch);
			}
		}
	} else if (pl.path0 || pl.dir0) {
		/* With no user path (dir0) only the base is written. */
		p = put_user_path(b, p, 0, pl.dfd0, pl.path0, btf);
	}
	if (pl.path2) {
		if (pl.raw2)
			p = put_user_str(b, p, 2, pl.path2);
		else
			p = put_user_path(b, p, 2, pl.dfd2, pl.path2, btf);
	}
	return p;
}

/* listen and accept: the socket's local address. */
static __always_inline void exit_endpoint(struct gh_event *h, struct task_struct *task, long fd)
{
	sock_addr(h, sock_info(h, fd_socket(task, fd)), 0);
}

/* The calls of net_call. Returns 0 when the call is not worth an event
 * (a TCP send). */
static __always_inline int exit_net(struct evbuf *b, __u32 *pp, struct task_struct *task, struct inflight *in, long ret)
{
	struct gh_event *h = (struct gh_event *)b->data;
	__u32 p = *pp;
	__u64 *a = in->args;
	struct socket *s;
	struct sock *sk;
	switch (in->nr) {
	case NR_connect:
	case NR_bind:
		s = fd_socket(task, a[0]);
		if (in->have_addr)
			inflight_addr(h, in);
		else
			p = user_sockaddr(b, p, (const void *)a[1], a[2]);
		sock_info(h, s);
		break;
	default: /* sendto, sendmsg, sendmmsg */
		s = fd_socket(task, a[0]);
		sk = sock_info(h, s);
		if (h->sotype != 2 /* SOCK_DGRAM */) {
			/* A TCP Fast Open send starts a handshake the way
			 * connect does; it reports nothing of it. */
			__u64 flags = in->nr == NR_sendmsg ? a[2] : a[3];
			if (h->sotype == SOCK_STREAM && (flags & MSG_FASTOPEN))
				untrack_connect(task, a[0]);
			return 0;
		}
		if (in->have_addr) {
			inflight_addr(h, in);
			break;
		}
		const void *uaddr = 0;
		__u64 ulen = 0;
		if (in->nr == NR_sendto) {
			uaddr = (const void *)a[4];
			ulen = a[5];
		} else {
			/* struct msghdr / mmsghdr: msg_name, msg_namelen first. */
			struct user_msghdr mh = {};
			bpf_probe_read_user(&mh, sizeof(mh), (const void *)a[1]);
			uaddr = mh.msg_name;
			ulen = mh.msg_namelen;
		}
		if (uaddr)
			p = user_sockaddr(b, p, uaddr, ulen);
		else
			sock_addr(h, sk, 1);
		break;
	}
	*pp = p;
	return 1;
}

/* Fills in the address a cgroup socket hook captured during this call, if
 * one did, and forgets it. */
static __always_inline void take_captured(struct inflight *in)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct captured *c = bpf_map_lookup_elem(&captured, &tid);
	if (!c)
		return;
	if (c->kind == capture_kind(in->nr)) {
		in->have_addr = 1;
		in->family = c->family;
		in->port = c->port;
		in->sotype = c->sotype;
		in->proto = c->proto;
		__builtin_memcpy(in->addr, c->addr, 16);
	}
	bpf_map_delete_elem(&captured, &tid);
}

/*
 * Assemble and send the record of a traced call that returned ret: a
 * network call (a global function: the verifier checks it once, apart from
 * the file calls, and its stack is its own) or any other.
 */
__attribute__((noinline)) int gh_exit_net(struct inflight *in, long ret)
{
	if (!in)
		return 0;
	take_captured(in);
	long nr = in->nr;
	struct evbuf *b = start_event(GH_EV_SYSCALL, &in->m);
	if (!b)
		return 0;
	struct gh_event *h = (struct gh_event *)b->data;
	struct task_struct *task = current_task(0);
	h->nr = nr;
	h->ret = ret;
	__u32 p = sizeof(struct gh_event);
	if (!exit_net(b, &p, task, in, ret))
		return 0;
	if (nr == NR_connect && finish_connect(b, &in->m, task, in->args[0], ret))
		return 0;
	submit(b, p, &in->m);
	return 0;
}

static __always_inline int exit_other_call(struct inflight *in, long ret, int admit, const int btf)
{
	if (!in)
		return 0;
	long nr = in->nr;
	/* Only a change of the mount tree is worth a record (user space
	 * reports it as a blind spot); a refused one changed nothing. */
	if (mount_call(nr) && ret != 0)
		return 0;
	struct task_struct *task = current_task(btf);
	struct evbuf *b = start_event(GH_EV_SYSCALL, &in->m);
	if (!b)
		return 0;
	struct gh_event *h = (struct gh_event *)b->data;
	h->nr = nr;
	h->ret = ret;
	__u32 p = sizeof(struct gh_event);
	switch (nr) {
	case NR_listen:
		exit_endpoint(h, task, in->args[0]);
		break;
	case NR_accept:
	case NR_accept4:
		/* The endpoint that accepted: the new socket's local address. */
		exit_endpoint(h, task, ret >= 0 ? ret : (long)in->args[0]);
		break;
	case NR_io_uring_setup:
	case NR_mount: case NR_umount2: case NR_pivot_root: case NR_move_mount:
		break;
	case NR_execve: case NR_execveat:
		set_process_fields(h);
		/* fall through */
	default:
		p = exit_file(b, p, task, in, ret, admit, btf);
		break;
	}
	if (submit(b, p, &in->m) && (h->flags & GH_F_CACHED))
		uncache(h, &in->m);
	return 0;
}

/* Global functions: the verifier checks the file calls once, not once for
 * each call number the exit program's switch leads to them with. admit
 * says the open may take a slot of the thread's open cache. */
__attribute__((noinline)) int gh_exit_other(struct inflight *in, long ret, int admit)
{
	return exit_other_call(in, ret, admit, 0);
}

__attribute__((noinline)) int gh_exit_other_btf(struct inflight *in, long ret, int admit)
{
	return exit_other_call(in, ret, admit, 1);
}

/*
 * The only syscall hook: it runs at the exit of every call on the host, so
 * it rules calls out as cheaply as it can. (An entry hook would double the
 * cost to every process; nothing needs one: arguments are in the saved
 * registers, which the call does not change, addresses the kernel copied
 * come from the cgroup socket hooks, and a connect's handshake is tracked
 * from the socket's own state change.)
 */
static __always_inline int sys_exit(struct pt_regs *regs, long ret, const int btf)
{
	long nr = KREAD(btf, regs, orig_ax);
	int t64 = traced64(nr), t32 = traced32(nr);
	if (!t64 && !t32)
		return 0;
	struct inflight in = {};
	if (t32) {
		/* Many i386 numbers of traced calls are common x86_64 calls
		 * (mmap, mprotect, fstat, lseek...): rule out a 32-bit call, a
		 * read of the task, before the target lookup every process on
		 * the host would otherwise pay for them. */
		if (in_compat(current_task(btf), btf)) {
			if (ret == 0 && path_change32(nr))
				bump_path_epoch();
			if (match_current(&in.m, btf))
				gh_report_compat(nr, &in.m);
			return 0;
		}
		if (!t64)
			return 0;
	}
	/* Any process's rename or mount change may change the path of a file
	 * some thread's open cache holds. */
	if (ret == 0 && path_change64(nr))
		bump_path_epoch();
	/* A successful exec is reported by sched_process_exec. */
	if ((nr == NR_execve || nr == NR_execveat) && ret == 0)
		return 0;
	if (!match_current(&in.m, btf))
		return 0;
	/* Only now: most calls that get this far are an unobserved
	 * process's. */
	struct task_struct *task = current_task(btf);
	/* An i386 call whose number is a traced x86_64 one but no traced
	 * i386 one. */
	if (!t32 && in_compat(task, btf))
		return 0;
	in.nr = nr;
	if (btf) {
		in.args[0] = regs->di;
		in.args[1] = regs->si;
		in.args[2] = regs->dx;
		in.args[3] = regs->r10;
		in.args[4] = regs->r8;
		in.args[5] = regs->r9;
	} else if (gh_read_args(&in, (__u64)regs)) {
		return 0;
	}
	/* A repeated open is counted in the thread's open cache (1); a miss
	 * may take a slot (2). */
	int cache = 0;
	if (ret >= 0 && cached_open(nr)) {
		cache = btf ? gh_open_repeat_btf(&in, ret) : gh_open_repeat(&in, ret);
		if (cache == 1)
			return 0;
	}
	if (net_call(nr)) {
		gh_exit_net(&in, ret);
		return 0;
	}
	if (btf)
		gh_exit_other_btf(&in, ret, cache == 2);
	else
		gh_exit_other(&in, ret, cache == 2);
	return 0;
}

SEC("raw_tracepoint/sys_exit")
int gh_sys_exit(struct bpf_raw_tracepoint_args *ctx)
{
	return sys_exit((struct pt_regs *)ctx->args[0], ctx->args[1], 0);
}

/* The same for kernels with bpf_rdonly_cast; user space loads one of the two. */
SEC("tp_btf/sys_exit")
int gh_sys_exit_btf(__u64 *ctx)
{
	return sys_exit((struct pt_regs *)ctx[0], (long)ctx[1], 1);
}

/* ---- processes --------------------------------------------------------- */

SEC("raw_tracepoint/sched_process_fork")
int gh_fork(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *parent = (struct task_struct *)ctx->args[0];
	struct task_struct *child = (struct task_struct *)ctx->args[1];
	__u32 pid = BPF_CORE_READ(child, pid);
	__u32 tgid = BPF_CORE_READ(child, tgid);
	if (pid != tgid)
		return 0; /* a thread */
	struct match m = {};
	if (!task_match(child, &m))
		return 0;
	struct evbuf *b = start_event(GH_EV_FORK, &m);
	if (!b)
		return 0;
	struct gh_event *h = (struct gh_event *)b->data;
	h->pid = tgid;
	h->tid = pid;
	h->ppid = BPF_CORE_READ(child, real_parent, tgid);
	if (!h->ppid)
		h->ppid = BPF_CORE_READ(parent, tgid);
	submit(b, sizeof(struct gh_event), &m);
	return 0;
}

SEC("raw_tracepoint/sched_process_exec")
int gh_exec(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *task = (struct task_struct *)ctx->args[0];
	__u32 old_pid = (__u32)ctx->args[1];
	struct linux_binprm *bprm = (struct linux_binprm *)ctx->args[2];
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	if (old_pid != tid) {
		/* An exec from a non-leader thread, which took the leader's id. */
		bpf_map_delete_elem(&captured, &old_pid);
		end_cache(bpf_get_current_pid_tgid() >> 32, old_pid);
	}
	struct match m = {};
	if (!current_match(&m))
		return 0;
	struct evbuf *b = start_event(GH_EV_EXEC, &m);
	if (!b)
		return 0;
	struct gh_event *h = (struct gh_event *)b->data;
	__u32 p = sizeof(struct gh_event);
	struct file *f = BPF_CORE_READ(bprm, file);
	p = put_file_path(b, p, 0, f);

	struct mm_struct *mm = BPF_CORE_READ(task, mm);
	unsigned long start = BPF_CORE_READ(mm, arg_start);
	unsigned long end = BPF_CORE_READ(mm, arg_end);
	if (end > start && p <= GH_STR_AREA_END) {
		__u32 n = end - start;
		if (n > GH_STR_MAX) {
			n = GH_STR_MAX;
			h->flags |= GH_F_TRUNC0 << 1;
		}
		if (bpf_probe_read_user(&b->data[str_off(p)], n & GH_STR_MAX, (const void *)start) == 0) {
			h->len[1] = n;
			p += n & GH_STR_MAX;
		}
	}
	struct dentry *d = BPF_CORE_READ(task, fs, pwd.dentry);
	struct vfsmount *mnt = BPF_CORE_READ(task, fs, pwd.mnt);
	p = put_path(b, p, 2, d, mnt, 0);
	submit(b, p, &m);
	return 0;
}

SEC("raw_tracepoint/sched_process_exit")
int gh_exit(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *task = (struct task_struct *)ctx->args[0];
	__u64 pidtgid = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)pidtgid;
	bpf_map_delete_elem(&captured, &tid);
	end_cache(pidtgid >> 32, tid);
	/* Only the last thread reports: signal->live reached zero before this tracepoint. */
	int live = BPF_CORE_READ(task, signal, live.counter);
	if (live != 0)
		return 0;
	struct match m = {};
	if (!current_match(&m))
		return 0;
	__u32 tgid = pidtgid >> 32;
	bpf_map_delete_elem(&compat_seen, &tgid);
	struct evbuf *b = start_event(GH_EV_EXIT, &m);
	if (!b)
		return 0;
	struct gh_event *h = (struct gh_event *)b->data;
	h->ret = BPF_CORE_READ(task, exit_code);
	submit(b, sizeof(struct gh_event), &m);
	return 0;
}

/*
 * Flush barrier: user space runs this program (BPF_PROG_TEST_RUN) with the
 * session id in args[0] and a sequence in args[1] (0 for Stop's, else a
 * Sync's), which the marker carries in ret. The marker is queued after
 * every record already written, so once the reader sees it, it has seen
 * everything before it. Returns 0 on success, 1 when the ring buffer is
 * full (retry).
 */
SEC("raw_tracepoint/gh_marker")
int gh_marker(struct bpf_raw_tracepoint_args *ctx)
{
	struct gh_event *h = bpf_ringbuf_reserve(&events, sizeof(struct gh_event), 0);
	if (!h)
		return 1;
	__builtin_memset(h, 0, sizeof(*h));
	h->ktime = bpf_ktime_get_ns();
	h->kind = GH_EV_MARKER;
	h->sess[0] = (__u32)ctx->args[0];
	h->nsess = 1;
	h->ret = ctx->args[1];
	bpf_ringbuf_submit(h, BPF_RB_FORCE_WAKEUP);
	return 0;
}

/* ---- cgroup socket hooks: the kernel's copy of the address ---------------- */

/* Keeps the address of a target thread's call for its sys_exit. A thread
 * whose address cannot be kept has it read from its memory instead. */
static __always_inline void capture_addr(struct bpf_sock_addr *ctx, __u16 kind, int v6)
{
	struct match m = {};
	if (!current_match(&m))
		return;
	struct captured c = {.kind = kind};
	c.port = bpf_ntohs((__u16)ctx->user_port);
	c.sotype = ctx->type;
	c.proto = ctx->protocol;
	if (v6) {
		__u32 w0 = ctx->user_ip6[0], w1 = ctx->user_ip6[1], w2 = ctx->user_ip6[2], w3 = ctx->user_ip6[3];
		c.family = AF_INET6;
		__builtin_memcpy(&c.addr[0], &w0, 4);
		__builtin_memcpy(&c.addr[4], &w1, 4);
		__builtin_memcpy(&c.addr[8], &w2, 4);
		__builtin_memcpy(&c.addr[12], &w3, 4);
	} else {
		__u32 ip = ctx->user_ip4;
		c.family = AF_INET;
		__builtin_memcpy(c.addr, &ip, 4);
	}
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	bpf_map_update_elem(&captured, &tid, &c, BPF_ANY);
}

SEC("cgroup/connect4")
int gh_connect4(struct bpf_sock_addr *ctx) { capture_addr(ctx, CAP_CONNECT, 0); return 1; }
SEC("cgroup/connect6")
int gh_connect6(struct bpf_sock_addr *ctx) { capture_addr(ctx, CAP_CONNECT, 1); return 1; }
SEC("cgroup/sendmsg4")
int gh_sendmsg4(struct bpf_sock_addr *ctx) { capture_addr(ctx, CAP_SEND, 0); return 1; }
SEC("cgroup/sendmsg6")
int gh_sendmsg6(struct bpf_sock_addr *ctx) { capture_addr(ctx, CAP_SEND, 1); return 1; }
SEC("cgroup/bind4")
int gh_bind4(struct bpf_sock_addr *ctx) { capture_addr(ctx, CAP_BIND, 0); return 1; }
SEC("cgroup/bind6")
int gh_bind6(struct bpf_sock_addr *ctx) { capture_addr(ctx, CAP_BIND, 1); return 1; }
