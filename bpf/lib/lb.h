/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* lb.h: service load balancing: frontends, backends, reverse NAT, Maglev
 * and session affinity (docs/load-balancing.md).
 *
 * Map layout (Cilium's lb4_services_v2 layout, one map for both families):
 *   cilia_lb_services  struct lb_key -> struct lb_service. For a frontend
 *                      (address, port, protocol, scope) slot 0 is the
 *                      service entry: how many active and terminating
 *                      backends it has, its flags and its rev_nat_id.
 *                      Slots 1..count hold the active backends' ids,
 *                      count+1..count+terminating the terminating ones'.
 *   cilia_lb_backends  backend id -> struct lb_backend (address and port).
 *   cilia_lb_revnat    rev_nat_id -> struct lb_revnat: the frontend a reply
 *                      must appear to come from.
 *   cilia_lb_maglev    rev_nat_id -> struct lb_maglev: the frontend's Maglev
 *                      lookup table (lb_maglev_size entries used).
 *   cilia_lb_affinity  (client address, rev_nat_id) -> backend and last use.
 *
 * Scopes: every frontend has an LB_SCOPE_INTERNAL entry, used for traffic
 * from pods and nodes of the cluster (all backends). Frontends reachable
 * from outside (NodePort, externalIPs, LoadBalancer IPs) also have an
 * LB_SCOPE_EXTERNAL entry, used at the node's uplink; with
 * externalTrafficPolicy Local it holds only the node's local backends.
 *
 * The control plane updates make-before-break: backends first, then the
 * slots, then slot 0 with the new counts, then removes what is left over, so
 * that every slot a reader can reach names a backend that exists.
 *
 * API (for lxc.c and host.c; packet rewriting is in nat.h):
 *
 *   struct lb_service *lb_lookup_service(family, addr, dport, proto, scope)
 *       The service entry (slot 0) of the frontend, or NULL.
 *   struct lb_backend *lb_lookup_backend(__u32 id)
 *       The backend of id, or NULL.
 *   struct lb_revnat *lb_lookup_revnat(__u32 rev_nat_id)
 *       The frontend of rev_nat_id, or NULL.
 *   __u32 lb_select_backend(family, addr, dport, proto, scope, svc, t, now, &be)
 *       Chooses a backend of the frontend (addr, dport, proto, scope), whose
 *       service entry is svc, for a new connection whose client-side tuple
 *       (client -> frontend) is t, at now (jiffies): session affinity
 *       (LB_F_AFFINITY) when the client's remembered backend is still one
 *       of the frontend's usable backends and its last use is less than
 *       affinity_timeout ago, else Maglev (LB_F_MAGLEV: the frontend's
 *       table at lb_tuple_hash(t) % lb_maglev_size), else random. Active
 *       backends only; the terminating ones only when there is no active
 *       backend. With LB_F_AFFINITY the choice is recorded for the client.
 *       Returns the backend id with *be pointing at it, or 0 (*be NULL)
 *       when the frontend has no usable backend.
 *       An inline wrapper of lb_select.
 *   __u32 lb_select(const struct lb_key *fe, const struct lb_service *svc,
 *                   const struct tuple *t, __u64 now)
 *       The same for the frontend key fe (slot ignored; svc NULL: looked
 *       up), returning only the id: a global function, verified once, with
 *       a stack frame of its own (56 bytes; its keys live in the per-CPU
 *       cilia_lb_scratch). Callers whose own frame is large call it, not
 *       nested in another function: the verifier allows 512 bytes for the
 *       whole call chain.
 *   __u32 lb_tuple_hash(const struct tuple *t)
 *       The Maglev hash of t's addresses, ports and protocol (mirrored in
 *       Go by maps.LBTupleHash).
 */
#ifndef CILIA_LB_H
#define CILIA_LB_H

#include "common.h"
#include "config.h"
#include "parse.h"

