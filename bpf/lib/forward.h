/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* forward.h: delivery to a local endpoint (L2 rewrite, TTL, redirect). */
#ifndef CILIA_FORWARD_H
#define CILIA_FORWARD_H

#include "common.h"
#include "drop_reasons.h"
#include "endpoints.h"
#include "parse.h"

/* ttl_decrement lowers the IPv4 TTL (fixing the header checksum) or the
 * IPv6 hop limit of a routed packet. Returns 0, or -DROP_TTL_EXCEEDED when
 * it would reach 0, or -DROP_INVALID_PACKET when the packet cannot be
 * written. */
static __always_inline int ttl_decrement(struct __sk_buff *ctx, const struct packet *pkt)
{
	__u8 ttl = pkt->ttl;

	if (ttl <= 1)
		return -DROP_TTL_EXCEEDED;
	if (pkt->tuple.family == FAMILY_IPV4) {
		__u32 off = pkt->l3_off + offsetof(struct iphdr, ttl);
		__u8 word[2];
		__be16 old, new;

		if (bpf_skb_load_bytes(ctx, off, word, 2) < 0)
			return -DROP_INVALID_PACKET;
		__builtin_memcpy(&old, word, 2);
		word[0] = ttl - 1;
		__builtin_memcpy(&new, word, 2);
		if (bpf_l3_csum_replace(ctx, pkt->l3_off + offsetof(struct iphdr, check),
					old, new, 2) < 0)
			return -DROP_INVALID_PACKET;
		if (bpf_skb_store_bytes(ctx, off, word, 1, 0) < 0)
			return -DROP_INVALID_PACKET;
		return 0;
	}
	ttl--;
	if (bpf_skb_store_bytes(ctx, pkt->l3_off + offsetof(struct ipv6hdr, hop_limit), &ttl, 1, 0) < 0)
		return -DROP_INVALID_PACKET;
	return 0;
}

/* local_deliver rewrites the Ethernet header for ep (source: the host side
 * of its veth, destination: the endpoint), decrements the TTL and redirects
 * to the host side of ep's veth, where to_container runs next.
 * Returns TC_ACT_REDIRECT, or a negative drop reason. */
static __always_inline int local_deliver(struct __sk_buff *ctx, const struct packet *pkt,
					 const struct endpoint_info *ep)
{
	__u8 macs[12];
	int ret;

	__builtin_memcpy(&macs[0], ep->mac, 6);
	__builtin_memcpy(&macs[6], ep->node_mac, 6);
	if (bpf_skb_store_bytes(ctx, 0, macs, sizeof(macs), 0) < 0)
		return -DROP_INVALID_PACKET;
	ret = ttl_decrement(ctx, pkt);
	if (ret < 0)
		return ret;
	return bpf_redirect(ep->ifindex, 0);
}

#endif /* CILIA_FORWARD_H */
