package testrun_test

// ICMP tests: errors related to tracked flows (CT RELATED) pass without an
// ICMP policy entry, in both directions and for routers; errors quoting
// untracked flows meet policy. Helpers are in policy_test.go.

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/ciliaproject/cilia/datapath/dropreason"
	"github.com/ciliaproject/cilia/datapath/maps"
	"github.com/ciliaproject/cilia/datapath/testrun"
)

// dpICMPKind is an ICMP error type and code.
type dpICMPKind struct {
	name      string
	typ, code uint8
}

func dpUnreach(f dpFamily) dpICMPKind {
	return dpICMPKind{"dest-unreachable", f.unreach, f.portUnr}
}
func dpTimeExc(f dpFamily) dpICMPKind { return dpICMPKind{"time-exceeded", f.timeExc, 0} }
func dpTooBig(f dpFamily) dpICMPKind {
	return dpICMPKind{"packet-too-big", f.tooBig, f.tooBigCode}
}

// dpICMPScenario is a tracked flow and the way an ICMP error about it
// travels.
type dpICMPScenario struct {
	quoted    []byte // a packet of the tracked flow, as it was on the wire
	untracked []byte // a packet of a flow that was never seen
	src, dst  netip.Addr
	send      func(pkt []byte) testrun.Path
	rules     []uint32 // rule ids the RELATED hops report (the entries')
	// Where the error quoting the untracked packet is denied.
	dropHop int
	dropEP  uint16
	dropDir maps.Direction
}

type dpICMPCase struct {
	name  string
	kinds func(f dpFamily) []dpICMPKind
	setup func(t *testing.T, tp *dpTopo) dpICMPScenario
}

