/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* encap.h: VXLAN encapsulation through a collect_md tunnel device.
 *
 * The programs never build outer headers: they set the tunnel key (remote
 * node, VNI) as metadata on the skb and redirect to the node's VXLAN device
 * (tunnel_ifindex, config.h), which encapsulates; on the way in the device
 * decapsulates and hands the key to from_overlay (overlay.c). The VNI
 * carries the security identity of the packet's source (24 bits, like
 * Cilium's VXLAN mode).
 */
#ifndef CILIA_ENCAP_H
#define CILIA_ENCAP_H

#include "common.h"
#include "config.h"
#include "drop_reasons.h"
#include "ipcache.h"

/* The VXLAN UDP port Cilium uses (Linux's default, not IANA's 4789). */
#define TUNNEL_PORT 8472
#define TUNNEL_TTL  64

/* encap_target returns the IPv4 tunnel endpoint (network order) to send a
 * packet for daddr to, or 0 when it must not be encapsulated: native
 * routing (tunnel_ifindex 0), no ipcache entry or no IPv4 tunnel endpoint
 * in it, or the endpoint is this node. */
static __always_inline __be32 encap_target(__u8 family, const union v6addr *daddr)
{
	struct ipcache_entry *e;
	__be32 remote;

	if (!tunnel_ifindex)
		return 0;
	e = ipcache_lookup(family, daddr);
	if (!e || e->tunnel_family != FAMILY_IPV4)
		return 0;
	remote = e->tunnel_endpoint.p32[0];
	if (remote == 0 || remote == node_ipv4)
		return 0;
	return remote;
}

/* encap_and_redirect sets the tunnel key (remote node remote, network
 * order; VNI vni; TTL 64; no outer UDP checksum) and redirects to the
 * tunnel device. Returns TC_ACT_REDIRECT, or -DROP_ERROR_WRITING_TO_PACKET
 * when the key cannot be set. */
static __always_inline int encap_and_redirect(struct __sk_buff *ctx, __be32 remote, __u32 vni)
{
	struct bpf_tunnel_key key = {};

	key.tunnel_id = vni;
	key.remote_ipv4 = bpf_ntohl(remote);
	key.tunnel_ttl = TUNNEL_TTL;
	key.local_ipv4 = bpf_ntohl(node_ipv4);
	if (bpf_skb_set_tunnel_key(ctx, &key, sizeof(key), BPF_F_ZERO_CSUM_TX) < 0)
		return -DROP_ERROR_WRITING_TO_PACKET;
	return bpf_redirect(tunnel_ifindex, 0);
}

#endif /* CILIA_ENCAP_H */
