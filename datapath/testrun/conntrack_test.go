package testrun_test

// Conntrack tests: replies without reverse policy, CT states in events,
// entry contents, TCP close, re-open, expiry, policy revision re-checks,
// UDP and ICMP echo, and a full conntrack map. Helpers are in
// policy_test.go.

import (
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/ciliaproject/cilia/datapath"
	"github.com/ciliaproject/cilia/datapath/dropreason"
	"github.com/ciliaproject/cilia/datapath/events"
	"github.com/ciliaproject/cilia/datapath/maps"
	"github.com/ciliaproject/cilia/datapath/testrun"
)

// Conntrack lifetimes of config.h (Cilium's defaults).
const (
	dpLifeTCP      = 21600
	dpLifeTCPSyn   = 60
	dpLifeTCPClose = 10
	dpLifeNonTCP   = 60
)

// dpSec returns a second in the datapath's clock (jiffies: the kernel's HZ).
func dpSec(t testing.TB) uint64 {
	t.Helper()
	hz, err := datapath.KernelHZ()
	if err != nil {
		t.Fatalf("kernel HZ: %v", err)
	}
	return uint64(hz)
}

// wantExpires fails unless e expires lifetime seconds after the packet of
// event ev, which ran less than a second ago (the slack allowed).
func (tp *dpTopo) wantExpires(e maps.CTEntry, ev events.Event, lifetime uint64, what string) {
	tp.t.Helper()
	now, err := datapath.Jiffies()
	if err != nil {
		tp.t.Fatalf("read jiffies: %v", err)
	}
	sec := dpSec(tp.t)
	if e.Expires+sec < now+lifetime*sec || e.Expires > now+lifetime*sec {
		tp.t.Errorf("%s (%s): entry expires at %d, now %d: lifetime %.2fs, want %ds", what, ev, e.Expires, now,
			float64(int64(e.Expires)-int64(now))/float64(sec), lifetime)
	}
}

// dpStrictPair sets up A and B with enforcement in both directions: A may
// open proto/port connections to B (egress rule 100), B accepts them from
// A (ingress rule 101); nothing else is allowed.
func dpStrictPair(tp *dpTopo, proto uint8, port uint16) {
	tp.enforce(tp.A, true, true)
	tp.enforce(tp.B, true, true)
	tp.addRule(tp.A, testrun.Rule{Direction: maps.Egress, Identity: dpIDB, Protocol: proto, Ports: dpPort(port), RuleID: 100})
	tp.addRule(tp.B, testrun.Rule{Direction: maps.Ingress, Identity: dpIDA, Protocol: proto, Ports: dpPort(port), RuleID: 101})
}

// wantRules fails unless the hops of p report these rule ids.
func (tp *dpTopo) wantRules(p testrun.Path, what string, rules ...uint32) {
	tp.t.Helper()
	if len(p.Hops) != len(rules) {
		tp.t.Errorf("%s: %d hops, want %d: %s", what, len(p.Hops), len(rules), p)
		return
	}
	for i, r := range rules {
		if ev := p.Hops[i].Events; len(ev) == 0 || ev[0].RuleID != r {
			tp.t.Errorf("%s: hop %d: want rule %d: %s", what, i, r, p)
		}
	}
}

// TestConntrackReplyWithoutReversePolicy: both endpoints enforce both
// directions with only the client -> server entries; the server's replies
// pass as REPLY, a fresh packet from the server does not.
func TestConntrackReplyWithoutReversePolicy(t *testing.T) {
	dpEachFamily(t, func(t *testing.T, f dpFamily) {
		tp := newDPTopo(t, f, testrun.Options{})
		dpStrictPair(tp, dpTCP, 80)
		c := tp.h.Conn(tp.pod(tp.A), tp.pod(tp.B), dpTCP, 40000, 80)
		want := dpMetrics{}
		pass := func(what string, fromClient bool, flags testrun.TCPFlags, state uint8, rules ...uint32) {
			t.Helper()
			pkt := c.Packet(fromClient, flags)
			p := tp.walk(c, fromClient, pkt)
			tp.wantDelivered(p, what)
			tp.wantCTStates(p, what, state, state)
			tp.wantRules(p, what, rules...)
			want.add(dropreason.Forwarded, maps.Egress, pkt)
			want.add(dropreason.Forwarded, maps.Ingress, pkt)
		}
		pass("SYN", true, testrun.SYN, maps.CTNew, 100, 101)
		pass("SYN-ACK", false, testrun.SYN|testrun.ACK, maps.CTReply, 101, 100)
		pass("ACK", true, testrun.ACK, maps.CTEstablished, 100, 101)
		pass("server data", false, testrun.PSH|testrun.ACK, maps.CTReply, 101, 100)
		pass("client data", true, testrun.PSH|testrun.ACK, maps.CTEstablished, 100, 101)

		// Packets of other flows from the server are new and denied by its
		// egress policy.
		for _, fl := range []struct {
			what     string
			src, dst netip.AddrPort
			flags    testrun.TCPFlags
		}{
			{"server to another client port", tp.ap(tp.B, 80), tp.ap(tp.A, 40001), testrun.SYN | testrun.ACK},
			{"server from another port", tp.ap(tp.B, 8080), tp.ap(tp.A, 40000), testrun.ACK},
			{"server opens to the client's port 80", tp.ap(tp.B, 40000), tp.ap(tp.A, 80), testrun.SYN},
		} {
			pkt := testrun.TCP(fl.src, fl.dst, fl.flags, nil)
			ev := tp.wantDrop(tp.send(tp.B, pkt), 0, dropreason.PolicyDenied, fl.what)
			if ev.CTState != maps.CTNew || ev.EndpointID != 2 || ev.Direction != maps.Egress ||
				ev.SrcIdentity != dpIDB || ev.DstIdentity != dpIDA {
				t.Errorf("%s: drop event %s", fl.what, ev)
			}
			want.add(dropreason.PolicyDenied, maps.Egress, pkt)
		}
		// The same from outside the node to the client: its ingress denies.
		pkt := testrun.TCP(netip.AddrPortFrom(f.ext, 80), tp.ap(tp.A, 40000), testrun.SYN|testrun.ACK, nil)
		ev := tp.wantDrop(tp.recv(tp.A, pkt), 0, dropreason.PolicyDenied, "world to client")
		if ev.SrcIdentity != maps.IdentityWorld || ev.Direction != maps.Ingress || ev.EndpointID != 1 {
			t.Errorf("world to client: drop event %s", ev)
		}
		want.add(dropreason.PolicyDenied, maps.Ingress, pkt)
		tp.wantMetrics(want)
	})
}