var dpICMPCases = []dpICMPCase{
	{
		name:  "server endpoint about a TCP SYN it received",
		kinds: func(f dpFamily) []dpICMPKind { return []dpICMPKind{dpUnreach(f), dpTooBig(f)} },
		setup: func(t *testing.T, tp *dpTopo) dpICMPScenario {
			dpStrictPair(tp, dpTCP, 80)
			c := tp.h.Conn(tp.pod(tp.A), tp.pod(tp.B), dpTCP, 40000, 80)
			syn := c.Packet(true, testrun.SYN)
			tp.wantDelivered(tp.walk(c, true, syn), "SYN")
			return dpICMPScenario{
				quoted:    syn,
				untracked: testrun.TCP(tp.ap(tp.A, 40099), tp.ap(tp.B, 80), testrun.SYN, nil),
				src:       tp.addr(tp.B), dst: tp.addr(tp.A),
				send:    func(pkt []byte) testrun.Path { return tp.send(tp.B, pkt) },
				rules:   []uint32{101, 100},
				dropHop: 0, dropEP: 2, dropDir: maps.Egress,
			}
		},
	},
	{
		name:  "server endpoint about a UDP datagram it received",
		kinds: func(f dpFamily) []dpICMPKind { return []dpICMPKind{dpUnreach(f)} },
		setup: func(t *testing.T, tp *dpTopo) dpICMPScenario {
			dpStrictPair(tp, dpUDP, 53)
			c := tp.h.Conn(tp.pod(tp.A), tp.pod(tp.B), dpUDP, 40000, 53)
			req := c.Packet(true, 0)
			tp.wantDelivered(tp.walk(c, true, req), "request")
			return dpICMPScenario{
				quoted:    req,
				untracked: testrun.UDP(tp.ap(tp.A, 40099), tp.ap(tp.B, 53), nil),
				src:       tp.addr(tp.B), dst: tp.addr(tp.A),
				send:    func(pkt []byte) testrun.Path { return tp.send(tp.B, pkt) },
				rules:   []uint32{101, 100},
				dropHop: 0, dropEP: 2, dropDir: maps.Egress,
			}
		},
	},
	{
		name:  "client endpoint about the server's UDP reply",
		kinds: func(f dpFamily) []dpICMPKind { return []dpICMPKind{dpUnreach(f)} },
		setup: func(t *testing.T, tp *dpTopo) dpICMPScenario {
			dpStrictPair(tp, dpUDP, 53)
			c := tp.h.Conn(tp.pod(tp.A), tp.pod(tp.B), dpUDP, 40000, 53)
			tp.wantDelivered(tp.step(c, true, 0), "request")
			reply := c.Packet(false, 0)
			tp.wantDelivered(tp.walk(c, false, reply), "reply")
			return dpICMPScenario{
				quoted:    reply,
				untracked: testrun.UDP(tp.ap(tp.B, 53), tp.ap(tp.A, 40099), nil),
				src:       tp.addr(tp.A), dst: tp.addr(tp.B),
				send:    func(pkt []byte) testrun.Path { return tp.send(tp.A, pkt) },
				rules:   []uint32{100, 101},
				dropHop: 0, dropEP: 1, dropDir: maps.Egress,
			}
		},
	},
	{
		name:  "router about the client's TCP to the world",
		kinds: func(f dpFamily) []dpICMPKind { return []dpICMPKind{dpTimeExc(f), dpUnreach(f), dpTooBig(f)} },
		setup: func(t *testing.T, tp *dpTopo) dpICMPScenario {
			tp.enforce(tp.A, true, true)
			tp.addRule(tp.A, testrun.Rule{Direction: maps.Egress, Identity: maps.IdentityWorld, Protocol: dpTCP, Ports: dpPort(443), RuleID: 110})
			c := tp.h.Conn(tp.pod(tp.A), testrun.External(tp.f.ext), dpTCP, 40000, 443)
			tp.handshake(c)
			data := c.Packet(true, testrun.PSH|testrun.ACK)
			tp.wantDelivered(tp.walk(c, true, data), "data")
			return dpICMPScenario{
				quoted:    data,
				untracked: testrun.TCP(tp.ap(tp.A, 40099), netip.AddrPortFrom(tp.f.ext, 443), testrun.PSH|testrun.ACK, nil),
				src:       tp.f.router, dst: tp.addr(tp.A),
				send:    func(pkt []byte) testrun.Path { return tp.recv(tp.A, pkt) },
				rules:   []uint32{110},
				dropHop: 0, dropEP: 1, dropDir: maps.Ingress,
			}
		},
	},
	{
		name:  "router about the client's UDP to the world",
		kinds: func(f dpFamily) []dpICMPKind { return []dpICMPKind{dpTimeExc(f), dpUnreach(f), dpTooBig(f)} },
		setup: func(t *testing.T, tp *dpTopo) dpICMPScenario {
			tp.enforce(tp.A, true, true)
			tp.addRule(tp.A, testrun.Rule{Direction: maps.Egress, Identity: maps.IdentityWorld, Protocol: dpUDP, Ports: dpPort(53), RuleID: 111})
			c := tp.h.Conn(tp.pod(tp.A), testrun.External(tp.f.ext), dpUDP, 40000, 53)
			req := c.Packet(true, 0)
			tp.wantDelivered(tp.walk(c, true, req), "request")
			return dpICMPScenario{
				quoted:    req,
				untracked: testrun.UDP(tp.ap(tp.A, 40099), netip.AddrPortFrom(tp.f.ext, 53), nil),
				src:       tp.f.router, dst: tp.addr(tp.A),
				send:    func(pkt []byte) testrun.Path { return tp.recv(tp.A, pkt) },
				rules:   []uint32{111},
				dropHop: 0, dropEP: 1, dropDir: maps.Ingress,
			}
		},
	},
	{
		name:  "router about the client's echo request",
		kinds: func(f dpFamily) []dpICMPKind { return []dpICMPKind{dpTimeExc(f), dpUnreach(f)} },
		setup: func(t *testing.T, tp *dpTopo) dpICMPScenario {
			tp.enforce(tp.A, true, true)
			tp.addRule(tp.A, testrun.Rule{Direction: maps.Egress, Identity: maps.IdentityWorld, Protocol: tp.f.icmp, Ports: dpPort(uint16(tp.f.echoReq)), RuleID: 112})
			c := tp.h.Conn(tp.pod(tp.A), testrun.External(tp.f.ext), tp.f.icmp, 40000, 0)
			req := c.Packet(true, 0)
			tp.wantDelivered(tp.walk(c, true, req), "echo request")
			return dpICMPScenario{
				quoted:    req,
				untracked: testrun.ICMPEcho(tp.addr(tp.A), tp.f.ext, 40099, 1, false),
				src:       tp.f.router, dst: tp.addr(tp.A),
				send:    func(pkt []byte) testrun.Path { return tp.recv(tp.A, pkt) },
				rules:   []uint32{112},
				dropHop: 0, dropEP: 1, dropDir: maps.Ingress,
			}
		},
	},
	{
		name:  "endpoint about a datagram of an ingress connection from the world",
		kinds: func(f dpFamily) []dpICMPKind { return []dpICMPKind{dpUnreach(f)} },
		setup: func(t *testing.T, tp *dpTopo) dpICMPScenario {
			tp.enforce(tp.B, true, true)
			tp.addRule(tp.B, testrun.Rule{Direction: maps.Ingress, Identity: maps.IdentityWorld, Protocol: dpUDP, Ports: dpPort(53), RuleID: 120})
			c := tp.h.Conn(testrun.External(tp.f.ext), tp.pod(tp.B), dpUDP, 40000, 53)
			req := c.Packet(true, 0)
			tp.wantDelivered(tp.walk(c, true, req), "request")
			return dpICMPScenario{
				quoted:    req,
				untracked: testrun.UDP(netip.AddrPortFrom(tp.f.ext, 40099), tp.ap(tp.B, 53), nil),
				src:       tp.addr(tp.B), dst: tp.f.ext,
				send:    func(pkt []byte) testrun.Path { return tp.send(tp.B, pkt) },
				rules:   []uint32{120},
				dropHop: 0, dropEP: 2, dropDir: maps.Egress,
			}
		},
	},
	{
		name:  "endpoint about a TCP segment of an ingress connection from the world",
		kinds: func(f dpFamily) []dpICMPKind { return []dpICMPKind{dpUnreach(f), dpTooBig(f)} },
		setup: func(t *testing.T, tp *dpTopo) dpICMPScenario {
			tp.enforce(tp.B, true, true)
			tp.addRule(tp.B, testrun.Rule{Direction: maps.Ingress, Protocol: dpTCP, Ports: dpPort(80), RuleID: 121})
			c := tp.h.Conn(testrun.External(tp.f.ext), tp.pod(tp.B), dpTCP, 40000, 80)
			tp.handshake(c)
			data := c.Packet(true, testrun.PSH|testrun.ACK)
			tp.wantDelivered(tp.walk(c, true, data), "data")
			return dpICMPScenario{
				quoted:    data,
				untracked: testrun.TCP(netip.AddrPortFrom(tp.f.ext, 40099), tp.ap(tp.B, 80), testrun.PSH|testrun.ACK, nil),
				src:       tp.addr(tp.B), dst: tp.f.ext,
				send:    func(pkt []byte) testrun.Path { return tp.send(tp.B, pkt) },
				rules:   []uint32{121},
				dropHop: 0, dropEP: 2, dropDir: maps.Egress,
			}
		},
	},
	{
		name:  "router about the server's reply on an ingress connection",
		kinds: func(f dpFamily) []dpICMPKind { return []dpICMPKind{dpTimeExc(f), dpTooBig(f)} },
		setup: func(t *testing.T, tp *dpTopo) dpICMPScenario {
			tp.enforce(tp.B, true, true)
			tp.addRule(tp.B, testrun.Rule{Direction: maps.Ingress, Identity: maps.IdentityWorld, Protocol: dpTCP, Ports: dpPort(80), RuleID: 122})
			c := tp.h.Conn(testrun.External(tp.f.ext), tp.pod(tp.B), dpTCP, 40000, 80)
			tp.wantDelivered(tp.step(c, true, testrun.SYN), "SYN")
			synack := c.Packet(false, testrun.SYN|testrun.ACK)
			tp.wantDelivered(tp.walk(c, false, synack), "SYN-ACK")
			return dpICMPScenario{
				quoted:    synack,
				untracked: testrun.TCP(tp.ap(tp.B, 80), netip.AddrPortFrom(tp.f.ext, 40099), testrun.SYN|testrun.ACK, nil),
				src:       tp.f.router, dst: tp.addr(tp.B),
				send:    func(pkt []byte) testrun.Path { return tp.recv(tp.B, pkt) },
				rules:   []uint32{122},
				dropHop: 0, dropEP: 2, dropDir: maps.Ingress,
			}
		},
	},
}

