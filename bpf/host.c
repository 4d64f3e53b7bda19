// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* host.c: the programs on the node's uplink (the underlay device).
 *
 *   from_netdev  tcx ingress: packets arriving from the network. VXLAN to
 *                the node's own address goes to the stack, where the VXLAN
 *                device decapsulates it (and from_overlay runs next).
 *                Replies of connections this node load-balanced in SNAT
 *                mode are translated back (below). A packet to a frontend
 *                reachable from outside is load-balanced (below). A packet
 *                for a local endpoint is delivered to its veth with the
 *                source's identity from the ipcache (world, remote-node, a
 *                CIDR identity, or a remote pod's in native routing) in
 *                skb->mark, so to_container enforces against it. Anything
 *                else goes to the stack (TO_HOST when addressed to the node).
 *                Non-IP (ARP) and neighbour discovery pass untouched.
 *   to_netdev    tcx egress: packets leaving the node; replies of a local
 *                backend to an outside client of a load-balanced connection
 *                get the frontend's address:port as source (snat.h); the
 *                rest is only traced.
 *
 * Load balancing from outside (NodePort, externalIPs, LoadBalancer IPs: the
 * frontend's LB_SCOPE_EXTERNAL entry, lb.h). The backend of a new
 * connection is chosen by lb_select_backend and pinned by a conntrack
 * service entry (ct.h, client -> frontend). No backend at all: the client
 * gets a rejection (reject.h: TCP RST, ICMP port unreachable) back out of
 * the uplink, and a DROP_NO_SERVICE event is emitted, as Kubernetes
 * expects; externalTrafficPolicy Local without a backend on this node:
 * dropped with DROP_NO_SERVICE. Then the destination becomes the backend
 * (nat.h) and
 *   - a backend on this node: delivered to its veth as above, the client's
 *     address kept (its identity in skb->mark); to_netdev translates the
 *     replies back;
 *   - a remote backend, DSR mode (LB_F_DSR): the frontend is written into
 *     the packet (dsr.h: IPv4 option, IPv6 Destination Options), the
 *     client's address kept, and the packet is routed out of the uplink,
 *     in tunnel mode too: the backend's node sees the client's address and
 *     gives it the client's identity from its ipcache, which a VNI could
 *     not carry (CIDR identities are node-local). The backend's node
 *     translates the replies (lxc.c), which go straight to the client.
 *     A packet without room for the option goes the SNAT way;
 *   - a remote backend, SNAT mode: the source becomes this node's address
 *     (the client's port kept unless taken, snat.h), then tunnel mode:
 *     encapsulated to the backend's node with VNI remote-node (6); native
 *     routing: routed out of the uplink. The replies come back to this
 *     node's uplink, are translated back (destination the client, source
 *     the frontend) and routed out of the uplink to the client.
 * "Routed out of the uplink": TTL (hop limit) decremented, then
 * bpf_redirect_neigh to the uplink, which fills in the next hop's MACs from
 * the node's routes and neighbours; the trace is TO_NETWORK on the uplink.
 * Later fragments (no ports) and ICMP errors are not load-balanced.
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
#include "lib/ct.h"
#include "lib/lb.h"
#include "lib/nat.h"
#include "lib/dsr.h"
#include "lib/snat.h"
#include "lib/reject.h"

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

/* Reserved identity of other nodes of the cluster (Cilium's number): the
 * VNI of SNATed load-balanced packets, whose source is this node. */
#define IDENTITY_REMOTE_NODE 6

/* NP_CONTINUE: the load-balancing step did not take the packet. */
#define NP_CONTINUE -1

/* node_addr writes the node's own address of family into addr. Returns 1,
 * or 0 when the node has none of that family. */
static __always_inline int node_addr(__u8 family, union v6addr *addr)
{
	int i, any = 0;

	__builtin_memset(addr, 0, sizeof(*addr));
	if (family == FAMILY_IPV4) {
		addr->p32[0] = node_ipv4;
		return node_ipv4 != 0;
	}
	for (i = 0; i < 16; i++) {
		addr->addr[i] = node_ipv6[i];
		any |= addr->addr[i];
	}
	return any != 0;
}

/* to_network routes pkt out of the uplink: decrements the TTL (hop limit)
 * and redirects with bpf_redirect_neigh, which fills in the MACs of the
 * next hop towards the destination. Returns TC_ACT_REDIRECT, or a negative
 * drop reason (DROP_TTL_EXCEEDED, DROP_INVALID_PACKET). */
static __always_inline int to_network(struct __sk_buff *ctx, const struct packet *pkt)
{
	int ret = ttl_decrement(ctx, pkt);

	if (ret < 0)
		return ret;
	return bpf_redirect_neigh(uplink_ifindex, NULL, 0, 0);
}

/* service_reply_seen accounts a reply of the load-balanced connection
 * client -> frontend (fe, as the reply now has it: frontend -> client) to
 * the connection's conntrack service entry, so that the entry lives as long
 * as a connection with replies does. */
static __always_inline void service_reply_seen(const struct packet *pkt, __u32 len, __u64 now)
{
	struct tuple key;
	struct ct_entry *e;

	ct_reverse(&key, &pkt->tuple, DIR_SERVICE);
	e = ct_find_alive(&key, now);
	if (e)
		ct_account(e, pkt, 1, len, now);
}

/* revnat_reply translates a reply of a load-balanced connection whose
 * snat.h entry is e: destination back to the client (a no-op for a local
 * backend, which saw the client's address), source to the frontend.
 * Returns 0, or a negative drop reason (DROP_NO_SERVICE: the frontend is
 * gone). */
static __always_inline int revnat_reply(struct __sk_buff *ctx, struct packet *pkt,
					const struct snat_entry *e, __u64 now)
{
	/* e and fe are map values: used in place, no copies on the stack. */
	struct lb_revnat *fe = lb_lookup_revnat(e->rev_nat_id);
	int ret;

	if (!fe)
		return -DROP_NO_SERVICE;
	ret = nat_rewrite_dst(ctx, pkt, &e->addr, e->port);
	if (ret < 0)
		return ret;
	ret = nat_rewrite_src(ctx, pkt, &fe->addr, fe->port);
	if (ret < 0)
		return ret;
	service_reply_seen(pkt, ctx->len, now);
	return 0;
}

/* nodeport_reply handles a reply, arriving from the network, of a
 * connection this node load-balanced in SNAT mode (backend -> node:port):
 * translated back and routed out of the uplink to the client. Returns
 * NP_CONTINUE when pkt is no such reply, else the verdict (TC_ACT_REDIRECT
 * or TC_ACT_SHOT, with its event). */
static __always_inline int nodeport_reply(struct __sk_buff *ctx, struct packet *pkt,
					  struct event_info *info)
{
	__u64 now = now_jiffies();
	struct snat_entry *e = snat_in_lookup(&pkt->tuple, now);
	int ret;

	if (!e)
		return NP_CONTINUE;
	ret = revnat_reply(ctx, pkt, e, now);
	if (ret < 0)
		return node_drop(ctx, info, -ret, OBS_FROM_NETWORK, uplink_ifindex);
	info->dst_identity = ipcache_identity(pkt->tuple.family, &pkt->tuple.daddr);
	ret = to_network(ctx, pkt);
	if (ret < 0)
		return node_drop(ctx, info, -ret, OBS_FROM_NETWORK, uplink_ifindex);
	return node_pass(ctx, info, OBS_TO_NETWORK, uplink_ifindex, ret, 0);
}

/* nodeport_reject answers a connection from the network to a frontend
 * without any backend as Kubernetes expects: the drop event
 * DROP_NO_SERVICE for pkt, then the packet rewritten into its rejection
 * (reject.h: a TCP RST, an ICMP port unreachable; Ethernet addresses
 * swapped, so it goes back to the hop it came from) and sent back out of
 * the uplink. Returns TC_ACT_REDIRECT, or TC_ACT_SHOT when the rejection
 * cannot be built. */
static __always_inline int nodeport_reject(struct __sk_buff *ctx, const struct packet *pkt,
					   struct event_info *info)
{
	node_drop(ctx, info, DROP_NO_SERVICE, OBS_FROM_NETWORK, uplink_ifindex);
	if (reject_packet(ctx, pkt) < 0)
		return TC_ACT_SHOT;
	return bpf_redirect(uplink_ifindex, 0);
}

/* nodeport_lb load-balances pkt, a packet from the network to a frontend
 * whose external service entry is svc (see the header comment). Returns
 * the verdict: TC_ACT_REDIRECT (to a local endpoint, the VXLAN device or
 * the uplink; a rejection back out of the uplink, with a DROP_NO_SERVICE
 * event, when the frontend has no backend at all) or TC_ACT_SHOT
 * (DROP_NO_SERVICE when an externalTrafficPolicy Local frontend has no
 * local backend), with its event; under TRACE_CONNECTION_EVENTS only the
 * packets that chose a backend are traced. */
static __always_inline int nodeport_lb(struct __sk_buff *ctx, struct packet *pkt,
				       struct event_info *info, const struct lb_service *svc)
{
	__u32 rev = svc->rev_nat_id, len = ctx->len, id = 0;
	__u8 flags = svc->flags;
	int chosen = 0; /* a backend was chosen: a new connection (for traces) */
	__u64 now = now_jiffies();
	struct lb_backend *be = NULL; /* map values: no copies on the stack */
	struct lb_revnat *fe;
	struct endpoint_info *ep;
	struct ct_entry *ce;
	union v6addr naddr;
	struct tuple key;
	__be16 nport;
	__be32 remote;
	int ret;

	ct_service_key(&key, pkt);
	ce = ct_lookup_service(&key, pkt, len, now);
	if (ce) {
		id = ce->backend_id;
		be = lb_lookup_backend(id);
	}
	if (!be) {
		/* New, or its backend is gone: choose (again). */
		id = lb_select_backend(pkt->tuple.family, &pkt->tuple.daddr, pkt->tuple.dport,
				       pkt->tuple.nexthdr, LB_SCOPE_EXTERNAL, svc, &pkt->tuple, now, &be);
		if (!id || !be) {
			/* No backend at all: rejected. externalTrafficPolicy
			 * Local without a local one: dropped, as kube-proxy does. */
			if (!(flags & LB_F_LOCAL) && !svc->count && !svc->terminating)
				return nodeport_reject(ctx, pkt, info);
			return node_drop(ctx, info, DROP_NO_SERVICE, OBS_FROM_NETWORK, uplink_ifindex);
		}
		chosen = 1;
		if (ce) {
			ce->backend_id = id;
			ce->rev_nat_id = rev;
		} else if (!ct_create_service(&key, pkt, len, now, id, rev)) {
			return node_drop(ctx, info, DROP_CT_MAP_INSERTION_FAILED, OBS_FROM_NETWORK,
					 uplink_ifindex);
		}
	}

	ret = nat_rewrite_dst(ctx, pkt, &be->addr, be->port);
	if (ret < 0)
		return node_drop(ctx, info, -ret, OBS_FROM_NETWORK, uplink_ifindex);
	/* From here on pkt->tuple.daddr is the backend. */
	info->dst_identity = ipcache_identity(pkt->tuple.family, &pkt->tuple.daddr);

	ep = endpoint_lookup(pkt->tuple.family, &pkt->tuple.daddr);
	if (ep) {
		ret = snat_local_record(&pkt->tuple, rev, now);
		if (ret < 0)
			return node_drop(ctx, info, -ret, OBS_FROM_NETWORK, uplink_ifindex);
		info->dst_identity = ep->identity;
		if (info->src_identity)
			ctx->mark = mark_encode_identity(info->src_identity);
		ret = local_deliver(ctx, pkt, ep);
		if (ret < 0)
			return node_drop(ctx, info, -ret, OBS_FROM_NETWORK, uplink_ifindex);
		return node_pass(ctx, info, OBS_TO_ENDPOINT, ep->ifindex, ret, 1);
	}

	if (flags & LB_F_DSR) {
		fe = lb_lookup_revnat(rev);
		if (!fe)
			return node_drop(ctx, info, DROP_NO_SERVICE, OBS_FROM_NETWORK, uplink_ifindex);
		ret = dsr_insert(ctx, pkt, &fe->addr, fe->port);
		if (ret < 0)
			return node_drop(ctx, info, -ret, OBS_FROM_NETWORK, uplink_ifindex);
		if (ret == 0) {
			ret = to_network(ctx, pkt);
			if (ret < 0)
				return node_drop(ctx, info, -ret, OBS_FROM_NETWORK, uplink_ifindex);
			return node_pass(ctx, info, OBS_TO_NETWORK, uplink_ifindex, ret, chosen);
		}
		/* DSR_NO_ROOM: forwarded with SNAT. */
	}

	remote = encap_target(pkt->tuple.family, &pkt->tuple.daddr);
	if (!node_addr(pkt->tuple.family, &naddr))
		return node_drop(ctx, info, DROP_NO_SERVICE, OBS_FROM_NETWORK, uplink_ifindex);
	ret = snat_out_get(&pkt->tuple, &naddr, rev, now, &nport);
	if (ret < 0)
		return node_drop(ctx, info, -ret, OBS_FROM_NETWORK, uplink_ifindex);
	ret = nat_rewrite_src(ctx, pkt, &naddr, nport);
	if (ret < 0)
		return node_drop(ctx, info, -ret, OBS_FROM_NETWORK, uplink_ifindex);

	if (remote) {
		ret = ttl_decrement(ctx, pkt);
		if (ret < 0)
			return node_drop(ctx, info, -ret, OBS_FROM_NETWORK, uplink_ifindex);
		info->tunnel_family = FAMILY_IPV4;
		info->tunnel_id = IDENTITY_REMOTE_NODE;
		info->tunnel_endpoint = remote;
		ret = encap_and_redirect(ctx, remote, IDENTITY_REMOTE_NODE);
		if (ret < 0)
			return node_drop(ctx, info, -ret, OBS_FROM_NETWORK, uplink_ifindex);
		return node_pass(ctx, info, OBS_TO_OVERLAY, tunnel_ifindex, ret, chosen);
	}
	ret = to_network(ctx, pkt);
	if (ret < 0)
		return node_drop(ctx, info, -ret, OBS_FROM_NETWORK, uplink_ifindex);
	return node_pass(ctx, info, OBS_TO_NETWORK, uplink_ifindex, ret, chosen);
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

	if (!pkt.icmp_error && pkt.frag != FRAG_LATER) {
		struct lb_service *svc;

		/* Replies first: a client's port kept by SNAT may equal a
		 * nodePort. */
		ret = nodeport_reply(ctx, &pkt, &info);
		if (ret != NP_CONTINUE)
			return ret;
		svc = lb_lookup_service(pkt.tuple.family, &pkt.tuple.daddr, pkt.tuple.dport,
					pkt.tuple.nexthdr, LB_SCOPE_EXTERNAL);
		if (svc)
			return nodeport_lb(ctx, &pkt, &info, svc);
	}

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
	if (!pkt.icmp_error && pkt.frag != FRAG_LATER && !pkt.ndp) {
		/* A local backend's reply to an outside client. */
		__u64 now = now_jiffies();
		struct snat_entry *e = snat_in_lookup(&pkt.tuple, now);

		if (e) {
			ret = revnat_reply(ctx, &pkt, e, now);
			if (ret < 0)
				return node_drop(ctx, &info, -ret, OBS_TO_NETWORK, uplink_ifindex);
		}
	}
	return node_pass(ctx, &info, OBS_TO_NETWORK, uplink_ifindex, TC_ACT_OK, 0);
}
