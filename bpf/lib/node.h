/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* node.h: verdicts of the node-level programs (host.c, overlay.c), which
 * serve no endpoint: their events carry ep_id 0, and the direction says
 * whether the packet enters (DIR_INGRESS) or leaves (DIR_EGRESS) the node. */
#ifndef CILIA_NODE_H
#define CILIA_NODE_H

#include "common.h"
#include "config.h"
#include "drop_reasons.h"
#include "events.h"

/* node_drop reports a drop of reason, seen at obs on ifindex, and returns
 * TC_ACT_SHOT. Drops are always reported. */
static __always_inline int node_drop(struct __sk_buff *ctx, struct event_info *info, __u16 reason,
				     __u8 obs, __u32 ifindex)
{
	info->type = EVENT_DROP;
	info->verdict = VERDICT_DROPPED;
	info->reason = reason;
	info->obs_point = obs;
	info->ifindex = ifindex;
	metrics_count(reason, info->direction, ctx->len);
	event_send(ctx, info, 0);
	return TC_ACT_SHOT;
}

/* node_pass reports a forward to obs/ifindex (0: the stack) and returns
 * ret. Traces follow trace_level like lxc.c's; the node programs keep no
 * connection state, so under TRACE_CONNECTION_EVENTS they trace only
 * deliveries to an endpoint and encapsulation changes (state_changed). */
static __always_inline int node_pass(struct __sk_buff *ctx, struct event_info *info, __u8 obs,
				     __u32 ifindex, int ret, int state_changed)
{
	info->type = EVENT_TRACE;
	info->obs_point = obs;
	info->ifindex = ifindex;
	info->verdict = VERDICT_FORWARDED;
	metrics_count(REASON_FORWARDED, info->direction, ctx->len);
	if (trace_level == TRACE_EVERY_PACKET ||
	    (trace_level == TRACE_CONNECTION_EVENTS && state_changed))
		event_send(ctx, info, 0);
	return ret;
}

/* node_is_local_addr reports whether addr is one of the node's own
 * addresses (node_ipv4, node_ipv6). */
static __always_inline int node_is_local_addr(__u8 family, const union v6addr *addr)
{
	union v6addr own;
	int i, any = 0;

	if (family == FAMILY_IPV4)
		return node_ipv4 != 0 && addr->p32[0] == node_ipv4;
	for (i = 0; i < 16; i++) {
		own.addr[i] = node_ipv6[i];
		any |= own.addr[i];
	}
	return any && v6addr_equal(addr, &own);
}

#endif /* CILIA_NODE_H */
