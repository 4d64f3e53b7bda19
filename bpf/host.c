// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* host.c: the programs on the node's uplink (the underlay device).
 *
 *   from_netdev  tcx ingress: packets arriving from the network. VXLAN to
 *                the node's own address goes to the stack, where the VXLAN
 *                device decapsulates it (and from_overlay runs next).
 *                A packet for a local endpoint is delivered to its veth with
 *                the source's identity from the ipcache (world, remote-node,
 *                a CIDR identity, or a remote pod's in native routing) in
 *                skb->mark, so to_container enforces against it. Anything
 *                else goes to the stack (TO_HOST when addressed to the node).
 *                Non-IP (ARP) and neighbour discovery pass untouched.
 *   to_netdev    tcx egress: packets leaving the node; traced, never
 *                changed (NodePort/SNAT come later).
 *
 * Events: ep_id 0; direction ingress (from_netdev) or egress (to_netdev).
 * Malformed packets are dropped with the reasons lxc.c uses (parse.h).
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
#include "lib/encap.h"
#include "lib/node.h"

char _license[] SEC("license") = "Dual BSD/GPL";

/* See lxc.c: keeps the BTF of the object reproducible. */
const struct bpf_sock *unused_bpf_sock_btf __attribute__((unused));
const struct bpf_flow_keys *unused_bpf_flow_keys_btf __attribute__((unused));

/* is_tunnel_traffic reports whether pkt is VXLAN for this node. */
static __always_inline int is_tunnel_traffic(const struct packet *pkt)
{
	return pkt->tuple.family == FAMILY_IPV4 && pkt->tuple.nexthdr == IPPROTO_UDP &&
	       pkt->frag != FRAG_LATER && pkt->tuple.dport == bpf_htons(TUNNEL_PORT) &&
	       node_ipv4 != 0 && pkt->tuple.daddr.p32[0] == node_ipv4;
}

SEC("tc")
int from_netdev(struct __sk_buff *ctx)
{
	struct event_info info = { .direction = DIR_INGRESS };
	struct endpoint_info *ep;
	struct packet pkt;
	int ret;

	ret = parse_packet(ctx, &pkt);
	if (ret == PARSE_NOT_IP)
		return node_pass(ctx, &info, OBS_TO_STACK, 0, TC_ACT_OK, 0);
	if (ret < 0)
		return node_drop(ctx, &info, -ret, OBS_FROM_NETWORK, uplink_ifindex);
	info.src_identity = ipcache_identity(pkt.tuple.family, &pkt.tuple.saddr);
	info.dst_identity = ipcache_identity(pkt.tuple.family, &pkt.tuple.daddr);
	if (pkt.ndp)
		return node_pass(ctx, &info, OBS_TO_STACK, 0, TC_ACT_OK, 0);
	if (is_tunnel_traffic(&pkt))
		return node_pass(ctx, &info, OBS_TO_STACK, 0, TC_ACT_OK, 0);

	ep = endpoint_lookup(pkt.tuple.family, &pkt.tuple.daddr);
	if (ep) {
		info.dst_identity = ep->identity;
		if (info.src_identity)
			ctx->mark = mark_encode_identity(info.src_identity);
		ret = local_deliver(ctx, &pkt, ep);
		if (ret < 0)
			return node_drop(ctx, &info, -ret, OBS_FROM_NETWORK, uplink_ifindex);
		return node_pass(ctx, &info, OBS_TO_ENDPOINT, ep->ifindex, ret, 1);
	}
	if (node_is_local_addr(pkt.tuple.family, &pkt.tuple.daddr))
		return node_pass(ctx, &info, OBS_TO_HOST, 0, TC_ACT_OK, 0);
	return node_pass(ctx, &info, OBS_TO_STACK, 0, TC_ACT_OK, 0);
}

SEC("tc")
int to_netdev(struct __sk_buff *ctx)
{
	struct event_info info = { .direction = DIR_EGRESS };
	struct packet pkt;
	int ret;

	ret = parse_packet(ctx, &pkt);
	if (ret == PARSE_NOT_IP)
		return node_pass(ctx, &info, OBS_TO_NETWORK, uplink_ifindex, TC_ACT_OK, 0);
	if (ret < 0)
		return node_drop(ctx, &info, -ret, OBS_TO_NETWORK, uplink_ifindex);
	info.src_identity = ipcache_identity(pkt.tuple.family, &pkt.tuple.saddr);
	info.dst_identity = ipcache_identity(pkt.tuple.family, &pkt.tuple.daddr);
	return node_pass(ctx, &info, OBS_TO_NETWORK, uplink_ifindex, TC_ACT_OK, 0);
}
