/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* ct.h: connection tracking.
 *
 * Two LRU hashes, one per family, keyed by the 5-tuple of the packet that
 * created the entry plus the direction it was created in
 * (DIR_EGRESS: the endpoint opened it; DIR_INGRESS: a peer opened it). A
 * packet is
 *   ESTABLISHED when its own tuple (with this direction) is found,
 *   REPLY       when its reversed tuple (with the other direction) is found,
 *   RELATED     when it is an ICMP error quoting a packet of a tracked flow,
 *   NEW         otherwise, or when a SYN reopens a closed TCP tuple.
 * Expired entries count as absent. ICMP echo uses the identifier as the
 * source port of requests and the destination port of replies, so a reply's
 * reversed tuple is its request's; other ICMP messages carry their type as
 * the destination port, and a tracked ICMP message only covers messages of
 * its own type (ct_icmp_matches). ICMP errors create no entry.
 *
 * Load balancing (lb.h) adds:
 *   - service entries: keyed by the client's tuple towards a frontend
 *     (client -> frontend address:port) with dir DIR_SERVICE; they pin the
 *     backend (backend_id) chosen for the connection and name the frontend
 *     (rev_nat_id). ct_lookup_service / ct_create_service.
 *   - on the entry of a translated connection (the tuple after DNAT),
 *     rev_nat_id: replies get the frontend's address:port as source
 *     (lxc.c to_container); with CT_F_DSR (an ingress entry of a backend
 *     reached in DSR mode) the backend's own replies get it in
 *     from_container; CT_F_HAIRPIN marks the entries of a pod reaching
 *     itself through a service (lxc.c).
 */
#ifndef CILIA_CT_H
#define CILIA_CT_H

#include "common.h"
#include "config.h"
#include "drop_reasons.h"
#include "parse.h"

#define CT_MAX_ENTRIES 262144

#define CT_NEW         0
#define CT_ESTABLISHED 1
#define CT_REPLY       2
#define CT_RELATED     3

#define CT_F_REPLY_SEEN 0x01 /* a packet went the reply way */
#define CT_F_TX_CLOSING 0x02 /* FIN in the original direction */
#define CT_F_RX_CLOSING 0x04 /* FIN in the reply direction */
#define CT_F_CLOSED     0x08 /* RST, or FIN both ways */
#define CT_F_PEER_REMOTE 0x10 /* the peer was no local endpoint at creation */
#define CT_F_DSR        0x20 /* ingress entry of a DSR connection: replies leave with the frontend as source */
#define CT_F_HAIRPIN    0x40 /* a pod's connection to itself through a service */
#define CT_F_REJECTED   0x80 /* lets the rejection of a connection to a frontend without backends in (lxc.c) */

/* The CT key direction of service entries (lb.h): the client's tuple
 * towards the frontend. */
#define DIR_SERVICE 3

/* struct ct_entry is the state of one tracked connection. */
struct ct_entry {
	__u64 expires;          /* jiffies; the entry is dead from then on */
	__u64 packets;          /* original direction */
	__u64 bytes;
	__u64 reply_packets;
	__u64 reply_bytes;
	__u32 remote_identity;  /* identity of the peer when last checked */
	__u32 policy_revision;  /* endpoint policy revision of the last check */
	__u32 rule_id;          /* policy entry that allowed the connection */
	__be16 proxy_port;      /* != 0: L7 redirect */
	__be16 policy_port;     /* port (ICMP: type) the policy was checked for */
	__u8 flags;             /* CT_F_* */
	__u8 tcp_flags;         /* TCP flags seen in the original direction */
	__u8 reply_tcp_flags;   /* TCP flags seen in the reply direction */
	__u8 pad[5];
	__u32 backend_id;       /* service entries: the backend (lb.h) */
	__u32 rev_nat_id;       /* != 0: the frontend replies are translated to (lb.h) */
};

/* struct tuple4 is the IPv4 conntrack key: struct tuple in 16 bytes, so
 * that the fast path hashes and compares 4 words instead of 10. */
struct tuple4 {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 nexthdr;
	__u8 dir;
	__u8 pad[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct tuple4);
	__type(value, struct ct_entry);
	__uint(max_entries, CT_MAX_ENTRIES);
} cilia_ct4 SEC(".maps");

