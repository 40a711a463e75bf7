// Package netguard enforces a run's network mode in the kernel with cgroup
// BPF programs attached to the run's cgroup2 directory: connect4/6,
// sendmsg4/6 and bind4/6 refuse addresses (the call fails with EPERM inside
// the sandbox), and cgroup_skb ingress/egress drop packets the mode does
// not allow, so that implicitly bound or raw sockets get nothing through
// either.
//
// Mode none refuses every address, loopback included; mode loopback allows
// only 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104 (binding to the wildcard
// address is refused too); mode full attaches nothing.
//
// The programs are attached with BPF_PROG_ATTACH and BPF_F_ALLOW_MULTI, not
// with BPF links, so the policy stays in force if the attaching process
// dies: it ends only with Guard.Close or when the cgroup is removed.
// Attach is safe for concurrent use; a Guard is owned by one caller, who
// must Close it.
package netguard

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go@v0.22.0 -cc clang-14 -strip llvm-strip-14 -cflags "-O2 -g -Wall -Werror -mcpu=v3" -target bpfel -tags linux -output-stem netguard netguard ../netguard.bpf.c
