/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* snat.h: the node's NAT state for connections from outside the cluster
 * that from_netdev load-balanced (NodePort, externalIPs, LoadBalancer IPs).
 *
 * One LRU hash, cilia_snat, keyed by a struct tuple whose dir says which
 * way the entry translates:
 *
 *   SNAT_DIR_OUT  key: the connection's tuple after DNAT, client ->
 *                 backend (C:cp -> B:bp). Value: the address and port the
 *                 source is translated to (the node: N:np). Only for
 *                 remote backends in SNAT mode.
 *   SNAT_DIR_IN   key: a reply's tuple as it arrives, backend -> the
 *                 address the backend saw (B:bp -> N:np after SNAT; B:bp ->
 *                 C:cp for a local backend, whose client address is kept).
 *                 Value: the client address and port the destination goes
 *                 back to, and the rev_nat_id of the frontend the source
 *                 goes back to (cilia_lb_revnat).
 *
 * An entry lives as long as a conntrack entry of its protocol would
 * (ct_lifetime_tcp / ct_lifetime_nontcp after the last packet either way);
 * an expired entry counts as absent, and its port is free again.
 *
 * Port choice (SNAT mode): the client's own source port when no live
 * SNAT_DIR_IN entry holds (B:bp -> N:cp) already, else up to SNAT_PROBES
 * random ports of SNAT_PORT_MIN..SNAT_PORT_MAX.
 */
#ifndef CILIA_SNAT_H
#define CILIA_SNAT_H

#include "common.h"
#include "config.h"
#include "drop_reasons.h"
#include "parse.h"

#define SNAT_MAX_ENTRIES 262144

#define SNAT_DIR_OUT 1
#define SNAT_DIR_IN  2

#define SNAT_PORT_MIN 32768
#define SNAT_PORT_MAX 60999
#define SNAT_PROBES   8

/* struct snat_entry is one translation (see the header comment). */
struct snat_entry {
	__u64 expires;        /* jiffies; dead from then on */
	union v6addr addr;    /* OUT: the new source; IN: the client */
	__be16 port;          /* OUT: the new source port; IN: the client's port */
	__u8 family;
	__u8 pad;
	__u32 rev_nat_id;     /* the frontend (both directions) */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct tuple);
	__type(value, struct snat_entry);
	__uint(max_entries, SNAT_MAX_ENTRIES);
} cilia_snat SEC(".maps");

/* snat_lifetime returns how long an entry of protocol nexthdr lives after
 * a packet. */
static __always_inline __u64 snat_lifetime(__u8 nexthdr)
{
	return nexthdr == IPPROTO_TCP ? ct_lifetime_tcp : ct_lifetime_nontcp;
}

/* snat_key fills key with t's addresses, ports and protocol and dir. */
static __always_inline void snat_key(struct tuple *key, const struct tuple *t, __u8 dir)
{
	*key = *t;
	key->dir = dir;
	key->pad = 0;
}

/* snat_reply_key fills key with the tuple a reply to t has (addresses and
 * ports swapped), direction SNAT_DIR_IN. */
static __always_inline void snat_reply_key(struct tuple *key, const union v6addr *saddr,
					   __be16 sport, const union v6addr *daddr,
					   __be16 dport, const struct tuple *t)
{
	key->saddr = *saddr;
	key->daddr = *daddr;
	key->sport = sport;
	key->dport = dport;
	key->nexthdr = t->nexthdr;
	key->family = t->family;
	key->dir = SNAT_DIR_IN;
	key->pad = 0;
}

/* snat_lookup returns the live entry of key (refreshed to live another
 * lifetime from now), or NULL. */
static __always_inline struct snat_entry *snat_lookup(const struct tuple *key, __u64 now)
{
	struct snat_entry *e = bpf_map_lookup_elem(&cilia_snat, key);

	if (!e || e->expires <= now)
		return NULL;
	e->expires = now + snat_lifetime(key->nexthdr);
	return e;
}

/* snat_port_free reports whether no live entry translates replies from
 * the backend (addr:port in t's destination) to node:port. */
static __always_inline int snat_port_free(const struct tuple *t, const union v6addr *node,
					  __be16 port, __u64 now)
{
	struct tuple key;
	struct snat_entry *e;

	snat_reply_key(&key, &t->daddr, t->dport, node, port, t);
	e = bpf_map_lookup_elem(&cilia_snat, &key);
	return !e || e->expires <= now;
}