/* The IPv6 conntrack map is keyed by struct tuple itself (family 6). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct tuple);
	__type(value, struct ct_entry);
	__uint(max_entries, CT_MAX_ENTRIES);
} cilia_ct6 SEC(".maps");

static __always_inline void ct_key4(struct tuple4 *k, const struct tuple *t)
{
	k->saddr = t->saddr.p32[0];
	k->daddr = t->daddr.p32[0];
	k->sport = t->sport;
	k->dport = t->dport;
	k->nexthdr = t->nexthdr;
	k->dir = t->dir;
	k->pad[0] = 0;
	k->pad[1] = 0;
}

/* ct_map_lookup returns the entry of key from its family's map, or NULL. */
static __always_inline struct ct_entry *ct_map_lookup(const struct tuple *key)
{
	struct tuple4 k4;

	if (key->family == FAMILY_IPV4) {
		ct_key4(&k4, key);
		return bpf_map_lookup_elem(&cilia_ct4, &k4);
	}
	return bpf_map_lookup_elem(&cilia_ct6, key);
}

/* ct_map_update writes e under key; returns the helper's result (< 0:
 * refused, e.g. the map is full). */
static __always_inline int ct_map_update(const struct tuple *key, const struct ct_entry *e)
{
	struct tuple4 k4;

	if (key->family == FAMILY_IPV4) {
		ct_key4(&k4, key);
		return bpf_map_update_elem(&cilia_ct4, &k4, e, BPF_ANY);
	}
	return bpf_map_update_elem(&cilia_ct6, key, e, BPF_ANY);
}

/* ct_map_delete removes the entry of key. */
static __always_inline void ct_map_delete(const struct tuple *key)
{
	struct tuple4 k4;

	if (key->family == FAMILY_IPV4) {
		ct_key4(&k4, key);
		bpf_map_delete_elem(&cilia_ct4, &k4);
		return;
	}
	bpf_map_delete_elem(&cilia_ct6, key);
}

/* struct ct_result is what ct_lookup() found. */
struct ct_result {
	const struct tuple *key; /* key of the entry (CT_NEW: the key to create) */
	struct ct_entry *entry;  /* NULL for CT_NEW */
	struct tuple scratch;    /* storage for reversed and quoted keys */
	__u8 state;              /* CT_* */
	__u8 changed;            /* the packet changed the entry's flags */
};

static __always_inline __u8 ct_other_dir(__u8 dir)
{
	return dir == DIR_EGRESS ? DIR_INGRESS : DIR_EGRESS;
}

/* ct_reverse writes the tuple of the opposite direction of t into out. */
static __always_inline void ct_reverse(struct tuple *out, const struct tuple *t, __u8 dir)
{
	out->saddr = t->daddr;
	out->daddr = t->saddr;
	out->sport = t->dport;
	out->dport = t->sport;
	out->nexthdr = t->nexthdr;
	out->family = t->family;
	out->dir = dir;
	out->pad = 0;
}

/* ct_lifetime returns how long e lives after a packet, in jiffies. */
static __always_inline __u32 ct_lifetime(const struct ct_entry *e, __u8 nexthdr)
{
	if (nexthdr != IPPROTO_TCP)
		return ct_lifetime_nontcp;
	if (e->flags & CT_F_CLOSED)
		return ct_lifetime_tcp_close;
	if (!(e->flags & CT_F_REPLY_SEEN))
		return ct_lifetime_tcp_syn;
	return ct_lifetime_tcp;
}

/* ct_account updates counters, TCP state and lifetime of e for a packet of
 * len bytes. Returns 1 when the entry's flags changed, 0 otherwise. */
static __always_inline int ct_account(struct ct_entry *e, const struct packet *pkt,
				      int reply, __u32 len, __u64 now)
{
	__u8 old = e->flags, f = pkt->tcp_flags, nf = old;

	if (reply) {
		e->reply_packets++;
		e->reply_bytes += len;
		e->reply_tcp_flags |= f;
		nf |= CT_F_REPLY_SEEN;
	} else {
		e->packets++;
		e->bytes += len;
		e->tcp_flags |= f;
	}
	if (pkt->tuple.nexthdr == IPPROTO_TCP) {
		if (f & TCP_FLAG_RST)
			nf |= CT_F_CLOSED;
		else if (f & TCP_FLAG_FIN)
			nf |= reply ? CT_F_RX_CLOSING : CT_F_TX_CLOSING;
		if ((nf & (CT_F_TX_CLOSING | CT_F_RX_CLOSING)) == (CT_F_TX_CLOSING | CT_F_RX_CLOSING))
			nf |= CT_F_CLOSED;
	}
	if (nf != old)
		e->flags = nf;
	e->expires = now + ct_lifetime(e, pkt->tuple.nexthdr);
	return nf != old;
}

