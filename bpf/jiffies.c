// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* jiffies.c: reads the kernel's jiffies counter, the clock of conntrack
 * lifetimes (bpf_jiffies64 is inlined by the verifier: no clock source
 * read on the fast path). Go runs it with BPF_PROG_TEST_RUN to learn the
 * kernel's HZ and the current jiffies. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

char _license[] SEC("license") = "Dual BSD/GPL";

__u64 jiffies_now;

SEC("tc")
int read_jiffies(struct __sk_buff *ctx)
{
	jiffies_now = bpf_jiffies64();
	return TC_ACT_OK;
}
