package policy

import (
	"testing"

	"github.com/ciliaproject/cilia/agent/identity"
	"github.com/ciliaproject/cilia/datapath/maps"
)

// rawEntrySpec is one raw policy entry for a hand-built EndpointPolicy.
type rawEntrySpec struct {
	id     identity.NumericIdentity
	dir    maps.Direction
	proto  uint8
	lo, hi uint16
	deny   bool
	rule   uint32
}

// handBuilt returns an EndpointPolicy enforced in the directions given,
// holding exactly the entries of specs (bypassing resolution), so that
// Lookup's precedence can be checked on any combination of entries.
func handBuilt(t *testing.T, ingress, egress bool, specs ...rawEntrySpec) *EndpointPolicy {
	t.Helper()
	p := &EndpointPolicy{
		Ingress: &DirPolicy{Dir: maps.Ingress, Enforced: ingress, raw: map[identity.NumericIdentity]map[maps.PolicyKey]*rawEntry{}},
		Egress:  &DirPolicy{Dir: maps.Egress, Enforced: egress, raw: map[identity.NumericIdentity]map[maps.PolicyKey]*rawEntry{}},
	}
	for _, s := range specs {
		d := p.Ingress
		if s.dir == maps.Egress {
			d = p.Egress
		}
		keys, err := maps.PolicyKeys(uint32(s.id), s.dir, s.proto, maps.PortRange{Lo: s.lo, Hi: s.hi})
		if err != nil {
			t.Fatal(err)
		}
		if d.raw[s.id] == nil {
			d.raw[s.id] = map[maps.PolicyKey]*rawEntry{}
		}
		for _, k := range keys {
			e := &rawEntry{}
			o := []*Origin{{Policy: "test", RuleID: s.rule}}
			if s.deny {
				e.denies = o
			} else {
				e.allows = o
			}
			d.raw[s.id][k] = e
		}
	}
	return p
}