// TestConntrackEntryContents checks the entries a TCP handshake creates:
// one per endpoint and direction, with tuple, flags, counters, identity,
// rule, policy port, revision and lifetime.
func TestConntrackEntryContents(t *testing.T) {
	dpEachFamily(t, func(t *testing.T, f dpFamily) {
		tp := newDPTopo(t, f, testrun.Options{})
		dpStrictPair(tp, dpTCP, 80)
		c := tp.h.Conn(tp.pod(tp.A), tp.pod(tp.B), dpTCP, 40000, 80)
		cl, sv := tp.ap(tp.A, 40000), tp.ap(tp.B, 80)

		syn := c.Packet(true, testrun.SYN)
		p := tp.walk(c, true, syn)
		tp.wantDelivered(p, "SYN")
		e := tp.mustCT(cl, sv, dpTCP, maps.Egress)
		if e.Flags != 0 || e.Packets != 1 || e.Bytes != uint64(len(syn)) || e.ReplyPackets != 0 || e.TCPFlags != uint8(testrun.SYN) {
			t.Errorf("after SYN: entry %+v", e)
		}
		tp.wantExpires(e, tp.trace(p, 0, "SYN"), dpLifeTCPSyn, "after SYN")

		synack := c.Packet(false, testrun.SYN|testrun.ACK)
		tp.wantDelivered(tp.walk(c, false, synack), "SYN-ACK")
		ack := c.Packet(true, testrun.ACK)
		p = tp.walk(c, true, ack)
		tp.wantDelivered(p, "ACK")
		now := tp.trace(p, 1, "ACK")

		for _, w := range []struct {
			dir      maps.Direction
			ep       *testrun.Endpoint
			remoteID uint32
			rule     uint32
		}{{maps.Egress, tp.A, dpIDB, 100}, {maps.Ingress, tp.B, dpIDA, 101}} {
			what := "entry " + w.dir.String()
			e := tp.mustCT(cl, sv, dpTCP, w.dir)
			wantE := maps.CTEntry{
				Expires: e.Expires, Packets: 2, Bytes: uint64(len(syn) + len(ack)),
				ReplyPackets: 1, ReplyBytes: uint64(len(synack)),
				RemoteIdentity: w.remoteID, PolicyRevision: tp.revision(w.ep), RuleID: w.rule,
				PolicyPortNet: maps.HostToNet16(80), Flags: maps.CTFlagReplySeen,
				TCPFlags: uint8(testrun.SYN | testrun.ACK), ReplyTCPFlags: uint8(testrun.SYN | testrun.ACK),
			}
			if e != wantE {
				t.Errorf("%s:\n got %+v\nwant %+v", what, e, wantE)
			}
			tp.wantExpires(e, now, dpLifeTCP, what)
		}
		// Nothing is keyed by the reply tuple.
		for _, dir := range []maps.Direction{maps.Egress, maps.Ingress} {
			if _, ok := tp.lookupCT(sv, cl, dpTCP, dir); ok {
				t.Errorf("unexpected entry for the reply tuple, dir %s", dir)
			}
		}
		all, err := tp.h.CTEntries()
		if err != nil || len(all) != 2 {
			t.Errorf("conntrack holds %d entries (%v), want 2: %v", len(all), err, all)
		}
	})
}

