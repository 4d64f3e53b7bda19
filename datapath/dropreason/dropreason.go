// Package dropreason mirrors the drop reason catalogue of the datapath,
// bpf/lib/drop_reasons.h, in Go.
//
// The header is the single source of truth: a test parses it and fails when
// this table and the header differ in any code, name or description, in
// either direction. Codes are shared with Cilium wherever a reason means what
// a Cilium reason means, so FlowDropReason is a conversion onto Hubble's
// flow.DropReason enum. docs/drop-reasons.md documents the same table.
//
// Codes below 130 are metrics slots, not drops (Forwarded, EventLost), and
// PuntToProxy (205) counts redirects to the L7 proxy; IsDrop tells them
// apart from real drops.
package dropreason

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/cilium/cilium/api/v1/flow"
)

// Reason is a drop reason code as the datapath reports it in events and
// metrics (the positive value of a DROP_* or REASON_* define).
type Reason uint16

// Metrics slots (REASON_*): not drops.
const (
	// Forwarded is 0 FORWARDED: forwarded (metrics only).
	Forwarded Reason = 0
	// EventLost is 1 EVENT_LOST: an event could not be written to the ring
	// buffer (metrics only).
	EventLost Reason = 1
)

// Drops (DROP_*): the packet was dropped.
const (
	// InvalidSourceMAC is 130 INVALID_SOURCE_MAC: source MAC address does
	// not belong to the endpoint.
	InvalidSourceMAC Reason = 130
	// InvalidDestinationMAC is 131 INVALID_DESTINATION_MAC: destination MAC
	// address is not the expected one.
	InvalidDestinationMAC Reason = 131
	// InvalidSourceIP is 132 INVALID_SOURCE_IP: source IP address does not
	// belong to the endpoint (spoofing).
	InvalidSourceIP Reason = 132
	// PolicyDenied is 133 POLICY_DENIED: policy enforced and no entry allows
	// the packet.
	PolicyDenied Reason = 133
	// InvalidPacket is 134 INVALID_PACKET: malformed L2/L3 header
	// (truncated, bad version, bad IHL, bad length).
	InvalidPacket Reason = 134
	// CTTruncatedOrInvalidHeader is 135 CT_TRUNCATED_OR_INVALID_HEADER: L4
	// header truncated or invalid (including first fragments hiding it).
	CTTruncatedOrInvalidHeader Reason = 135
	// UnsupportedL3Protocol is 139 UNSUPPORTED_L3_PROTOCOL: EtherType is
	// neither IPv4, IPv6 nor ARP.
	UnsupportedL3Protocol Reason = 139
	// ErrorWritingToPacket is 141 ERROR_WRITING_TO_PACKET: packet metadata
	// (the tunnel key) could not be written.
	ErrorWritingToPacket Reason = 141
	// UnknownL4Protocol is 142 UNKNOWN_L4_PROTOCOL: L4 protocol cannot be
	// handled here.
	UnknownL4Protocol Reason = 142
	// ErrorRetrievingTunnelKey is 147 ERROR_RETRIEVING_TUNNEL_KEY: packet
	// from the overlay without a readable tunnel key.
	ErrorRetrievingTunnelKey Reason = 147
	// CTMapInsertionFailed is 155 CT_MAP_INSERTION_FAILED: conntrack entry
	// could not be created (map full).
	CTMapInsertionFailed Reason = 155
	// InvalidIPv6ExtensionHeader is 156 INVALID_IPV6_EXTENSION_HEADER: IPv6
	// extension header chain truncated, malformed or too long.
	InvalidIPv6ExtensionHeader Reason = 156
	// IPFragmentationNotSupported is 157 IP_FRAGMENTATION_NOT_SUPPORTED:
	// fragment that cannot be handled (overlapping L4 header, RFC 1858).
	IPFragmentationNotSupported Reason = 157
	// NoService is 158 NO_SERVICE: service has no backend.
	NoService Reason = 158
	// InvalidIdentity is 171 INVALID_IDENTITY: security identity 0
	// (unknown) where one is required, e.g. VNI 0.
	InvalidIdentity Reason = 171
	// FirstLogicalDatagramFragmentNotFound is 175
	// FIRST_LOGICAL_DATAGRAM_FRAGMENT_NOT_FOUND: non-first fragment whose
	// first fragment was not seen.
	FirstLogicalDatagramFragmentNotFound Reason = 175
	// PolicyDeny is 181 POLICY_DENY: denied by a deny policy entry.
	PolicyDeny Reason = 181
	// TTLExceeded is 196 TTL_EXCEEDED: TTL or hop limit reached zero on
	// forward.
	TTLExceeded Reason = 196
)

// Redirects (REASON_*): not a drop.
const (
	// PuntToProxy is 205 PUNT_TO_PROXY: redirected to the L7 proxy (not a
	// drop); counted in metrics under this code.
	PuntToProxy Reason = 205
)

// firstDrop is the lowest code that can be a drop.
const firstDrop Reason = 130

// ErrUnknownReason is returned (wrapped) by Parse for a name or code that is
// not in the catalogue.
var ErrUnknownReason = errors.New("unknown drop reason")

// entry is one line of the catalogue.
type entry struct {
	code Reason
	name string // catalogue name: the C name without DROP_ / REASON_
	desc string // the comment of the C define, verbatim
}

