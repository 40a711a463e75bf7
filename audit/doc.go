// Package audit is the host eBPF collector: it observes the processes of
// host cgroups and turns what the kernel saw them do (execs, forks, exits,
// file and network syscalls) into portable profiling events.
//
// Open loads and attaches the BPF programs of ebpf/collector once; the
// returned *Collector implements profiling.Controller and serves many
// concurrent sessions, one per registered cgroup (descendant cgroups
// included, so the root cgroup observes everything). The caller must Close
// it. A Collector is safe for concurrent use.
//
// Observation is complete or says why not: records the kernel could not
// queue are counted per session in the kernel (Report.Dropped), and what the
// collector knows it cannot see — io_uring submissions, 32-bit syscalls,
// paths too long to record — is listed in Report.Blind.
//
// The collector needs Linux 5.17 or later on x86_64 with BTF
// (CONFIG_DEBUG_INFO_BTF), raw tracepoints, ring buffers, bpf_loop and cgroup2;
// it uses no kprobes, fentry or BPF LSM. On Linux 6.2 and later its syscall
// exit program is a tp_btf program whose kernel reads are plain loads
// (Collector.Build). Socket addresses are taken from
// cgroup sock_addr hooks on the cgroup2 root when they can be attached,
// otherwise from the caller's memory at syscall exit.
package audit