// TestICMPErrorRelated: for every scenario and error kind, the error
// quoting a packet of the tracked flow passes every hop as RELATED (no
// policy entry allows ICMP); the same error quoting an untracked flow is
// denied by policy.
func TestICMPErrorRelated(t *testing.T) {
	for _, c := range dpICMPCases {
		t.Run(c.name, func(t *testing.T) {
			dpEachFamily(t, func(t *testing.T, f dpFamily) {
				for _, k := range c.kinds(f) {
					t.Run(k.name, func(t *testing.T) {
						tp := newDPTopo(t, f, testrun.Options{})
						sc := c.setup(t, tp)
						want := tp.snapshotMetrics()

						errPkt := testrun.ICMPError(sc.src, sc.dst, k.typ, k.code, sc.quoted)
						p := sc.send(errPkt)
						what := fmt.Sprintf("%s %d/%d quoting the tracked flow", k.name, k.typ, k.code)
						tp.wantDelivered(p, what)
						states := make([]uint8, len(sc.rules))
						for i := range states {
							states[i] = maps.CTRelated
						}
						tp.wantCTStates(p, what, states...)
						tp.wantRules(p, what, sc.rules...)
						for i := range p.Hops {
							want.add(dropreason.Forwarded, p.Hops[i].Events[0].Direction, errPkt)
						}
						// Twice: RELATED does not turn into anything else.
						p = sc.send(errPkt)
						tp.wantDelivered(p, what+" (again)")
						tp.wantCTStates(p, what+" (again)", states...)
						for i := range p.Hops {
							want.add(dropreason.Forwarded, p.Hops[i].Events[0].Direction, errPkt)
						}

						errPkt = testrun.ICMPError(sc.src, sc.dst, k.typ, k.code, sc.untracked)
						what = fmt.Sprintf("%s %d/%d quoting an untracked flow", k.name, k.typ, k.code)
						p = sc.send(errPkt)
						ev := tp.wantDrop(p, sc.dropHop, dropreason.PolicyDenied, what)
						if ev.CTState != maps.CTNew || ev.EndpointID != sc.dropEP || ev.Direction != sc.dropDir {
							t.Errorf("%s: drop event %s, want ct NEW ep %d dir %s", what, ev, sc.dropEP, sc.dropDir)
						}
						for i := 0; i < sc.dropHop; i++ {
							want.add(dropreason.Forwarded, p.Hops[i].Events[0].Direction, errPkt)
						}
						want.add(dropreason.PolicyDenied, sc.dropDir, errPkt)
						tp.wantMetrics(want)
					})
				}
			})
		})
	}
}

