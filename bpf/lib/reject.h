/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* reject.h: turning a packet into the rejection its sender gets when the
 * service it addresses has no backend.
 *
 *   TCP:       a RST, as Linux answers a segment for a closed port: to a
 *              segment with ACK, RST with seq = its ack; otherwise RST|ACK
 *              with seq 0 and ack = its seq + its length (payload, SYN and
 *              FIN each count one).
 *   UDP, SCTP: an ICMP destination unreachable, port unreachable (ICMPv6:
 *              code 4), quoting the packet's IP header, its extension
 *              headers or options, and 8 bytes of its L4 header (IPv6: at
 *              most REJECT_QUOTE_MAX bytes in all).
 *
 * The rejection is written over the packet in place: Ethernet addresses,
 * IP addresses and ports swapped (it comes from the address the packet was
 * sent to), TTL/hop limit 64, no IP options or extension headers, every
 * checksum computed in full.
 */
#ifndef CILIA_REJECT_H
#define CILIA_REJECT_H

#include "common.h"
#include "drop_reasons.h"
#include "parse.h"

/* The most bytes of the rejected packet an ICMP error quotes. */
#define REJECT_QUOTE_MAX 256
#define REJECT_TTL 64

/* struct reject_pseudo6 is the IPv6 pseudo header of upper-layer
 * checksums. */
struct reject_pseudo6 {
	union v6addr saddr;
	union v6addr daddr;
	__be32 len;
	__u8 zero[3];
	__u8 nexthdr;
};

/* struct reject_pseudo4 is the IPv4 pseudo header of TCP/UDP checksums. */
struct reject_pseudo4 {
	__be32 saddr;
	__be32 daddr;
	__u8 zero;
	__u8 proto;
	__be16 len;
};

/* struct reject_scratch is where the rejection is built: per-CPU memory,
 * the stack being taken by the pipeline that calls reject_packet. */
struct reject_scratch {
	__u8 quote[REJECT_QUOTE_MAX];
	__u8 macs[12];
	__u8 swapped[12];
	/* Headers as raw bytes: their kernel types have anonymous members and
	 * bit fields, which the Go side of map types cannot mirror. */
	__u8 th[20] __attribute__((aligned(8)));  /* struct tcphdr: the packet's */
	__u8 rst[20] __attribute__((aligned(8))); /* struct tcphdr: the RST */
	__u8 ip[40] __attribute__((aligned(8)));  /* struct iphdr or struct ipv6hdr */
	struct reject_pseudo4 ph4;
	struct reject_pseudo6 ph6;
	__u8 icmp[8];           /* type, code, checksum, unused */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct reject_scratch);
	__uint(max_entries, 1);
} cilia_reject_scratch SEC(".maps");

/* reject_csum_fold folds a 32-bit one's complement sum (bpf_csum_diff's
 * result) into the 16-bit checksum field value. */
static __always_inline __u16 reject_csum_fold(__s64 sum)
{
	__u32 c = (__u32)sum;

	c = (c & 0xffff) + (c >> 16);
	c = (c & 0xffff) + (c >> 16);
	return (__u16)~c;
}

/* reject_swap_eth swaps the Ethernet source and destination. Returns 0 or
 * -DROP_ERROR_WRITING_TO_PACKET. */
static __always_inline int reject_swap_eth(struct __sk_buff *ctx, struct reject_scratch *s)
{
	int i;

	if (bpf_skb_load_bytes(ctx, 0, s->macs, sizeof(s->macs)) < 0)
		return -DROP_ERROR_WRITING_TO_PACKET;
	for (i = 0; i < 6; i++) {
		s->swapped[i] = s->macs[6 + i];
		s->swapped[6 + i] = s->macs[i];
	}
	if (bpf_skb_store_bytes(ctx, 0, s->swapped, sizeof(s->swapped), 0) < 0)
		return -DROP_ERROR_WRITING_TO_PACKET;
	return 0;
}

/* reject_ip_header writes the new IP header at ETH_HLEN: from pkt's
 * destination to its source, carrying proto, l4_len bytes of L4. Returns
 * the pseudo header's checksum contribution (0 for ICMPv4, which has none)
 * or a negative drop reason. */
static __always_inline __s64 reject_ip_header(struct __sk_buff *ctx, const struct packet *pkt,
					      struct reject_scratch *s, __u8 proto, __u32 l4_len)
{
	struct iphdr *ip = (void *)s->ip;
	struct ipv6hdr *ip6 = (void *)s->ip;

