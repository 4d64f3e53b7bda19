// Package maps is the Go mirror of the datapath's BPF map ABI. Every type
// here names the C struct it mirrors (bpf/lib/*.h); TestLayoutMatchesBTF
// checks each against the compiled object's BTF, field by field. Fields
// whose name ends in Net hold network byte order.
package maps

// Address families as stored in map keys (common.h FAMILY_*).
const (
	FamilyIPv4 uint8 = 4
	FamilyIPv6 uint8 = 6
)

// Direction is the traffic direction relative to an endpoint (common.h DIR_*).
type Direction uint8

// Directions.
const (
	Ingress Direction = 1
	Egress  Direction = 2
)

// String returns "ingress" or "egress".
func (d Direction) String() string {
	switch d {
	case Ingress:
		return "ingress"
	case Egress:
		return "egress"
	}
	return "unknown"
}

// Reserved identities (Cilium's numbers) the datapath itself uses.
const (
	IdentityUnknown uint32 = 0
	IdentityHost    uint32 = 1
	IdentityWorld   uint32 = 2
)

// Tuple mirrors struct tuple (parse.h): a flow in one direction, and the
// conntrack key, where Dir is the side the entry was created on.
type Tuple struct {
	SAddr    [16]byte `btf:"saddr"`
	DAddr    [16]byte `btf:"daddr"`
	SPortNet uint16   `btf:"sport"`
	DPortNet uint16   `btf:"dport"`
	NextHdr  uint8    `btf:"nexthdr"`
	Family   uint8    `btf:"family"`
	Dir      uint8    `btf:"dir"`
	Pad      uint8    `btf:"pad"`
}

// Tuple4 mirrors struct tuple4 (ct.h): the IPv4 conntrack key.
type Tuple4 struct {
	SAddr    [4]byte `btf:"saddr"`
	DAddr    [4]byte `btf:"daddr"`
	SPortNet uint16  `btf:"sport"`
	DPortNet uint16  `btf:"dport"`
	NextHdr  uint8   `btf:"nexthdr"`
	Dir      uint8   `btf:"dir"`
	Pad      [2]byte `btf:"pad"`
}

// Conntrack entry flags (ct.h CT_F_*).
const (
	CTFlagReplySeen uint8 = 0x01
	CTFlagTxClosing uint8 = 0x02
	CTFlagRxClosing uint8 = 0x04
	CTFlagClosed    uint8 = 0x08
	// CTFlagPeerRemote: the peer was no local endpoint when the entry was
	// created, so egress packets go to the stack without an endpoint lookup.
	CTFlagPeerRemote uint8 = 0x10
	// CTFlagDSR: the ingress entry of a connection a load balancer sent
	// in DSR mode; the backend's replies leave with the frontend as source.
	CTFlagDSR uint8 = 0x20
	// CTFlagHairpin: an entry of a pod's connection to itself through a
	// service.
	CTFlagHairpin uint8 = 0x40
	// CTFlagRejected: the egress entry that lets the rejection of a
	// connection to a frontend without backends in; the pod's next packet
	// of that tuple is looked up as a service connection again.
	CTFlagRejected uint8 = 0x80
)

// DirService is the conntrack key direction of service entries (ct.h
// DIR_SERVICE): the client's tuple towards a frontend, whose entry pins
// the chosen backend (CTEntry.BackendID).
const DirService Direction = 3

// Conntrack states reported in events (ct.h CT_*).
const (
	CTNew         uint8 = 0
	CTEstablished uint8 = 1
	CTReply       uint8 = 2
	CTRelated     uint8 = 3
)