static __always_inline struct ct_entry *ct_find_alive(const struct tuple *key, __u64 now)
{
	struct ct_entry *e = ct_map_lookup(key);

	if (e && e->expires > now)
		return e;
	return NULL;
}

/* ct_icmp_matches reports whether an ICMP packet may use entry e found
 * under its own tuple (reply == 0) or its reversed tuple (reply == 1). ICMP
 * policy is per type, so a tracked message only covers more messages of the
 * same type in the same direction, and the only ICMP reply is an echo reply
 * to an echo request. Other protocols always match. */
static __always_inline int ct_icmp_matches(const struct ct_entry *e, const struct packet *pkt,
					   int reply)
{
	__u8 nh = pkt->tuple.nexthdr;

	if (nh != IPPROTO_ICMP && nh != IPPROTO_ICMPV6)
		return 1;
	if (!reply)
		return e->policy_port == pkt->policy_port;
	if (nh == IPPROTO_ICMP)
		return pkt->icmp_type == ICMP_ECHOREPLY && e->policy_port == bpf_htons(ICMP_ECHO);
	return pkt->icmp_type == ICMPV6_ECHO_REPLY && e->policy_port == bpf_htons(ICMPV6_ECHO_REQUEST);
}

/* ct_lookup classifies pkt travelling in direction dir at time now and
 * accounts it to the entry it belongs to; it sets pkt->tuple.dir to dir.
 * Returns the CT_* state and fills r (r->entry is NULL for CT_NEW). ICMP
 * errors are only ever RELATED (or NEW): they belong to the flow they
 * quote, not to a flow of their own. */
static __always_inline int ct_lookup(struct packet *pkt, __u8 dir, __u32 len, __u64 now,
				     struct ct_result *r)
{
	struct ct_entry *e;

	pkt->tuple.dir = dir;
	r->changed = 0;
	if (pkt->icmp_error) {
		/* The quoted packet travelled the other way: it is either the
		 * original of an entry created in that direction, or a reply of
		 * an entry created in ours. */
		r->scratch = pkt->inner;
		r->scratch.dir = ct_other_dir(dir);
		r->scratch.pad = 0;
		e = ct_find_alive(&r->scratch, now);
		if (!e) {
			ct_reverse(&r->scratch, &pkt->inner, dir);
			e = ct_find_alive(&r->scratch, now);
		}
		if (e) {
			r->key = &r->scratch;
			r->entry = e;
			return r->state = CT_RELATED;
		}
		goto new;
	}