func TestLookupPrecedence(t *testing.T) {
	const peer identity.NumericIdentity = 300
	const other identity.NumericIdentity = 301
	I, E := maps.Ingress, maps.Egress
	allow := func(id identity.NumericIdentity, proto uint8, lo, hi uint16, rule uint32) rawEntrySpec {
		return rawEntrySpec{id: id, dir: I, proto: proto, lo: lo, hi: hi, rule: rule}
	}
	deny := func(id identity.NumericIdentity, proto uint8, lo, hi uint16, rule uint32) rawEntrySpec {
		return rawEntrySpec{id: id, dir: I, proto: proto, lo: lo, hi: hi, deny: true, rule: rule}
	}
	tests := []struct {
		name      string
		enforced  bool
		entries   []rawEntrySpec
		dir       maps.Direction
		proto     uint8
		port      uint16
		want      string // verdictOf
		wantRule  uint32 // rule of the deciding entry (0: none)
		wantID    identity.NumericIdentity
		wantPlen  uint32
		wantMatch bool
	}{
		{name: "not enforced allows", enforced: false, entries: []rawEntrySpec{deny(peer, 0, 0, 0, 1)},
			dir: I, proto: pTCP, port: 80, want: "unenforced"},
		{name: "enforced, no entry: default deny", enforced: true,
			dir: I, proto: pTCP, port: 80, want: "POLICY_DENIED"},
		{name: "entries of other identities do not match", enforced: true, entries: []rawEntrySpec{allow(other, 0, 0, 0, 1)},
			dir: I, proto: pTCP, port: 80, want: "POLICY_DENIED"},
		{name: "entries of the other direction do not match", enforced: true,
			entries: []rawEntrySpec{{id: peer, dir: E, rule: 1}},
			dir:     I, proto: pTCP, port: 80, want: "POLICY_DENIED"},
		{name: "identity L3 allow", enforced: true, entries: []rawEntrySpec{allow(peer, 0, 0, 0, 1)},
			dir: I, proto: pUDP, port: 53, want: "allow", wantMatch: true, wantRule: 1, wantID: peer, wantPlen: 40},
		{name: "any-identity allow", enforced: true, entries: []rawEntrySpec{allow(0, pTCP, 80, 80, 1)},
			dir: I, proto: pTCP, port: 80, want: "allow", wantMatch: true, wantRule: 1, wantID: 0, wantPlen: 64},
		{name: "other protocol does not match", enforced: true, entries: []rawEntrySpec{allow(peer, pTCP, 80, 80, 1)},
			dir: I, proto: pUDP, port: 80, want: "POLICY_DENIED"},
		{name: "other port does not match", enforced: true, entries: []rawEntrySpec{allow(peer, pTCP, 80, 80, 1)},
			dir: I, proto: pTCP, port: 81, want: "POLICY_DENIED"},
		{name: "protocol entry matches every port", enforced: true, entries: []rawEntrySpec{allow(peer, pTCP, 0, 0, 1)},
			dir: I, proto: pTCP, port: 65535, want: "allow", wantMatch: true, wantRule: 1, wantID: peer, wantPlen: 48},
		{name: "identity deny wins over a longer any-identity allow", enforced: true,
			entries: []rawEntrySpec{deny(peer, 0, 0, 0, 1), allow(0, pTCP, 80, 80, 2)},
			dir:     I, proto: pTCP, port: 80, want: "POLICY_DENY", wantMatch: true, wantRule: 1, wantID: peer, wantPlen: 40},
		{name: "any-identity deny wins over a longer identity allow", enforced: true,
			entries: []rawEntrySpec{allow(peer, pTCP, 80, 80, 1), deny(0, 0, 0, 0, 2)},
			dir:     I, proto: pTCP, port: 80, want: "POLICY_DENY", wantMatch: true, wantRule: 2, wantID: 0, wantPlen: 40},
		{name: "any-identity deny of a port leaves other ports to the identity allow", enforced: true,
			entries: []rawEntrySpec{allow(peer, 0, 0, 0, 1), deny(0, pTCP, 80, 80, 2)},
			dir:     I, proto: pTCP, port: 81, want: "allow", wantMatch: true, wantRule: 1, wantID: peer, wantPlen: 40},
		{name: "both deny: the identity's is reported", enforced: true,
			entries: []rawEntrySpec{deny(peer, pTCP, 0, 0, 1), deny(0, pTCP, 80, 80, 2)},
			dir:     I, proto: pTCP, port: 80, want: "POLICY_DENY", wantMatch: true, wantRule: 1, wantID: peer, wantPlen: 48},
		{name: "longer any-identity allow wins over a shorter identity allow", enforced: true,
			entries: []rawEntrySpec{allow(peer, 0, 0, 0, 1), allow(0, pTCP, 80, 80, 2)},
			dir:     I, proto: pTCP, port: 80, want: "allow", wantMatch: true, wantRule: 2, wantID: 0, wantPlen: 64},
		{name: "longer identity allow wins over a shorter any-identity allow", enforced: true,
			entries: []rawEntrySpec{allow(peer, pTCP, 80, 80, 1), allow(0, 0, 0, 0, 2)},
			dir:     I, proto: pTCP, port: 80, want: "allow", wantMatch: true, wantRule: 1, wantID: peer, wantPlen: 64},
		{name: "tie at L4: the identity's entry", enforced: true,
			entries: []rawEntrySpec{allow(peer, pTCP, 80, 80, 1), allow(0, pTCP, 80, 80, 2)},
			dir:     I, proto: pTCP, port: 80, want: "allow", wantMatch: true, wantRule: 1, wantID: peer, wantPlen: 64},
		{name: "tie at protocol: the identity's entry", enforced: true,
			entries: []rawEntrySpec{allow(0, pTCP, 0, 0, 2), allow(peer, pTCP, 0, 0, 1)},
			dir:     I, proto: pTCP, port: 80, want: "allow", wantMatch: true, wantRule: 1, wantID: peer, wantPlen: 48},
		{name: "tie at L3: the identity's entry", enforced: true,
			entries: []rawEntrySpec{allow(0, 0, 0, 0, 2), allow(peer, 0, 0, 0, 1)},
			dir:     I, proto: pTCP, port: 80, want: "allow", wantMatch: true, wantRule: 1, wantID: peer, wantPlen: 40},
		{name: "an identity deny covering its own longer allow wins", enforced: true,
			entries: []rawEntrySpec{allow(peer, pTCP, 80, 80, 1), deny(peer, pTCP, 0, 0, 2)},
			dir:     I, proto: pTCP, port: 80, want: "POLICY_DENY", wantMatch: true, wantRule: 2, wantID: peer, wantPlen: 48},
		{name: "a longer identity deny inside its allow", enforced: true,
			entries: []rawEntrySpec{allow(peer, 0, 0, 0, 1), deny(peer, pTCP, 80, 80, 2)},
			dir:     I, proto: pTCP, port: 80, want: "POLICY_DENY", wantMatch: true, wantRule: 2, wantID: peer, wantPlen: 64},
		{name: "egress lookup uses egress entries", enforced: true,
			entries: []rawEntrySpec{{id: peer, dir: E, proto: pUDP, lo: 53, hi: 53, rule: 1}, allow(peer, 0, 0, 0, 2)},
			dir:     E, proto: pUDP, port: 53, want: "allow", wantMatch: true, wantRule: 1, wantID: peer, wantPlen: 64},
		{name: "egress lookup ignores ingress entries", enforced: true,
			entries: []rawEntrySpec{allow(peer, 0, 0, 0, 2)},
			dir:     E, proto: pUDP, port: 53, want: "POLICY_DENIED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := handBuilt(t, tt.enforced, tt.enforced, tt.entries...)
			d := p.Lookup(tt.dir, peer, tt.proto, tt.port)
			if got := verdictOf(d); got != tt.want {
				t.Fatalf("verdict %s, want %s (decision %+v)", got, tt.want, d)
			}
			if d.Enforced != tt.enforced || d.Matched != tt.wantMatch {
				t.Errorf("Enforced %v Matched %v, want %v %v", d.Enforced, d.Matched, tt.enforced, tt.wantMatch)
			}
			if d.Allowed == (tt.want == "POLICY_DENY" || tt.want == "POLICY_DENIED") {
				t.Errorf("Allowed = %v with verdict %s", d.Allowed, tt.want)
			}
			if (tt.want == "allow" || tt.want == "unenforced") && d.DropReason != "" {
				t.Errorf("DropReason %q on an allowed packet", d.DropReason)
			}
			if !tt.wantMatch {
				return
			}
			if identity.NumericIdentity(d.Key.Identity) != tt.wantID || d.Key.Prefixlen != tt.wantPlen {
				t.Errorf("decided by key identity %d prefix %d, want identity %d prefix %d",
					d.Key.Identity, d.Key.Prefixlen, tt.wantID, tt.wantPlen)
			}
			if d.Value.Entry.RuleID != tt.wantRule {
				t.Errorf("decided by rule %d, want %d", d.Value.Entry.RuleID, tt.wantRule)
			}
			wantEgress := uint8(0)
			if tt.dir == maps.Egress {
				wantEgress = 1
			}
			if d.Key.Egress != wantEgress {
				t.Errorf("key direction %d, want %d", d.Key.Egress, wantEgress)
			}
		})
	}
}

