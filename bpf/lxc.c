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
 *
 * Service load balancing (lb.h, docs/load-balancing.md):
 *   from_container  a packet to an INTERNAL frontend is translated before
 *                   conntrack: the backend pinned by the connection's
 *                   service entry (ct.h DIR_SERVICE), or a new choice
 *                   (lb.h lb_select), becomes its destination (DNAT);
 *                   the rest of the pipeline (ipcache, egress policy,
 *                   conntrack with the frontend's rev_nat_id, forwarding)
 *                   sees the backend. No backend: the pod gets a TCP RST or
 *                   an ICMP port unreachable from the frontend (reject.h)
 *                   and a DROP_NO_SERVICE drop event is emitted. When the
 *                   backend is the pod itself (hairpin) the source becomes
 *                   the frontend address too, see lxc_lb_hairpin.
 *                   Replies of a DSR connection (CT_F_DSR) and of a
 *                   hairpin one leave with the frontend as source.
 *   to_container    replies of a translated connection get the frontend
 *                   address:port back as source; a new connection carrying
 *                   a DSR frontend (dsr.h) is recorded with it.
 * An ICMP error about a translated connection reaching the client
 * (to_container, RELATED) is translated too (lxc_lb_icmp_reply), so that
 * the client's socket recognises the flow it quotes.
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
#include "lib/lb.h"
#include "lib/nat.h"
#include "lib/reject.h"
#include "lib/dsr.h"

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

	/* The halves of a hairpin connection other than its egress entry
	 * carry no verdict of their own (lxc_lb_hairpin). */
	if ((e->flags & CT_F_HAIRPIN) && !(key->dir == DIR_EGRESS && e->rev_nat_id)) {
		e->policy_revision = st->revision;
		return 0;
	}
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

/* struct lxc_lb is what the service translation of a packet decided. */
struct lxc_lb {
	__u32 rev_nat_id;     /* frontend of the translated connection, 0: none */
	__u32 backend_id;     /* the backend, 0: none (yet) */
	__u8 hairpin;         /* the backend is the sending pod itself */
	__u8 pad[3];
};

/* struct lxc_scratch is per-CPU memory for the load-balancing steps,
 * whose stack frames add to the pipeline's. */
struct lxc_scratch {
	struct tuple key;
	union v6addr frontend;
	struct lb_key fe;
	struct ct_entry entry;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct lxc_scratch);
	__uint(max_entries, 1);
} cilia_lxc_scratch SEC(".maps");

static __always_inline struct lxc_scratch *lxc_scratch(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&cilia_lxc_scratch, &zero);
}

#define LXC_LB_PASS   0 /* no frontend, or translated: carry on */
#define LXC_LB_REJECT 1 /* no backend: reject the packet */
#define LXC_LB_SELECT 2 /* a new connection: choose a backend, then lxc_lb_dnat */

/* lxc_lb_dnat translates pkt to backend lb->backend_id: DNAT to the
 * backend, and for a hairpin (the backend is the pod) SNAT to the frontend
 * address, keeping the source port. With a new choice (create), the
 * connection's service entry (key sc->key) pins it first. pkt follows the
 * rewrites. Returns LXC_LB_PASS, LXC_LB_REJECT when the backend is gone or
 * of the other family, or a negative drop reason. */
static __always_inline int lxc_lb_dnat(struct __sk_buff *ctx, struct packet *pkt, __u32 len,
				       __u64 now, struct lxc_lb *lb, struct lxc_scratch *sc, int create)
{
	struct lb_backend *be = lb_lookup_backend(lb->backend_id);
	int ret;

	if (!be || be->family != pkt->tuple.family)
		return LXC_LB_REJECT;
	if (create) {
		ret = ct_create_service_in(&sc->key, pkt, len, now, lb->backend_id, lb->rev_nat_id,
					   &sc->entry);
		if (ret < 0)
			return ret;
	}
	lb->hairpin = v6addr_equal(&be->addr, &pkt->tuple.saddr);
	sc->frontend = pkt->tuple.daddr;
	ret = nat_rewrite_dst(ctx, pkt, &be->addr, be->port);
	if (ret < 0)
		return ret;
	if (lb->hairpin) {
		ret = nat_rewrite_src(ctx, pkt, &sc->frontend, pkt->tuple.sport);
		if (ret < 0)
			return ret;
	}
	return LXC_LB_PASS;
}

