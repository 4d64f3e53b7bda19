/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* mark.h: what skb->mark carries between the programs of one node.
 *
 * Cilium's scheme: the magic in bits 8-11 (mask MARK_MAGIC_HOST_MASK) says
 * what the rest of the mark means.
 *
 *   MARK_MAGIC_TO_PROXY  0x0200: handed to the L7 proxy, proxy port (host
 *                        order) in bits 16-31 (lxc.c).
 *   MARK_MAGIC_IDENTITY  0x0F00: the packet's source security identity, put
 *                        there by the program that learnt it (from_overlay:
 *                        the VNI; from_netdev: the ipcache) before handing the
 *                        packet to an endpoint's to_container, which reads it
 *                        and clears the mark. Identity bits 0-15 are in mark
 *                        bits 16-31 and bits 16-23 in mark bits 0-7, as Cilium
 *                        encodes them; bits 24-27 go in mark bits 12-15, so a
 *                        node-local CIDR identity (bit 24, learnt by
 *                        from_netdev from the ipcache) reaches to_container
 *                        whole. A VNI carries 24 bits: local identities never
 *                        cross the tunnel.
 */
#ifndef CILIA_MARK_H
#define CILIA_MARK_H

#include "common.h"

#define MARK_MAGIC_HOST_MASK 0x0F00
#define MARK_MAGIC_TO_PROXY  0x0200
#define MARK_MAGIC_IDENTITY  0x0F00

/* mark_encode_identity returns the mark carrying identity (its low 28
 * bits; higher bits are lost). */
static __always_inline __u32 mark_encode_identity(__u32 identity)
{
	return MARK_MAGIC_IDENTITY | ((identity & 0xFFFF) << 16) | ((identity >> 16) & 0xFF) |
	       (((identity >> 24) & 0xF) << 12);
}

/* mark_has_identity reports whether mark carries an identity
 * (MARK_MAGIC_IDENTITY under MARK_MAGIC_HOST_MASK). */
static __always_inline int mark_has_identity(__u32 mark)
{
	return (mark & MARK_MAGIC_HOST_MASK) == MARK_MAGIC_IDENTITY;
}

/* mark_identity returns the identity mark carries. Only meaningful when
 * mark_has_identity(mark). */
static __always_inline __u32 mark_identity(__u32 mark)
{
	return ((mark >> 16) & 0xFFFF) | ((mark & 0xFF) << 16) | (((mark >> 12) & 0xF) << 24);
}

#endif /* CILIA_MARK_H */
