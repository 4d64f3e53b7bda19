/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* parse.h: Ethernet, IPv4 (with options), IPv6 (with extension headers),
 * TCP, UDP, SCTP, ICMP and ICMPv6 parsing into a struct packet.
 *
 * Every read is bounds-checked against both the linear data and the IP
 * payload length, so a header that is cut off by the end of the packet or by
 * the IP length is reported, never read past. Parse functions return 0 on
 * success, PARSE_NOT_IP for traffic the datapath passes untouched (ARP), or a
 * negative drop reason.
 */
#ifndef CILIA_PARSE_H
#define CILIA_PARSE_H

#include "common.h"
#include "drop_reasons.h"

#define PARSE_NOT_IP 1

/* How many bytes parse_packet makes linear before reading headers. */
#define PARSE_LINEAR_LEN 128
/* The longest IPv6 extension header chain walked before giving up. */
#define IPV6_MAX_EXTHDRS 8

#define NEXTHDR_HOP      0
#define NEXTHDR_ROUTING  43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_ESP      50
#define NEXTHDR_AUTH     51
#define NEXTHDR_NONE     59
#define NEXTHDR_DEST     60

#define FRAG_NONE  0
#define FRAG_FIRST 1 /* offset 0, more fragments follow: carries the L4 header */
#define FRAG_LATER 2 /* offset > 0: no L4 header, ports come from frag.h */

#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_ACK 0x10

/* struct tuple identifies a flow in one direction. It is also the
 * conntrack key (ct.h), where dir says on which side the entry was created;
 * in a parsed packet dir is 0. No implicit padding: the key is hashed whole. */
struct tuple {
	union v6addr saddr;
	union v6addr daddr;
	__be16 sport;
	__be16 dport;
	__u8 nexthdr;
	__u8 family;
	__u8 dir;       /* DIR_INGRESS | DIR_EGRESS in CT keys */
	__u8 pad;
};

/* struct packet is everything the programs need to know about a packet.
 * parse_packet zeroes everything before `inner`; inner is written only for
 * ICMP errors (icmp_error == 1). */
struct packet {
	struct tuple tuple;     /* ports are the CT ports (ICMP: echo id, else type) */
	__be16 policy_port;     /* dport for TCP/UDP/SCTP, htons(type) for ICMP */
	__u16 l3_off;
	__u16 l4_off;
	__u8 tcp_flags;
	__u8 icmp_type;
	__u8 frag;              /* FRAG_* */
	__u8 icmp_error;        /* 1: inner is valid */
	__u8 ndp;               /* 1: IPv6 neighbour discovery, passed without policy */
	__u8 ttl;
	__u32 frag_id;          /* IPv4 id or IPv6 fragment identification */
	struct tuple inner;     /* ICMP errors: the tuple of the quoted packet */
};

/* Headers at offsets below this are read in place when linear. */
#define PARSE_DIRECT_MAX 256

/* l4_header returns a pointer to the len bytes of the L4 header at off: in
 * place when the linear data holds them, else copied into buf with
 * bpf_skb_load_bytes. Returns NULL when the header does not fit in the IP
 * payload (l4_len) or in the packet. */
static __always_inline void *l4_header(struct __sk_buff *ctx, __u32 off, __u32 l4_len,
				       void *buf, __u32 len)
{
	if (l4_len < len)
		return NULL;
	if (off < PARSE_DIRECT_MAX) {
		void *data = (void *)(long)ctx->data;
		void *data_end = (void *)(long)ctx->data_end;
		void *p = data + off;

		if (p + len <= data_end)
			return p;
	}
	if (bpf_skb_load_bytes(ctx, off, buf, len) < 0)
		return NULL;
	return buf;
}

static __always_inline int icmp4_is_error(__u8 type)
{
	return type == ICMP_DEST_UNREACH || type == ICMP_TIME_EXCEEDED ||
	       type == ICMP_PARAMETERPROB || type == ICMP_SOURCE_QUENCH;
}

static __always_inline int icmp6_is_error(__u8 type)
{
	return type == ICMPV6_DEST_UNREACH || type == ICMPV6_PKT_TOOBIG ||
	       type == ICMPV6_TIME_EXCEED || type == ICMPV6_PARAMPROB;
}

/* parse_inner_ports fills t->sport/dport from the quoted L4 header at off;
 * end is the end of the IP payload of the ICMP error. Returns 0, or
 * -DROP_CT_TRUNCATED_OR_INVALID_HEADER when it is missing. */
static __always_inline int parse_inner_ports(struct __sk_buff *ctx, __u32 off, __u32 end,
					     struct tuple *t)
{
	__u8 hdr[8];