// TestConntrackTCPClose checks FIN both ways and RST: the entry gets
// CT_F_CLOSED and the short close lifetime.
func TestConntrackTCPClose(t *testing.T) {
	dpEachFamily(t, func(t *testing.T, f dpFamily) {
		for _, tc := range []struct {
			name string
			// closing packets: from client?, flags, and the flags the
			// entries must have after each.
			steps []struct {
				fromClient bool
				flags      testrun.TCPFlags
				want       uint8
			}
		}{
			{"FIN both ways", []struct {
				fromClient bool
				flags      testrun.TCPFlags
				want       uint8
			}{
				{true, testrun.FIN | testrun.ACK, maps.CTFlagReplySeen | maps.CTFlagTxClosing},
				{false, testrun.FIN | testrun.ACK, maps.CTFlagReplySeen | maps.CTFlagTxClosing | maps.CTFlagRxClosing | maps.CTFlagClosed},
			}},
			{"FIN from server first", []struct {
				fromClient bool
				flags      testrun.TCPFlags
				want       uint8
			}{
				{false, testrun.FIN | testrun.ACK, maps.CTFlagReplySeen | maps.CTFlagRxClosing},
				{true, testrun.FIN | testrun.ACK, maps.CTFlagReplySeen | maps.CTFlagTxClosing | maps.CTFlagRxClosing | maps.CTFlagClosed},
			}},
			{"RST from client", []struct {
				fromClient bool
				flags      testrun.TCPFlags
				want       uint8
			}{{true, testrun.RST | testrun.ACK, maps.CTFlagReplySeen | maps.CTFlagClosed}}},
			{"RST from server", []struct {
				fromClient bool
				flags      testrun.TCPFlags
				want       uint8
			}{{false, testrun.RST, maps.CTFlagReplySeen | maps.CTFlagClosed}}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				tp := newDPTopo(t, f, testrun.Options{})
				dpStrictPair(tp, dpTCP, 80)
				c := tp.h.Conn(tp.pod(tp.A), tp.pod(tp.B), dpTCP, 40000, 80)
				cl, sv := tp.ap(tp.A, 40000), tp.ap(tp.B, 80)
				tp.handshake(c)
				var estExpires uint64
				for _, dir := range []maps.Direction{maps.Egress, maps.Ingress} {
					estExpires = max(estExpires, tp.mustCT(cl, sv, dpTCP, dir).Expires)
				}
				for i, s := range tc.steps {
					p := tp.step(c, s.fromClient, s.flags)
					tp.wantDelivered(p, "closing packet")
					state := maps.CTReply
					if s.fromClient {
						state = maps.CTEstablished
					}
					tp.wantCTStates(p, "closing packet", state, state)
					last := i == len(tc.steps)-1
					for _, dir := range []maps.Direction{maps.Egress, maps.Ingress} {
						e := tp.mustCT(cl, sv, dpTCP, dir)
						if e.Flags != s.want {
							t.Errorf("step %d, entry %s: flags %#x, want %#x", i, dir, e.Flags, s.want)
						}
						if !last {
							if e.Expires < estExpires {
								t.Errorf("step %d, entry %s: half-closed connection expires at %d, before %d", i, dir, e.Expires, estExpires)
							}
							continue
						}
						// Both hops of the packet ran within the second of
						// the second hop's event (wantExpires allows 1s).
						tp.wantExpires(e, tp.trace(p, 1, "close"), dpLifeTCPClose, "closed entry "+dir.String())
						if e.Expires+(dpLifeTCP-dpLifeTCPClose-2)*dpSec(t) > estExpires {
							t.Errorf("entry %s: closed expires %d, established expired %d: not ~%ds shorter",
								dir, e.Expires, estExpires, dpLifeTCP-dpLifeTCPClose)
						}
					}
				}
				// A late ACK of the closed connection still matches it
				// (only a SYN reopens) and keeps the short lifetime.
				p := tp.step(c, true, testrun.ACK)
				tp.wantDelivered(p, "late ACK")
				tp.wantCTStates(p, "late ACK", maps.CTEstablished, maps.CTEstablished)
				e := tp.mustCT(cl, sv, dpTCP, maps.Egress)
				if e.Flags&maps.CTFlagClosed == 0 {
					t.Errorf("late ACK: entry no longer closed: %+v", e)
				}
				tp.wantExpires(e, tp.trace(p, 0, "late ACK"), dpLifeTCPClose, "after late ACK")
			})
		}
	})
}