#define LB_SERVICES_MAX_ENTRIES 262144
#define LB_BACKENDS_MAX_ENTRIES 262144
#define LB_REVNAT_MAX_ENTRIES   262144
#define LB_AFFINITY_MAX_ENTRIES 65536
#define LB_MAGLEV_MAX_ENTRIES   1024
/* The largest Maglev table (M) a frontend can have; lb_maglev_size picks
 * the M in use (a prime <= LB_MAGLEV_MAX). */
#define LB_MAGLEV_MAX 16381

#define LB_SCOPE_INTERNAL 0
#define LB_SCOPE_EXTERNAL 1

/* struct lb_service flags (slot 0). */
#define LB_F_NODEPORT 0x01 /* the frontend is a node address (NodePort) */
#define LB_F_EXTERNAL 0x02 /* externalIP, LoadBalancer IP or NodePort */
#define LB_F_LOCAL    0x04 /* externalTrafficPolicy Local (external scope) */
#define LB_F_AFFINITY 0x08 /* sessionAffinity ClientIP */
#define LB_F_MAGLEV   0x10 /* lb-algorithm maglev (else random) */
#define LB_F_DSR      0x20 /* forwarding-mode dsr (else snat) */

/* struct lb_backend flags. */
#define LB_BACKEND_F_TERMINATING 0x01

/* struct lb_key is a frontend slot. */
struct lb_key {
	union v6addr addr; /* frontend address; IPv4 in addr[0..3] */
	__be16 dport;      /* frontend port */
	__u8 proto;        /* IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP */
	__u8 family;       /* FAMILY_IPV4 | FAMILY_IPV6 */
	__u16 slot;        /* 0: the service entry; >= 1: a backend slot */
	__u8 scope;        /* LB_SCOPE_* */
	__u8 pad;
};

/* struct lb_service is a frontend's service entry (slot 0) or a backend
 * slot (slot >= 1: only backend_id is set). */
struct lb_service {
	__u32 backend_id;       /* slot >= 1: key of cilia_lb_backends */
	__u16 count;            /* slot 0: active backends */
	__u16 terminating;      /* slot 0: terminating backends after them */
	__u32 rev_nat_id;       /* slot 0: key of cilia_lb_revnat, cilia_lb_maglev */
	__u8 flags;             /* slot 0: LB_F_* */
	__u8 pad[3];
	__u32 affinity_timeout; /* slot 0, LB_F_AFFINITY: seconds */
};

/* struct lb_backend is where a backend serves. */
struct lb_backend {
	union v6addr addr;
	__be16 port;
	__u8 proto;
	__u8 family;
	__u8 flags;             /* LB_BACKEND_F_* */
	__u8 pad[3];
};

/* struct lb_revnat is the frontend replies are translated back to. */
struct lb_revnat {
	union v6addr addr;
	__be16 port;
	__u8 family;
	__u8 pad[5];            /* explicit: union v6addr aligns the struct to 8 */
};

/* struct lb_maglev is one frontend's Maglev table: backend ids, the first
 * lb_maglev_size entries used. */
struct lb_maglev {
	__u32 backend_ids[LB_MAGLEV_MAX];
};

/* struct lb_affinity_key is a client of a frontend with sessionAffinity. */
struct lb_affinity_key {
	union v6addr client;
	__u32 rev_nat_id;
	__u8 family;
	__u8 pad[3];
};

/* struct lb_affinity_val is the backend a client sticks to. */
struct lb_affinity_val {
	__u64 last_used;        /* jiffies of the last new connection */
	__u32 backend_id;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct lb_key);
	__type(value, struct lb_service);
	__uint(max_entries, LB_SERVICES_MAX_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} cilia_lb_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct lb_backend);
	__uint(max_entries, LB_BACKENDS_MAX_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} cilia_lb_backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct lb_revnat);
	__uint(max_entries, LB_REVNAT_MAX_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} cilia_lb_revnat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct lb_maglev);
	__uint(max_entries, LB_MAGLEV_MAX_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} cilia_lb_maglev SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct lb_affinity_key);
	__type(value, struct lb_affinity_val);
	__uint(max_entries, LB_AFFINITY_MAX_ENTRIES);
} cilia_lb_affinity SEC(".maps");