	r->key = &pkt->tuple;
	e = ct_find_alive(r->key, now);
	if (e && ct_icmp_matches(e, pkt, 0)) {
		/* A fresh SYN on a closed tuple opens a new connection. */
		if (pkt->tuple.nexthdr == IPPROTO_TCP && (e->flags & CT_F_CLOSED) &&
		    (pkt->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN)
			goto new;
		r->changed = ct_account(e, pkt, 0, len, now);
		r->entry = e;
		return r->state = CT_ESTABLISHED;
	}

	ct_reverse(&r->scratch, &pkt->tuple, ct_other_dir(dir));
	e = ct_find_alive(&r->scratch, now);
	if (e && ct_icmp_matches(e, pkt, 1)) {
		r->changed = ct_account(e, pkt, 1, len, now);
		r->key = &r->scratch;
		r->entry = e;
		return r->state = CT_REPLY;
	}

new:
	r->key = &pkt->tuple;
	r->entry = NULL;
	return r->state = CT_NEW;
}

/* ct_fill writes the entry of a new connection for pkt into e (see
 * ct_create): callers short of stack build it in map memory. */
static __always_inline void ct_fill(struct ct_entry *e, const struct packet *pkt, __u32 len,
				    __u64 now, __u32 remote_identity, __u32 revision, __u32 rule_id,
				    __be16 proxy_port, __u8 flags, __u32 rev_nat_id)
{
	__builtin_memset(e, 0, sizeof(*e));
	e->packets = 1;
	e->bytes = len;
	e->remote_identity = remote_identity;
	e->policy_revision = revision;
	e->rule_id = rule_id;
	e->proxy_port = proxy_port;
	e->policy_port = pkt->policy_port;
	e->tcp_flags = pkt->tcp_flags;
	e->flags = flags;
	e->rev_nat_id = rev_nat_id;
	if (pkt->tuple.nexthdr == IPPROTO_TCP && (pkt->tcp_flags & TCP_FLAG_RST))
		e->flags |= CT_F_CLOSED;
	e->expires = now + ct_lifetime(e, pkt->tuple.nexthdr);
}

/* ct_create records a new connection for pkt under key (r->key after a
 * CT_NEW lookup) at time now, with the initial CT_F_* flags and, for a
 * load-balanced connection, the frontend's rev_nat_id (0: none). Returns 0,
 * or -DROP_CT_MAP_INSERTION_FAILED when the map refuses the entry (full):
 * the caller must drop, never forward untracked. */
static __always_inline int ct_create(const struct tuple *key, const struct packet *pkt,
				     __u32 len, __u64 now, __u32 remote_identity, __u32 revision,
				     __u32 rule_id, __be16 proxy_port, __u8 flags, __u32 rev_nat_id)
{
	struct ct_entry e;

	ct_fill(&e, pkt, len, now, remote_identity, revision, rule_id, proxy_port, flags, rev_nat_id);
	if (ct_map_update(key, &e) < 0)
		return -DROP_CT_MAP_INSERTION_FAILED;
	return 0;
}

/* ct_service_key writes the service entry key of pkt (its tuple towards a
 * frontend, dir DIR_SERVICE) into key. */
static __always_inline void ct_service_key(struct tuple *key, const struct packet *pkt)
{
	*key = pkt->tuple;
	key->dir = DIR_SERVICE;
	key->pad = 0;
}

/* ct_lookup_service returns the live service entry under key for pkt,
 * accounted for pkt (len bytes at now), or NULL when there is none, it
 * expired, or pkt is a fresh SYN on a closed TCP connection (a new
 * connection that must choose again). Only the client's packets pass the
 * entry: a TCP client's ACK says the server answered, and the entry counts
 * as a reply seen (the established lifetime, like the connection's own
 * entry). */
static __always_inline struct ct_entry *ct_lookup_service(const struct tuple *key,
							  const struct packet *pkt, __u32 len,
							  __u64 now)
{
	struct ct_entry *e = ct_find_alive(key, now);

	if (!e)
		return NULL;
	if (pkt->tuple.nexthdr == IPPROTO_TCP && (e->flags & CT_F_CLOSED) &&
	    (pkt->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN)
		return NULL;
	if (pkt->tuple.nexthdr == IPPROTO_TCP && (pkt->tcp_flags & TCP_FLAG_ACK) &&
	    !(e->flags & CT_F_REPLY_SEEN))
		e->flags |= CT_F_REPLY_SEEN;
	ct_account(e, pkt, 0, len, now);
	return e;
}

/* ct_create_service records the service entry under key (ct_service_key)
 * for pkt: backend backend_id of frontend rev_nat_id. Returns the entry,
 * or NULL when the map refuses it. */
static __always_inline struct ct_entry *ct_create_service(const struct tuple *key,
							  const struct packet *pkt, __u32 len,
							  __u64 now, __u32 backend_id,
							  __u32 rev_nat_id)
{
	struct ct_entry e;

	ct_fill(&e, pkt, len, now, 0, 0, 0, 0, 0, rev_nat_id);
	e.backend_id = backend_id;
	if (ct_map_update(key, &e) < 0)
		return NULL;
	return ct_map_lookup(key);
}

/* ct_create_service_in is ct_create_service building the entry in buf
 * (map memory, for callers short of stack). Returns 0 or
 * -DROP_CT_MAP_INSERTION_FAILED when the map refuses it. */
static __always_inline int ct_create_service_in(const struct tuple *key, const struct packet *pkt,
						__u32 len, __u64 now, __u32 backend_id,
						__u32 rev_nat_id, struct ct_entry *buf)
{
	ct_fill(buf, pkt, len, now, 0, 0, 0, 0, 0, rev_nat_id);
	buf->backend_id = backend_id;
	if (ct_map_update(key, buf) < 0)
		return -DROP_CT_MAP_INSERTION_FAILED;
	return 0;
}

#endif /* CILIA_CT_H */