/* lxc_lb_egress is the first step of translating a packet the pod sends to
 * an INTERNAL frontend (pkt's destination address, port and protocol):
 * when the connection's service entry pins a backend that still exists,
 * it translates (lxc_lb_dnat). Otherwise it leaves the frontend's key in
 * the scratch (sc->fe, for lb_select) and returns LXC_LB_SELECT: the
 * caller chooses a backend (lb->backend_id, 0 for none) and calls
 * lxc_lb_commit. Returns LXC_LB_PASS (no frontend, or translated: lb
 * filled), LXC_LB_SELECT, LXC_LB_REJECT, or a negative drop reason.
 *
 * The load-balancing steps are global functions: verified once, and with
 * stack frames of their own beside the pipeline's (called one after the
 * other, not nested: the pipeline leaves little of the 512 bytes). */
__attribute__((noinline)) int lxc_lb_egress(struct __sk_buff *ctx, struct packet *pkt, __u32 len,
					    __u64 now, struct lxc_lb *lb)
{
	struct lxc_scratch *sc = lxc_scratch();
	struct lb_service *svc;
	struct ct_entry *e;

	if (!pkt || !lb || !sc || pkt->icmp_error)
		return LXC_LB_PASS;
	svc = lb_lookup_service(pkt->tuple.family, &pkt->tuple.daddr, pkt->tuple.dport,
				pkt->tuple.nexthdr, LB_SCOPE_INTERNAL);
	if (!svc)
		return LXC_LB_PASS;
	lb->rev_nat_id = svc->rev_nat_id;

	ct_service_key(&sc->key, pkt);
	e = ct_lookup_service(&sc->key, pkt, len, now);
	if (e && lb_lookup_backend(e->backend_id)) {
		lb->backend_id = e->backend_id;
		lb->rev_nat_id = e->rev_nat_id;
		return lxc_lb_dnat(ctx, pkt, len, now, lb, sc, 0);
	}
	__builtin_memset(&sc->fe, 0, sizeof(sc->fe));
	sc->fe.addr = pkt->tuple.daddr;
	sc->fe.dport = pkt->tuple.dport;
	sc->fe.proto = pkt->tuple.nexthdr;
	sc->fe.family = pkt->tuple.family;
	sc->fe.scope = LB_SCOPE_INTERNAL;
	return LXC_LB_SELECT;
}

/* lxc_lb_commit completes lxc_lb_egress after the choice of
 * lb->backend_id: pins it with a new service entry and translates. Returns
 * LXC_LB_PASS, LXC_LB_REJECT (no backend), or a negative drop reason. */
__attribute__((noinline)) int lxc_lb_commit(struct __sk_buff *ctx, struct packet *pkt, __u32 len,
					    __u64 now, struct lxc_lb *lb)
{
	struct lxc_scratch *sc = lxc_scratch();

	if (!pkt || !lb || !sc)
		return -DROP_NO_SERVICE;
	if (!lb->backend_id)
		return LXC_LB_REJECT;
	return lxc_lb_dnat(ctx, pkt, len, now, lb, sc, 1);
}

/* lxc_lb_hairpin records the other halves of a new hairpin connection,
 * whose translated packet (frontend:cport -> pod:bport) got the egress
 * entry: the pod receives it (ingress entry of the same tuple: the
 * packet is ESTABLISHED in to_container, and the pod's answer is its
 * REPLY in from_container, translated back to frontend:port -> pod:cport),
 * and the pod as client gets that answer (egress entry pod:cport ->
 * frontend:port: the answer is a REPLY in to_container). Neither carries a
 * policy verdict: the egress entry does (the pod's egress policy towards
 * its own identity); ingress policy does not apply to a pod reaching itself.
 * Returns 0 or -DROP_CT_MAP_INSERTION_FAILED. */
