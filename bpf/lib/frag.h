/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* frag.h: fragment tracking. The first fragment of a datagram carries the
 * L4 header; its ports are remembered by (addresses, protocol, fragment id)
 * so that later fragments get the same conntrack and policy treatment. */
#ifndef CILIA_FRAG_H
#define CILIA_FRAG_H

#include "common.h"
#include "drop_reasons.h"
#include "parse.h"

#define FRAG_MAX_ENTRIES 8192

/* struct frag_key identifies a fragmented datagram. */
struct frag_key {
	union v6addr saddr;
	union v6addr daddr;
	__u32 id;           /* IPv4 identification (16 bits) or IPv6 identification */
	__u8 nexthdr;
	__u8 family;
	__u8 pad[2];
};

/* struct frag_ports is what later fragments inherit from the first one. */
struct frag_ports {
	__be16 sport;
	__be16 dport;
	__be16 policy_port;
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct frag_key);
	__type(value, struct frag_ports);
	__uint(max_entries, FRAG_MAX_ENTRIES);
} cilia_frag SEC(".maps");

static __always_inline void frag_key_of(struct frag_key *k, const struct packet *pkt)
{
	k->saddr = pkt->tuple.saddr;
	k->daddr = pkt->tuple.daddr;
	k->id = pkt->frag_id;
	k->nexthdr = pkt->tuple.nexthdr;
	k->family = pkt->tuple.family;
}

/* frag_track handles fragments: a first fragment records its ports, a later
 * one gets them back. Returns 0 (also for unfragmented packets), or
 * -DROP_FIRST_LOGICAL_DATAGRAM_FRAGMENT_NOT_FOUND for a later fragment whose
 * first fragment was not seen, or -DROP_CT_MAP_INSERTION_FAILED when the
 * first fragment cannot be recorded. */
static __always_inline int frag_track(struct packet *pkt)
{
	struct frag_key k = {};
	struct frag_ports *p;

	if (pkt->frag == FRAG_NONE)
		return 0;
	frag_key_of(&k, pkt);
	if (pkt->frag == FRAG_FIRST) {
		struct frag_ports v = {
			.sport = pkt->tuple.sport,
			.dport = pkt->tuple.dport,
			.policy_port = pkt->policy_port,
		};

		if (bpf_map_update_elem(&cilia_frag, &k, &v, BPF_ANY) < 0)
			return -DROP_CT_MAP_INSERTION_FAILED;
		return 0;
	}
	p = bpf_map_lookup_elem(&cilia_frag, &k);
	if (!p)
		return -DROP_FIRST_LOGICAL_DATAGRAM_FRAGMENT_NOT_FOUND;
	pkt->tuple.sport = p->sport;
	pkt->tuple.dport = p->dport;
	pkt->policy_port = p->policy_port;
	return 0;
}

#endif /* CILIA_FRAG_H */
