// Package policy is the reference agent's policy engine: it translates
// CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy and NetworkPolicy
// objects (parsed by agent/policy/load) into rules over selectors, keeps a
// selector cache (selector → identities it selects, updated incrementally
// as identities come and go), and resolves each endpoint's ingress and
// egress policy into the datapath's policy map entries.
//
// Semantics follow Cilium (docs/security/policy/language.rst) and, for
// NetworkPolicy, the Kubernetes API (networking.k8s.io/v1) as Cilium
// implements it; docs/policy-engine.md states every rule.
package policy

import (
	"fmt"

	"github.com/ciliaproject/cilia/datapath/maps"
)

// Origin says where a rule comes from, for traces, drop events and
// errors.
type Origin struct {
	// Policy is "Kind namespace/name" (or "Kind name" when clusterwide).
	Policy string
	// Path is the field path of the rule within the object, e.g.
	// "spec.ingress[0]" or "specs[1].egressDeny[0]".
	Path string
	File string
	Line int
	// RuleID is the number the datapath reports in drop events.
	RuleID uint32
}

// String formats the origin as "Kind ns/name spec.ingress[0] (file:line)".
func (o *Origin) String() string {
	s := o.Policy
	if o.Path != "" {
		s += " " + o.Path
	}
	if o.File != "" {
		s += fmt.Sprintf(" (%s:%d)", o.File, o.Line)
	}
	return s
}

// PortProto is a protocol and port range a rule allows or denies. Lo and
// Hi 0 mean any port; Name is a named port to resolve on the destination
// pod (Lo and Hi are then 0). Proto 0 means any protocol. For ICMP the
// "port" is the ICMP type.
type PortProto struct {
	Proto  uint8
	Lo, Hi uint16
	Name   string
}

// PeerRule is one allow or deny term of a rule: peers and the ports
// reachable on them.
type PeerRule struct {
	Origin *Origin
	Deny   bool
	// Peers are the selectors of the peers; nil means any peer.
	Peers []*Selector
	// Ports are the ports; nil means any protocol and port.
	Ports []PortProto
}

// Section is the ingress or the egress half of a rule.
type Section struct {
	// Present: the rule has rules in this direction, so it puts selected
	// endpoints under policy enforcement in this direction.
	Present bool
	// DefaultDeny: when Present, whether traffic no rule allows is denied
	// (false only with Cilium's enableDefaultDeny set to false).
	DefaultDeny bool
	Rules       []*PeerRule
}

// Rule is one translated rule: the endpoints it applies to and what it
// allows and denies.
type Rule struct {
	Origin  *Origin
	Subject *Selector
	Ingress Section
	Egress  Section
}

// section returns the half of r for dir.
func (r *Rule) section(dir maps.Direction) *Section {
	if dir == maps.Egress {
		return &r.Egress
	}
	return &r.Ingress
}

// Protocol numbers.
const (
	protoICMP   uint8 = 1
	protoTCP    uint8 = 6
	protoUDP    uint8 = 17
	protoICMPv6 uint8 = 58
	protoSCTP   uint8 = 132
)

// ProtoName returns the name of an IP protocol number.
func ProtoName(p uint8) string {
	switch p {
	case 0:
		return "ANY"
	case protoICMP:
		return "ICMP"
	case protoTCP:
		return "TCP"
	case protoUDP:
		return "UDP"
	case protoICMPv6:
		return "ICMPv6"
	case protoSCTP:
		return "SCTP"
	}
	return fmt.Sprintf("proto-%d", p)
}

// ProtoNumber returns the IP protocol number of a name (TCP, UDP, SCTP,
// ICMP, ICMPv6), case-insensitively.
func ProtoNumber(name string) (uint8, bool) {
	for _, p := range []uint8{protoTCP, protoUDP, protoSCTP, protoICMP, protoICMPv6} {
		if equalFold(ProtoName(p), name) {
			return p, true
		}
	}
	return 0, false
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'a' <= x && x <= 'z' {
			x -= 'a' - 'A'
		}
		if 'a' <= y && y <= 'z' {
			y -= 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