// TestConntrackSYNReopensClosed: a SYN on a closed tuple is a new
// connection and goes through policy again.
func TestConntrackSYNReopensClosed(t *testing.T) {
	dpEachFamily(t, func(t *testing.T, f dpFamily) {
		setup := func(t *testing.T) (*dpTopo, *testrun.Conn) {
			tp := newDPTopo(t, f, testrun.Options{})
			dpStrictPair(tp, dpTCP, 80)
			c := tp.h.Conn(tp.pod(tp.A), tp.pod(tp.B), dpTCP, 40000, 80)
			tp.handshake(c)
			tp.wantDelivered(tp.step(c, true, testrun.FIN|testrun.ACK), "client FIN")
			tp.wantDelivered(tp.step(c, false, testrun.FIN|testrun.ACK), "server FIN")
			e := tp.mustCT(tp.ap(tp.A, 40000), tp.ap(tp.B, 80), dpTCP, maps.Egress)
			if e.Flags&maps.CTFlagClosed == 0 {
				t.Fatalf("entry not closed after FIN both ways: %+v", e)
			}
			return tp, c
		}
		t.Run("policy allows with another rule", func(t *testing.T) {
			tp, c := setup(t)
			// Replace rule 100 by rule 200 (same key): the re-opening SYN
			// must be decided by the current policy.
			tp.delRule(tp.A, testrun.Rule{Direction: maps.Egress, Identity: dpIDB, Protocol: dpTCP, Ports: dpPort(80), RuleID: 100})
			tp.addRule(tp.A, testrun.Rule{Direction: maps.Egress, Identity: dpIDB, Protocol: dpTCP, Ports: dpPort(80), RuleID: 200})
			syn := c.Packet(true, testrun.SYN)
			p := tp.walk(c, true, syn)
			tp.wantDelivered(p, "SYN on closed tuple")
			tp.wantCTStates(p, "SYN on closed tuple", maps.CTNew, maps.CTNew)
			tp.wantRules(p, "SYN on closed tuple", 200, 101)
			e := tp.mustCT(tp.ap(tp.A, 40000), tp.ap(tp.B, 80), dpTCP, maps.Egress)
			if e.Flags != 0 || e.Packets != 1 || e.ReplyPackets != 0 || e.RuleID != 200 || e.TCPFlags != uint8(testrun.SYN) ||
				e.PolicyRevision != tp.revision(tp.A) {
				t.Errorf("reopened entry: %+v", e)
			}
			tp.wantExpires(e, tp.trace(p, 0, "SYN"), dpLifeTCPSyn, "reopened entry")
			p = tp.step(c, false, testrun.SYN|testrun.ACK)
			tp.wantDelivered(p, "SYN-ACK of the reopened connection")
			tp.wantCTStates(p, "SYN-ACK of the reopened connection", maps.CTReply, maps.CTReply)
		})
		t.Run("policy now denies", func(t *testing.T) {
			tp, c := setup(t)
			tp.delRule(tp.A, testrun.Rule{Direction: maps.Egress, Identity: dpIDB, Protocol: dpTCP, Ports: dpPort(80), RuleID: 100})
			syn := c.Packet(true, testrun.SYN)
			ev := tp.wantDrop(tp.walk(c, true, syn), 0, dropreason.PolicyDenied, "SYN on closed tuple")
			if ev.CTState != maps.CTNew || ev.Direction != maps.Egress || ev.EndpointID != 1 {
				t.Errorf("SYN on closed tuple: drop event %s", ev)
			}
			tp.wantMetricPackets(dropreason.PolicyDenied, maps.Egress, 1)
		})
		t.Run("ingress policy now denies", func(t *testing.T) {
			tp, c := setup(t)
			tp.delRule(tp.B, testrun.Rule{Direction: maps.Ingress, Identity: dpIDA, Protocol: dpTCP, Ports: dpPort(80), RuleID: 101})
			ev := tp.wantDrop(tp.step(c, true, testrun.SYN), 1, dropreason.PolicyDenied, "SYN on closed tuple")
			if ev.CTState != maps.CTNew || ev.Direction != maps.Ingress || ev.EndpointID != 2 {
				t.Errorf("SYN on closed tuple: drop event %s", ev)
			}
		})
	})
}

// TestConntrackExpiredEntry: an expired entry is absent, so replies are
// new and meet the (denying) ingress policy.
func TestConntrackExpiredEntry(t *testing.T) {
	dpEachFamily(t, func(t *testing.T, f dpFamily) {
		for _, proto := range []uint8{dpTCP, dpUDP, f.icmp} {
			t.Run(map[uint8]string{dpTCP: "TCP", dpUDP: "UDP", f.icmp: "ICMP echo"}[proto], func(t *testing.T) {
				tp := newDPTopo(t, f, testrun.Options{})
				port := uint16(443)
				policyPort := port
				if proto == f.icmp {
					port, policyPort = 0, uint16(f.echoReq)
				}
				tp.enforce(tp.A, true, true)
				tp.addRule(tp.A, testrun.Rule{Direction: maps.Egress, Identity: maps.IdentityWorld, Protocol: proto, Ports: dpPort(policyPort), RuleID: 110})
				c := tp.h.Conn(tp.pod(tp.A), testrun.External(f.ext), proto, 40000, port)
				tp.handshake(c)
				key := maps.NewTuple(tp.ap(tp.A, 40000), netip.AddrPortFrom(f.ext, port), proto, maps.Egress)
				e, ok, err := tp.h.LookupCT(key)
				if err != nil || !ok {
					t.Fatalf("no entry %s: %v", key, err)
				}
				if e.PolicyPortNet != maps.HostToNet16(policyPort) || e.RuleID != 110 || e.RemoteIdentity != maps.IdentityWorld {
					t.Errorf("entry %+v", e)
				}
				// Still alive: a reply passes.
				p := tp.step(c, false, testrun.ACK)
				tp.wantDelivered(p, "reply before expiry")
				tp.wantCTStates(p, "reply before expiry", maps.CTReply)

				e.Expires = 1
				if err := tp.h.UpdateCT(key, e); err != nil {
					t.Fatal(err)
				}
				ev := tp.wantDrop(tp.step(c, false, testrun.ACK), 0, dropreason.PolicyDenied, "reply after expiry")
				if ev.CTState != maps.CTNew || ev.Direction != maps.Ingress || ev.SrcIdentity != maps.IdentityWorld {
					t.Errorf("reply after expiry: drop event %s", ev)
				}
				// The client's next packet is new: policy allows it again
				// and a fresh entry lets replies through.
				p = tp.step(c, true, testrun.SYN)
				tp.wantDelivered(p, "client after expiry")
				tp.wantCTStates(p, "client after expiry", maps.CTNew)
				tp.wantRules(p, "client after expiry", 110)
				e, _, _ = tp.h.LookupCT(key)
				if e.Expires <= 1 || e.Packets != 1 {
					t.Errorf("entry after the new packet: %+v", e)
				}
				p = tp.step(c, false, testrun.SYN|testrun.ACK)
				tp.wantDelivered(p, "reply to the new entry")
				tp.wantCTStates(p, "reply to the new entry", maps.CTReply)
			})
		}
	})
}