/* struct lb_scratch holds lb_select's keys and values: per-CPU memory
 * instead of stack, which the programs' pipelines use up. */
struct lb_scratch {
	struct lb_key key;
	struct lb_affinity_key akey;
	struct lb_affinity_val aval;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct lb_scratch);
	__uint(max_entries, 1);
} cilia_lb_scratch SEC(".maps");

/* How many backend slots the affinity check scans for the remembered
 * backend; a frontend with more usable backends than this accepts any
 * remembered backend that still exists. */
#define LB_AFFINITY_SCAN_MAX 256

/* lb_lookup_service returns the service entry (slot 0) of the frontend
 * (addr, dport, proto) in scope, or NULL when there is none. */
static __always_inline struct lb_service *lb_lookup_service(__u8 family, const union v6addr *addr,
							    __be16 dport, __u8 proto, __u8 scope)
{
	struct lb_key key = {
		.dport = dport,
		.proto = proto,
		.family = family,
		.scope = scope,
	};

	key.addr = *addr;
	return bpf_map_lookup_elem(&cilia_lb_services, &key);
}

/* lb_lookup_backend returns the backend of id, or NULL. */
static __always_inline struct lb_backend *lb_lookup_backend(__u32 id)
{
	if (!id)
		return NULL;
	return bpf_map_lookup_elem(&cilia_lb_backends, &id);
}

/* lb_lookup_revnat returns the frontend of rev_nat_id, or NULL. */
static __always_inline struct lb_revnat *lb_lookup_revnat(__u32 rev_nat_id)
{
	if (!rev_nat_id)
		return NULL;
	return bpf_map_lookup_elem(&cilia_lb_revnat, &rev_nat_id);
}

static __always_inline __u32 lb_rotl32(__u32 x, int r)
{
	return (x << r) | (x >> (32 - r));
}

/* lb_hash_word mixes one 32-bit word into h (MurmurHash3's block step). */
static __always_inline __u32 lb_hash_word(__u32 h, __u32 k)
{
	k *= 0xcc9e2d51;
	k = lb_rotl32(k, 15);
	k *= 0x1b873593;
	h ^= k;
	h = lb_rotl32(h, 13);
	return h * 5 + 0xe6546b64;
}

/* lb_tuple_hash returns MurmurHash3 (seed 0) of the words saddr[0..3],
 * daddr[0..3], sport | dport << 16 and nexthdr, each as loaded from memory
 * (the ports as stored, network order), with the usual finalizer. */