// snapshotMetrics returns the current metrics as a dpMetrics to add to.
func (tp *dpTopo) snapshotMetrics() dpMetrics {
	tp.t.Helper()
	got, err := tp.h.Metrics()
	if err != nil {
		tp.t.Fatalf("read metrics: %v", err)
	}
	return dpMetrics(got)
}

// TestICMPErrorRelatedAfterPolicyChange: a RELATED error is subject to the
// re-check of its connection after a policy change like any packet of it.
func TestICMPErrorRelatedAfterPolicyChange(t *testing.T) {
	dpEachFamily(t, func(t *testing.T, f dpFamily) {
		allow := testrun.Rule{Direction: maps.Egress, Identity: maps.IdentityWorld, Protocol: dpUDP, Ports: dpPort(53), RuleID: 111}
		setup := func(t *testing.T) (*dpTopo, []byte) {
			tp := newDPTopo(t, f, testrun.Options{})
			tp.enforce(tp.A, true, true)
			tp.addRule(tp.A, allow)
			c := tp.h.Conn(tp.pod(tp.A), testrun.External(f.ext), dpUDP, 40000, 53)
			req := c.Packet(true, 0)
			tp.wantDelivered(tp.walk(c, true, req), "request")
			return tp, testrun.ICMPError(f.router, f.a, f.timeExc, 0, req)
		}
		t.Run("still allowed", func(t *testing.T) {
			tp, errPkt := setup(t)
			tp.addRule(tp.A, testrun.Rule{Direction: maps.Egress, Identity: dpIDC, RuleID: 5})
			p := tp.recv(tp.A, errPkt)
			tp.wantDelivered(p, "related error after an unrelated change")
			tp.wantCTStates(p, "related error", maps.CTRelated)
			if e := tp.mustCT(tp.ap(tp.A, 40000), netip.AddrPortFrom(f.ext, 53), dpUDP, maps.Egress); e.PolicyRevision != tp.revision(tp.A) {
				t.Errorf("entry not re-checked: %+v", e)
			}
		})
		t.Run("flow expired", func(t *testing.T) {
			tp, errPkt := setup(t)
			key := maps.NewTuple(tp.ap(tp.A, 40000), netip.AddrPortFrom(f.ext, 53), dpUDP, maps.Egress)
			e := tp.mustCT(key.Source(), key.Destination(), dpUDP, maps.Egress)
			e.Expires = 1
			if err := tp.h.UpdateCT(key, e); err != nil {
				t.Fatal(err)
			}
			ev := tp.wantDrop(tp.recv(tp.A, errPkt), 0, dropreason.PolicyDenied, "error about an expired flow")
			if ev.CTState != maps.CTNew {
				t.Errorf("drop event %s", ev)
			}
		})
		t.Run("no longer allowed", func(t *testing.T) {
			tp, errPkt := setup(t)
			tp.delRule(tp.A, allow)
			ev := tp.wantDrop(tp.recv(tp.A, errPkt), 0, dropreason.PolicyDenied, "related error after the allow was removed")
			if ev.CTState != maps.CTRelated || ev.Direction != maps.Ingress {
				t.Errorf("drop event %s", ev)
			}
			if _, ok := tp.lookupCT(tp.ap(tp.A, 40000), netip.AddrPortFrom(f.ext, 53), dpUDP, maps.Egress); ok {
				t.Errorf("entry survived the denied re-check")
			}
		})
	})
}

