package testrun_test

// Fragments: a first fragment records its ports (frag.h), a later fragment
// of the same datagram (addresses, protocol, id) gets them back and is
// treated as a packet of the same flow by conntrack and policy. Fragments
// that hide the L4 header are dropped. Every case runs from_container (the
// pod sends, from its own address) and to_container (the pod receives).
// Builders and assertions are in malformed_test.go.

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/ciliaproject/cilia/datapath"
	"github.com/ciliaproject/cilia/datapath/dropreason"
	"github.com/ciliaproject/cilia/datapath/maps"
	"github.com/ciliaproject/cilia/datapath/testrun"
)

// frFrag returns a fragment from src to dst of a datagram of protocol proto
// with identification id, at offset off8 (8-byte units), with the more
// fragments flag, carrying payload: an IPv4 fragment, or for IPv6 addresses
// an IPv6 packet with a fragment header.
func frFrag(src, dst netip.Addr, proto uint8, id uint32, off8 uint16, more bool, payload []byte) []byte {
	if src.Is4() {
		return mfSetIPv4Frag(mfIPv4(src, dst, proto, nil, payload), uint16(id), off8, more)
	}
	return mfIPv6(src, dst, mfProtoFrag, append(mfFragHdr(proto, off8, more, id), payload...))
}

// frFragEntries returns the fragment map's entries.
func frFragEntries(t *testing.T, h *testrun.Harness) map[maps.FragKey]maps.FragPorts {
	t.Helper()
	out := map[maps.FragKey]maps.FragPorts{}
	var (
		k maps.FragKey
		v maps.FragPorts
	)
	it := h.Node.Maps[datapath.MapFrag].Iterate()
	for it.Next(&k, &v) {
		out[k] = v
	}
	if err := it.Err(); err != nil {
		t.Fatalf("iterate fragment map: %v", err)
	}
	return out
}