	switch (t->nexthdr) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_SCTP:
		if (off + 4 > end || bpf_skb_load_bytes(ctx, off, hdr, 4) < 0)
			return -DROP_CT_TRUNCATED_OR_INVALID_HEADER;
		__builtin_memcpy(&t->sport, &hdr[0], 2);
		__builtin_memcpy(&t->dport, &hdr[2], 2);
		return 0;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		/* The quoted packet is an echo request/reply we sent or got. */
		if (off + 8 > end || bpf_skb_load_bytes(ctx, off, hdr, 8) < 0)
			return -DROP_CT_TRUNCATED_OR_INVALID_HEADER;
		if (hdr[0] == ICMP_ECHO || hdr[0] == ICMPV6_ECHO_REQUEST) {
			__builtin_memcpy(&t->sport, &hdr[4], 2);
			t->dport = 0;
		} else if (hdr[0] == ICMP_ECHOREPLY || hdr[0] == ICMPV6_ECHO_REPLY) {
			t->sport = 0;
			__builtin_memcpy(&t->dport, &hdr[4], 2);
		}
		return 0;
	default:
		return 0;
	}
}

/* parse_icmp_inner parses the IP header quoted by an ICMP error at off; end
 * is the end of the error's IP payload, which bounds every read (bytes in
 * Ethernet padding are not part of the packet). Returns 0 with pkt->inner
 * filled, or a negative drop reason. */
static __always_inline int parse_icmp_inner(struct __sk_buff *ctx, struct packet *pkt,
					    __u32 off, __u32 end)
{
	struct tuple *t = &pkt->inner;

	__builtin_memset(t, 0, sizeof(*t));
	if (pkt->tuple.family == FAMILY_IPV4) {
		struct iphdr ip;
		__u32 ihl;

		if (off + sizeof(ip) > end || bpf_skb_load_bytes(ctx, off, &ip, sizeof(ip)) < 0)
			return -DROP_CT_TRUNCATED_OR_INVALID_HEADER;
		ihl = ip.ihl * 4;
		if (ip.version != 4 || ihl < sizeof(ip))
			return -DROP_INVALID_PACKET;
		t->family = FAMILY_IPV4;
		t->nexthdr = ip.protocol;
		t->saddr.p32[0] = ip.saddr;
		t->daddr.p32[0] = ip.daddr;
		off += ihl;
	} else {
		struct ipv6hdr ip6;

		if (off + sizeof(ip6) > end || bpf_skb_load_bytes(ctx, off, &ip6, sizeof(ip6)) < 0)
			return -DROP_CT_TRUNCATED_OR_INVALID_HEADER;
		if (ip6.version != 6)
			return -DROP_INVALID_PACKET;
		t->family = FAMILY_IPV6;
		t->nexthdr = ip6.nexthdr;
		__builtin_memcpy(&t->saddr, &ip6.saddr, 16);
		__builtin_memcpy(&t->daddr, &ip6.daddr, 16);
		off += sizeof(ip6);
	}
	pkt->icmp_error = 1;
	return parse_inner_ports(ctx, off, end, t);
}

/* parse_l4 reads the L4 header at pkt->l4_off; l4_len is what the IP header
 * says the payload holds. Returns 0 or a negative drop reason. */