// catalogue is bpf/lib/drop_reasons.h, sorted by code. The test checks it
// against the header in both directions.
var catalogue = []entry{
	{Forwarded, "FORWARDED", "Forwarded (metrics only)"},
	{EventLost, "EVENT_LOST", "An event could not be written to the ring buffer (metrics only)"},
	{InvalidSourceMAC, "INVALID_SOURCE_MAC", "Source MAC address does not belong to the endpoint"},
	{InvalidDestinationMAC, "INVALID_DESTINATION_MAC", "Destination MAC address is not the expected one"},
	{InvalidSourceIP, "INVALID_SOURCE_IP", "Source IP address does not belong to the endpoint (spoofing)"},
	{PolicyDenied, "POLICY_DENIED", "Policy enforced and no entry allows the packet"},
	{InvalidPacket, "INVALID_PACKET", "Malformed L2/L3 header: truncated, bad version, bad IHL, bad length"},
	{CTTruncatedOrInvalidHeader, "CT_TRUNCATED_OR_INVALID_HEADER", "L4 header truncated or invalid (incl. first fragments hiding it)"},
	{UnsupportedL3Protocol, "UNSUPPORTED_L3_PROTOCOL", "EtherType is neither IPv4, IPv6 nor ARP"},
	{ErrorWritingToPacket, "ERROR_WRITING_TO_PACKET", "Packet or its metadata (tunnel key) could not be written"},
	{UnknownL4Protocol, "UNKNOWN_L4_PROTOCOL", "L4 protocol cannot be handled here"},
	{ErrorRetrievingTunnelKey, "ERROR_RETRIEVING_TUNNEL_KEY", "Packet from the overlay without a readable tunnel key"},
	{CTMapInsertionFailed, "CT_MAP_INSERTION_FAILED", "Conntrack entry could not be created (map full)"},
	{InvalidIPv6ExtensionHeader, "INVALID_IPV6_EXTENSION_HEADER", "IPv6 extension header chain truncated, malformed or too long"},
	{IPFragmentationNotSupported, "IP_FRAGMENTATION_NOT_SUPPORTED", "Fragment that cannot be handled (overlapping L4 header, RFC 1858)"},
	{NoService, "NO_SERVICE", "Service has no backend"},
	{InvalidIdentity, "INVALID_IDENTITY", "Security identity 0 (unknown) where one is required, e.g. VNI 0"},
	{FirstLogicalDatagramFragmentNotFound, "FIRST_LOGICAL_DATAGRAM_FRAGMENT_NOT_FOUND", "Non-first fragment whose first fragment was not seen"},
	{PolicyDeny, "POLICY_DENY", "Denied by a deny policy entry"},
	{TTLExceeded, "TTL_EXCEEDED", "TTL or hop limit reached zero on forward"},
	{PuntToProxy, "PUNT_TO_PROXY", "Redirected to the L7 proxy (not a drop)"},
}

// byCode and byName index the catalogue.
var (
	byCode = func() map[Reason]*entry {
		m := make(map[Reason]*entry, len(catalogue))
		for i := range catalogue {
			m[catalogue[i].code] = &catalogue[i]
		}
		return m
	}()
	byName = func() map[string]Reason {
		m := make(map[string]Reason, len(catalogue))
		for _, e := range catalogue {
			m[e.name] = e.code
		}
		return m
	}()
)

// String returns the catalogue name ("POLICY_DENIED"), or
// "UNKNOWN_REASON_<n>" for a code that is not in the catalogue.
func (r Reason) String() string {
	if e, ok := byCode[r]; ok {
		return e.name
	}
	return "UNKNOWN_REASON_" + strconv.Itoa(int(r))
}

// Description returns the catalogue's description of r, or "" for a code
// that is not in the catalogue.
func (r Reason) Description() string {
	if e, ok := byCode[r]; ok {
		return e.desc
	}
	return ""
}

// Known reports whether r is in the catalogue.
func (r Reason) Known() bool {
	_, ok := byCode[r]
	return ok
}

// IsDrop reports whether r means the packet was dropped: every code from 130
// up except PuntToProxy. Codes below 130 (Forwarded, EventLost) are metrics
// slots.
func (r Reason) IsDrop() bool {
	return r >= firstDrop && r != PuntToProxy
}

// FlowDropReason returns Hubble's flow.DropReason for r. Codes are shared
// with Cilium, so for a catalogued drop, and for PuntToProxy (Cilium's
// DROP_PUNT_PROXY), it is a conversion of the number; the names may differ
// (see docs/drop-reasons.md). Forwarded, EventLost, codes outside the
// catalogue and codes that Cilium's enum does not define map to
// flow.DropReason_DROP_REASON_UNKNOWN.
func (r Reason) FlowDropReason() flow.DropReason {
	if !r.Known() || r < firstDrop {
		return flow.DropReason_DROP_REASON_UNKNOWN
	}
	if _, ok := flow.DropReason_name[int32(r)]; !ok {
		return flow.DropReason_DROP_REASON_UNKNOWN
	}
	return flow.DropReason(r)
}

// All returns every catalogued reason, drops and non-drops, sorted by code.
func All() []Reason {
	out := make([]Reason, len(catalogue))
	for i, e := range catalogue {
		out[i] = e.code
	}
	return out
}

// Parse returns the reason named by name: a catalogue name, compared
// case-insensitively ("POLICY_DENIED", "policy_denied"), or a decimal code
// ("133"). The error wraps ErrUnknownReason when name is neither.
func Parse(name string) (Reason, error) {
	if r, ok := byName[strings.ToUpper(name)]; ok {
		return r, nil
	}
	if n, err := strconv.ParseUint(name, 10, 16); err == nil {
		if r := Reason(n); r.Known() {
			return r, nil
		}
	}
	return 0, fmt.Errorf("parse drop reason %q: %w", name, ErrUnknownReason)
}