// TestICMPTypeIsPolicedPerType: ICMP policy is keyed on the ICMP type, so
// an allowed message of one type must not open the door to other types
// between the same hosts. Messages other than echo and errors have no
// identifier (and an echo may use identifier 0), so conntrack must not
// treat a later message of another type as ESTABLISHED (same way) or
// REPLY (other way) on the first message's entry.
func TestICMPTypeIsPolicedPerType(t *testing.T) {
	dpEachFamily(t, func(t *testing.T, f dpFamily) {
		// v4: timestamp (13) allowed, address mask request (17) not.
		// v6: node information query (139) allowed, 200 (private) not.
		allowed, other := uint8(13), uint8(17)
		if f.icmp == testrun.ProtoICMPv6 {
			allowed, other = 139, 200
		}
		for _, first := range []struct {
			name string
			typ  uint8
			pkt  func(src, dst netip.Addr) []byte
		}{
			{fmt.Sprintf("type %d", allowed), allowed, func(src, dst netip.Addr) []byte { return testrun.ICMPType(src, dst, allowed, 0) }},
			{"echo request with identifier 0", f.echoReq, func(src, dst netip.Addr) []byte { return testrun.ICMPEcho(src, dst, 0, 1, false) }},
		} {
			for _, dir := range []maps.Direction{maps.Egress, maps.Ingress} {
				t.Run(first.name+"/"+dir.String(), func(t *testing.T) {
					tp := newDPTopo(t, f, testrun.Options{})
					// Policy of the subject allows only `first` from A to B;
					// the subject enforces both directions.
					subject, peer, hop := tp.A, dpIDB, 0
					if dir == maps.Ingress {
						subject, peer, hop = tp.B, dpIDA, 1
					}
					tp.enforce(subject, true, true)
					tp.addRule(subject, testrun.Rule{Direction: dir, Identity: peer, Protocol: f.icmp, Ports: dpPort(uint16(first.typ)), RuleID: 7})
					// The other type alone is denied.
					tp.wantDrop(tp.send(tp.A, testrun.ICMPType(f.a, f.b, other, 0)), hop, dropreason.PolicyDenied, "other type first")
					tp.wantDelivered(tp.send(tp.A, first.pkt(f.a, f.b)), first.name)
					// After it, the other type must still be denied, both
					// ways.
					what := fmt.Sprintf("type %d A->B after an allowed %s", other, first.name)
					p := tp.send(tp.A, testrun.ICMPType(f.a, f.b, other, 0))
					if ev, ok := p.Hops[len(p.Hops)-1].Drop(); len(p.Hops) != hop+1 || !ok ||
						ev.Reason != dropreason.PolicyDenied || ev.CTState != maps.CTNew {
						t.Errorf("%s: want a POLICY_DENIED drop of a NEW packet at hop %d, got %s", what, hop, p)
					}
					what = fmt.Sprintf("type %d B->A after an allowed %s A->B", other, first.name)
					p = tp.send(tp.B, testrun.ICMPType(f.b, f.a, other, 0))
					if ev, ok := p.Hops[len(p.Hops)-1].Drop(); len(p.Hops) != 2-hop || !ok ||
						ev.Reason != dropreason.PolicyDenied || ev.CTState != maps.CTNew {
						t.Errorf("%s: want a POLICY_DENIED drop of a NEW packet at hop %d, got %s", what, 1-hop, p)
					}
				})
			}
		}
	})
}

