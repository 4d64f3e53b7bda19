// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* empty.c: a tc program that does nothing. It is the harness floor of the
 * benchmarks: BPF_PROG_TEST_RUN of this program measures what the harness
 * itself costs per packet. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

char _license[] SEC("license") = "Dual BSD/GPL";

SEC("tc")
int empty(struct __sk_buff *ctx)
{
	return TC_ACT_OK;
}
