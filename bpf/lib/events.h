/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* events.h: trace and drop events on a ring buffer, and per-CPU metrics.
 *
 * Numbers are the ones of Hubble's flow API, so the Go side maps them onto
 * flow.Flow without a table: observation points are
 * flow.TraceObservationPoint, verdicts are flow.Verdict, drop reasons are
 * flow.DropReason (drop_reasons.h).
 */
#ifndef CILIA_EVENTS_H
#define CILIA_EVENTS_H

#include "common.h"
#include "config.h"
#include "drop_reasons.h"

#define EVENT_TRACE 1
#define EVENT_DROP  2

/* flow.TraceObservationPoint */
#define OBS_UNKNOWN       0
#define OBS_TO_PROXY      1
#define OBS_TO_HOST       2
#define OBS_TO_STACK      3
#define OBS_TO_OVERLAY    4
#define OBS_FROM_ENDPOINT 5
#define OBS_FROM_PROXY    6
#define OBS_FROM_HOST     7
#define OBS_FROM_STACK    8
#define OBS_FROM_OVERLAY  9
#define OBS_FROM_NETWORK  10
#define OBS_TO_NETWORK    11
#define OBS_TO_ENDPOINT   101

/* flow.Verdict */
#define VERDICT_FORWARDED  1
#define VERDICT_DROPPED    2
#define VERDICT_REDIRECTED 5

#define EVENT_CAPTURE_MAX 128

/* struct event is one ring buffer record, trace or drop. */
struct event {
	__u64 timestamp;      /* bpf_ktime_get_ns() */
	__u8 type;            /* EVENT_TRACE | EVENT_DROP */
	__u8 obs_point;       /* OBS_*: where the packet goes (trace) or was seen (drop) */
	__u8 ct_state;        /* CT_* */
	__u8 direction;       /* DIR_INGRESS | DIR_EGRESS relative to the endpoint
			       * (node programs, ep_id 0: to/from the node) */
	__u16 reason;         /* drop reason; REASON_PUNT_TO_PROXY on redirect; else 0 */
	__u16 ep_id;
	__u32 src_identity;
	__u32 dst_identity;
	__u32 ifindex;        /* trace: target ifindex (0: the stack); drop: where */
	__u32 rule_id;        /* policy entry that decided, 0 if none */
	__be16 proxy_port;
	__u8 policy_match;    /* POLICY_MATCH_* */
	__u8 verdict;         /* VERDICT_* */
	__u32 orig_len;       /* packet length */
	__u16 cap_len;        /* bytes of data[] that are valid */
	__u8 tunnel_family;   /* FAMILY_IPV4 when the packet was encapsulated (TO_OVERLAY)
			       * or came out of the overlay (from_overlay); else 0 */
	__u8 pad;
	__u32 tunnel_id;      /* VNI set (encap) or received (from_overlay), else 0 */
	union v6addr tunnel_endpoint; /* remote node of the tunnel (IPv4 in p32[0]), else zero */
	__u8 data[EVENT_CAPTURE_MAX];
};

/* Keeps struct event in the object's BTF (ring buffers have no value type),
 * so the Go mirror can be checked against it. */
const struct event *unused_event_btf __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} cilia_events SEC(".maps");

/* Metrics: index (reason << 2) | direction, summed over CPUs in Go. */
#define METRICS_MAX_ENTRIES (256 << 2)

/* struct metrics_value counts packets and bytes of one (reason, direction). */
struct metrics_value {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct metrics_value);
	__uint(max_entries, METRICS_MAX_ENTRIES);
} cilia_metrics SEC(".maps");

/* metrics_count adds one packet of len bytes to (reason, dir). */
static __always_inline void metrics_count(__u8 reason, __u8 dir, __u32 len)
{
	__u32 key = ((__u32)reason << 2) | (dir & 3);
	struct metrics_value *m = bpf_map_lookup_elem(&cilia_metrics, &key);

	if (m) {
		m->packets++;
		m->bytes += len;
	}
}

/* struct event_info is what a program knows about a verdict; event_send
 * turns it into a record. */
struct event_info {
	__u8 type;
	__u8 obs_point;
	__u8 ct_state;
	__u8 direction;
	__u16 reason;
	__u8 policy_match;
	__u8 verdict;
	__u32 src_identity;
	__u32 dst_identity;
	__u32 ifindex;
	__u32 rule_id;
	__be16 proxy_port;
	__u8 tunnel_family;
	__u32 tunnel_id;
	__be32 tunnel_endpoint; /* IPv4 underlay only */
};

/* event_send writes an event with the head of the packet to the ring
 * buffer. A full ring buffer is counted as REASON_EVENT_LOST, never an
 * error for the packet. */
static __always_inline void event_send(struct __sk_buff *ctx, const struct event_info *info,
				       __u16 ep_id)
{
	struct event *e = bpf_ringbuf_reserve(&cilia_events, sizeof(*e), 0);
	__u32 cap = ctx->len;

	if (!e) {
		metrics_count(REASON_EVENT_LOST, info->direction, ctx->len);
		return;
	}
	if (cap > event_capture_len)
		cap = event_capture_len;
	if (cap > EVENT_CAPTURE_MAX)
		cap = EVENT_CAPTURE_MAX;
	e->timestamp = bpf_ktime_get_ns();
	e->type = info->type;
	e->obs_point = info->obs_point;
	e->ct_state = info->ct_state;
	e->direction = info->direction;
	e->reason = info->reason;
	e->ep_id = ep_id;
	e->src_identity = info->src_identity;
	e->dst_identity = info->dst_identity;
	e->ifindex = info->ifindex;
	e->rule_id = info->rule_id;
	e->proxy_port = info->proxy_port;
	e->policy_match = info->policy_match;
	e->verdict = info->verdict;
	e->orig_len = ctx->len;
	e->tunnel_family = info->tunnel_family;
	e->pad = 0;
	e->tunnel_id = info->tunnel_id;
	e->tunnel_endpoint.d64[0] = 0;
	e->tunnel_endpoint.d64[1] = 0;
	e->tunnel_endpoint.p32[0] = info->tunnel_endpoint;
	if (cap == 0 || bpf_skb_load_bytes(ctx, 0, e->data, cap) < 0)
		cap = 0;
	e->cap_len = cap;
	bpf_ringbuf_submit(e, 0);
}

#endif /* CILIA_EVENTS_H */
