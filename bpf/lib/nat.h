/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* nat.h: rewriting a packet's source or destination address and port, with
 * the IPv4 header checksum and the L4 checksum kept right.
 *
 * API:
 *
 *   int nat_rewrite_dst(ctx, pkt, const union v6addr *addr, __be16 port)
 *   int nat_rewrite_src(ctx, pkt, const union v6addr *addr, __be16 port)
 *       Rewrite the destination (source) address of the parsed packet pkt
 *       to addr, and its destination (source) port to port when the packet
 *       has one: TCP, UDP and SCTP ports, the ICMP/ICMPv6 echo identifier
 *       (it is the source "port" of a request and the destination "port"
 *       of a reply, parse.h); other ICMP messages and later fragments (no
 *       L4 header) only get the address. pkt->tuple follows the rewrite
 *       (and pkt->policy_port, for a destination port of TCP/UDP/SCTP), so
 *       the pipeline carries on with the translated packet. Returns 0, or
 *       -DROP_ERROR_WRITING_TO_PACKET when the packet cannot be written.
 *
 * Checksums: the IPv4 header checksum is updated; TCP, UDP and ICMPv6
 * checksums cover a pseudo header with the addresses and are updated with
 * BPF_F_PSEUDO_HDR (right for complete checksums and for CHECKSUM_PARTIAL
 * packets of local senders alike); an IPv4 UDP checksum of 0 (none) stays
 * 0 (BPF_F_MARK_MANGLED_0). ICMPv4 has no pseudo header, only the echo
 * identifier changes its checksum. SCTP's CRC32c covers no pseudo header,
 * so address rewrites leave it right; a port rewrite leaves it stale: the
 * datapath does not recompute CRC32c. Packets of local senders carry
 * CHECKSUM_PARTIAL (veth offloads SCTP CRC32c), so the CRC is filled in
 * after the rewrite when the packet leaves through a device, and a local
 * receiver does not check it; a rewritten packet that came in with a final
 * CRC and goes to a receiver that checks it is dropped by that receiver.
 */
#ifndef CILIA_NAT_H
#define CILIA_NAT_H

#include "common.h"
#include "drop_reasons.h"
#include "parse.h"

/* nat_l4_csum_off returns the offset of pkt's L4 checksum, or 0 when the
 * packet has no L4 header here or its checksum covers no address (ICMPv4,
 * SCTP, other protocols). */
static __always_inline __u32 nat_l4_csum_off(const struct packet *pkt)
{
	if (pkt->frag == FRAG_LATER)
		return 0;
	switch (pkt->tuple.nexthdr) {
	case IPPROTO_TCP:
		return pkt->l4_off + offsetof(struct tcphdr, check);
	case IPPROTO_UDP:
		return pkt->l4_off + offsetof(struct udphdr, check);
	case IPPROTO_ICMPV6:
		return pkt->l4_off + 2;
	}
	return 0;
}

/* nat_l4_csum_flags returns the bpf_l4_csum_replace flags of pkt's L4
 * checksum: UDP's 0 means "no checksum" and must stay 0. */
static __always_inline __u64 nat_l4_csum_flags(const struct packet *pkt)
{
	return pkt->tuple.nexthdr == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
}

/* nat_rewrite_addr writes addr over the source (src) or destination
 * address of pkt and fixes the checksums. Returns 0 or a negative drop
 * reason. */
