/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* dsr.h: the frontend of a direct-server-return connection, carried from
 * the load-balancing node to the backend's node inside the packet
 * (Cilium's encoding).
 *
 *   IPv4: an IP option right after the fixed header, 8 bytes: type 0x9a
 *         (copied, class 0, number 26), length 8, the frontend port, the
 *         frontend address (both network order).
 *   IPv6: a Destination Options extension header right after the fixed
 *         header, 24 bytes: next header, length 2 (in 8-byte units beyond
 *         the first 8), one option of type 0x1b (skip when unknown, does
 *         not change en route) and length 20: the frontend address, the
 *         frontend port and two Pad1 bytes.
 *
 * dsr_insert grows the packet at the network layer
 * (bpf_skb_adjust_room(BPF_ADJ_ROOM_NET) inserts right after the fixed IP
 * header) and fixes the IP header (IHL, total length and checksum; IPv6:
 * payload length and the next header chain). L4 checksums do not cover IP
 * options or extension headers, so they stay valid. The backend's kernel
 * ignores both: an unknown IPv4 option of a received packet is skipped,
 * and the IPv6 option type's top bits say "skip". dsr_frontend reads the
 * frontend back at the backend's node (to_container), where dsr_insert
 * puts it: the first IPv4 option, or the first option of a Destination
 * Options header right after the fixed IPv6 header.
 */
#ifndef CILIA_DSR_H
#define CILIA_DSR_H

#include "common.h"
#include "drop_reasons.h"
#include "parse.h"
#include "lb.h"

#define DSR_IPV4_OPT_TYPE 0x9a
#define DSR_IPV4_OPT_LEN  8
#define DSR_IPV6_OPT_TYPE 0x1b
#define DSR_IPV6_OPT_LEN  20 /* option data: address, port, 2 bytes of padding */
#define DSR_IPV6_EXT_LEN  24 /* the whole Destination Options header */

/* dsr_insert returns this when the packet has no room for the DSR
 * information (IPv4 options area full, or an IPv6 hop-by-hop header that
 * must stay first): the caller forwards another way (SNAT). */
#define DSR_NO_ROOM 1

/* struct dsr_opt_v4 is the IPv4 option as it lies in the packet. */
struct dsr_opt_v4 {
	__u8 type;
	__u8 len;
	__be16 port;
	__be32 addr;
};

/* struct dsr_opt_v6 is the IPv6 Destination Options header as it lies in
 * the packet. */
struct dsr_opt_v6 {
	__u8 nexthdr;
	__u8 hdrlen;
	__u8 type;
	__u8 len;
	__be32 addr[4]; /* not union v6addr: its 8-byte alignment would pad */
	__be16 port;
	__u8 pad[2];    /* two Pad1 options */
};

_Static_assert(sizeof(struct dsr_opt_v4) == DSR_IPV4_OPT_LEN, "dsr_opt_v4 size");
_Static_assert(sizeof(struct dsr_opt_v6) == DSR_IPV6_EXT_LEN, "dsr_opt_v6 size");

/* dsr_insert4 inserts the IPv4 option carrying addr:port (network order)
 * after the fixed header of the IPv4 packet pkt. Returns 0, DSR_NO_ROOM
 * when IHL would exceed 15, or -DROP_INVALID_PACKET when the packet cannot
 * be grown or written (its contents are then undefined: drop it). */
static __always_inline int dsr_insert4(struct __sk_buff *ctx, const struct packet *pkt,
				       __be32 addr, __be16 port)
{
	struct dsr_opt_v4 opt = {
		.type = DSR_IPV4_OPT_TYPE,
		.len = DSR_IPV4_OPT_LEN,
		.port = port,
		.addr = addr,
	};
	__u32 l3 = pkt->l3_off;
	__u8 old[4], new[4]; /* version/IHL, TOS, total length */
	__u16 tot_len;
	__s64 sum;

	if (bpf_skb_load_bytes(ctx, l3, old, sizeof(old)) < 0)
		return -DROP_INVALID_PACKET;
	if ((old[0] & 0x0f) + DSR_IPV4_OPT_LEN / 4 > 15)
		return DSR_NO_ROOM;
	tot_len = ((__u16)old[2] << 8 | old[3]) + DSR_IPV4_OPT_LEN;
	new[0] = old[0] + DSR_IPV4_OPT_LEN / 4;
	new[1] = old[1];
	new[2] = tot_len >> 8;
	new[3] = tot_len & 0xff;

	sum = bpf_csum_diff((__be32 *)old, sizeof(old), (__be32 *)new, sizeof(new), 0);
	if (sum < 0)
		return -DROP_INVALID_PACKET;
	sum = bpf_csum_diff(NULL, 0, (__be32 *)&opt, sizeof(opt), (__wsum)sum);
	if (sum < 0)
		return -DROP_INVALID_PACKET;

	if (bpf_skb_adjust_room(ctx, sizeof(opt), BPF_ADJ_ROOM_NET, BPF_F_ADJ_ROOM_NO_CSUM_RESET) < 0)
		return -DROP_INVALID_PACKET;
	if (bpf_skb_store_bytes(ctx, l3, new, sizeof(new), 0) < 0 ||
	    bpf_skb_store_bytes(ctx, l3 + sizeof(struct iphdr), &opt, sizeof(opt), 0) < 0)
		return -DROP_INVALID_PACKET;
	if (bpf_l3_csum_replace(ctx, l3 + offsetof(struct iphdr, check), 0, (__u32)sum, 0) < 0)
		return -DROP_INVALID_PACKET;
	return 0;
}

/* dsr_insert6 inserts the Destination Options header carrying addr:port
 * (port in network order) after the fixed header of the IPv6 packet pkt.
 * Returns 0, DSR_NO_ROOM when a hop-by-hop header follows the fixed header
 * (it must stay first), or -DROP_INVALID_PACKET when the packet cannot be
 * grown or written (drop it). */
static __always_inline int dsr_insert6(struct __sk_buff *ctx, const struct packet *pkt,
				       const union v6addr *addr, __be16 port)
{
	struct dsr_opt_v6 opt = {
		.hdrlen = DSR_IPV6_EXT_LEN / 8 - 1,
		.type = DSR_IPV6_OPT_TYPE,
		.len = DSR_IPV6_OPT_LEN,
		.port = port,
	};
	__u32 l3 = pkt->l3_off;
	__u8 word[4]; /* payload length, next header, hop limit */
	__u16 plen;

	if (bpf_skb_load_bytes(ctx, l3 + offsetof(struct ipv6hdr, payload_len), word, sizeof(word)) < 0)
		return -DROP_INVALID_PACKET;
	if (word[2] == NEXTHDR_HOP)
		return DSR_NO_ROOM;
	opt.nexthdr = word[2];
	__builtin_memcpy(opt.addr, addr, sizeof(opt.addr));
	plen = ((__u16)word[0] << 8 | word[1]) + DSR_IPV6_EXT_LEN;
	word[0] = plen >> 8;
	word[1] = plen & 0xff;
	word[2] = NEXTHDR_DEST;

	if (bpf_skb_adjust_room(ctx, sizeof(opt), BPF_ADJ_ROOM_NET, BPF_F_ADJ_ROOM_NO_CSUM_RESET) < 0)
		return -DROP_INVALID_PACKET;
	if (bpf_skb_store_bytes(ctx, l3 + offsetof(struct ipv6hdr, payload_len), word, sizeof(word), 0) < 0 ||
	    bpf_skb_store_bytes(ctx, l3 + sizeof(struct ipv6hdr), &opt, sizeof(opt), 0) < 0)
		return -DROP_INVALID_PACKET;
	return 0;
}

/* dsr_insert inserts the frontend fe (address, port in network order) into
 * pkt for its family. Returns 0 (the packet is one option/extension header
 * longer: parse it again before reading offsets), DSR_NO_ROOM (unchanged:
 * forward without DSR), or a negative drop reason. */
static __always_inline int dsr_insert(struct __sk_buff *ctx, const struct packet *pkt,
				      const union v6addr *addr, __be16 port)
{
	if (pkt->tuple.family == FAMILY_IPV4)
		return dsr_insert4(ctx, pkt, addr->p32[0], port);
	return dsr_insert6(ctx, pkt, addr, port);
}

/* dsr_frontend4 looks for the DSR option where dsr_insert4 puts it: first
 * in the options of the IPv4 packet pkt. Returns 1 with fe filled, 0 when
 * the packet has no options or another option comes first, or
 * -DROP_INVALID_PACKET when the first option is of the DSR type but not 8
 * bytes long or cut off by the header's end. */
static __always_inline int dsr_frontend4(struct __sk_buff *ctx, const struct packet *pkt,
					 struct lb_revnat *fe)
{
	struct dsr_opt_v4 opt;
	__u32 optlen = pkt->l4_off - pkt->l3_off;

	if (optlen <= sizeof(struct iphdr))
		return 0;
	optlen -= sizeof(struct iphdr);
	if (bpf_skb_load_bytes(ctx, pkt->l3_off + sizeof(struct iphdr), &opt, 1) < 0)
		return -DROP_INVALID_PACKET;
	if (opt.type != DSR_IPV4_OPT_TYPE)
		return 0;
	if (optlen < sizeof(opt) ||
	    bpf_skb_load_bytes(ctx, pkt->l3_off + sizeof(struct iphdr), &opt, sizeof(opt)) < 0 ||
	    opt.len != DSR_IPV4_OPT_LEN)
		return -DROP_INVALID_PACKET;
	__builtin_memset(fe, 0, sizeof(*fe));
	fe->addr.p32[0] = opt.addr;
	fe->port = opt.port;
	fe->family = FAMILY_IPV4;
	return 1;
}

/* dsr_frontend6 looks for the DSR option where dsr_insert6 puts it: first
 * in a Destination Options header right after the fixed IPv6 header of
 * pkt. Returns 1 with fe filled, 0 when there is no such header or another
 * option comes first, or -DROP_INVALID_IPV6_EXTENSION_HEADER when the
 * first option is of the DSR type but not 20 bytes long or the header is
 * too short to hold it. */
static __always_inline int dsr_frontend6(struct __sk_buff *ctx, const struct packet *pkt,
					 struct lb_revnat *fe)
{
	struct dsr_opt_v6 opt;
	__u32 off = pkt->l3_off + sizeof(struct ipv6hdr);
	__u8 nexthdr;

	if (bpf_skb_load_bytes(ctx, pkt->l3_off + offsetof(struct ipv6hdr, nexthdr), &nexthdr, 1) < 0)
		return -DROP_INVALID_PACKET;
	if (nexthdr != NEXTHDR_DEST)
		return 0;
	/* parse.h has checked that the header's 8 first bytes are there. */
	if (bpf_skb_load_bytes(ctx, off, &opt, 4) < 0)
		return -DROP_INVALID_IPV6_EXTENSION_HEADER;
	if (opt.type != DSR_IPV6_OPT_TYPE)
		return 0;
	if (opt.len != DSR_IPV6_OPT_LEN || ((__u32)opt.hdrlen + 1) * 8 < sizeof(opt) ||
	    bpf_skb_load_bytes(ctx, off, &opt, sizeof(opt)) < 0)
		return -DROP_INVALID_IPV6_EXTENSION_HEADER;
	__builtin_memset(fe, 0, sizeof(*fe));
	__builtin_memcpy(&fe->addr, opt.addr, sizeof(opt.addr));
	fe->port = opt.port;
	fe->family = FAMILY_IPV6;
	return 1;
}

/* dsr_frontend returns 1 when pkt carries the DSR option (IPv4) or the DSR
 * Destination Options header (IPv6), with fe filled: the frontend's
 * address, port (network order) and family; 0 when it carries none; or a
 * negative drop reason when the options or the header are malformed. The
 * information is whatever the sender wrote: trust it only as far as the
 * sender (any client can send it). */
static __always_inline int dsr_frontend(struct __sk_buff *ctx, const struct packet *pkt,
					struct lb_revnat *fe)
{
	if (pkt->tuple.family == FAMILY_IPV4)
		return dsr_frontend4(ctx, pkt, fe);
	if (pkt->tuple.family == FAMILY_IPV6)
		return dsr_frontend6(ctx, pkt, fe);
	return 0;
}

#endif /* CILIA_DSR_H */