// TestFragmentHiddenL4Header: fragments whose L4 header the datapath cannot
// see or trust are dropped: a first fragment too short for its L4 header
// (CT_TRUNCATED_OR_INVALID_HEADER), an IPv4 TCP fragment at offset 8 bytes
// that can only serve to overwrite the TCP header (RFC 1858:
// IP_FRAGMENTATION_NOT_SUPPORTED), a fragmented ICMP error
// (IP_FRAGMENTATION_NOT_SUPPORTED), and a non-first fragment whose first
// fragment was never seen (FIRST_LOGICAL_DATAGRAM_FRAGMENT_NOT_FOUND).
func TestFragmentHiddenL4Header(t *testing.T) {
	type build func(src, dst netip.Addr) []byte
	frag := func(proto uint8, off8 uint16, more bool, payload []byte) build {
		return func(src, dst netip.Addr) []byte { return frFrag(src, dst, proto, 0x4242, off8, more, payload) }
	}
	tcp := mfTCP(mfClientPort, mfServerPort, mfFlagSYN, []byte("0123456789abcdef"))
	udp := mfUDP(mfClientPort, 53, []byte("0123456789abcdef"))
	data := []byte("0123456789abcdef")
	icmpErr := func(v6 bool) build {
		return func(src, dst netip.Addr) []byte {
			orig := mfPacket(dst, src, mfProtoTCP, mfTCP(mfClientPort, mfServerPort, mfFlagSYN, nil))
			proto := mfProtoICMP
			if v6 {
				proto = mfProtoICMPv6
			}
			return frFrag(src, dst, proto, 0x4242, 0, true, mfICMPError(v6, mfQuote(orig, v6)))
		}
	}
	trunc := dropreason.CTTruncatedOrInvalidHeader
	notSupp := dropreason.IPFragmentationNotSupported
	notFound := dropreason.FirstLogicalDatagramFragmentNotFound
	cases := []struct {
		name   string
		v6     bool
		build  build
		reason dropreason.Reason
	}{
		{"ipv4/tcp-first-fragment-8-of-20-header-bytes", false, frag(mfProtoTCP, 0, true, tcp[:8]), trunc},
		{"ipv4/tcp-first-fragment-19-of-20-header-bytes", false, frag(mfProtoTCP, 0, true, tcp[:19]), trunc},
		{"ipv4/tcp-first-fragment-no-bytes", false, frag(mfProtoTCP, 0, true, nil), trunc},
		{"ipv4/udp-first-fragment-4-of-8-header-bytes", false, frag(mfProtoUDP, 0, true, udp[:4]), trunc},
		{"ipv4/sctp-first-fragment-8-of-12-header-bytes", false, frag(mfProtoSCTP, 0, true, mfSCTP(mfClientPort, 5000)[:8]), trunc},
		{"ipv4/icmp-first-fragment-4-of-8-header-bytes", false, frag(mfProtoICMP, 0, true, mfICMPEcho(false, 7)[:4]), trunc},
		{"ipv6/tcp-first-fragment-8-of-20-header-bytes", true, frag(mfProtoTCP, 0, true, tcp[:8]), trunc},
		{"ipv6/udp-first-fragment-4-of-8-header-bytes", true, frag(mfProtoUDP, 0, true, udp[:4]), trunc},
		{"ipv6/icmpv6-first-fragment-4-of-8-header-bytes", true, frag(mfProtoICMPv6, 0, true, mfICMPEcho(true, 7)[:4]), trunc},

		{"ipv4/tcp-offset-1-rfc1858", false, frag(mfProtoTCP, 1, true, data), notSupp},
		{"ipv4/tcp-offset-1-last-fragment-rfc1858", false, frag(mfProtoTCP, 1, false, data), notSupp},
		// RFC 8200 4.5 forbids overlapping fragments: the same rule for IPv6.
		{"ipv6/tcp-offset-1-rfc1858", true, frag(mfProtoTCP, 1, true, data), notSupp},
		{"ipv4/icmp-error-first-fragment", false, icmpErr(false), notSupp},
		{"ipv6/icmpv6-error-first-fragment", true, icmpErr(true), notSupp},

		// RFC 1858's offset 1 is a TCP rule: a UDP fragment at offset 1
		// is an ordinary later fragment, here without its first.
		{"ipv4/udp-offset-1-no-first-fragment", false, frag(mfProtoUDP, 1, true, data), notFound},
		{"ipv4/tcp-offset-2-no-first-fragment", false, frag(mfProtoTCP, 2, true, data), notFound},
		{"ipv4/udp-last-fragment-no-first-fragment", false, frag(mfProtoUDP, 3, false, data), notFound},
		{"ipv4/udp-middle-fragment-no-first-fragment", false, frag(mfProtoUDP, 100, true, data), notFound},
		{"ipv4/icmp-later-fragment-no-first-fragment", false, frag(mfProtoICMP, 2, false, data), notFound},
		{"ipv6/udp-last-fragment-no-first-fragment", true, frag(mfProtoUDP, 2, false, data), notFound},
		{"ipv6/tcp-middle-fragment-no-first-fragment", true, frag(mfProtoTCP, 3, true, data), notFound},
	}
	h, ep := mfNewHarness(t, datapath.Settings{})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, d := range mfDirs {
				src, dst := d.addrs(c.v6)
				mfExpectDrop(t, h, ep, d, c.build(src, dst), c.reason)
			}
		})
	}
	if ct, err := h.CTEntries(); err != nil || len(ct) != 0 {
		t.Errorf("dropped fragments left conntrack entries %v (err %v)", ct, err)
	}
}

