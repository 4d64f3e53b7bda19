/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* policy.h: per-endpoint L3/L4 policy lookup.
 *
 * Each endpoint has its own policy map (cilia_policy, replaced per endpoint
 * at load). A key is (identity, direction, protocol, destination port) with
 * a prefix length that always covers identity and direction, and may stop
 * before the protocol (any protocol), before the port (any port) or inside
 * the port (a port range split into aligned blocks). Identity 0 means "any
 * identity" (an L4-only entry).
 *
 * The map is a hash of masked keys, the prefix length part of the key; the
 * endpoint's policy state lists the prefix lengths in use, and a lookup
 * probes them from the longest down (the first hit is the longest-prefix
 * match). The cost depends on the number of distinct prefix lengths an
 * endpoint uses (usually 1 to 3), not on the number of entries.
 *
 * Precedence, as implemented in policy_lookup():
 *   1. enforcement off for the direction -> allow (no lookup);
 *   2. two longest-prefix lookups: the remote identity, then identity 0
 *      (any);
 *   3. a deny entry from either lookup wins;
 *   4. otherwise the allow with the longer protocol/port prefix wins, and on
 *      a tie the identity-specific entry (it may carry a different proxy
 *      port);
 *   5. no match -> DROP_POLICY_DENIED.
 * Within one identity a lookup only returns the longest prefix, so the
 * control plane must not install an allow entry that is more specific than a
 * deny entry of the same identity covering it (Cilium's MapState rule: the
 * covered allow is turned into a deny or left out).
 */
#ifndef CILIA_POLICY_H
#define CILIA_POLICY_H

#include "common.h"
#include "config.h"
#include "drop_reasons.h"
#include "endpoints.h"

#define POLICY_MAX_ENTRIES 16384
/* Prefix lengths: identity (32) + direction (8) always; then protocol (8),
 * then destination port (16). */
#define POLICY_PREFIX_L3    40
#define POLICY_PREFIX_PROTO 48
#define POLICY_PREFIX_FULL  64

#define POLICY_EGRESS  1
#define POLICY_INGRESS 0

/* struct policy_key is a policy map key; see the comment at the top. Bits
 * beyond prefixlen are zero (protocol 0 below 48, port masked). */
struct policy_key {
	__u32 prefixlen;
	__u32 identity;   /* remote identity; 0 = any */
	__u8 egress;      /* POLICY_EGRESS or POLICY_INGRESS */
	__u8 protocol;    /* IPPROTO_*; 0 = any (only with prefixlen 40) */
	__be16 dport;     /* destination port; ICMP: type */
};

#define POLICY_F_DENY 0x1

/* struct policy_entry is the verdict of one key. */
struct policy_entry {
	__be16 proxy_port;  /* != 0: redirect to the L7 proxy on this port */
	__u8 flags;         /* POLICY_F_* */
	__u8 prefixlen;     /* the key's prefixlen, for precedence across lookups */
	__u32 rule_id;      /* opaque cookie of the rule that produced the entry */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct policy_key);
	__type(value, struct policy_entry);
	__uint(max_entries, POLICY_MAX_ENTRIES);
	/* Memory for the entries an endpoint has, not for 16k per endpoint. */
	__uint(map_flags, BPF_F_NO_PREALLOC);
} cilia_policy SEC(".maps");

#define POLICY_ALLOW    0
#define POLICY_REDIRECT 1
#define POLICY_DROP     2

/* How a verdict was reached, reported in events. */
#define POLICY_MATCH_NONE       0 /* enforcement off, or no match */
#define POLICY_MATCH_L3         1 /* identity-specific entry */
#define POLICY_MATCH_L4         2 /* protocol or port specific entry */
#define POLICY_MATCH_L3L4       (POLICY_MATCH_L3 | POLICY_MATCH_L4)
#define POLICY_MATCH_ANY        4 /* the any-identity, any-port entry */

/* struct policy_verdict is the result of policy_lookup(). */
struct policy_verdict {
	__u8 action;        /* POLICY_ALLOW | POLICY_REDIRECT | POLICY_DROP */
	__u8 match;         /* POLICY_MATCH_* */
	__u16 reason;       /* drop reason when action == POLICY_DROP */
	__be16 proxy_port;
	__u16 pad;
	__u32 rule_id;
};