static __always_inline __u32 lb_tuple_hash(const struct tuple *t)
{
	const __u32 *w = (const __u32 *)t; /* saddr, daddr, then the ports */
	__u32 h = 0;
	int i;

	/* A loop, not 9 unrolled steps: fewer constants to keep on the stack. */
#pragma clang loop unroll(disable)
	for (i = 0; i < 9; i++)
		h = lb_hash_word(h, w[i]);
	h = lb_hash_word(h, t->nexthdr);
	h ^= 40; /* length in bytes */
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

/* lb_usable_slots gives the slot range new connections may use: the active
 * backends (1..count), or when there is none the terminating ones
 * (count+1..count+terminating). Returns how many there are (0: none) and
 * sets *first. */
static __always_inline __u32 lb_usable_slots(const struct lb_service *svc, __u32 *first)
{
	if (svc->count) {
		*first = 1;
		return svc->count;
	}
	*first = (__u32)svc->count + 1;
	return svc->terminating;
}

/* lb_slot_backend returns the backend id in slot of the frontend key (the
 * key's slot is overwritten), or 0 when the slot is empty. */
static __always_inline __u32 lb_slot_backend(struct lb_key *key, __u32 slot)
{
	struct lb_service *s;

	key->slot = slot;
	s = bpf_map_lookup_elem(&cilia_lb_services, key);
	return s ? s->backend_id : 0;
}

/* lb_slots_hold reports whether backend id is in one of the n slots from
 * first of the frontend key (1: yes, or n is beyond what is scanned). */
static __always_inline int lb_slots_hold(struct lb_key *key, __u32 first, __u32 n, __u32 id)
{
	__u32 i;

	if (n > LB_AFFINITY_SCAN_MAX)
		return 1;
#pragma clang loop unroll(disable)
	for (i = 0; i < LB_AFFINITY_SCAN_MAX; i++) {
		if (i >= n)
			break;
		if (lb_slot_backend(key, first + i) == id)
			return 1;
	}
	return 0;
}

/* lb_select is lb_select_backend for the frontend fe (its slot is
 * ignored) whose service entry is svc (NULL: looked up from fe): returns
 * the chosen backend's id, 0 when there is none. A global function,
 * verified once and with its own stack, apart from the programs'
 * pipelines. */
__attribute__((noinline)) __u32 lb_select(const struct lb_key *fe, const struct lb_service *svc,
					  const struct tuple *t, __u64 now)
{
	__u32 zero = 0, first = 1, n, id = 0;
	struct lb_scratch *sc = bpf_map_lookup_elem(&cilia_lb_scratch, &zero);
	struct lb_backend *b = NULL;

	if (!fe || !t || !sc)
		return 0;
	sc->key = *fe;
	sc->key.slot = 0;
	if (!svc)
		svc = bpf_map_lookup_elem(&cilia_lb_services, &sc->key);
	if (!svc)
		return 0;
	n = lb_usable_slots(svc, &first);
	if (!n)
		return 0;

	__builtin_memset(&sc->akey, 0, sizeof(sc->akey));
	sc->akey.rev_nat_id = svc->rev_nat_id;
	sc->akey.family = t->family;
	sc->akey.client = t->saddr;
	if (svc->flags & LB_F_AFFINITY) {
		struct lb_affinity_val *a = bpf_map_lookup_elem(&cilia_lb_affinity, &sc->akey);

		if (a && a->last_used + (__u64)svc->affinity_timeout * jiffies_hz > now &&
		    lb_slots_hold(&sc->key, first, n, a->backend_id)) {
			id = a->backend_id;
			if (lb_lookup_backend(id)) {
				a->last_used = now;
				return id;
			}
		}
	}

	if (svc->flags & LB_F_MAGLEV) {
		struct lb_maglev *m = bpf_map_lookup_elem(&cilia_lb_maglev, &sc->akey.rev_nat_id);
		__u32 size = lb_maglev_size, idx;

		if (m && size && size <= LB_MAGLEV_MAX) {
			idx = lb_tuple_hash(t) % size;
			/* The verifier does not bound a remainder: check what the
			 * compiler knows already. */
			asm volatile("" : "+r"(idx));
			if (idx < LB_MAGLEV_MAX) {
				id = m->backend_ids[idx];
				b = lb_lookup_backend(id);
			}
		}
	}
	if (!b) {
		id = lb_slot_backend(&sc->key, first + bpf_get_prandom_u32() % n);
		b = lb_lookup_backend(id);
	}
	if (!b)
		return 0;

	if (svc->flags & LB_F_AFFINITY) {
		sc->aval.last_used = now;
		sc->aval.backend_id = id;
		sc->aval.pad = 0;
		/* A full LRU evicts; a failure only loses the stickiness. */
		bpf_map_update_elem(&cilia_lb_affinity, &sc->akey, &sc->aval, BPF_ANY);
	}
	return id;
}

/* lb_select_backend: see the API at the top of this file. */
static __always_inline __u32 lb_select_backend(__u8 family, const union v6addr *addr, __be16 dport,
					       __u8 proto, __u8 scope, const struct lb_service *svc,
					       const struct tuple *t, __u64 now,
					       struct lb_backend **be)
{
	struct lb_key key = {
		.dport = dport,
		.proto = proto,
		.family = family,
		.scope = scope,
	};
	__u32 id;

	key.addr = *addr;
	*be = NULL;
	id = lb_select(&key, svc, t, now);
	if (!id)
		return 0;
	*be = lb_lookup_backend(id);
	return *be ? id : 0;
}

#endif /* CILIA_LB_H */
