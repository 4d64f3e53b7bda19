/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* drop_reasons.h: the catalogue of drop reasons.
 *
 * This header is the single source of truth: the Go mirror in
 * datapath/dropreason is checked against it by a test that parses this file,
 * and docs/drop-reasons.md lists the same table. Where a reason means what a
 * Cilium reason means it carries Cilium's number and name, so flows map the
 * code straight onto flow.DropReason.
 *
 * Format (parsed by the Go test): one "#define DROP_<NAME> <code> // <text>"
 * per line.
 */
#ifndef CILIA_DROP_REASONS_H
#define CILIA_DROP_REASONS_H

#define DROP_INVALID_SOURCE_MAC                      130 // Source MAC address does not belong to the endpoint
#define DROP_INVALID_DESTINATION_MAC                 131 // Destination MAC address is not the expected one
#define DROP_INVALID_SOURCE_IP                       132 // Source IP address does not belong to the endpoint (spoofing)
#define DROP_POLICY_DENIED                           133 // Policy enforced and no entry allows the packet
#define DROP_INVALID_PACKET                          134 // Malformed L2/L3 header: truncated, bad version, bad IHL, bad length
#define DROP_CT_TRUNCATED_OR_INVALID_HEADER          135 // L4 header truncated or invalid (incl. first fragments hiding it)
#define DROP_UNSUPPORTED_L3_PROTOCOL                 139 // EtherType is neither IPv4, IPv6 nor ARP
#define DROP_ERROR_WRITING_TO_PACKET                 141 // Packet or its metadata (tunnel key) could not be written
#define DROP_UNKNOWN_L4_PROTOCOL                     142 // L4 protocol cannot be handled here
#define DROP_ERROR_RETRIEVING_TUNNEL_KEY             147 // Packet from the overlay without a readable tunnel key
#define DROP_CT_MAP_INSERTION_FAILED                 155 // Conntrack entry could not be created (map full)
#define DROP_INVALID_IPV6_EXTENSION_HEADER           156 // IPv6 extension header chain truncated, malformed or too long
#define DROP_IP_FRAGMENTATION_NOT_SUPPORTED          157 // Fragment that cannot be handled (overlapping L4 header, RFC 1858)
#define DROP_NO_SERVICE                              158 // Service has no backend
#define DROP_INVALID_IDENTITY                        171 // Security identity 0 (unknown) where one is required, e.g. VNI 0
#define DROP_FIRST_LOGICAL_DATAGRAM_FRAGMENT_NOT_FOUND 175 // Non-first fragment whose first fragment was not seen
#define DROP_POLICY_DENY                             181 // Denied by a deny policy entry
#define DROP_TTL_EXCEEDED                            196 // TTL or hop limit reached zero on forward

/* Not a drop: the packet is handed to the L7 proxy. Counted in metrics under
 * this code so that redirects show next to drops. */
#define REASON_PUNT_TO_PROXY                         205 // Redirected to the L7 proxy (not a drop)

/* Metrics slots below 130 are not drops. */
#define REASON_FORWARDED  0  // Forwarded (metrics only)
#define REASON_EVENT_LOST 1  // An event could not be written to the ring buffer (metrics only)

#endif /* CILIA_DROP_REASONS_H */