static __always_inline __u8 policy_match_kind(const struct policy_entry *e, __u32 identity)
{
	__u8 m = 0;

	if (identity)
		m |= POLICY_MATCH_L3;
	if (e->prefixlen > POLICY_PREFIX_L3)
		m |= POLICY_MATCH_L4;
	return m ? m : POLICY_MATCH_ANY;
}

/* policy_lpm returns the longest-prefix entry for key->identity/egress and
 * (proto, dport), probing the prefix lengths in lens (bit i: prefix 40+i)
 * from the longest down, or NULL. key->prefixlen, protocol and dport are
 * overwritten. */
static __always_inline struct policy_entry *policy_lpm(struct policy_key *key, __u32 lens,
							__u8 proto, __be16 dport)
{
	__u16 port = bpf_ntohs(dport);
	int i;

#pragma clang loop unroll(disable)
	for (i = POLICY_PREFIX_FULL - POLICY_PREFIX_L3; i >= 0; i--) {
		struct policy_entry *e;
		__u32 port_bits;

		if (!(lens & (1U << i)))
			continue;
		key->prefixlen = POLICY_PREFIX_L3 + i;
		key->protocol = i >= POLICY_PREFIX_PROTO - POLICY_PREFIX_L3 ? proto : 0;
		port_bits = i > POLICY_PREFIX_PROTO - POLICY_PREFIX_L3 ? i - (POLICY_PREFIX_PROTO - POLICY_PREFIX_L3) : 0;
		key->dport = port_bits ? bpf_htons(port & (__u16)(0xffff << (16 - port_bits))) : 0;
		e = bpf_map_lookup_elem(&cilia_policy, key);
		if (e)
			return e;
	}
	return NULL;
}

/* policy_lookup decides whether this endpoint (endpoint_id) may exchange a
 * new flow with remote identity `identity` in direction dir
 * (DIR_INGRESS/DIR_EGRESS). Returns POLICY_ALLOW, POLICY_REDIRECT
 * (v->proxy_port set) or POLICY_DROP (v->reason is DROP_POLICY_DENY for a
 * deny entry, DROP_POLICY_DENIED when nothing allows, or when v is NULL);
 * v is filled in every case.
 *
 * A global (not inlined) function: the verifier checks it once, not once
 * per call site and caller state, which keeps the probe loop from
 * multiplying the programs' verification cost. It runs for new flows and
 * re-checks only. */
__attribute__((noinline)) int policy_lookup(__u8 dir, __u32 identity, __u8 proto, __be16 dport,
					    struct policy_verdict *v)
{
	struct policy_key key = {
		.identity = identity,
		.egress = dir == DIR_EGRESS ? POLICY_EGRESS : POLICY_INGRESS,
	};
	struct ep_policy_state *st = ep_policy_lookup(endpoint_id);
	__u32 enforced = dir == DIR_EGRESS ? EP_POLICY_EGRESS_ENFORCED : EP_POLICY_INGRESS_ENFORCED;
	struct policy_entry *l3 = NULL, *l4, *win;

	if (!v)
		return POLICY_DROP;
	__builtin_memset(v, 0, sizeof(*v));
	if (!st || !(st->flags & enforced)) {
		v->action = POLICY_ALLOW;
		return POLICY_ALLOW;
	}

	if (identity != 0)
		l3 = policy_lpm(&key, st->prefix_lengths, proto, dport);
	key.identity = 0;
	l4 = policy_lpm(&key, st->prefix_lengths, proto, dport);

	if (l3 && (l3->flags & POLICY_F_DENY)) {
		win = l3;
		goto deny;
	}
	if (l4 && (l4->flags & POLICY_F_DENY)) {
		win = l4;
		identity = 0;
		goto deny;
	}
	if (l3 && (!l4 || l3->prefixlen >= l4->prefixlen)) {
		win = l3;
	} else if (l4) {
		win = l4;
		identity = 0;
	} else {
		v->action = POLICY_DROP;
		v->reason = DROP_POLICY_DENIED;
		return POLICY_DROP;
	}
	v->rule_id = win->rule_id;
	v->match = policy_match_kind(win, identity);
	v->proxy_port = win->proxy_port;
	v->action = win->proxy_port ? POLICY_REDIRECT : POLICY_ALLOW;
	return v->action;

deny:
	v->rule_id = win->rule_id;
	v->match = policy_match_kind(win, identity);
	v->action = POLICY_DROP;
	v->reason = DROP_POLICY_DENY;
	return POLICY_DROP;
}

#endif /* CILIA_POLICY_H */