// TestConntrackPolicyRevisionRecheck: a policy change (revision bump)
// makes tracked connections re-checked; denied ones are dropped and
// forgotten, still allowed ones keep flowing with the entry updated.
func TestConntrackPolicyRevisionRecheck(t *testing.T) {
	allowAB := testrun.Rule{Direction: maps.Egress, Identity: dpIDB, Protocol: dpTCP, Ports: dpPort(80), RuleID: 300}
	dpEachFamily(t, func(t *testing.T, f dpFamily) {
		// A enforces both directions and may open TCP/80 to B; B enforces
		// nothing (its entries keep the server side passing).
		setup := func(t *testing.T) (*dpTopo, *testrun.Conn, netip.AddrPort, netip.AddrPort) {
			tp := newDPTopo(t, f, testrun.Options{})
			tp.enforce(tp.A, true, true)
			tp.addRule(tp.A, allowAB)
			c := tp.h.Conn(tp.pod(tp.A), tp.pod(tp.B), dpTCP, 40000, 80)
			tp.handshake(c)
			return tp, c, tp.ap(tp.A, 40000), tp.ap(tp.B, 80)
		}
		t.Run("allow removed, client sends next", func(t *testing.T) {
			tp, c, cl, sv := setup(t)
			tp.delRule(tp.A, allowAB)
			ev := tp.wantDrop(tp.step(c, true, testrun.PSH|testrun.ACK), 0, dropreason.PolicyDenied, "client data after the change")
			if ev.CTState != maps.CTEstablished || ev.Direction != maps.Egress || ev.EndpointID != 1 || ev.RuleID != 0 {
				t.Errorf("drop event %s", ev)
			}
			if _, ok := tp.lookupCT(cl, sv, dpTCP, maps.Egress); ok {
				t.Errorf("A's entry survived the denied re-check")
			}
			if _, ok := tp.lookupCT(cl, sv, dpTCP, maps.Ingress); !ok {
				t.Errorf("B's entry (B's policy did not change) was deleted")
			}
			// The server's reply passes B (its entry) but is new at A.
			p := tp.step(c, false, testrun.PSH|testrun.ACK)
			ev = tp.wantDrop(p, 1, dropreason.PolicyDenied, "server reply after the change")
			if ev.CTState != maps.CTNew || ev.Direction != maps.Ingress || ev.EndpointID != 1 {
				t.Errorf("drop event %s", ev)
			}
			tp.wantDrop(tp.step(c, true, testrun.ACK), 0, dropreason.PolicyDenied, "client again")
			tp.wantMetricPackets(dropreason.PolicyDenied, maps.Egress, 2)
			tp.wantMetricPackets(dropreason.PolicyDenied, maps.Ingress, 1)
		})
		t.Run("allow removed, server replies first", func(t *testing.T) {
			tp, c, cl, sv := setup(t)
			tp.delRule(tp.A, allowAB)
			ev := tp.wantDrop(tp.step(c, false, testrun.PSH|testrun.ACK), 1, dropreason.PolicyDenied, "server data after the change")
			if ev.CTState != maps.CTReply || ev.Direction != maps.Ingress || ev.EndpointID != 1 {
				t.Errorf("drop event %s", ev)
			}
			if _, ok := tp.lookupCT(cl, sv, dpTCP, maps.Egress); ok {
				t.Errorf("A's entry survived the denied re-check")
			}
			ev = tp.wantDrop(tp.step(c, true, testrun.ACK), 0, dropreason.PolicyDenied, "client after the change")
			if ev.CTState != maps.CTNew {
				t.Errorf("drop event %s", ev)
			}
		})
		t.Run("deny added", func(t *testing.T) {
			tp, c, cl, sv := setup(t)
			// An L4-only deny (any identity) wins over the L3+L4 allow of
			// the other lookup. (A deny of B's identity covering the more
			// specific allow of B would be a map state policy.h forbids.)
			tp.addRule(tp.A, testrun.Rule{Direction: maps.Egress, Protocol: dpTCP, Ports: dpPort(80), Deny: true, RuleID: 301})
			ev := tp.wantDrop(tp.step(c, true, testrun.ACK), 0, dropreason.PolicyDeny, "client data after deny")
			if ev.RuleID != 301 || ev.CTState != maps.CTEstablished {
				t.Errorf("drop event %s: want rule 301", ev)
			}
			if _, ok := tp.lookupCT(cl, sv, dpTCP, maps.Egress); ok {
				t.Errorf("A's entry survived the denied re-check")
			}
			tp.wantMetricPackets(dropreason.PolicyDeny, maps.Egress, 1)
		})
		t.Run("unrelated change keeps the flow", func(t *testing.T) {
			tp, c, cl, sv := setup(t)
			before := tp.mustCT(cl, sv, dpTCP, maps.Egress)
			if before.PolicyRevision != tp.revision(tp.A) {
				t.Fatalf("entry revision %d, endpoint %d", before.PolicyRevision, tp.revision(tp.A))
			}
			tp.addRule(tp.A, testrun.Rule{Direction: maps.Egress, Identity: dpIDC, Protocol: dpUDP, Ports: dpPort(53), RuleID: 302})
			rev := tp.revision(tp.A)
			if rev == before.PolicyRevision {
				t.Fatalf("AddRule did not bump the revision")
			}
			p := tp.step(c, true, testrun.PSH|testrun.ACK)
			tp.wantDelivered(p, "client data after an unrelated change")
			tp.wantCTStates(p, "client data", maps.CTEstablished, maps.CTEstablished)
			tp.wantRules(p, "client data", 300, 0)
			after := tp.mustCT(cl, sv, dpTCP, maps.Egress)
			if after.PolicyRevision != rev || after.RuleID != 300 || after.RemoteIdentity != dpIDB || after.Packets != before.Packets+1 {
				t.Errorf("entry after the re-check: %+v (want revision %d, rule 300)", after, rev)
			}
			p = tp.step(c, false, testrun.PSH|testrun.ACK)
			tp.wantDelivered(p, "server data after an unrelated change")
			tp.wantCTStates(p, "server data", maps.CTReply, maps.CTReply)
		})
		t.Run("unrelated change, reply re-checks first", func(t *testing.T) {
			tp, c, cl, sv := setup(t)
			tp.addRule(tp.A, testrun.Rule{Direction: maps.Egress, Identity: dpIDC, Protocol: dpUDP, Ports: dpPort(53), RuleID: 302})
			p := tp.step(c, false, testrun.PSH|testrun.ACK)
			tp.wantDelivered(p, "server data after an unrelated change")
			if e := tp.mustCT(cl, sv, dpTCP, maps.Egress); e.PolicyRevision != tp.revision(tp.A) || e.RuleID != 300 {
				t.Errorf("entry after the re-check: %+v", e)
			}
		})
		t.Run("rule replaced", func(t *testing.T) {
			tp, c, cl, sv := setup(t)
			tp.addRule(tp.A, testrun.Rule{Direction: maps.Egress, Identity: dpIDB, RuleID: 303})
			tp.delRule(tp.A, allowAB)
			p := tp.step(c, true, testrun.PSH|testrun.ACK)
			tp.wantDelivered(p, "client data after the rule was replaced")
			tp.wantRules(p, "client data", 303, 0)
			if e := tp.mustCT(cl, sv, dpTCP, maps.Egress); e.RuleID != 303 || e.PolicyRevision != tp.revision(tp.A) {
				t.Errorf("entry after the re-check: %+v (want rule 303)", e)
			}
		})
		t.Run("ingress allow removed", func(t *testing.T) {
			tp := newDPTopo(t, f, testrun.Options{})
			tp.enforce(tp.B, true, true)
			allowIn := testrun.Rule{Direction: maps.Ingress, Identity: dpIDA, Protocol: dpTCP, Ports: dpPort(80), RuleID: 304}
			tp.addRule(tp.B, allowIn)
			c := tp.h.Conn(tp.pod(tp.A), tp.pod(tp.B), dpTCP, 40000, 80)
			tp.handshake(c)
			tp.delRule(tp.B, allowIn)
			ev := tp.wantDrop(tp.step(c, true, testrun.ACK), 1, dropreason.PolicyDenied, "client data after the change")
			if ev.CTState != maps.CTEstablished || ev.Direction != maps.Ingress || ev.EndpointID != 2 {
				t.Errorf("drop event %s", ev)
			}
			if _, ok := tp.lookupCT(tp.ap(tp.A, 40000), tp.ap(tp.B, 80), dpTCP, maps.Ingress); ok {
				t.Errorf("B's entry survived the denied re-check")
			}
			ev = tp.wantDrop(tp.step(c, false, testrun.ACK), 0, dropreason.PolicyDenied, "server reply after the change")
			if ev.CTState != maps.CTNew || ev.Direction != maps.Egress || ev.EndpointID != 2 {
				t.Errorf("drop event %s", ev)
			}
		})
	})
}

