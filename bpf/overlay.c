// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* overlay.c: the program on the node's VXLAN device (collect_md mode).
 *
 *   from_overlay  tcx ingress of the VXLAN device: packets the device has
 *                 decapsulated, with the tunnel key (remote node, VNI) as
 *                 metadata.
 *
 * The VNI is the security identity of the packet's source, set by the
 * sending node's from_container (encap.h). A packet for a local endpoint is
 * delivered to its veth with that identity in skb->mark (mark.h), so the
 * endpoint's to_container enforces ingress policy against the identity the
 * tunnel carried, not against what the ipcache says of the source address.
 * Anything else goes to the stack. A packet without a tunnel key, or with
 * VNI 0, is dropped.
 *
 * Events: ep_id 0, direction ingress, source identity the VNI, destination
 * identity from the ipcache, tunnel_id/tunnel_endpoint the key received.
 */
#include "lib/common.h"
#include "lib/config.h"
#include "lib/drop_reasons.h"
#include "lib/parse.h"
#include "lib/ipcache.h"
#include "lib/endpoints.h"
#include "lib/events.h"
#include "lib/forward.h"
#include "lib/mark.h"
#include "lib/node.h"

char _license[] SEC("license") = "Dual BSD/GPL";

/* See lxc.c: keeps the BTF of the object reproducible. */
const struct bpf_sock *unused_bpf_sock_btf __attribute__((unused));
const struct bpf_flow_keys *unused_bpf_flow_keys_btf __attribute__((unused));

SEC("tc")
int from_overlay(struct __sk_buff *ctx)
{
	struct event_info info = { .direction = DIR_INGRESS };
	struct bpf_tunnel_key key = {};
	struct endpoint_info *ep;
	struct packet pkt;
	int ret;

	if (bpf_skb_get_tunnel_key(ctx, &key, sizeof(key), 0) < 0)
		return node_drop(ctx, &info, DROP_ERROR_RETRIEVING_TUNNEL_KEY, OBS_FROM_OVERLAY,
				 tunnel_ifindex);
	info.tunnel_family = FAMILY_IPV4;
	info.tunnel_id = key.tunnel_id;
	info.tunnel_endpoint = bpf_htonl(key.remote_ipv4);
	info.src_identity = key.tunnel_id;
	if (key.tunnel_id == 0)
		return node_drop(ctx, &info, DROP_INVALID_IDENTITY, OBS_FROM_OVERLAY, tunnel_ifindex);

	ret = parse_packet(ctx, &pkt);
	if (ret == PARSE_NOT_IP)
		return node_pass(ctx, &info, OBS_TO_STACK, 0, TC_ACT_OK, 0);
	if (ret < 0)
		return node_drop(ctx, &info, -ret, OBS_FROM_OVERLAY, tunnel_ifindex);
	info.dst_identity = ipcache_identity(pkt.tuple.family, &pkt.tuple.daddr);
	if (pkt.ndp)
		return node_pass(ctx, &info, OBS_TO_STACK, 0, TC_ACT_OK, 0);

	ep = endpoint_lookup(pkt.tuple.family, &pkt.tuple.daddr);
	if (ep) {
		info.dst_identity = ep->identity;
		ctx->mark = mark_encode_identity(key.tunnel_id);
		ret = local_deliver(ctx, &pkt, ep);
		if (ret < 0)
			return node_drop(ctx, &info, -ret, OBS_FROM_OVERLAY, tunnel_ifindex);
		return node_pass(ctx, &info, OBS_TO_ENDPOINT, ep->ifindex, ret, 1);
	}
	return node_pass(ctx, &info, OBS_TO_STACK, 0, TC_ACT_OK, 0);
}