// TestFragmentDatagram: a proper first fragment (full L4 header, more
// fragments) followed by a later fragment of the same datagram. Both get the
// same verdict: allowed when the policy allows the L4 port of the first
// fragment, both dropped POLICY_DENIED when it does not. The later fragment
// is accounted to the conntrack entry of the first (the ports come from the
// first fragment): packets == 2.
func TestFragmentDatagram(t *testing.T) {
	type proto struct {
		name     string
		num      uint8
		port     uint16
		datagram []byte // the whole L4 datagram
		firstLen int    // bytes of it in the first fragment (multiple of 8)
	}
	protos := []proto{
		{"udp", mfProtoUDP, 53, mfUDP(mfClientPort, 53, []byte("0123456789abcdef01234567")), 16},
		{"tcp", mfProtoTCP, 80, mfTCP(mfClientPort, 80, mfFlagSYN, []byte("0123456789ab")), 24},
	}
	for _, fam := range []string{"ipv4", "ipv6"} {
		v6 := fam == "ipv6"
		for _, p := range protos {
			for _, d := range mfDirs {
				for _, allowed := range []bool{true, false} {
					verdict := "allowed"
					if !allowed {
						verdict = "denied"
					}
					t.Run(fmt.Sprintf("%s/%s/%s/%s", fam, p.name, d.name, verdict), func(t *testing.T) {
						h, ep := mfNewHarness(t, datapath.Settings{})
						// The rule allows the datagram's port, or only the
						// next one, so that a denial is the policy's.
						port := p.port
						if !allowed {
							port++
						}
						if err := ep.AddRule(testrun.Rule{Direction: d.dir, Protocol: p.num, Ports: maps.PortRange{Lo: port, Hi: port}, RuleID: 42}); err != nil {
							t.Fatal(err)
						}
						if err := ep.SetEnforcement(d.dir == maps.Ingress, d.dir == maps.Egress); err != nil {
							t.Fatal(err)
						}
						src, dst := d.addrs(v6)
						const id = 0x5151
						first := frFrag(src, dst, p.num, id, 0, true, p.datagram[:p.firstLen])
						later := frFrag(src, dst, p.num, id, uint16(p.firstLen/8), false, p.datagram[p.firstLen:])
						key := maps.NewTuple(netip.AddrPortFrom(src, mfClientPort), netip.AddrPortFrom(dst, p.port), p.num, d.dir)

						if !allowed {
							mfExpectDrop(t, h, ep, d, first, dropreason.PolicyDenied)
							mfExpectDrop(t, h, ep, d, later, dropreason.PolicyDenied)
							if ct, _ := h.CTEntries(); len(ct) != 0 {
								t.Errorf("denied fragments left conntrack entries: %v", ct)
							}
							return
						}

						r1 := mfExpectPass(t, h, ep, d, first)
						if tr, ok := r1.Trace(); ok && (tr.CTState != maps.CTNew || tr.RuleID != 42) {
							t.Errorf("first fragment: trace %v, want a new connection allowed by rule 42", tr)
						}
						// The first fragment recorded its ports.
						frags := frFragEntries(t, h)
						if len(frags) != 1 {
							t.Errorf("fragment map %v, want one entry", frags)
						}
						for k, v := range frags {
							if maps.NetToHost16(v.SPortNet) != mfClientPort || maps.NetToHost16(v.DPortNet) != p.port || k.NextHdr != p.num {
								t.Errorf("fragment entry %+v -> %+v, want ports %d -> %d proto %d", k, v, mfClientPort, p.port, p.num)
							}
						}

						r2 := mfExpectPass(t, h, ep, d, later)
						if tr, ok := r2.Trace(); ok && tr.CTState != maps.CTEstablished {
							t.Errorf("later fragment: trace %v, want conntrack state ESTABLISHED (the first fragment's flow)", tr)
						}
						e, ok, err := h.LookupCT(key)
						if err != nil || !ok {
							t.Fatalf("no conntrack entry %s (err %v)", key, err)
						}
						if e.Packets != 2 || e.Bytes != uint64(len(first)+len(later)) {
							t.Errorf("conntrack entry %s: packets %d bytes %d, want 2 and %d (both fragments)", key, e.Packets, e.Bytes, len(first)+len(later))
						}
						if ct, _ := h.CTEntries(); len(ct) != 1 {
							t.Errorf("conntrack entries %v, want only %s", ct, key)
						}

						// The ports are tied to the datagram: a later fragment
						// of another id has no first fragment.
						other := frFrag(src, dst, p.num, id+1, uint16(p.firstLen/8), false, p.datagram[p.firstLen:])
						mfExpectDrop(t, h, ep, d, other, dropreason.FirstLogicalDatagramFragmentNotFound)
						if p.num == mfProtoTCP && !v6 {
							// RFC 1858 holds even when the first fragment
							// was seen: offset 8 bytes rewrites its header.
							mfExpectDrop(t, h, ep, d, frFrag(src, dst, p.num, id, 1, true, p.datagram[8:]), dropreason.IPFragmentationNotSupported)
						}
						if e, _, _ := h.LookupCT(key); e.Packets != 2 {
							t.Errorf("dropped fragments were accounted: conntrack packets %d, want 2", e.Packets)
						}
					})
				}
			}
		}
	}
}

