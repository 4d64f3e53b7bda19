package policy

import (
	"github.com/ciliaproject/cilia/agent/identity"
	"github.com/ciliaproject/cilia/datapath/maps"
)

// Decision is the verdict of a policy lookup and what decided it.
type Decision struct {
	// Enforced is false when the endpoint has no policy in the direction
	// (everything is allowed).
	Enforced bool
	Allowed  bool
	// Matched is false when no entry matched (an enforced default deny).
	Matched bool
	Key     maps.PolicyKey
	Value   MapValue
	// DropReason is the catalogue name of a denial: POLICY_DENY for a deny
	// rule, POLICY_DENIED when nothing allowed the traffic.
	DropReason string
}

// Lookup decides a packet the way the datapath's policy_lookup does
// (bpf/lib/policy.h): no enforcement allows; otherwise the longest
// matching entry for the peer's identity and the longest for any identity
// (0) are found, a deny in either wins, else the longer prefix allows
// (a tie goes to the identity-specific entry), and no match is a default
// deny. For ICMP, port is the ICMP type.
func (p *EndpointPolicy) Lookup(dir maps.Direction, peer identity.NumericIdentity, proto uint8, port uint16) Decision {
	d := p.Ingress
	if dir == maps.Egress {
		d = p.Egress
	}
	if !d.Enforced {
		return Decision{Allowed: true}
	}
	state := p.MapStateOf([]identity.NumericIdentity{peer, 0})
	specific, okS := longestMatch(state, peer, dir, proto, port)
	anyID, okA := longestMatch(state, 0, dir, proto, port)
	dec := Decision{Enforced: true}
	switch {
	case okS && state[specific].Deny():
		dec.Matched, dec.Key = true, specific
	case okA && state[anyID].Deny():
		dec.Matched, dec.Key = true, anyID
	case okS && (!okA || specific.Prefixlen >= anyID.Prefixlen):
		dec.Matched, dec.Key = true, specific
	case okA:
		dec.Matched, dec.Key = true, anyID
	}
	if !dec.Matched {
		dec.DropReason = "POLICY_DENIED"
		return dec
	}
	dec.Value = state[dec.Key]
	dec.Allowed = !dec.Value.Deny()
	if !dec.Allowed {
		dec.DropReason = "POLICY_DENY"
	}
	return dec
}

// longestMatch returns the longest entry of state matching the packet for
// identity n.
func longestMatch(state map[maps.PolicyKey]MapValue, n identity.NumericIdentity, dir maps.Direction, proto uint8, port uint16) (maps.PolicyKey, bool) {
	egress := uint8(0)
	if dir == maps.Egress {
		egress = 1
	}
	full := maps.PolicyKey{Prefixlen: maps.PolicyPrefixFull, Identity: uint32(n), Egress: egress, Protocol: proto,
		DPortNet: maps.HostToNet16(port)}
	for pl := uint32(maps.PolicyPrefixFull); pl >= maps.PolicyPrefixL3; pl-- {
		if pl < maps.PolicyPrefixProto && pl > maps.PolicyPrefixL3 {
			continue
		}
		k := maskKey(full, pl)
		if _, ok := state[k]; ok {
			return k, true
		}
	}
	return maps.PolicyKey{}, false
}