__attribute__((noinline)) int lxc_lb_hairpin(const struct packet *pkt, __u32 len, __u64 now,
					     __u32 revision, __u32 rev_nat_id)
{
	struct lb_revnat *fe = lb_lookup_revnat(rev_nat_id);
	struct lxc_scratch *sc = lxc_scratch();

	if (!pkt || !sc)
		return -DROP_CT_MAP_INSERTION_FAILED;
	if (!fe)
		return -DROP_NO_SERVICE;
	sc->key = pkt->tuple;
	sc->key.dir = DIR_INGRESS;
	ct_fill(&sc->entry, pkt, len, now, endpoint_identity, revision, 0, 0, CT_F_HAIRPIN, rev_nat_id);
	if (ct_map_update(&sc->key, &sc->entry) < 0)
		return -DROP_CT_MAP_INSERTION_FAILED;
	/* The client's view: pod:cport -> frontend:port. */
	sc->key.saddr = pkt->tuple.daddr;
	sc->key.daddr = fe->addr;
	sc->key.dport = fe->port;
	sc->key.dir = DIR_EGRESS;
	sc->entry.rev_nat_id = 0;
	if (ct_map_update(&sc->key, &sc->entry) < 0)
		return -DROP_CT_MAP_INSERTION_FAILED;
	return 0;
}

/* lxc_lb_reply translates a REPLY of a load-balanced connection whose
 * entry is e (with key dir) back to the frontend: in to_container a reply
 * of the pod's translated connection (source = frontend address:port); in
 * from_container the backend's reply of a DSR connection (source =
 * frontend) and the pod's answer in a hairpin connection (source =
 * frontend, destination = the pod itself). rev_nat_id and flags are the
 * entry's. Returns 0 or a negative drop reason. */
__attribute__((noinline)) int lxc_lb_reply(struct __sk_buff *ctx, struct packet *pkt,
					   __u32 rev_nat_id, __u8 flags, __u8 dir)
{
	struct lb_revnat *fe;
	int ret;

	if (!pkt || !rev_nat_id)
		return 0;
	if (dir == DIR_INGRESS && (flags & (CT_F_DSR | CT_F_HAIRPIN)))
		return 0;
	if (dir == DIR_EGRESS && !(flags & (CT_F_DSR | CT_F_HAIRPIN)))
		return 0;
	fe = lb_lookup_revnat(rev_nat_id);
	if (!fe || fe->family != pkt->tuple.family)
		return 0; /* the frontend is gone: nothing to translate to */
	/* Hairpin: the answer goes back to the pod itself, its source. */
	if (dir == DIR_EGRESS && (flags & CT_F_HAIRPIN)) {
		ret = nat_rewrite_dst(ctx, pkt, &pkt->tuple.saddr, pkt->tuple.dport);
		if (ret < 0)
			return ret;
	}
	return nat_rewrite_src(ctx, pkt, &fe->addr, fe->port);
}

/* lxc_lb_icmp_reply translates an ICMP error arriving at the pod about
 * its translated connection to frontend rev_nat_id: the quoted packet
 * (pod -> backend) gets the frontend as destination address and port
 * (the quoted IPv4 header's checksum and the ICMP checksum follow; the
 * quoted L4 checksum, which nobody checks, does not), and an error sent by
 * the backend itself the frontend as source. Returns 0 or a negative drop
 * reason. */