	__builtin_memset(s->ip, 0, sizeof(s->ip));
	if (pkt->tuple.family == FAMILY_IPV4) {
		ip->version = 4;
		ip->ihl = 5;
		ip->tot_len = bpf_htons(sizeof(struct iphdr) + l4_len);
		ip->frag_off = bpf_htons(0x4000); /* DF */
		ip->ttl = REJECT_TTL;
		ip->protocol = proto;
		ip->saddr = pkt->tuple.daddr.p32[0];
		ip->daddr = pkt->tuple.saddr.p32[0];
		ip->check = reject_csum_fold(bpf_csum_diff(NULL, 0, (__be32 *)s->ip, sizeof(struct iphdr), 0));
		if (bpf_skb_store_bytes(ctx, ETH_HLEN, s->ip, sizeof(struct iphdr), 0) < 0)
			return -DROP_ERROR_WRITING_TO_PACKET;
		if (proto == IPPROTO_ICMP)
			return 0;
		__builtin_memset(&s->ph4, 0, sizeof(s->ph4));
		s->ph4.saddr = ip->saddr;
		s->ph4.daddr = ip->daddr;
		s->ph4.proto = proto;
		s->ph4.len = bpf_htons(l4_len);
		return bpf_csum_diff(NULL, 0, (__be32 *)&s->ph4, sizeof(s->ph4), 0);
	}
	ip6->version = 6;
	ip6->payload_len = bpf_htons(l4_len);
	ip6->nexthdr = proto;
	ip6->hop_limit = REJECT_TTL;
	__builtin_memcpy(&ip6->saddr, &pkt->tuple.daddr, 16);
	__builtin_memcpy(&ip6->daddr, &pkt->tuple.saddr, 16);
	if (bpf_skb_store_bytes(ctx, ETH_HLEN, s->ip, sizeof(struct ipv6hdr), 0) < 0)
		return -DROP_ERROR_WRITING_TO_PACKET;
	__builtin_memset(&s->ph6, 0, sizeof(s->ph6));
	s->ph6.saddr = pkt->tuple.daddr;
	s->ph6.daddr = pkt->tuple.saddr;
	s->ph6.len = bpf_htonl(l4_len);
	s->ph6.nexthdr = proto;
	return bpf_csum_diff(NULL, 0, (__be32 *)&s->ph6, sizeof(s->ph6), 0);
}

/* reject_tcp turns the TCP segment pkt into its RST. Returns 0 or a
 * negative drop reason. */
static __always_inline int reject_tcp(struct __sk_buff *ctx, const struct packet *pkt,
				      struct reject_scratch *s)
{
	__u32 iph = pkt->tuple.family == FAMILY_IPV4 ? sizeof(struct iphdr) : sizeof(struct ipv6hdr);
	struct tcphdr *th = (void *)s->th, *rst = (void *)s->rst;
	__u32 ip_len, hdrs, seg_len;
	__be16 word;
	__s64 sum;
	int ret;

	if (bpf_skb_load_bytes(ctx, pkt->l4_off, s->th, sizeof(s->th)) < 0)
		return -DROP_CT_TRUNCATED_OR_INVALID_HEADER;
	/* Segment length: the IP length after the TCP header. */
	if (pkt->tuple.family == FAMILY_IPV4) {
		if (bpf_skb_load_bytes(ctx, pkt->l3_off + offsetof(struct iphdr, tot_len), &word, 2) < 0)
			return -DROP_INVALID_PACKET;
		ip_len = bpf_ntohs(word);
	} else {
		if (bpf_skb_load_bytes(ctx, pkt->l3_off + offsetof(struct ipv6hdr, payload_len), &word, 2) < 0)
			return -DROP_INVALID_PACKET;
		ip_len = bpf_ntohs(word) + sizeof(struct ipv6hdr);
	}
	hdrs = (__u32)(pkt->l4_off - pkt->l3_off) + th->doff * 4;
	if (ip_len < hdrs)
		return -DROP_CT_TRUNCATED_OR_INVALID_HEADER;
	seg_len = ip_len - hdrs + th->syn + th->fin;

	__builtin_memset(s->rst, 0, sizeof(s->rst));
	rst->source = th->dest;
	rst->dest = th->source;
	rst->doff = 5;
	rst->rst = 1;
	if (th->ack) {
		rst->seq = th->ack_seq;
	} else {
		rst->ack = 1;
		rst->ack_seq = bpf_htonl(bpf_ntohl(th->seq) + seg_len);
	}