// TestConntrackUDPAndICMPEcho: request/reply connections of UDP and ICMP
// echo; a reply without request is new and meets policy.
func TestConntrackUDPAndICMPEcho(t *testing.T) {
	dpEachFamily(t, func(t *testing.T, f dpFamily) {
		for _, proto := range []uint8{dpUDP, f.icmp} {
			t.Run(map[uint8]string{dpUDP: "UDP", f.icmp: "ICMP echo"}[proto], func(t *testing.T) {
				tp := newDPTopo(t, f, testrun.Options{})
				sport, policyPort, replyPolicyPort := uint16(53), uint16(53), uint16(45000)
				if proto == f.icmp {
					sport, policyPort, replyPolicyPort = 0, uint16(f.echoReq), uint16(f.echoReply)
				}
				dpStrictPair(tp, proto, policyPort)
				c := tp.h.Conn(tp.pod(tp.A), tp.pod(tp.B), proto, 40000, sport)
				cl, sv := tp.ap(tp.A, 40000), tp.ap(tp.B, sport)

				req := c.Packet(true, 0)
				p := tp.walk(c, true, req)
				tp.wantDelivered(p, "request")
				tp.wantCTStates(p, "request", maps.CTNew, maps.CTNew)
				tp.wantRules(p, "request", 100, 101)
				reply := c.Packet(false, 0)
				p = tp.walk(c, false, reply)
				tp.wantDelivered(p, "reply")
				tp.wantCTStates(p, "reply", maps.CTReply, maps.CTReply)
				p = tp.step(c, true, 0)
				tp.wantDelivered(p, "second request")
				tp.wantCTStates(p, "second request", maps.CTEstablished, maps.CTEstablished)

				e := tp.mustCT(cl, sv, proto, maps.Egress)
				if e.Flags != maps.CTFlagReplySeen || e.Packets != 2 || e.Bytes != 2*uint64(len(req)) ||
					e.ReplyPackets != 1 || e.ReplyBytes != uint64(len(reply)) || e.RuleID != 100 ||
					e.RemoteIdentity != dpIDB || e.PolicyPortNet != maps.HostToNet16(policyPort) {
					t.Errorf("entry %+v", e)
				}
				tp.wantExpires(e, tp.trace(p, 0, "second request"), dpLifeNonTCP, "entry")
				if e := tp.mustCT(cl, sv, proto, maps.Ingress); e.RuleID != 101 || e.ReplyPackets != 1 {
					t.Errorf("B's entry %+v", e)
				}

				// A reply nobody asked for: new, and B's egress denies it.
				unsolicited := func() []byte {
					if proto == f.icmp {
						return testrun.ICMPEcho(f.b, f.a, 4242, 1, true)
					}
					return testrun.UDP(tp.ap(tp.B, 53), tp.ap(tp.A, 45000), []byte("cilia"))
				}
				ev := tp.wantDrop(tp.send(tp.B, unsolicited()), 0, dropreason.PolicyDenied, "unsolicited reply")
				if ev.CTState != maps.CTNew || ev.EndpointID != 2 || ev.Direction != maps.Egress {
					t.Errorf("drop event %s", ev)
				}
				// Policy that allows it lets it through as new.
				tp.addRule(tp.B, testrun.Rule{Direction: maps.Egress, Identity: dpIDA, Protocol: proto, Ports: dpPort(replyPolicyPort), RuleID: 102})
				ev = tp.wantDrop(tp.send(tp.B, unsolicited()), 1, dropreason.PolicyDenied, "unsolicited reply, B allows")
				if ev.CTState != maps.CTNew || ev.EndpointID != 1 || ev.Direction != maps.Ingress {
					t.Errorf("drop event %s", ev)
				}
				tp.addRule(tp.A, testrun.Rule{Direction: maps.Ingress, Identity: dpIDB, Protocol: proto, Ports: dpPort(replyPolicyPort), RuleID: 103})
				p = tp.send(tp.B, unsolicited())
				tp.wantDelivered(p, "unsolicited reply, both allow")
				// B tracked the previous attempt (it passed B's hop), so at B
				// it is established now; at A it is new.
				tp.wantCTStates(p, "unsolicited reply, both allow", maps.CTEstablished, maps.CTNew)
				tp.wantRules(p, "unsolicited reply, both allow", 102, 103)
			})
		}
	})
}

