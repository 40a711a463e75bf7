// SPDX-License-Identifier: (MIT OR GPL-2.0)
/*
 * Glasshouse network guard: cgroup programs that enforce a run's network
 * mode in the kernel. A sock_addr program returning 0 makes connect(),
 * sendmsg()/sendto() or bind() fail with EPERM; a cgroup_skb program
 * returning 0 drops the packet.
 *
 *   ng_deny_*  mode "none": every address is refused, loopback included,
 *              and every packet to or from the cgroup's sockets is dropped
 *              (sockets bound implicitly or raw sockets get nothing through).
 *   ng_lo_*    mode "loopback": only 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104
 *              are allowed, for addresses and for packets.
 */
#include "include/vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD

static __always_inline int lo4(__u32 be)
{
	return (bpf_ntohl(be) >> 24) == 127;
}

static __always_inline int lo6(__u32 w0, __u32 w1, __u32 w2, __u32 w3)
{
	if (w0 || w1)
		return 0;
	if (!w2 && w3 == bpf_htonl(1))
		return 1; /* ::1 */
	return w2 == bpf_htonl(0xffff) && lo4(w3); /* ::ffff:127.0.0.0/104 */
}

/* ---- mode none ---------------------------------------------------------- */

SEC("cgroup/connect4")
int ng_deny_connect4(struct bpf_sock_addr *ctx) { return 0; }
SEC("cgroup/connect6")
int ng_deny_connect6(struct bpf_sock_addr *ctx) { return 0; }
SEC("cgroup/sendmsg4")
int ng_deny_sendmsg4(struct bpf_sock_addr *ctx) { return 0; }
SEC("cgroup/sendmsg6")
int ng_deny_sendmsg6(struct bpf_sock_addr *ctx) { return 0; }
SEC("cgroup/bind4")
int ng_deny_bind4(struct bpf_sock_addr *ctx) { return 0; }
SEC("cgroup/bind6")
int ng_deny_bind6(struct bpf_sock_addr *ctx) { return 0; }
SEC("cgroup_skb/egress")
int ng_deny_egress(struct __sk_buff *skb) { return 0; }
SEC("cgroup_skb/ingress")
int ng_deny_ingress(struct __sk_buff *skb) { return 0; }

/* ---- mode loopback ------------------------------------------------------ */

static __always_inline int addr4_ok(struct bpf_sock_addr *ctx)
{
	return lo4(ctx->user_ip4);
}

static __always_inline int addr6_ok(struct bpf_sock_addr *ctx)
{
	return lo6(ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3]);
}

SEC("cgroup/connect4")
int ng_lo_connect4(struct bpf_sock_addr *ctx) { return addr4_ok(ctx); }
SEC("cgroup/connect6")
int ng_lo_connect6(struct bpf_sock_addr *ctx) { return addr6_ok(ctx); }
SEC("cgroup/sendmsg4")
int ng_lo_sendmsg4(struct bpf_sock_addr *ctx) { return addr4_ok(ctx); }
SEC("cgroup/sendmsg6")
int ng_lo_sendmsg6(struct bpf_sock_addr *ctx) { return addr6_ok(ctx); }
SEC("cgroup/bind4")
int ng_lo_bind4(struct bpf_sock_addr *ctx) { return addr4_ok(ctx); }
SEC("cgroup/bind6")
int ng_lo_bind6(struct bpf_sock_addr *ctx) { return addr6_ok(ctx); }

/* Allows a packet whose address at off4 (IPv4) or off6 (IPv6) is loopback. */
static __always_inline int skb_lo(struct __sk_buff *skb, __u32 off4, __u32 off6)
{
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		__u32 a = 0;
		if (bpf_skb_load_bytes(skb, off4, &a, 4))
			return 0;
		return lo4(a);
	}
	if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		__u32 a[4] = {};
		if (bpf_skb_load_bytes(skb, off6, a, 16))
			return 0;
		return lo6(a[0], a[1], a[2], a[3]);
	}
	return 0;
}

/* IPv4: saddr at 12, daddr at 16. IPv6: saddr at 8, daddr at 24. */
SEC("cgroup_skb/egress")
int ng_lo_egress(struct __sk_buff *skb) { return skb_lo(skb, 16, 24); }
SEC("cgroup_skb/ingress")
int ng_lo_ingress(struct __sk_buff *skb) { return skb_lo(skb, 12, 8); }