static __always_inline int parse_l4(struct __sk_buff *ctx, struct packet *pkt, __u32 l4_len)
{
	__u32 off = pkt->l4_off;
	struct tuple *t = &pkt->tuple;

	switch (t->nexthdr) {
	case IPPROTO_TCP: {
		/* Read in place: the fast path's packets are TCP. */
		struct tcphdr buf, *th = l4_header(ctx, off, l4_len, &buf, sizeof(buf));

		if (!th)
			return -DROP_CT_TRUNCATED_OR_INVALID_HEADER;
		if (th->doff < 5 || th->doff * 4 > l4_len)
			return -DROP_CT_TRUNCATED_OR_INVALID_HEADER;
		t->sport = th->source;
		t->dport = th->dest;
		pkt->policy_port = th->dest;
		pkt->tcp_flags = ((__u8 *)th)[13];
		return 0;
	}
	case IPPROTO_UDP: {
		struct udphdr buf, *uh = l4_header(ctx, off, l4_len, &buf, sizeof(buf));

		if (!uh)
			return -DROP_CT_TRUNCATED_OR_INVALID_HEADER;
		if (pkt->frag == FRAG_NONE && bpf_ntohs(uh->len) < sizeof(*uh))
			return -DROP_CT_TRUNCATED_OR_INVALID_HEADER;
		t->sport = uh->source;
		t->dport = uh->dest;
		pkt->policy_port = uh->dest;
		return 0;
	}
	case IPPROTO_SCTP: {
		/* common header: ports, verification tag, checksum */
		__u8 buf[12], *sh = l4_header(ctx, off, l4_len, buf, sizeof(buf));

		if (!sh)
			return -DROP_CT_TRUNCATED_OR_INVALID_HEADER;
		__builtin_memcpy(&t->sport, &sh[0], 2);
		__builtin_memcpy(&t->dport, &sh[2], 2);
		pkt->policy_port = t->dport;
		return 0;
	}
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6: {
		/* type, code, checksum, rest of header */
		__u8 buf[8], *ih;
		__u8 v6 = t->nexthdr == IPPROTO_ICMPV6;

		if (v6 != (t->family == FAMILY_IPV6))
			return -DROP_UNKNOWN_L4_PROTOCOL;
		ih = l4_header(ctx, off, l4_len, buf, sizeof(buf));
		if (!ih)
			return -DROP_CT_TRUNCATED_OR_INVALID_HEADER;
		pkt->icmp_type = ih[0];
		pkt->policy_port = bpf_htons(ih[0]);
		if (ih[0] == (v6 ? ICMPV6_ECHO_REQUEST : ICMP_ECHO)) {
			__builtin_memcpy(&t->sport, &ih[4], 2);
			t->dport = 0;
		} else if (ih[0] == (v6 ? ICMPV6_ECHO_REPLY : ICMP_ECHOREPLY)) {
			t->sport = 0;
			__builtin_memcpy(&t->dport, &ih[4], 2);
		} else if (v6 ? icmp6_is_error(ih[0]) : icmp4_is_error(ih[0])) {
			if (pkt->frag != FRAG_NONE)
				return -DROP_IP_FRAGMENTATION_NOT_SUPPORTED;
			return parse_icmp_inner(ctx, pkt, off + sizeof(buf), off + l4_len);
		} else {
			/* No identifier: the type tells messages apart. */
			t->sport = 0;
			t->dport = bpf_htons(ih[0]);
			if (v6 && ih[0] >= 133 && ih[0] <= 137)
				pkt->ndp = 1;
		}
		return 0;
	}
	default:
		/* Other protocols have no ports: L3-only policy may still allow them. */
		return 0;
	}
}

/* parse_ipv4 parses the IPv4 header at ETH_HLEN, options included.
 * Returns 0 or a negative drop reason. */
static __always_inline int parse_ipv4(struct __sk_buff *ctx, struct packet *pkt)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct iphdr *ip = data + ETH_HLEN;
	__u32 ihl, tot_len;
	__u16 frag_off;

	if ((void *)(ip + 1) > data_end)
		return -DROP_INVALID_PACKET;
	if (ip->version != 4)
		return -DROP_INVALID_PACKET;
	ihl = ip->ihl * 4;
	if (ihl < sizeof(*ip))
		return -DROP_INVALID_PACKET;
	if ((void *)ip + ihl > data_end)
		return -DROP_INVALID_PACKET; /* options cut off */
	tot_len = bpf_ntohs(ip->tot_len);
	if (tot_len < ihl || ETH_HLEN + tot_len > ctx->len)
		return -DROP_INVALID_PACKET;

	pkt->tuple.family = FAMILY_IPV4;
	pkt->tuple.nexthdr = ip->protocol;
	pkt->tuple.saddr.p32[0] = ip->saddr;
	pkt->tuple.daddr.p32[0] = ip->daddr;
	pkt->ttl = ip->ttl;
	pkt->l3_off = ETH_HLEN;
	pkt->l4_off = ETH_HLEN + ihl;

	frag_off = bpf_ntohs(ip->frag_off);
	if (frag_off & 0x1fff) {
		/* RFC 1858: an offset of 8 bytes can only serve to overwrite the
		 * TCP header of the first fragment. */
		if ((frag_off & 0x1fff) == 1 && ip->protocol == IPPROTO_TCP)
			return -DROP_IP_FRAGMENTATION_NOT_SUPPORTED;
		pkt->frag = FRAG_LATER;
		pkt->frag_id = ip->id;
		return 0;
	}
	if (frag_off & 0x2000) {
		pkt->frag = FRAG_FIRST;
		pkt->frag_id = ip->id;
	}
	return parse_l4(ctx, pkt, tot_len - ihl);
}

/* parse_ipv6 parses the IPv6 header at ETH_HLEN and walks its extension
 * header chain. Returns 0 or a negative drop reason
 * (DROP_INVALID_IPV6_EXTENSION_HEADER for a bad chain). */