/* snat_out_get returns the source (address, port) connection t (client ->
 * backend, after DNAT) is translated to: the one recorded for it, or a new
 * one on node with the client's port or a free port of the SNAT range,
 * recorded both ways with the frontend rev_nat_id. Returns 0 with *port
 * set, or -DROP_CT_MAP_INSERTION_FAILED when no port is free after
 * SNAT_PROBES tries or the map refuses an entry (Cilium has a reason of its
 * own for the first, NO_MAPPING_FOR_NAT_MASQUERADE 167; drop_reasons.h
 * does not have it yet). */
static __always_inline int snat_out_get(const struct tuple *t, const union v6addr *node,
					__u32 rev_nat_id, __u64 now, __be16 *port)
{
	struct snat_entry *e, n = {};
	struct tuple key;
	__be16 p = t->sport;
	int i;

	snat_key(&key, t, SNAT_DIR_OUT);
	e = snat_lookup(&key, now);
	if (e && v6addr_equal(&e->addr, node)) {
		*port = e->port;
		/* Keep the reply direction alive with it. */
		snat_reply_key(&key, &t->daddr, t->dport, node, e->port, t);
		snat_lookup(&key, now);
		return 0;
	}

	if (!snat_port_free(t, node, p, now)) {
		p = 0;
#pragma unroll
		for (i = 0; i < SNAT_PROBES; i++) {
			__be16 c = bpf_htons(SNAT_PORT_MIN +
					     bpf_get_prandom_u32() % (SNAT_PORT_MAX - SNAT_PORT_MIN + 1));

			if (snat_port_free(t, node, c, now)) {
				p = c;
				break;
			}
		}
		if (!p)
			return -DROP_CT_MAP_INSERTION_FAILED;
	}

	/* One entry on the stack, written twice: in, then out. */
	n.expires = now + snat_lifetime(t->nexthdr);
	n.addr = t->saddr;
	n.port = t->sport;
	n.family = t->family;
	n.rev_nat_id = rev_nat_id;
	snat_reply_key(&key, &t->daddr, t->dport, node, p, t);
	if (bpf_map_update_elem(&cilia_snat, &key, &n, BPF_ANY) < 0)
		return -DROP_CT_MAP_INSERTION_FAILED;
	n.addr = *node;
	n.port = p;
	snat_key(&key, t, SNAT_DIR_OUT);
	if (bpf_map_update_elem(&cilia_snat, &key, &n, BPF_ANY) < 0)
		return -DROP_CT_MAP_INSERTION_FAILED;
	*port = p;
	return 0;
}

/* snat_local_record records that replies of connection t (client ->
 * local backend, after DNAT, the client's address kept) are translated
 * back to the frontend rev_nat_id as they leave the node (to_netdev).
 * Returns 0, or -DROP_CT_MAP_INSERTION_FAILED. */
static __always_inline int snat_local_record(const struct tuple *t, __u32 rev_nat_id, __u64 now)
{
	struct snat_entry in = {
		.expires = now + snat_lifetime(t->nexthdr),
		.port = t->sport,
		.family = t->family,
		.rev_nat_id = rev_nat_id,
	};
	struct tuple key;

	in.addr = t->saddr;
	snat_reply_key(&key, &t->daddr, t->dport, &t->saddr, t->sport, t);
	if (bpf_map_update_elem(&cilia_snat, &key, &in, BPF_ANY) < 0)
		return -DROP_CT_MAP_INSERTION_FAILED;
	return 0;
}

/* snat_in_lookup returns the live SNAT_DIR_IN entry for the reply tuple t
 * (refreshed, and the SNAT_DIR_OUT entry of its connection with it when
 * there is one), or NULL when t is no reply of a translated connection. */
static __always_inline struct snat_entry *snat_in_lookup(const struct tuple *t, __u64 now)
{
	struct snat_entry *e;
	struct tuple key;

	snat_key(&key, t, SNAT_DIR_IN);
	e = snat_lookup(&key, now);
	if (!e)
		return NULL;
	/* The connection's out entry: client -> backend. */
	snat_key(&key, t, SNAT_DIR_OUT);
	key.saddr = e->addr;
	key.sport = e->port;
	key.daddr = t->saddr;
	key.dport = t->sport;
	snat_lookup(&key, now);
	return e;
}

#endif /* CILIA_SNAT_H */