static __always_inline int nat_rewrite_addr(struct __sk_buff *ctx, struct packet *pkt,
					    const union v6addr *addr, int src)
{
	union v6addr *old = src ? &pkt->tuple.saddr : &pkt->tuple.daddr;
	__u32 csum_off = nat_l4_csum_off(pkt);
	__u64 flags = nat_l4_csum_flags(pkt) | BPF_F_PSEUDO_HDR;

	if (v6addr_equal(old, addr))
		return 0;
	if (pkt->tuple.family == FAMILY_IPV4) {
		__u32 off = pkt->l3_off + (src ? offsetof(struct iphdr, saddr) : offsetof(struct iphdr, daddr));
		__be32 from = old->p32[0], to = addr->p32[0];

		if (bpf_l3_csum_replace(ctx, pkt->l3_off + offsetof(struct iphdr, check), from, to, 4) < 0)
			return -DROP_ERROR_WRITING_TO_PACKET;
		/* ICMPv4's checksum covers no pseudo header. */
		if (csum_off && pkt->tuple.nexthdr != IPPROTO_ICMPV6 &&
		    bpf_l4_csum_replace(ctx, csum_off, from, to, flags | 4) < 0)
			return -DROP_ERROR_WRITING_TO_PACKET;
		if (bpf_skb_store_bytes(ctx, off, &to, 4, 0) < 0)
			return -DROP_ERROR_WRITING_TO_PACKET;
	} else {
		__u32 off = pkt->l3_off + (src ? offsetof(struct ipv6hdr, saddr) : offsetof(struct ipv6hdr, daddr));
		/* No copies: the callers' stacks are full. */
		__s64 diff = bpf_csum_diff((__be32 *)old->p32, 16, (__be32 *)addr->p32, 16, 0);

		if (diff < 0)
			return -DROP_ERROR_WRITING_TO_PACKET;
		if (csum_off && bpf_l4_csum_replace(ctx, csum_off, 0, diff, flags) < 0)
			return -DROP_ERROR_WRITING_TO_PACKET;
		if (bpf_skb_store_bytes(ctx, off, addr, 16, 0) < 0)
			return -DROP_ERROR_WRITING_TO_PACKET;
	}
	*old = *addr;
	return 0;
}

/* nat_rewrite_port writes port over the source (src) or destination port
 * of pkt, where it has one (see the API above), and fixes the checksum.
 * Returns 0 or a negative drop reason. */
static __always_inline int nat_rewrite_port(struct __sk_buff *ctx, struct packet *pkt, __be16 port,
					    int src)
{
	__be16 *old = src ? &pkt->tuple.sport : &pkt->tuple.dport;
	__u32 off, csum_off = 0;
	__u64 flags = 0;

	if (pkt->frag == FRAG_LATER || *old == port)
		return 0;
	switch (pkt->tuple.nexthdr) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
		csum_off = nat_l4_csum_off(pkt);
		flags = nat_l4_csum_flags(pkt);
		/* fallthrough */
	case IPPROTO_SCTP:
		/* The ports are the first two words of all three headers. */
		off = pkt->l4_off + (src ? 0 : 2);
		break;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6: {
		__u8 req = pkt->tuple.nexthdr == IPPROTO_ICMP ? ICMP_ECHO : ICMPV6_ECHO_REQUEST;
		__u8 rep = pkt->tuple.nexthdr == IPPROTO_ICMP ? ICMP_ECHOREPLY : ICMPV6_ECHO_REPLY;

		/* Only the echo identifier is a port. */
		if (pkt->icmp_error || pkt->icmp_type != (src ? req : rep))
			return 0;
		off = pkt->l4_off + 4;
		csum_off = pkt->l4_off + 2;
		break;
	}
	default:
		return 0;
	}
	if (csum_off && bpf_l4_csum_replace(ctx, csum_off, *old, port, flags | 2) < 0)
		return -DROP_ERROR_WRITING_TO_PACKET;
	if (bpf_skb_store_bytes(ctx, off, &port, 2, 0) < 0)
		return -DROP_ERROR_WRITING_TO_PACKET;
	*old = port;
	if (!src && pkt->tuple.nexthdr != IPPROTO_ICMP && pkt->tuple.nexthdr != IPPROTO_ICMPV6)
		pkt->policy_port = port;
	return 0;
}

/* nat_rewrite_dst: see the API at the top of this file. */
static __always_inline int nat_rewrite_dst(struct __sk_buff *ctx, struct packet *pkt,
					   const union v6addr *addr, __be16 port)
{
	int ret = nat_rewrite_addr(ctx, pkt, addr, 0);

	if (ret < 0)
		return ret;
	return nat_rewrite_port(ctx, pkt, port, 0);
}

/* nat_rewrite_src: see the API at the top of this file. */
static __always_inline int nat_rewrite_src(struct __sk_buff *ctx, struct packet *pkt,
					   const union v6addr *addr, __be16 port)
{
	int ret = nat_rewrite_addr(ctx, pkt, addr, 1);

	if (ret < 0)
		return ret;
	return nat_rewrite_port(ctx, pkt, port, 1);
}

#endif /* CILIA_NAT_H */