static __always_inline int parse_ipv6(struct __sk_buff *ctx, struct packet *pkt)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ipv6hdr *ip6 = data + ETH_HLEN;
	__u32 off, end, payload_len;
	__u8 nexthdr, seen_frag = 0;
	int i;

	if ((void *)(ip6 + 1) > data_end)
		return -DROP_INVALID_PACKET;
	if (ip6->version != 6)
		return -DROP_INVALID_PACKET;
	payload_len = bpf_ntohs(ip6->payload_len);
	off = ETH_HLEN + sizeof(*ip6);
	end = off + payload_len;
	if (end > ctx->len)
		return -DROP_INVALID_PACKET;

	pkt->tuple.family = FAMILY_IPV6;
	__builtin_memcpy(&pkt->tuple.saddr, &ip6->saddr, 16);
	__builtin_memcpy(&pkt->tuple.daddr, &ip6->daddr, 16);
	pkt->ttl = ip6->hop_limit;
	pkt->l3_off = ETH_HLEN;
	nexthdr = ip6->nexthdr;

	/* One pass per extension header, plus the pass that reaches the L4. */
#pragma unroll
	for (i = 0; i <= IPV6_MAX_EXTHDRS; i++) {
		__u8 hdr[8];

		switch (nexthdr) {
		case NEXTHDR_HOP:
			if (i != 0) /* hop-by-hop must come first (RFC 8200 4.1) */
				return -DROP_INVALID_IPV6_EXTENSION_HEADER;
			/* fallthrough */
		case NEXTHDR_ROUTING:
		case NEXTHDR_DEST:
		case NEXTHDR_AUTH:
			if (i == IPV6_MAX_EXTHDRS) /* the chain is longer than we walk */
				return -DROP_INVALID_IPV6_EXTENSION_HEADER;
			if (off + 8 > end || bpf_skb_load_bytes(ctx, off, hdr, 8) < 0)
				return -DROP_INVALID_IPV6_EXTENSION_HEADER;
			off += nexthdr == NEXTHDR_AUTH ? ((__u32)hdr[1] + 2) * 4
						       : ((__u32)hdr[1] + 1) * 8;
			nexthdr = hdr[0];
			if (off > end)
				return -DROP_INVALID_IPV6_EXTENSION_HEADER;
			break;
		case NEXTHDR_FRAGMENT: {
			__u16 fo;

			if (i == IPV6_MAX_EXTHDRS || seen_frag) /* too long, or a second one */
				return -DROP_INVALID_IPV6_EXTENSION_HEADER;
			if (off + 8 > end || bpf_skb_load_bytes(ctx, off, hdr, 8) < 0)
				return -DROP_INVALID_IPV6_EXTENSION_HEADER;
			seen_frag = 1;
			nexthdr = hdr[0];
			fo = ((__u16)hdr[2] << 8) | hdr[3];
			__builtin_memcpy(&pkt->frag_id, &hdr[4], 4);
			off += 8;
			if (fo >> 3) {
				/* RFC 1858 / RFC 8200 4.5: overlapping the TCP header. */
				if ((fo >> 3) == 1 && nexthdr == IPPROTO_TCP)
					return -DROP_IP_FRAGMENTATION_NOT_SUPPORTED;
				pkt->frag = FRAG_LATER;
				pkt->tuple.nexthdr = nexthdr;
				pkt->l4_off = off;
				return 0;
			}
			if (fo & 1)
				pkt->frag = FRAG_FIRST;
			/* an atomic fragment (offset 0, M=0) is a whole packet */
			break;
		}
		default:
			goto l4;
		}
	}
	/* Not reached: the last pass either finds the L4 or refuses. */
	return -DROP_INVALID_IPV6_EXTENSION_HEADER;

l4:
	pkt->tuple.nexthdr = nexthdr;
	pkt->l4_off = off;
	if (nexthdr == NEXTHDR_NONE)
		return 0;
	return parse_l4(ctx, pkt, end - off);
}

/* parse_packet fills pkt from the packet in ctx. Returns 0 for IPv4/IPv6,
 * PARSE_NOT_IP for ARP (passed untouched), or a negative drop reason. */
static __always_inline int parse_packet(struct __sk_buff *ctx, struct packet *pkt)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth;

	/* Make the fixed headers linear; a no-op for linear packets. */
	if (data + PARSE_LINEAR_LEN > data_end && (__u32)(data_end - data) < ctx->len) {
		bpf_skb_pull_data(ctx, ctx->len < PARSE_LINEAR_LEN ? ctx->len : PARSE_LINEAR_LEN);
		data = (void *)(long)ctx->data;
		data_end = (void *)(long)ctx->data_end;
	}
	__builtin_memset(pkt, 0, offsetof(struct packet, inner));
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return -DROP_INVALID_PACKET;

	switch (eth->h_proto) {
	case bpf_htons(ETH_P_IP):
		return parse_ipv4(ctx, pkt);
	case bpf_htons(ETH_P_IPV6):
		return parse_ipv6(ctx, pkt);
	case bpf_htons(ETH_P_ARP):
		return PARSE_NOT_IP;
	default:
		return -DROP_UNSUPPORTED_L3_PROTOCOL;
	}
}

#endif /* CILIA_PARSE_H */