// CTEntry mirrors struct ct_entry (ct.h).
type CTEntry struct {
	Expires        uint64  `btf:"expires"` // jiffies (datapath.Jiffies)
	Packets        uint64  `btf:"packets"`
	Bytes          uint64  `btf:"bytes"`
	ReplyPackets   uint64  `btf:"reply_packets"`
	ReplyBytes     uint64  `btf:"reply_bytes"`
	RemoteIdentity uint32  `btf:"remote_identity"`
	PolicyRevision uint32  `btf:"policy_revision"`
	RuleID         uint32  `btf:"rule_id"`
	ProxyPortNet   uint16  `btf:"proxy_port"`
	PolicyPortNet  uint16  `btf:"policy_port"`
	Flags          uint8   `btf:"flags"`
	TCPFlags       uint8   `btf:"tcp_flags"`
	ReplyTCPFlags  uint8   `btf:"reply_tcp_flags"`
	Pad            [5]byte `btf:"pad"`
	// BackendID is the backend a service entry (DirService) pins.
	BackendID uint32 `btf:"backend_id"`
	// RevNatID, when not 0, is the frontend (cilia_lb_revnat) replies of
	// the connection are translated back to.
	RevNatID uint32 `btf:"rev_nat_id"`
}

// IPCacheKey mirrors struct ipcache_key (ipcache.h), an LPM trie key whose
// Prefixlen counts 32 bits of family/pad before the address prefix.
type IPCacheKey struct {
	Prefixlen uint32   `btf:"prefixlen"`
	Family    uint8    `btf:"family"`
	Pad       [3]byte  `btf:"pad"`
	Addr      [16]byte `btf:"addr"`
}

// IPCacheEntry mirrors struct ipcache_entry (ipcache.h).
type IPCacheEntry struct {
	Identity       uint32   `btf:"identity"`
	TunnelFamily   uint8    `btf:"tunnel_family"`
	Flags          uint8    `btf:"flags"`
	Pad            uint16   `btf:"pad"`
	TunnelEndpoint [16]byte `btf:"tunnel_endpoint"`
}

// AddrKey mirrors struct addr_key (common.h): an exact address, the key of
// the endpoints map and of the ipcache's host map.
type AddrKey struct {
	Addr   [16]byte `btf:"addr"`
	Family uint8    `btf:"family"`
	Pad    [7]byte  `btf:"pad"`
}

// EndpointInfo mirrors struct endpoint_info (endpoints.h).
type EndpointInfo struct {
	Ifindex    uint32  `btf:"ifindex"`
	EndpointID uint16  `btf:"ep_id"`
	Flags      uint16  `btf:"flags"`
	Identity   uint32  `btf:"identity"`
	MAC        [6]byte `btf:"mac"`
	NodeMAC    [6]byte `btf:"node_mac"`
}

// Endpoint policy state flags (endpoints.h EP_POLICY_*).
const (
	PolicyIngressEnforced uint32 = 0x1
	PolicyEgressEnforced  uint32 = 0x2
)

// EndpointPolicyState mirrors struct ep_policy_state (endpoints.h), the
// value of cilia_ep_policy indexed by endpoint id. PrefixLengths has bit i
// set when the endpoint's policy map holds a key of prefix length 40+i.
type EndpointPolicyState struct {
	Revision      uint32 `btf:"revision"`
	Flags         uint32 `btf:"flags"`
	PrefixLengths uint32 `btf:"prefix_lengths"`
	Pad           uint32 `btf:"pad"`
}

// Policy key prefix lengths (policy.h POLICY_PREFIX_*).
const (
	PolicyPrefixL3    = 40
	PolicyPrefixProto = 48
	PolicyPrefixFull  = 64
)

// PolicyKey mirrors struct policy_key (policy.h): a hash key whose bits
// beyond Prefixlen are zero (PolicyKeys builds them so).
type PolicyKey struct {
	Prefixlen uint32 `btf:"prefixlen"`
	Identity  uint32 `btf:"identity"`
	Egress    uint8  `btf:"egress"`
	Protocol  uint8  `btf:"protocol"`
	DPortNet  uint16 `btf:"dport"`
}

// Policy entry flags (policy.h POLICY_F_*).
const (
	PolicyFlagDeny uint8 = 0x1
)