__attribute__((noinline)) int lxc_lb_icmp_reply(struct __sk_buff *ctx, struct packet *pkt,
						__u32 rev_nat_id)
{
	struct lb_revnat *fe = lb_lookup_revnat(rev_nat_id);
	__u32 inner = 0, csum = 0, port_off = 0;
	__u8 b[2];

	if (!pkt || !fe || !pkt->icmp_error || fe->family != pkt->inner.family)
		return 0;
	inner = pkt->l4_off + 8; /* ICMP and ICMPv6 headers are 8 bytes */
	csum = pkt->l4_off + 2;
	if (pkt->inner.family == FAMILY_IPV4) {
		__be32 from = pkt->inner.daddr.p32[0], to = fe->addr.p32[0];
		__be16 old_sum, new_sum;

		if (bpf_skb_load_bytes(ctx, inner, b, 1) < 0 || (b[0] & 0xf) < 5)
			return 0;
		port_off = inner + (b[0] & 0xf) * 4 + 2;
		if (bpf_skb_load_bytes(ctx, inner + offsetof(struct iphdr, check), &old_sum, 2) < 0 ||
		    bpf_l3_csum_replace(ctx, inner + offsetof(struct iphdr, check), from, to, 4) < 0 ||
		    bpf_skb_load_bytes(ctx, inner + offsetof(struct iphdr, check), &new_sum, 2) < 0 ||
		    bpf_skb_store_bytes(ctx, inner + offsetof(struct iphdr, daddr), &to, 4, 0) < 0 ||
		    bpf_l4_csum_replace(ctx, csum, from, to, 4) < 0 ||
		    bpf_l4_csum_replace(ctx, csum, old_sum, new_sum, 2) < 0)
			return -DROP_ERROR_WRITING_TO_PACKET;
	} else {
		__s64 diff;

		/* Only a quote without extension headers has its ports here. */
		if (bpf_skb_load_bytes(ctx, inner + offsetof(struct ipv6hdr, nexthdr), b, 1) < 0)
			return 0;
		if (b[0] == pkt->inner.nexthdr)
			port_off = inner + sizeof(struct ipv6hdr) + 2;
		diff = bpf_csum_diff((__be32 *)pkt->inner.daddr.p32, 16, (__be32 *)fe->addr.p32, 16, 0);
		if (diff < 0 ||
		    bpf_skb_store_bytes(ctx, inner + offsetof(struct ipv6hdr, daddr), &fe->addr, 16, 0) < 0 ||
		    bpf_l4_csum_replace(ctx, csum, 0, diff, 0) < 0)
			return -DROP_ERROR_WRITING_TO_PACKET;
	}
	if (port_off && (pkt->inner.nexthdr == IPPROTO_TCP || pkt->inner.nexthdr == IPPROTO_UDP ||
			 pkt->inner.nexthdr == IPPROTO_SCTP) &&
	    port_off + 2 <= ctx->len) {
		__be16 from = pkt->inner.dport, to = fe->port;

		if (bpf_l4_csum_replace(ctx, csum, from, to, 2) < 0 ||
		    bpf_skb_store_bytes(ctx, port_off, &to, 2, 0) < 0)
			return -DROP_ERROR_WRITING_TO_PACKET;
	}
	/* The backend answering for itself: the error comes from the frontend. */
	if (v6addr_equal(&pkt->tuple.saddr, &pkt->inner.daddr)) {
		int ret = nat_rewrite_src(ctx, pkt, &fe->addr, 0);

		if (ret < 0)
			return ret;
	}
	pkt->inner.daddr = fe->addr;
	pkt->inner.dport = fe->port;
	return 0;
}

/* lxc_lb_dsr looks at a new connection arriving at the pod for the
 * frontend a DSR load balancer put in it (dsr.h). Returns the frontend's
 * rev_nat_id when the packet carries a frontend that is a DSR service
 * (EXTERNAL scope, LB_F_DSR), 0 when it carries none or an unknown one, or
 * a negative drop reason when the DSR information is malformed. */
static __always_inline __s64 lxc_lb_dsr(struct __sk_buff *ctx, const struct packet *pkt)
{
	struct lb_revnat fe;
	struct lb_service *svc;
	int ret = dsr_frontend(ctx, pkt, &fe);

	if (ret <= 0)
		return ret;
	if (fe.family != pkt->tuple.family)
		return 0;
	svc = lb_lookup_service(fe.family, &fe.addr, fe.port, pkt->tuple.nexthdr, LB_SCOPE_EXTERNAL);
	if (!svc || !(svc->flags & LB_F_DSR))
		return 0;
	return svc->rev_nat_id;
}

/* lxc_reject sends the rejection of pkt (reject.h) back into the pod: the
 * drop event DROP_NO_SERVICE for pkt first, then an egress conntrack entry
 * for pkt's tuple, under which the rejection is a REPLY (RELATED for ICMP)
 * that to_container lets in, then a redirect to the pod's own veth. Returns
 * TC_ACT_REDIRECT, or TC_ACT_SHOT when the rejection cannot be built. */
