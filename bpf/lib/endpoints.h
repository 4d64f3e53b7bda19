/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* endpoints.h: the node's local endpoints (IP -> endpoint), and each
 * endpoint's policy state (enforcement per direction, policy revision). */
#ifndef CILIA_ENDPOINTS_H
#define CILIA_ENDPOINTS_H

#include "common.h"

#define ENDPOINTS_MAX_ENTRIES 65535
#define ENDPOINT_ID_MAX 65536

/* struct endpoint_info is a local endpoint as forwarding needs it. */
struct endpoint_info {
	__u32 ifindex;        /* host side of the endpoint's veth */
	__u16 ep_id;
	__u16 flags;
	__u32 identity;
	__u8 mac[6];          /* the endpoint's own MAC */
	__u8 node_mac[6];     /* MAC of the host side of its veth */
};

#define EP_POLICY_INGRESS_ENFORCED 0x1
#define EP_POLICY_EGRESS_ENFORCED  0x2

/* struct ep_policy_state is indexed by endpoint id. A direction without the
 * enforced flag allows everything (no policy selects the endpoint). The
 * revision is bumped by the agent after every change of the endpoint's
 * policy entries; conntrack re-checks connections created under an older
 * revision. prefix_lengths has bit i set when the endpoint's policy map
 * holds a key of prefix length 40+i (policy.h probes only those). */
struct ep_policy_state {
	__u32 revision;
	__u32 flags;
	__u32 prefix_lengths;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct addr_key);
	__type(value, struct endpoint_info);
	__uint(max_entries, ENDPOINTS_MAX_ENTRIES);
} cilia_endpoints SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct ep_policy_state);
	__uint(max_entries, ENDPOINT_ID_MAX);
} cilia_ep_policy SEC(".maps");

/* endpoint_lookup returns the local endpoint owning addr, or NULL. */
static __always_inline struct endpoint_info *endpoint_lookup(__u8 family, const union v6addr *addr)
{
	struct addr_key key = { .family = family };

	key.addr = *addr;
	return bpf_map_lookup_elem(&cilia_endpoints, &key);
}

/* ep_policy_lookup returns the policy state of endpoint id; never NULL for
 * ids below ENDPOINT_ID_MAX (array map), NULL otherwise. */
static __always_inline struct ep_policy_state *ep_policy_lookup(__u16 id)
{
	__u32 key = id;

	return bpf_map_lookup_elem(&cilia_ep_policy, &key);
}

#endif /* CILIA_ENDPOINTS_H */
