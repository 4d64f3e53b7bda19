/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* common.h: types, constants and small helpers shared by every program. */
#ifndef CILIA_COMMON_H
#define CILIA_COMMON_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

#ifndef offsetof
#define offsetof(T, m) __builtin_offsetof(T, m)
#endif

/* Address families as stored in map keys (not AF_* values, so 0 means "unset"). */
#define FAMILY_IPV4 4
#define FAMILY_IPV6 6

/* Traffic direction relative to the endpoint. Also the CT key's direction. */
#define DIR_INGRESS 1
#define DIR_EGRESS  2

/* Reserved identities (Cilium's numbers). */
#define IDENTITY_UNKNOWN 0
#define IDENTITY_HOST    1
#define IDENTITY_WORLD   2

/* ICMP and ICMPv6 types (spelled out: linux/icmp.h drags in libc headers). */
#define ICMP_ECHOREPLY      0
#define ICMP_DEST_UNREACH   3
#define ICMP_SOURCE_QUENCH  4
#define ICMP_ECHO           8
#define ICMP_TIME_EXCEEDED  11
#define ICMP_PARAMETERPROB  12
#define ICMPV6_DEST_UNREACH 1
#define ICMPV6_PKT_TOOBIG   2
#define ICMPV6_TIME_EXCEED  3
#define ICMPV6_PARAMPROB    4
#define ICMPV6_ECHO_REQUEST 128
#define ICMPV6_ECHO_REPLY   129

#ifndef IPPROTO_SCTP
#define IPPROTO_SCTP 132
#endif

/* An IPv4 address is stored in addr[0..3] with the rest zero. */
union v6addr {
	__u8   addr[16];
	__be32 p32[4];
	__u64  d64[2];
};

static __always_inline int v6addr_equal(const union v6addr *a, const union v6addr *b)
{
	return a->d64[0] == b->d64[0] && a->d64[1] == b->d64[1];
}

/* struct addr_key is an exact-address map key (local endpoints, host
 * entries of the ipcache). */
struct addr_key {
	union v6addr addr;
	__u8 family;
	__u8 pad[7];
};

/* now_jiffies returns the kernel's jiffies: conntrack lifetimes need no
 * more precision, and the verifier inlines the helper into one load. */
static __always_inline __u64 now_jiffies(void)
{
	return bpf_jiffies64();
}

#endif /* CILIA_COMMON_H */