static __always_inline int lxc_reject(struct __sk_buff *ctx, struct packet *pkt,
				      struct verdict_ctx *vc, __u64 now, __u32 revision)
{
	__u32 remote = ipcache_identity(pkt->tuple.family, &pkt->tuple.daddr);

	fill_identities(vc, DIR_EGRESS, remote);
	drop_packet(ctx, vc, DROP_NO_SERVICE);
	pkt->tuple.dir = DIR_EGRESS;
	if (ct_create(&pkt->tuple, pkt, vc->len, now, remote, revision, 0, 0, CT_F_PEER_REMOTE | CT_F_REJECTED, 0) < 0)
		return TC_ACT_SHOT;
	if (reject_packet(ctx, pkt) < 0)
		return TC_ACT_SHOT;
	return bpf_redirect(endpoint_ifindex, 0);
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
	struct lxc_lb lb = {};
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
	/* A packet conntrack knows as it is (a connection to no frontend, a
	 * reply, a related ICMP error) needs no service lookup: the fast path
	 * stays one lookup. The pod's packets to a frontend are tracked by
	 * their translated tuple, so they miss here and are translated first;
	 * the entries that only let a rejection in, or that track a hairpin
	 * connection's untranslated halves (lxc_lb_hairpin), do not count. */
	if (dir == DIR_EGRESS && (!ct.entry || (ct.entry->flags & (CT_F_REJECTED | CT_F_HAIRPIN)))) {
		ret = lxc_lb_egress(ctx, &pkt, vc.len, now, &lb);
		if (ret == LXC_LB_SELECT) {
			struct lxc_scratch *sc = lxc_scratch();

			lb.backend_id = sc ? lb_select(&sc->fe, NULL, &pkt.tuple, now) : 0;
			ret = lxc_lb_commit(ctx, &pkt, vc.len, now, &lb);
		}
		if (ret == LXC_LB_REJECT)
			return lxc_reject(ctx, &pkt, &vc, now, st->revision);
		if (ret < 0)
			return drop_packet(ctx, &vc, -ret);
		if (lb.rev_nat_id || ct.entry)
			vc.info.ct_state = ct_lookup(&pkt, dir, vc.len, now, &ct);
	}
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
		if (ct.state == CT_REPLY && ct.entry->rev_nat_id) {
			ret = lxc_lb_reply(ctx, &pkt, ct.entry->rev_nat_id, ct.entry->flags, dir);
			if (ret < 0)
				return drop_packet(ctx, &vc, -ret);
		}
		if (ct.state == CT_RELATED && dir == DIR_INGRESS && ct.entry->rev_nat_id &&
		    ct.key->dir == DIR_EGRESS && !(ct.entry->flags & (CT_F_DSR | CT_F_HAIRPIN))) {
			ret = lxc_lb_icmp_reply(ctx, &pkt, ct.entry->rev_nat_id);
			if (ret < 0)
				return drop_packet(ctx, &vc, -ret);
		}
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
			__u8 flags;

			peer = endpoint_lookup(pkt.tuple.family, remote);
			peer_known = 1;
			flags = peer ? 0 : CT_F_PEER_REMOTE;
			if (lb.hairpin)
				flags |= CT_F_HAIRPIN;
			if (dir == DIR_INGRESS) {
				__s64 dsr = lxc_lb_dsr(ctx, &pkt);

				if (dsr < 0)
					return drop_packet(ctx, &vc, -dsr);
				if (dsr > 0) {
					flags |= CT_F_DSR;
					lb.rev_nat_id = dsr;
				}
			}
			ret = ct_create(ct.key, &pkt, vc.len, now, remote_id, st->revision,
					pv.rule_id, pv.proxy_port, flags, lb.rev_nat_id);
			if (ret < 0)
				return drop_packet(ctx, &vc, -ret);
			if (lb.hairpin) {
				ret = lxc_lb_hairpin(&pkt, vc.len, now, st->revision, lb.rev_nat_id);
				if (ret < 0)
					return drop_packet(ctx, &vc, -ret);
			}
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