// PolicyEntry mirrors struct policy_entry (policy.h).
type PolicyEntry struct {
	ProxyPortNet uint16 `btf:"proxy_port"`
	Flags        uint8  `btf:"flags"`
	Prefixlen    uint8  `btf:"prefixlen"`
	RuleID       uint32 `btf:"rule_id"`
}

// FragKey mirrors struct frag_key (frag.h).
type FragKey struct {
	SAddr   [16]byte `btf:"saddr"`
	DAddr   [16]byte `btf:"daddr"`
	ID      uint32   `btf:"id"`
	NextHdr uint8    `btf:"nexthdr"`
	Family  uint8    `btf:"family"`
	Pad     [2]byte  `btf:"pad"`
}

// FragPorts mirrors struct frag_ports (frag.h).
type FragPorts struct {
	SPortNet      uint16 `btf:"sport"`
	DPortNet      uint16 `btf:"dport"`
	PolicyPortNet uint16 `btf:"policy_port"`
	Pad           uint16 `btf:"pad"`
}

// MetricsValue mirrors struct metrics_value (events.h), one CPU's count.
type MetricsValue struct {
	Packets uint64 `btf:"packets"`
	Bytes   uint64 `btf:"bytes"`
}

// EventCaptureMax is the size of Event.Data (events.h EVENT_CAPTURE_MAX).
const EventCaptureMax = 128

// Event mirrors struct event (events.h), one ring buffer record.
type Event struct {
	Timestamp      uint64                `btf:"timestamp"`
	Type           uint8                 `btf:"type"`
	ObsPoint       uint8                 `btf:"obs_point"`
	CTState        uint8                 `btf:"ct_state"`
	Direction      uint8                 `btf:"direction"`
	Reason         uint16                `btf:"reason"`
	EndpointID     uint16                `btf:"ep_id"`
	SrcIdentity    uint32                `btf:"src_identity"`
	DstIdentity    uint32                `btf:"dst_identity"`
	Ifindex        uint32                `btf:"ifindex"`
	RuleID         uint32                `btf:"rule_id"`
	ProxyPortNet   uint16                `btf:"proxy_port"`
	PolicyMatch    uint8                 `btf:"policy_match"`
	Verdict        uint8                 `btf:"verdict"`
	OrigLen        uint32                `btf:"orig_len"`
	CapLen         uint16                `btf:"cap_len"`
	TunnelFamily   uint8                 `btf:"tunnel_family"` // FamilyIPv4 when encapsulated / from the overlay
	Pad            uint8                 `btf:"pad"`
	TunnelID       uint32                `btf:"tunnel_id"`       // VNI (the source identity)
	TunnelEndpoint [16]byte              `btf:"tunnel_endpoint"` // remote node, IPv4 in the first 4 bytes
	Data           [EventCaptureMax]byte `btf:"data"`
}

// skb->mark values handed between the programs of a node (mark.h).
const (
	MarkMagicHostMask uint32 = 0x0F00
	MarkMagicToProxy  uint32 = 0x0200
	MarkMagicIdentity uint32 = 0x0F00
)

// IdentityMark returns the skb->mark carrying identity (mark.h
// mark_encode_identity): its bits 0-15 in mark bits 16-31, bits 16-23 in
// mark bits 0-7, bits 24-27 in mark bits 12-15 (local CIDR identities),
// MarkMagicIdentity in bits 8-11. Bits above 27 are lost.
func IdentityMark(identity uint32) uint32 {
	return MarkMagicIdentity | (identity&0xFFFF)<<16 | (identity>>16)&0xFF | (identity>>24&0xF)<<12
}

// MarkIdentity returns the identity mark carries, and whether it carries
// one (mark.h mark_has_identity, mark_identity).
func MarkIdentity(mark uint32) (uint32, bool) {
	if mark&MarkMagicHostMask != MarkMagicIdentity {
		return 0, false
	}
	return (mark>>16)&0xFFFF | (mark&0xFF)<<16 | (mark>>12&0xF)<<24, true
}
