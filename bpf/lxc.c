// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* lxc.c: the programs on the host side of an endpoint's veth.
 *
 *   from_container  tc ingress of the host-side veth: packets the pod sends
 *                   (egress policy of the endpoint);
 *   to_container    tc egress of the host-side veth: packets to the pod
 *                   (ingress policy of the endpoint).
 *
 * Pipeline of both: parse -> (from_container: source check) -> fragments ->
 * conntrack -> new flows: remote identity from the ipcache (to_container:
 * from skb->mark when the previous program put one there, mark.h), policy,
 * conntrack entry; tracked flows: the entry's identity, and a policy
 * re-check after a policy change -> forward (locally, to the stack, or, in
 * tunnel mode, encapsulated to the remote node's tunnel endpoint), redirect
 * to the proxy, or drop. Every verdict emits an event
 * (traces as trace_level says, drops always) and is counted in metrics.
 */
#include "lib/common.h"
#include "lib/config.h"
#include "lib/drop_reasons.h"
#include "lib/parse.h"
#include "lib/frag.h"
#include "lib/ipcache.h"
#include "lib/endpoints.h"
#include "lib/policy.h"
#include "lib/ct.h"
#include "lib/events.h"
#include "lib/forward.h"
#include "lib/mark.h"
#include "lib/encap.h"

char _license[] SEC("license") = "Dual BSD/GPL";

/* struct __sk_buff points to these two. Left as forward declarations,
 * clang emits them in an order that depends on the build directory, and the
 * committed object would not be reproducible; defined in BTF, they are not
 * forward declarations. */
const struct bpf_sock *unused_bpf_sock_btf __attribute__((unused));
const struct bpf_flow_keys *unused_bpf_flow_keys_btf __attribute__((unused));

/* struct verdict_ctx carries what is known about the packet to the event. */
struct verdict_ctx {
	struct event_info info;
	__u32 len;
};

static __always_inline void fill_identities(struct verdict_ctx *vc, __u8 dir, __u32 remote)
{
	if (dir == DIR_EGRESS) {
		vc->info.src_identity = endpoint_identity;
		vc->info.dst_identity = remote;
	} else {
		vc->info.src_identity = remote;
		vc->info.dst_identity = endpoint_identity;
	}
}

/* drop_packet reports a drop of `reason` and returns TC_ACT_SHOT. */
static __always_inline int drop_packet(struct __sk_buff *ctx, struct verdict_ctx *vc, __u16 reason)
{
	vc->info.type = EVENT_DROP;
	vc->info.verdict = VERDICT_DROPPED;
	vc->info.reason = reason;
	vc->info.obs_point = vc->info.direction == DIR_EGRESS ? OBS_FROM_ENDPOINT : OBS_TO_ENDPOINT;
	vc->info.ifindex = endpoint_ifindex;
	metrics_count(reason, vc->info.direction, vc->len);
	event_send(ctx, &vc->info, endpoint_id);
	return TC_ACT_SHOT;
}

/* pass_packet reports a forward to obs/ifindex and returns ret. Traces are
 * emitted as trace_level says: every packet, or only for new connections
 * and state changes. */
static __always_inline int pass_packet(struct __sk_buff *ctx, struct verdict_ctx *vc, __u8 obs,
				       __u32 ifindex, int ret, int state_changed)
{
	vc->info.type = EVENT_TRACE;
	vc->info.obs_point = obs;
	vc->info.ifindex = ifindex;
	if (!vc->info.verdict)
		vc->info.verdict = VERDICT_FORWARDED;
	metrics_count(vc->info.reason, vc->info.direction, vc->len);
	if (trace_level == TRACE_EVERY_PACKET ||
	    (trace_level == TRACE_CONNECTION_EVENTS && state_changed))
		event_send(ctx, &vc->info, endpoint_id);
	return ret;
}

/* source_is_endpoint returns 1 when the packet's source address is the
 * endpoint's own. */
static __always_inline int source_is_endpoint(const struct packet *pkt)
{
	if (pkt->tuple.family == FAMILY_IPV4)
		return endpoint_ipv4 != 0 && pkt->tuple.saddr.p32[0] == endpoint_ipv4;
	{
		union v6addr own;
		int i, any = 0;

		for (i = 0; i < 16; i++) {
			own.addr[i] = endpoint_ipv6[i];
			any |= own.addr[i];
		}
		return any && v6addr_equal(&pkt->tuple.saddr, &own);
	}
}

/* recheck_policy re-evaluates a tracked connection whose verdict was taken
 * under an older policy revision of this endpoint, in the direction the
 * connection was created in, for the remote identity freshly resolved from
 * the ipcache, or the one the packet's mark carries (mark_id, 0 for none:
 * from the overlay, the tunnel's identity of the remote side). Returns 0
 * when it is still allowed (the entry is updated), or a negative drop
 * reason (the entry is deleted). */
static __always_inline int recheck_policy(struct ct_result *ct, struct ep_policy_state *st,
					  struct verdict_ctx *vc, __u32 mark_id)
{
	struct ct_entry *e = ct->entry;
	const struct tuple *key = ct->key;
	const union v6addr *remote = key->dir == DIR_EGRESS ? &key->daddr : &key->saddr;
	__u32 identity = mark_id ? mark_id : ipcache_identity(key->family, remote);
	struct policy_verdict pv;

	fill_identities(vc, vc->info.direction, identity);
	if (policy_lookup(key->dir, identity, key->nexthdr, e->policy_port, &pv) == POLICY_DROP) {
		vc->info.rule_id = pv.rule_id;
		vc->info.policy_match = pv.match;
		ct_map_delete(key);
		return -(int)pv.reason;
	}
	e->policy_revision = st->revision;
	e->remote_identity = identity;
	e->rule_id = pv.rule_id;
	e->proxy_port = pv.proxy_port;
	return 0;
}

/* handle_packet runs the pipeline for a packet travelling in dir relative
 * to the endpoint. Returns TC_ACT_OK (to the stack or into the pod),
 * TC_ACT_REDIRECT (to a local endpoint) or TC_ACT_SHOT. */
static __always_inline int handle_packet(struct __sk_buff *ctx, __u8 dir)
{
	struct verdict_ctx vc = { .len = ctx->len };
	struct packet pkt;       /* zeroed by parse_packet */
	struct ct_result ct;     /* filled by ct_lookup */
	struct policy_verdict pv = {};
	struct ep_policy_state *st;
	struct endpoint_info *peer = NULL; /* the local endpoint at the peer address */
	int peer_known = 0;
	__u32 mark_id = 0;       /* source identity handed over in skb->mark */
	__u64 now;
	int ret, changed = 0;

	vc.info.direction = dir;
	if (dir == DIR_INGRESS && mark_has_identity(ctx->mark)) {
		mark_id = mark_identity(ctx->mark);
		ctx->mark = 0;
	}
	fill_identities(&vc, dir, IDENTITY_UNKNOWN);

	ret = parse_packet(ctx, &pkt);
	if (ret == PARSE_NOT_IP)
		return pass_packet(ctx, &vc, dir == DIR_EGRESS ? OBS_TO_STACK : OBS_TO_ENDPOINT,
				   dir == DIR_EGRESS ? 0 : endpoint_ifindex, TC_ACT_OK, 0);
	if (ret < 0)
		return drop_packet(ctx, &vc, -ret);
	if (pkt.ndp)
		return pass_packet(ctx, &vc, dir == DIR_EGRESS ? OBS_TO_STACK : OBS_TO_ENDPOINT,
				   dir == DIR_EGRESS ? 0 : endpoint_ifindex, TC_ACT_OK, 0);
	if (dir == DIR_EGRESS && !source_is_endpoint(&pkt))
		return drop_packet(ctx, &vc, DROP_INVALID_SOURCE_IP);

	ret = frag_track(&pkt);
	if (ret < 0)
		return drop_packet(ctx, &vc, -ret);

	st = ep_policy_lookup(endpoint_id);
	if (!st)
		return drop_packet(ctx, &vc, DROP_POLICY_DENIED);

	now = now_jiffies();
	vc.info.ct_state = ct_lookup(&pkt, dir, vc.len, now, &ct);
	if (ct.entry) {
		/* Tracked: the fast path needs no ipcache lookup, the entry
		 * knows the peer's identity. */
		changed = ct.changed;
		fill_identities(&vc, dir, ct.entry->remote_identity);
		if (ct.entry->policy_revision != st->revision) {
			ret = recheck_policy(&ct, st, &vc, mark_id);
			if (ret < 0)
				return drop_packet(ctx, &vc, -ret);
		}
		vc.info.rule_id = ct.entry->rule_id;
		if (ct.state == CT_ESTABLISHED)
			pv.proxy_port = ct.entry->proxy_port;
	} else {
		const union v6addr *remote = dir == DIR_EGRESS ? &pkt.tuple.daddr : &pkt.tuple.saddr;
		/* From the overlay or the network, the program before us
		 * knew the source's identity better than its address does. */
		__u32 remote_id = mark_id ? mark_id : ipcache_identity(pkt.tuple.family, remote);

		changed = 1;
		fill_identities(&vc, dir, remote_id);
		policy_lookup(dir, remote_id, pkt.tuple.nexthdr, pkt.policy_port, &pv);
		vc.info.rule_id = pv.rule_id;
		vc.info.policy_match = pv.match;
		if (pv.action == POLICY_DROP)
			return drop_packet(ctx, &vc, pv.reason);
		/* An ICMP error allowed on its own is no connection to track. */
		if (!pkt.icmp_error) {
			peer = endpoint_lookup(pkt.tuple.family, remote);
			peer_known = 1;
			ret = ct_create(ct.key, &pkt, vc.len, now, remote_id, st->revision,
					pv.rule_id, pv.proxy_port, peer ? 0 : CT_F_PEER_REMOTE);
			if (ret < 0)
				return drop_packet(ctx, &vc, -ret);
		}
	}

	if (pv.proxy_port) {
		ctx->mark = MARK_MAGIC_TO_PROXY | ((__u32)bpf_ntohs(pv.proxy_port) << 16);
		vc.info.verdict = VERDICT_REDIRECTED;
		vc.info.reason = REASON_PUNT_TO_PROXY;
		vc.info.proxy_port = pv.proxy_port;
		return pass_packet(ctx, &vc, OBS_TO_PROXY, 0, TC_ACT_OK, changed);
	}

	if (dir == DIR_EGRESS) {
		/* A connection whose peer was no local endpoint when it was
		 * created goes to the stack without a lookup: should the address
		 * become a local endpoint later, the node's route for it still
		 * delivers through that endpoint's to_container. */
		if (!peer_known && !(ct.entry && (ct.entry->flags & CT_F_PEER_REMOTE)))
			peer = endpoint_lookup(pkt.tuple.family, &pkt.tuple.daddr);
		if (peer) {
			ret = local_deliver(ctx, &pkt, peer);
			if (ret < 0)
				return drop_packet(ctx, &vc, -ret);
			return pass_packet(ctx, &vc, OBS_TO_ENDPOINT, peer->ifindex, ret, changed);
		}
		/* Tunnel mode: a destination behind another node's tunnel
		 * endpoint is encapsulated with our identity as the VNI; new
		 * and tracked connections alike (replies too). */
		{
			__be32 remote = encap_target(pkt.tuple.family, &pkt.tuple.daddr);

			if (remote) {
				vc.info.tunnel_family = FAMILY_IPV4;
				vc.info.tunnel_id = endpoint_identity;
				vc.info.tunnel_endpoint = remote;
				ret = encap_and_redirect(ctx, remote, endpoint_identity);
				if (ret < 0)
					return drop_packet(ctx, &vc, -ret);
				return pass_packet(ctx, &vc, OBS_TO_OVERLAY, tunnel_ifindex, ret, changed);
			}
		}
		return pass_packet(ctx, &vc, OBS_TO_STACK, 0, TC_ACT_OK, changed);
	}
	return pass_packet(ctx, &vc, OBS_TO_ENDPOINT, endpoint_ifindex, TC_ACT_OK, changed);
}

SEC("tc")
int from_container(struct __sk_buff *ctx)
{
	return handle_packet(ctx, DIR_EGRESS);
}

SEC("tc")
int to_container(struct __sk_buff *ctx)
{
	return handle_packet(ctx, DIR_INGRESS);
}