// TestICMPErrorTypeIsPolicedPerType: the same for ICMP errors that are not
// related to any flow: allowing destination unreachable (as a new flow)
// must not let a time exceeded from the same host through.
func TestICMPErrorTypeIsPolicedPerType(t *testing.T) {
	dpEachFamily(t, func(t *testing.T, f dpFamily) {
		tp := newDPTopo(t, f, testrun.Options{})
		tp.enforce(tp.A, true, true)
		tp.addRule(tp.A, testrun.Rule{Direction: maps.Ingress, Identity: maps.IdentityWorld, Protocol: f.icmp, Ports: dpPort(uint16(f.unreach)), RuleID: 8})
		quoted := testrun.UDP(tp.ap(tp.A, 40000), netip.AddrPortFrom(f.ext, 53), nil)
		tp.wantDrop(tp.recv(tp.A, testrun.ICMPError(f.router, f.a, f.timeExc, 0, quoted)), 0, dropreason.PolicyDenied,
			"untracked time exceeded")
		p := tp.recv(tp.A, testrun.ICMPError(f.router, f.a, f.unreach, f.portUnr, quoted))
		tp.wantDelivered(p, "untracked unreachable, allowed by policy")
		tp.wantCTStates(p, "untracked unreachable", maps.CTNew)
		p = tp.recv(tp.A, testrun.ICMPError(f.router, f.a, f.timeExc, 0, quoted))
		ev := tp.wantDrop(p, 0, dropreason.PolicyDenied, "untracked time exceeded after an allowed unreachable")
		if ev.CTState != maps.CTNew {
			t.Errorf("drop event %s", ev)
		}
	})
}