	if (bpf_skb_change_tail(ctx, ETH_HLEN + iph + sizeof(s->rst), 0) < 0)
		return -DROP_ERROR_WRITING_TO_PACKET;
	ret = reject_swap_eth(ctx, s);
	if (ret < 0)
		return ret;
	sum = reject_ip_header(ctx, pkt, s, IPPROTO_TCP, sizeof(s->rst));
	if (sum < 0)
		return -DROP_ERROR_WRITING_TO_PACKET;
	rst->check = reject_csum_fold(bpf_csum_diff(NULL, 0, (__be32 *)s->rst, sizeof(s->rst), sum));
	if (bpf_skb_store_bytes(ctx, ETH_HLEN + iph, s->rst, sizeof(s->rst), 0) < 0)
		return -DROP_ERROR_WRITING_TO_PACKET;
	return 0;
}

/* reject_icmp turns pkt into an ICMP (ICMPv6) port unreachable quoting
 * it. Returns 0 or a negative drop reason. */
static __always_inline int reject_icmp(struct __sk_buff *ctx, const struct packet *pkt,
				       struct reject_scratch *s)
{
	__u8 v4 = pkt->tuple.family == FAMILY_IPV4;
	__u32 iph = v4 ? sizeof(struct iphdr) : sizeof(struct ipv6hdr);
	__u64 qlen; /* 64 bits: the bounds checks and the helpers see one register */
	__s64 sum;
	__u16 check;
	int ret;

	qlen = (__u64)(pkt->l4_off - pkt->l3_off) + 8;
	if (qlen > REJECT_QUOTE_MAX)
		qlen = REJECT_QUOTE_MAX;
	/* Whole words: bpf_csum_diff sums 4-byte words (options and
	 * extension headers are multiples of 4 anyway). */
	qlen &= ~3ULL;
	asm volatile("" : "+r"(qlen)); /* check the register the helpers get */
	if (qlen < 4 || qlen > REJECT_QUOTE_MAX)
		return -DROP_INVALID_PACKET;
	if (bpf_skb_load_bytes(ctx, pkt->l3_off, s->quote, qlen) < 0)
		return -DROP_CT_TRUNCATED_OR_INVALID_HEADER;

	if (bpf_skb_change_tail(ctx, ETH_HLEN + iph + sizeof(s->icmp) + qlen, 0) < 0)
		return -DROP_ERROR_WRITING_TO_PACKET;
	ret = reject_swap_eth(ctx, s);
	if (ret < 0)
		return ret;
	sum = reject_ip_header(ctx, pkt, s, v4 ? IPPROTO_ICMP : IPPROTO_ICMPV6, sizeof(s->icmp) + qlen);
	if (sum < 0)
		return -DROP_ERROR_WRITING_TO_PACKET;
	__builtin_memset(s->icmp, 0, sizeof(s->icmp));
	s->icmp[0] = v4 ? ICMP_DEST_UNREACH : ICMPV6_DEST_UNREACH;
	s->icmp[1] = v4 ? 3 : 4; /* port unreachable */
	sum = bpf_csum_diff(NULL, 0, (__be32 *)s->icmp, sizeof(s->icmp), sum);
	sum = bpf_csum_diff(NULL, 0, (__be32 *)s->quote, qlen, sum);
	check = reject_csum_fold(sum);
	__builtin_memcpy(&s->icmp[2], &check, 2);
	if (bpf_skb_store_bytes(ctx, ETH_HLEN + iph, s->icmp, sizeof(s->icmp), 0) < 0)
		return -DROP_ERROR_WRITING_TO_PACKET;
	if (bpf_skb_store_bytes(ctx, ETH_HLEN + iph + sizeof(s->icmp), s->quote, qlen, 0) < 0)
		return -DROP_ERROR_WRITING_TO_PACKET;
	return 0;
}

/* reject_packet turns pkt, sent to a service without backends, into the
 * rejection its sender gets (see the top of this file). Returns 0 with the
 * rejection in ctx, or a negative drop reason (the packet is then in an
 * undefined state and must be dropped). A global function: verified once,
 * apart from the pipeline. */
__attribute__((noinline)) int reject_packet(struct __sk_buff *ctx, const struct packet *pkt)
{
	__u32 zero = 0;
	struct reject_scratch *s = bpf_map_lookup_elem(&cilia_reject_scratch, &zero);

	if (!pkt || !s)
		return -DROP_INVALID_PACKET;
	if (pkt->frag == FRAG_LATER)
		return -DROP_NO_SERVICE;
	if (pkt->tuple.nexthdr == IPPROTO_TCP)
		return reject_tcp(ctx, pkt, s);
	return reject_icmp(ctx, pkt, s);
}

#endif /* CILIA_REJECT_H */