func TestLookupPortRangeEdges(t *testing.T) {
	const peer identity.NumericIdentity = 300
	tests := []struct {
		name    string
		proto   uint8
		lo, hi  uint16
		allowed []uint16
		denied  []uint16
	}{
		{"80-90", pTCP, 80, 90, []uint16{80, 81, 87, 88, 89, 90}, []uint16{0, 1, 79, 91, 96, 65535}},
		{"1024-65535", pTCP, 1024, 65535, []uint16{1024, 1025, 2047, 2048, 32768, 65534, 65535}, []uint16{0, 1, 80, 1023}},
		{"1-1023", pUDP, 1, 1023, []uint16{1, 2, 512, 1022, 1023}, []uint16{0, 1024, 65535}},
		{"single port 443", pTCP, 443, 443, []uint16{443}, []uint16{442, 444}},
		{"unaligned 1001-1001", pTCP, 1001, 1001, []uint16{1001}, []uint16{1000, 1002}},
		{"high port 40000", pUDP, 40000, 40000, []uint16{40000}, []uint16{39999, 40001, 7232}},
		{"top ports 65534-65535", pTCP, 65534, 65535, []uint16{65534, 65535}, []uint16{65533, 32767}},
		{"odd range 3-12", pSCTP, 3, 12, []uint16{3, 4, 7, 8, 11, 12}, []uint16{0, 2, 13, 16}},
		{"whole range 0-65535", pTCP, 0, 65535, []uint16{0, 1, 80, 65535}, nil},
		{"ICMP type 8", pICMP, 8, 8, []uint16{8}, []uint16{0, 7, 9, 128}},
		{"ICMPv6 type 128", protoICMPv6, 128, 128, []uint16{128}, []uint16{8, 127, 129}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := handBuilt(t, true, false, rawEntrySpec{id: peer, dir: maps.Ingress, proto: tt.proto, lo: tt.lo, hi: tt.hi, rule: 7})
			for _, port := range tt.allowed {
				if d := p.Lookup(maps.Ingress, peer, tt.proto, port); !d.Allowed || d.Value.Entry.RuleID != 7 {
					t.Errorf("%s/%d: %s, want allow", ProtoName(tt.proto), port, verdictOf(d))
				}
			}
			for _, port := range tt.denied {
				if d := p.Lookup(maps.Ingress, peer, tt.proto, port); d.Allowed || d.DropReason != "POLICY_DENIED" {
					t.Errorf("%s/%d: %s, want POLICY_DENIED", ProtoName(tt.proto), port, verdictOf(d))
				}
			}
			other := pTCP
			if tt.proto == pTCP {
				other = pUDP
			}
			if d := p.Lookup(maps.Ingress, peer, other, tt.lo); d.Allowed {
				t.Errorf("%s/%d allowed by a %s entry", ProtoName(other), tt.lo, ProtoName(tt.proto))
			}
		})
	}
}

const pSCTP = protoSCTP