// TestFragmentThreeFragments: first, middle (offset > 0, more fragments)
// and last fragment of one datagram all belong to the first's flow.
func TestFragmentThreeFragments(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		for _, d := range mfDirs {
			t.Run(fmt.Sprintf("v6=%v/%s", v6, d.name), func(t *testing.T) {
				h, ep := mfNewHarness(t, datapath.Settings{})
				src, dst := d.addrs(v6)
				dg := mfUDP(mfClientPort, 53, make([]byte, 40))
				frags := [][]byte{
					frFrag(src, dst, mfProtoUDP, 9, 0, true, dg[:16]),
					frFrag(src, dst, mfProtoUDP, 9, 2, true, dg[16:32]),
					frFrag(src, dst, mfProtoUDP, 9, 4, false, dg[32:]),
				}
				var total uint64
				for _, f := range frags {
					mfExpectPass(t, h, ep, d, f)
					total += uint64(len(f))
				}
				key := maps.NewTuple(netip.AddrPortFrom(src, mfClientPort), netip.AddrPortFrom(dst, 53), mfProtoUDP, d.dir)
				if e, ok, err := h.LookupCT(key); err != nil || !ok || e.Packets != 3 || e.Bytes != total {
					t.Errorf("conntrack %s: %+v (found %v, err %v), want packets 3 bytes %d", key, e, ok, err, total)
				}
			})
		}
	}
}

// TestFragmentIPv6Atomic: an IPv6 atomic fragment (fragment header with
// offset 0 and M=0, RFC 6946) is a whole packet: its L4 header is read
// through the fragment header (the policy port is its port), it passes
// when allowed, it is denied for another port, and it records nothing in
// the fragment map.
func TestFragmentIPv6Atomic(t *testing.T) {
	for _, d := range mfDirs {
		for _, p := range []struct {
			name  string
			num   uint8
			build func(dport uint16) []byte
		}{
			{"udp", mfProtoUDP, func(dport uint16) []byte { return mfUDP(mfClientPort, dport, []byte("whole")) }},
			{"tcp", mfProtoTCP, func(dport uint16) []byte { return mfTCP(mfClientPort, dport, mfFlagSYN, nil) }},
		} {
			t.Run(d.name+"/"+p.name, func(t *testing.T) {
				h, ep := mfNewHarness(t, datapath.Settings{})
				if err := ep.AddRule(testrun.Rule{Direction: d.dir, Protocol: p.num, Ports: maps.PortRange{Lo: 53, Hi: 53}, RuleID: 5}); err != nil {
					t.Fatal(err)
				}
				if err := ep.SetEnforcement(true, true); err != nil {
					t.Fatal(err)
				}
				src, dst := d.addrs(true)
				pkt := frFrag(src, dst, p.num, 77, 0, false, p.build(53))
				r := mfExpectPass(t, h, ep, d, pkt)
				if tr, ok := r.Trace(); ok && tr.RuleID != 5 {
					t.Errorf("trace %v, want rule 5 (the %s/53 entry)", tr, p.name)
				}
				key := maps.NewTuple(netip.AddrPortFrom(src, mfClientPort), netip.AddrPortFrom(dst, 53), p.num, d.dir)
				if e, ok, err := h.LookupCT(key); err != nil || !ok || e.Packets != 1 {
					t.Errorf("conntrack %s: %+v (found %v, err %v), want one packet", key, e, ok, err)
				}
				if f := frFragEntries(t, h); len(f) != 0 {
					t.Errorf("an atomic fragment recorded fragment state: %v", f)
				}
				mfExpectDrop(t, h, ep, d, frFrag(src, dst, p.num, 78, 0, false, p.build(54)), dropreason.PolicyDenied)
			})
		}
	}
}
