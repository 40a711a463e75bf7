/* SPDX-License-Identifier: (MIT OR GPL-2.0) */
/*
 * Wire format shared by the BPF collector (collector.bpf.c) and its Go
 * decoder (audit/decode.go). Every record in the ring buffer is a
 * struct gh_event header followed by up to GH_NSTR strings, packed back to
 * back without NULs; hdr.len[i] gives their lengths. Change this file and
 * audit/decode.go together, and bump GH_ABI.
 */
#ifndef GLASSHOUSE_H
#define GLASSHOUSE_H

#define GH_ABI 2

/* Event kinds (gh_event.kind). */
#define GH_EV_FORK 1        /* new process (not a thread): pid, ppid */
#define GH_EV_EXEC 2        /* successful exec: s0 exe, s1 argv (NUL separated), s2 cwd */
#define GH_EV_EXIT 3        /* last thread of a process exited: ret = wait status */
#define GH_EV_SYSCALL 4     /* a traced syscall returned: nr, ret, strings per nr */
#define GH_EV_MARKER 5      /* flush barrier requested by user space: sess[0], ret = sequence (0: Stop) */
#define GH_EV_COMPAT 6      /* a 32-bit (int 0x80) file/net/exec syscall: nr is the i386 number */
#define GH_EV_COUNTS 7      /* a thread's open cache ended (the thread exited, exec'd from a non-leader
                             * thread, or its sessions changed): the header is followed by
                             * GH_CACHE_SLOTS struct gh_count, the repeats each slot held */

/* gh_event.flags */
#define GH_F_TRUNC0 (1u << 0)       /* string i was truncated: GH_F_TRUNC0 << i */
#define GH_F_ADDR (1u << 4)         /* family/port/addr are set */
#define GH_F_ADDR_KERNEL (1u << 5)  /* address came from a cgroup sock_addr hook (kernel copy) */
#define GH_F_SOCK (1u << 6)         /* sotype/proto came from the socket */
#define GH_F_RESOLVED0 (1u << 8)    /* s0 was resolved from a kernel struct file (absolute) */
#define GH_F_PSEUDO0 (1u << 9)      /* s0 names a file outside any mount tree (pipe, memfd) */
#define GH_F_NOTREG0 (1u << 10)     /* s0 (resolved) is not a regular file: O_CREAT created nothing */
#define GH_F_CACHED (1u << 11)      /* an open the thread's cache now holds: addr is a struct gh_cache_ref */

#define GH_NSTR 4
#define GH_MAX_SESS 4
#define GH_STR_MAX 4095             /* longest string; paths are cut here */

/* Limits sized so that the verifier can bound every access. */
#define GH_EVBUF 32768              /* per-CPU event assembly buffer */
/* Strings start at or before GH_STR_AREA_END; offsets are masked with it. */
#define GH_STR_AREA_END 16383
#define GH_PATH_COMPONENTS 96       /* deepest path walked (dentries + mounts) */
#define GH_CGROUP_LEVELS 32         /* deepest cgroup nesting searched for targets */
#define GH_CACHE_SLOTS 8            /* files a thread's open cache holds */
#define GH_CACHE_THREADS 4096       /* open caches: thread tid's is entry tid % GH_CACHE_THREADS */

struct gh_event {
	__u64 ktime;        /* bpf_ktime_get_ns (CLOCK_MONOTONIC); 0 in file and network records */
	__u32 kind;
	__u32 pid;          /* thread group id */
	__u32 tid;
	__u32 ppid;         /* real parent's thread group id; 0 in file and network records */
	__u32 uid;          /* 0 in file and network records */
	__u32 flags;
	__s64 ret;          /* syscall return value, or exit wait status */
	__u64 arg;          /* open flags, unlinkat/linkat flags, ... */
	__u32 sess[GH_MAX_SESS]; /* sessions the event belongs to */
	__u16 nsess;
	__u16 nr;           /* syscall number (x86_64) */
	__u16 len[GH_NSTR];
	__u16 family;       /* AF_* */
	__u16 port;         /* host byte order */
	__u16 sotype;       /* SOCK_STREAM, SOCK_DGRAM, ... */
	__u16 proto;        /* IPPROTO_* */
	__u8 addr[16];      /* IPv4 in the first 4 bytes, or IPv6 */
	__u32 owner;        /* tid that assembled the record (guards the per-CPU buffer) */
};

/* Session key value in the targets map. */
struct gh_target {
	__u32 sess;         /* session id chosen by user space, never 0 */
	__u32 slot;         /* index into the drops array */
};

/*
 * Repeated opens. A thread's successful opens go through a small cache of
 * files it opened again. A miss sends the open's record; the second miss
 * in a row at a slot also takes the slot (GH_F_CACHED) under a new
 * generation. An open that hits only counts in the slot. The counts reach user space three ways: the record that
 * takes a slot carries what the slot held before (prev_*), a GH_EV_COUNTS
 * record carries every slot when the cache ends, and user space reads the
 * cache of a thread still alive when its session syncs or stops.
 */
struct gh_cache_ref {
	__u32 slot;
	__u32 gen;          /* never 0; unique across threads */
	__u32 prev_gen;     /* the slot's previous occupant, 0 if none */
	__u32 prev_count;   /* its repeats */
};

struct gh_count {
	__u32 gen;          /* 0: the slot is empty */
	__u32 count;        /* repeats of the open that took the slot */
};

#endif
