/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* config.h: runtime settings, set from Go before load (volatile const).
 *
 * The endpoint_* values describe the endpoint whose veth the programs are
 * attached to; every endpoint gets its own loaded copy of lxc.o, sharing the
 * node-wide maps. Nothing here needs a recompile to change.
 */
#ifndef CILIA_CONFIG_H
#define CILIA_CONFIG_H

#include "common.h"

/* Trace levels: how many forwarding decisions emit a trace event. Drops are
 * always reported. */
#define TRACE_EVERY_PACKET     0 /* simulator, replay, tests */
#define TRACE_CONNECTION_EVENTS 1 /* agent default: new connections and state changes */
#define TRACE_DROPS_ONLY       2

volatile const __u16 endpoint_id = 0;          /* endpoint id, key of cilia_ep_policy */
volatile const __u32 endpoint_identity = 0;    /* security identity of the endpoint */
volatile const __u32 endpoint_ifindex = 0;     /* ifindex of the host side of the veth */
volatile const __be32 endpoint_ipv4 = 0;       /* network order; 0 = no IPv4 */
volatile const __u8 endpoint_ipv6[16] = {};    /* all zero = no IPv6 */

/* Node-wide settings, the same in every program of the node. */
volatile const __be32 node_ipv4 = 0;           /* the node's IPv4 (network order), underlay address */
volatile const __u8 node_ipv6[16] = {};        /* the node's IPv6, all zero = none */
volatile const __u32 tunnel_ifindex = 0;       /* VXLAN device (collect_md); 0 = native routing, never encap */
volatile const __u32 uplink_ifindex = 0;       /* the node's uplink (host.c attaches there) */

volatile const __u8 trace_level = TRACE_EVERY_PACKET;
volatile const __u32 event_capture_len = 128;  /* bytes of packet head in events, <= 128 */

/* Conntrack lifetimes in jiffies; the loader converts Cilium's defaults
 * (TCP 21600 s, SYN 60 s, closing 10 s, other 60 s) with the kernel's HZ.
 * The values here assume HZ=1000 for an unconfigured object. */
volatile const __u32 ct_lifetime_tcp = 21600 * 1000;
volatile const __u32 ct_lifetime_tcp_syn = 60 * 1000;
volatile const __u32 ct_lifetime_tcp_close = 10 * 1000;
volatile const __u32 ct_lifetime_nontcp = 60 * 1000;

/* The kernel's HZ (jiffies per second), for timeouts configured in seconds
 * (session affinity). */
volatile const __u32 jiffies_hz = 1000;

/* Load balancing: the Maglev table size M in use, a prime <= LB_MAGLEV_MAX
 * (lb.h); the first M entries of each cilia_lb_maglev table are used. */
volatile const __u32 lb_maglev_size = 16381;

#endif /* CILIA_CONFIG_H */
