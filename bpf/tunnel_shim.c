// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* tunnel_shim.c: SIMULATOR ONLY. Never attached to any device; only run
 * with BPF_PROG_TEST_RUN (datapath/testrun).
 *
 * BPF_PROG_TEST_RUN gives a program no tunnel metadata, so from_overlay
 * (overlay.c) could never see a tunnel key. tunnel_shim plays the VXLAN
 * device: it takes the key from skb->cb, which the test run's context sets,
 *
 *   cb[0]  VNI (the source identity);
 *   cb[1]  outer source IPv4, network order (the remote node);
 *   cb[2]  outer destination IPv4, network order (this node);
 *
 * sets it with bpf_skb_set_tunnel_key and tail-calls from_overlay (slot 0
 * of cilia_shim_jmp), which then reads it with bpf_skb_get_tunnel_key.
 * set_tunnel_key stores remote_ipv4 as the key's destination and local_ipv4
 * as its source, while get_tunnel_key returns the source as remote_ipv4:
 * hence the outer source is passed as local_ipv4. cb[0] == 0xffffffff means
 * "no tunnel key": the shim tail-calls without setting one.
 * Returns TC_ACT_SHOT when the tail call fails (slot empty).
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char _license[] SEC("license") = "Dual BSD/GPL";

/* See lxc.c: keeps the BTF of the object reproducible. */
const struct bpf_sock *unused_bpf_sock_btf __attribute__((unused));
const struct bpf_flow_keys *unused_bpf_flow_keys_btf __attribute__((unused));

#define SHIM_NO_KEY 0xffffffff

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
} cilia_shim_jmp SEC(".maps");

SEC("tc")
int tunnel_shim(struct __sk_buff *ctx)
{
	struct bpf_tunnel_key key = {};
	__u32 vni = ctx->cb[0];

	if (vni != SHIM_NO_KEY) {
		key.tunnel_id = vni;
		key.local_ipv4 = bpf_ntohl(ctx->cb[1]);
		key.remote_ipv4 = bpf_ntohl(ctx->cb[2]);
		key.tunnel_ttl = 64;
		if (bpf_skb_set_tunnel_key(ctx, &key, sizeof(key), 0) < 0)
			return TC_ACT_SHOT;
	}
	ctx->cb[0] = 0;
	ctx->cb[1] = 0;
	ctx->cb[2] = 0;
	bpf_tail_call(ctx, &cilia_shim_jmp, 0);
	return TC_ACT_SHOT;
}