// TestConntrackMapFull: with a conntrack map that cannot evict, a new flow
// that finds it full is dropped (CT_MAP_INSERTION_FAILED), counted, never
// forwarded untracked; tracked flows keep passing.
func TestConntrackMapFull(t *testing.T) {
	dpEachFamily(t, func(t *testing.T, f dpFamily) {
		for _, dir := range []maps.Direction{maps.Egress, maps.Ingress} {
			t.Run(dir.String(), func(t *testing.T) {
				tp := newDPTopo(t, f, testrun.Options{Node: datapath.NodeOptions{CTMapType: ebpf.Hash, CTMaxEntries: 2}})
				want := dpMetrics{}
				conn := func(port uint16) *testrun.Conn {
					if dir == maps.Egress {
						return tp.h.Conn(tp.pod(tp.A), testrun.External(f.ext), dpTCP, port, 443)
					}
					return tp.h.Conn(testrun.External(f.ext), tp.pod(tp.B), dpTCP, port, 80)
				}
				// From the endpoint (client side for egress, server side for
				// ingress) the metrics direction is egress, else ingress.
				mdir := func(fromClient bool) maps.Direction {
					if fromClient == (dir == maps.Egress) {
						return maps.Egress
					}
					return maps.Ingress
				}
				c1, c2, c3 := conn(40001), conn(40002), conn(40003)
				for i, c := range []*testrun.Conn{c1, c2} {
					pkt := c.Packet(true, testrun.SYN)
					p := tp.walk(c, true, pkt)
					tp.wantDelivered(p, "SYN of flow")
					want.add(dropreason.Forwarded, dir, pkt)
					if all, _ := tp.h.CTEntries(); len(all) != i+1 {
						t.Fatalf("after %d flows: %d entries", i+1, len(all))
					}
				}
				for i := 0; i < 2; i++ {
					pkt := c3.Packet(true, testrun.SYN)
					p := tp.walk(c3, true, pkt)
					ev := tp.wantDrop(p, 0, dropreason.CTMapInsertionFailed, "SYN of the third flow")
					if ev.Direction != dir || ev.CTState != maps.CTNew {
						t.Errorf("drop event %s", ev)
					}
					want.add(dropreason.CTMapInsertionFailed, dir, pkt)
				}
				// The tracked flows still pass both ways.
				for _, s := range []struct {
					c          *testrun.Conn
					fromClient bool
					flags      testrun.TCPFlags
					state      uint8
				}{
					{c1, false, testrun.SYN | testrun.ACK, maps.CTReply},
					{c1, true, testrun.ACK, maps.CTEstablished},
					{c2, false, testrun.SYN | testrun.ACK, maps.CTReply},
					{c2, true, testrun.PSH | testrun.ACK, maps.CTEstablished},
				} {
					pkt := s.c.Packet(s.fromClient, s.flags)
					p := tp.walk(s.c, s.fromClient, pkt)
					tp.wantDelivered(p, "tracked flow")
					tp.wantCTStates(p, "tracked flow", s.state)
					want.add(dropreason.Forwarded, mdir(s.fromClient), pkt)
				}
				tp.wantMetrics(want)
				if all, _ := tp.h.CTEntries(); len(all) != 2 {
					t.Errorf("conntrack holds %d entries, want 2", len(all))
				}
			})
		}
	})
}

