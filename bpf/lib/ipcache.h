/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* ipcache.h: IPv4/IPv6 prefix -> security identity (and tunnel endpoint).
 *
 * Two maps make one longest-prefix match: host entries (/32, /128: pods,
 * nodes, single addresses) in a hash, looked up first since nothing is more
 * specific, and every shorter prefix (CIDRs) in an LPM trie. The control
 * plane puts each prefix in exactly one of them. */
#ifndef CILIA_IPCACHE_H
#define CILIA_IPCACHE_H

#include "common.h"

#define IPCACHE_MAX_ENTRIES 512000
/* Bits of the key before the address: family + pad. */
#define IPCACHE_PREFIX_HDR 32

/* struct ipcache_key is an LPM trie key: prefixlen counts the 32 bits of
 * family/pad plus the address prefix. */
struct ipcache_key {
	__u32 prefixlen;
	__u8 family;      /* FAMILY_IPV4 | FAMILY_IPV6 */
	__u8 pad[3];
	union v6addr addr; /* IPv4 in addr[0..3] */
};

/* struct ipcache_entry is what an address resolves to. */
struct ipcache_entry {
	__u32 identity;
	__u8 tunnel_family;   /* 0: no tunnel endpoint (local or not routed by us) */
	__u8 flags;
	__u16 pad;
	union v6addr tunnel_endpoint;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct addr_key);
	__type(value, struct ipcache_entry);
	__uint(max_entries, IPCACHE_MAX_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} cilia_ipc_hosts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct ipcache_key);
	__type(value, struct ipcache_entry);
	__uint(max_entries, IPCACHE_MAX_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} cilia_ipcache SEC(".maps");

/* ipcache_lookup returns the longest-prefix entry for addr, or NULL. */
static __always_inline struct ipcache_entry *ipcache_lookup(__u8 family, const union v6addr *addr)
{
	struct addr_key host = { .family = family };
	struct ipcache_key key = {
		.prefixlen = IPCACHE_PREFIX_HDR + (family == FAMILY_IPV4 ? 32 : 128),
		.family = family,
	};
	struct ipcache_entry *e;

	host.addr = *addr;
	e = bpf_map_lookup_elem(&cilia_ipc_hosts, &host);
	if (e)
		return e;
	key.addr = *addr;
	return bpf_map_lookup_elem(&cilia_ipcache, &key);
}

/* ipcache_identity returns the identity of addr: its ipcache entry's, or
 * world when no prefix covers it. */
static __always_inline __u32 ipcache_identity(__u8 family, const union v6addr *addr)
{
	struct ipcache_entry *e = ipcache_lookup(family, addr);

	return e ? e->identity : IDENTITY_WORLD;
}

#endif /* CILIA_IPCACHE_H */