// TestConntrackProxyRedirect: the proxy port a new connection was
// redirected for is kept in its entry, and later packets of the connection
// go to the proxy too, until a policy change re-checks the entry.
func TestConntrackProxyRedirect(t *testing.T) {
	dpEachFamily(t, func(t *testing.T, f dpFamily) {
		tp := newDPTopo(t, f, testrun.Options{})
		tp.enforce(tp.A, false, true)
		proxied := testrun.Rule{Direction: maps.Egress, Identity: dpIDB, Protocol: dpTCP, Ports: dpPort(80), ProxyPort: 15001, RuleID: 500}
		tp.addRule(tp.A, proxied)
		c := tp.h.Conn(tp.pod(tp.A), tp.pod(tp.B), dpTCP, 40000, 80)
		cl, sv := tp.ap(tp.A, 40000), tp.ap(tp.B, 80)
		wantProxy := func(p testrun.Path, what string, state uint8) {
			t.Helper()
			if len(p.Hops) != 1 || p.Delivered || p.Hops[0].Code != testrun.ActOK || p.Hops[0].Mark != dpMagic|15001<<16 {
				t.Fatalf("%s: want a redirect to proxy port 15001 (mark %#x): %s", what, dpMagic|15001<<16, p)
			}
			if ev := tp.trace(p, 0, what); ev.ProxyPort != 15001 || ev.CTState != state || ev.RuleID != 500 {
				t.Errorf("%s: trace %s (proxy port %d)", what, ev, ev.ProxyPort)
			}
		}
		wantProxy(tp.step(c, true, testrun.SYN), "SYN", maps.CTNew)
		e := tp.mustCT(cl, sv, dpTCP, maps.Egress)
		if e.ProxyPortNet != maps.HostToNet16(15001) || e.RuleID != 500 {
			t.Errorf("entry %+v: want proxy port 15001, rule 500", e)
		}
		wantProxy(tp.step(c, true, testrun.ACK), "ACK", maps.CTEstablished)
		wantProxy(tp.step(c, true, testrun.PSH|testrun.ACK), "data", maps.CTEstablished)
		tp.wantMetricPackets(dropreason.PuntToProxy, maps.Egress, 3)

		// The same key without a proxy: the re-check clears the entry's
		// proxy port and the connection is forwarded.
		tp.addRule(tp.A, testrun.Rule{Direction: maps.Egress, Identity: dpIDB, Protocol: dpTCP, Ports: dpPort(80), RuleID: 501})
		p := tp.step(c, true, testrun.PSH|testrun.ACK)
		tp.wantDelivered(p, "data after the proxy was removed")
		if p.Hops[0].Mark != 0 || p.Hops[0].Code != testrun.ActRedirect {
			t.Errorf("data after the proxy was removed: %s (mark %#x)", p, p.Hops[0].Mark)
		}
		if e := tp.mustCT(cl, sv, dpTCP, maps.Egress); e.ProxyPortNet != 0 || e.RuleID != 501 {
			t.Errorf("entry after the re-check: %+v", e)
		}
	})
}
