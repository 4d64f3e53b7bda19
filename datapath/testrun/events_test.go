package testrun_test

// Events and metrics match what happened to each packet: a trace event for
// every forward under TraceEveryPacket, for first packets and state changes
// only under TraceConnectionEvents, none under TraceDropsOnly; a drop event
// for every drop at every level; the packet head as CaptureLen says; and
// metrics counting every packet (packets and bytes) under its reason and
// direction, whatever the trace level. Builders and assertions are in
// malformed_test.go.

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"

	"github.com/ciliaproject/cilia/datapath"
	"github.com/ciliaproject/cilia/datapath/dropreason"
	"github.com/ciliaproject/cilia/datapath/events"
	"github.com/ciliaproject/cilia/datapath/maps"
	"github.com/ciliaproject/cilia/datapath/testrun"
)

var (
	evPodBV4 = netip.MustParseAddr("10.0.0.2")
	evPodBV6 = netip.MustParseAddr("fd00::2")
)

const (
	evPodBID       uint16 = 2
	evPodBIdentity uint32 = 1002
	evPodBIfindex  uint32 = 1002
	evWorld        uint32 = maps.IdentityWorld
)

// evNewHarness returns a harness with two endpoints: A (the mf pod: id 1,
// identity 1001, ifindex 1001) and B (id 2, identity 1002, ifindex 1002).
func evNewHarness(t *testing.T, s datapath.Settings) (*testrun.Harness, *testrun.Endpoint, *testrun.Endpoint) {
	t.Helper()
	h, a := mfNewHarness(t, s)
	b, err := h.AddEndpoint(testrun.EndpointSpec{ID: evPodBID, Identity: evPodBIdentity, IPv4: evPodBV4, IPv6: evPodBV6})
	if err != nil {
		t.Fatalf("add endpoint B: %v", err)
	}
	return h, a, b
}

// evWant is what an event must say.
type evWant struct {
	typ      events.Type
	obs      events.ObservationPoint
	ifindex  uint32
	verdict  events.Verdict
	reason   dropreason.Reason
	src, dst uint32
	ep       uint16
	dir      maps.Direction
	ct       uint8
	rule     uint32
}

// evCheck checks every field of e against w, and that it describes pkt (the
// packet as the program left it): OrigLen its length, Data its first
// min(len, capLen) bytes.
func evCheck(t *testing.T, what string, e events.Event, w evWant, pkt []byte, capLen int) {
	t.Helper()
	got := evWant{e.Type, e.ObservationPoint, e.Ifindex, e.Verdict, e.Reason, e.SrcIdentity, e.DstIdentity, e.EndpointID, e.Direction, e.CTState, e.RuleID}
	if got != w {
		t.Errorf("%s: event\n got %+v\nwant %+v", what, got, w)
	}
	if e.OrigLen != uint32(len(pkt)) {
		t.Errorf("%s: OrigLen %d, want %d", what, e.OrigLen, len(pkt))
	}
	n := min(len(pkt), capLen)
	if !bytes.Equal(e.Data, pkt[:n]) {
		t.Errorf("%s: Data (%d bytes)\n got %x\nwant %x (the first %d bytes of the packet)", what, len(e.Data), e.Data, pkt[:n], n)
	}
}

// evOnly returns the single event of r, failing when there is not exactly one.
func evOnly(t *testing.T, what string, r testrun.Result) events.Event {
	t.Helper()
	if len(r.Events) != 1 {
		t.Fatalf("%s: %d events %v, want exactly one", what, len(r.Events), r.Events)
	}
	return r.Events[0]
}

func evRun(t *testing.T, what string, run func([]byte) (testrun.Result, error), pkt []byte, code int) testrun.Result {
	t.Helper()
	r, err := run(pkt)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if r.Code != code {
		t.Fatalf("%s: code %d, want %d; events %v", what, r.Code, code, r.Events)
	}
	return r
}

// TestEventsTraceEveryPacket: under TraceEveryPacket (the harness default)
// every forward emits one trace event: TO_ENDPOINT with the target's
// ifindex for local delivery (on both hops), TO_STACK with ifindex 0 for an
// external destination, verdict FORWARDED, the identities of both sides,
// the endpoint id and direction of the program, the conntrack state, the
// length and the head of the packet.
func TestEventsTraceEveryPacket(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		t.Run(fmt.Sprintf("v6=%v", v6), func(t *testing.T) {
			h, a, b := evNewHarness(t, datapath.Settings{})
			aAddr, bAddr, ext := mfPodV4, evPodBV4, mfExtV4
			if v6 {
				aAddr, bAddr, ext = mfPodV6, evPodBV6, mfExtV6
			}
			const cl = maps.EventCaptureMax
			big := bytes.Repeat([]byte("x"), 200) // longer than the capture
			T, F := events.TypeTrace, events.VerdictForwarded

			// Local delivery A -> B, and B's reply.
			syn := testrun.TCP(netip.AddrPortFrom(aAddr, 40000), netip.AddrPortFrom(bAddr, 80), testrun.SYN, big)
			r := evRun(t, "A from_container SYN", a.FromContainer, syn, testrun.ActRedirect)
			// The event describes the packet as redirected: Ethernet
			// header rewritten for B, TTL decremented.
			evCheck(t, "A from_container SYN", evOnly(t, "A SYN", r),
				evWant{T, events.ObsToEndpoint, evPodBIfindex, F, 0, mfPodIdentity, evPodBIdentity, mfPodID, maps.Egress, maps.CTNew, 0}, r.Packet, cl)
			r = evRun(t, "B to_container SYN", b.ToContainer, r.Packet, testrun.ActOK)
			evCheck(t, "B to_container SYN", evOnly(t, "B SYN", r),
				evWant{T, events.ObsToEndpoint, evPodBIfindex, F, 0, mfPodIdentity, evPodBIdentity, evPodBID, maps.Ingress, maps.CTNew, 0}, r.Packet, cl)

			synack := testrun.TCP(netip.AddrPortFrom(bAddr, 80), netip.AddrPortFrom(aAddr, 40000), testrun.SYN|testrun.ACK, nil)
			r = evRun(t, "B from_container SYN-ACK", b.FromContainer, synack, testrun.ActRedirect)
			evCheck(t, "B from_container SYN-ACK", evOnly(t, "B SYN-ACK", r),
				evWant{T, events.ObsToEndpoint, mfPodIfindex, F, 0, evPodBIdentity, mfPodIdentity, evPodBID, maps.Egress, maps.CTReply, 0}, r.Packet, cl)
			r = evRun(t, "A to_container SYN-ACK", a.ToContainer, r.Packet, testrun.ActOK)
			evCheck(t, "A to_container SYN-ACK", evOnly(t, "A SYN-ACK", r),
				evWant{T, events.ObsToEndpoint, mfPodIfindex, F, 0, evPodBIdentity, mfPodIdentity, mfPodID, maps.Ingress, maps.CTReply, 0}, r.Packet, cl)

			ack := testrun.TCP(netip.AddrPortFrom(aAddr, 40000), netip.AddrPortFrom(bAddr, 80), testrun.ACK, nil)
			r = evRun(t, "A from_container ACK", a.FromContainer, ack, testrun.ActRedirect)
			evCheck(t, "A from_container ACK", evOnly(t, "A ACK", r),
				evWant{T, events.ObsToEndpoint, evPodBIfindex, F, 0, mfPodIdentity, evPodBIdentity, mfPodID, maps.Egress, maps.CTEstablished, 0}, r.Packet, cl)

			// External destination: to the stack, untouched.
			out := testrun.UDP(netip.AddrPortFrom(aAddr, 5000), netip.AddrPortFrom(ext, 53), big)
			r = evRun(t, "A from_container to external", a.FromContainer, out, testrun.ActOK)
			if !bytes.Equal(r.Packet, out) {
				t.Errorf("packet to the stack was modified")
			}
			evCheck(t, "A to external", evOnly(t, "A to external", r),
				evWant{T, events.ObsToStack, 0, F, 0, mfPodIdentity, evWorld, mfPodID, maps.Egress, maps.CTNew, 0}, out, cl)
			// Its reply, short (the whole packet is captured).
			in := testrun.UDP(netip.AddrPortFrom(ext, 53), netip.AddrPortFrom(aAddr, 5000), []byte("r"))
			r = evRun(t, "A to_container from external", a.ToContainer, in, testrun.ActOK)
			evCheck(t, "A from external", evOnly(t, "A from external", r),
				evWant{T, events.ObsToEndpoint, mfPodIfindex, F, 0, evWorld, mfPodIdentity, mfPodID, maps.Ingress, maps.CTReply, 0}, in, cl)

			// The remote identity comes from the ipcache.
			prefix := netip.PrefixFrom(ext, 16)
			if v6 {
				prefix = netip.PrefixFrom(ext, 64)
			}
			if err := h.SetIdentity(prefix.Masked(), 16777217); err != nil {
				t.Fatal(err)
			}
			out2 := testrun.UDP(netip.AddrPortFrom(aAddr, 5001), netip.AddrPortFrom(ext, 53), []byte("q"))
			r = evRun(t, "A to a CIDR identity", a.FromContainer, out2, testrun.ActOK)
			evCheck(t, "A to a CIDR identity", evOnly(t, "A to a CIDR identity", r),
				evWant{T, events.ObsToStack, 0, F, 0, mfPodIdentity, 16777217, mfPodID, maps.Egress, maps.CTNew, 0}, out2, cl)

			// Policy: the rule id of the entry that allowed a new flow.
			if err := a.AddRule(testrun.Rule{Direction: maps.Ingress, Identity: 16777217, Protocol: mfProtoUDP, Ports: maps.PortRange{Lo: 7000, Hi: 7000}, RuleID: 31}); err != nil {
				t.Fatal(err)
			}
			if err := a.SetEnforcement(true, false); err != nil {
				t.Fatal(err)
			}
			in2 := testrun.UDP(netip.AddrPortFrom(ext, 9), netip.AddrPortFrom(aAddr, 7000), []byte("in"))
			r = evRun(t, "A allowed by rule 31", a.ToContainer, in2, testrun.ActOK)
			evCheck(t, "A allowed by rule 31", evOnly(t, "A allowed by rule 31", r),
				evWant{T, events.ObsToEndpoint, mfPodIfindex, F, 0, 16777217, mfPodIdentity, mfPodID, maps.Ingress, maps.CTNew, 31}, in2, cl)
		})
	}
}

// TestEventsDropEvent: a drop event reports the drop reason, verdict
// DROPPED, where the packet was seen (FROM_ENDPOINT with the endpoint's
// ifindex for what the pod sends, TO_ENDPOINT for what it receives), the
// identities known at that point, and the dropped packet's length and head.
func TestEventsDropEvent(t *testing.T) {
	h, a := mfNewHarness(t, datapath.Settings{})
	const cl = maps.EventCaptureMax
	D, X := events.TypeDrop, events.VerdictDropped
	big := bytes.Repeat([]byte("y"), 300)
	if err := a.AddRule(testrun.Rule{Direction: maps.Ingress, Protocol: mfProtoTCP, Ports: maps.PortRange{Lo: 22, Hi: 22}, Deny: true, RuleID: 66}); err != nil {
		t.Fatal(err)
	}
	if err := a.AddRule(testrun.Rule{Direction: maps.Ingress, Protocol: mfProtoTCP, Ports: maps.PortRange{Lo: 0, Hi: 0xffff}, RuleID: 65}); err != nil {
		t.Fatal(err)
	}
	if err := a.SetEnforcement(true, true); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		dir  mfDir
		pkt  []byte
		want evWant
	}{
		{"egress-policy-denied", mfDirs[0], testrun.UDP(netip.AddrPortFrom(mfPodV4, 5000), netip.AddrPortFrom(mfExtV4, 53), big),
			evWant{D, events.ObsFromEndpoint, mfPodIfindex, X, dropreason.PolicyDenied, mfPodIdentity, evWorld, mfPodID, maps.Egress, maps.CTNew, 0}},
		{"ingress-policy-denied", mfDirs[1], testrun.UDP(netip.AddrPortFrom(mfExtV4, 5000), netip.AddrPortFrom(mfPodV4, 53), big),
			evWant{D, events.ObsToEndpoint, mfPodIfindex, X, dropreason.PolicyDenied, evWorld, mfPodIdentity, mfPodID, maps.Ingress, maps.CTNew, 0}},
		{"ingress-deny-entry", mfDirs[1], testrun.TCP(netip.AddrPortFrom(mfExtV6, 5000), netip.AddrPortFrom(mfPodV6, 22), testrun.SYN, big),
			evWant{D, events.ObsToEndpoint, mfPodIfindex, X, dropreason.PolicyDeny, evWorld, mfPodIdentity, mfPodID, maps.Ingress, maps.CTNew, 66}},
		{"egress-spoofed-source", mfDirs[0], testrun.UDP(netip.AddrPortFrom(netip.MustParseAddr("10.0.0.99"), 5000), netip.AddrPortFrom(mfExtV4, 53), []byte("s")),
			evWant{D, events.ObsFromEndpoint, mfPodIfindex, X, dropreason.InvalidSourceIP, mfPodIdentity, 0, mfPodID, maps.Egress, maps.CTNew, 0}},
		{"ingress-unsupported-l3", mfDirs[1], mfEth(0x88cc, make([]byte, 30)),
			evWant{D, events.ObsToEndpoint, mfPodIfindex, X, dropreason.UnsupportedL3Protocol, 0, mfPodIdentity, mfPodID, maps.Ingress, maps.CTNew, 0}},
		{"egress-truncated-l4", mfDirs[0], mfCut(mfIPv4(mfPodV4, mfExtV4, mfProtoTCP, nil, mfTCPSyn()), 40),
			evWant{D, events.ObsFromEndpoint, mfPodIfindex, X, dropreason.CTTruncatedOrInvalidHeader, mfPodIdentity, 0, mfPodID, maps.Egress, maps.CTNew, 0}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := mfExpectDrop(t, h, a, c.dir, c.pkt, c.want.reason)
			if !bytes.Equal(r.Packet, c.pkt) {
				t.Errorf("dropped packet was modified")
			}
			if e, ok := r.Drop(); ok {
				evCheck(t, c.name, e, c.want, c.pkt, cl)
			}
		})
	}
}

// evStep is one packet of a connection: from the client or the server,
// TCP flags, payload, and whether it changes the connection's state (its
// first packet, the first reply, a FIN in each direction).
type evStep struct {
	fromClient bool
	flags      testrun.TCPFlags
	payload    string
	changes    bool
	ct         uint8 // conntrack state the trace reports
}

var evTCPSteps = []evStep{
	{true, testrun.SYN, "", true, maps.CTNew},
	{false, testrun.SYN | testrun.ACK, "", true, maps.CTReply},
	{true, testrun.ACK, "", false, maps.CTEstablished},
	{true, testrun.PSH | testrun.ACK, "GET / HTTP/1.1\r\n\r\n", false, maps.CTEstablished},
	{false, testrun.ACK, "", false, maps.CTReply},
	{false, testrun.PSH | testrun.ACK, "HTTP/1.1 200 OK\r\n\r\n", false, maps.CTReply},
	{true, testrun.ACK, "", false, maps.CTEstablished},
	{true, testrun.SYN, "", false, maps.CTEstablished}, // a retransmitted SYN changes nothing
	{true, testrun.FIN | testrun.ACK, "", true, maps.CTEstablished},
	{false, testrun.ACK, "", false, maps.CTReply},
	{false, testrun.FIN | testrun.ACK, "", true, maps.CTReply},
	{true, testrun.ACK, "", false, maps.CTEstablished},
}

var evUDPSteps = []evStep{
	{true, 0, "q1", true, maps.CTNew},
	{false, 0, "r1", true, maps.CTReply},
	{true, 0, "q2", false, maps.CTEstablished},
	{false, 0, "r2", false, maps.CTReply},
	{true, 0, "q3", false, maps.CTEstablished},
}

// evConnCase is a connection between two peers of the harness.
type evConnCase struct {
	name           string
	proto          uint8
	steps          []evStep
	client, server func(a, b *testrun.Endpoint) testrun.Peer
}

var evConnCases = []evConnCase{
	{"tcp/external-client-to-pod", mfProtoTCP, evTCPSteps,
		func(_, _ *testrun.Endpoint) testrun.Peer { return testrun.External(mfExtV4) },
		func(a, _ *testrun.Endpoint) testrun.Peer { return testrun.PodV4(a) }},
	{"tcp/pod-to-external-server-v6", mfProtoTCP, evTCPSteps,
		func(a, _ *testrun.Endpoint) testrun.Peer { return testrun.PodV6(a) },
		func(_, _ *testrun.Endpoint) testrun.Peer { return testrun.External(mfExtV6) }},
	{"tcp/pod-to-pod", mfProtoTCP, evTCPSteps,
		func(a, _ *testrun.Endpoint) testrun.Peer { return testrun.PodV4(a) },
		func(_, b *testrun.Endpoint) testrun.Peer { return testrun.PodV4(b) }},
	{"udp/pod-to-external", mfProtoUDP, evUDPSteps,
		func(a, _ *testrun.Endpoint) testrun.Peer { return testrun.PodV4(a) },
		func(_, _ *testrun.Endpoint) testrun.Peer { return testrun.External(mfExtV4) }},
	{"udp/pod-to-pod-v6", mfProtoUDP, evUDPSteps,
		func(a, _ *testrun.Endpoint) testrun.Peer { return testrun.PodV6(a) },
		func(_, b *testrun.Endpoint) testrun.Peer { return testrun.PodV6(b) }},
}

// evWalkConn runs the steps of c and checks, per program run, the trace
// events the trace level asks for and no drop; it returns the metrics the
// connection must have produced.
func evWalkConn(t *testing.T, h *testrun.Harness, a, b *testrun.Endpoint, c evConnCase, level uint8) map[events.MetricKey]maps.MetricsValue {
	t.Helper()
	cl, sv := c.client(a, b), c.server(a, b)
	want := map[events.MetricKey]maps.MetricsValue{}
	for i, s := range c.steps {
		src, dst := netip.AddrPortFrom(cl.Addr, 40000), netip.AddrPortFrom(sv.Addr, 80)
		if !s.fromClient {
			src, dst = dst, src
		}
		var pkt []byte
		if c.proto == mfProtoTCP {
			pkt = testrun.TCP(src, dst, s.flags, []byte(s.payload))
		} else {
			pkt = testrun.UDP(src, dst, []byte(s.payload))
		}
		from, to := cl, sv
		if !s.fromClient {
			from, to = sv, cl
		}
		p, err := evWalk(from, to, pkt)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if !p.Delivered {
			t.Fatalf("step %d (%+v) not delivered: %s", i, s, p)
		}
		for j, hop := range p.Hops {
			var traces []events.Event
			for _, e := range hop.Events {
				if e.IsDrop() {
					t.Errorf("step %d hop %d: drop %v", i, j, e)
				} else {
					traces = append(traces, e)
				}
			}
			wantTrace := level == datapath.TraceEveryPacket || (level == datapath.TraceConnectionEvents && s.changes)
			switch {
			case wantTrace && len(traces) != 1:
				t.Errorf("step %d (%+v) hop %d %s: traces %v, want one", i, s, j, hop.Program, traces)
			case !wantTrace && len(traces) != 0:
				t.Errorf("step %d (%+v) hop %d %s: traces %v, want none at trace level %d", i, s, j, hop.Program, traces, level)
			case wantTrace && (traces[0].CTState != s.ct || traces[0].Verdict != events.VerdictForwarded):
				t.Errorf("step %d hop %d %s: trace %v, want FORWARDED with conntrack state %d", i, j, hop.Program, traces[0], s.ct)
			}
			dir := maps.Egress
			if hop.Program == "to_container" {
				dir = maps.Ingress
			}
			k := events.MetricKey{Reason: dropreason.Forwarded, Direction: dir}
			v := want[k]
			v.Packets++
			v.Bytes += uint64(len(pkt))
			want[k] = v
		}
	}
	return want
}

// evWalk walks pkt from one peer to the other through the programs on the
// way: the sender's from_container, then the receiver's to_container. It
// does what Harness.Send/Receive do, but finds the next hop by the
// destination endpoint rather than by the trace event of the redirect,
// which only exists under TraceEveryPacket (see
// TestEventsHarnessSendAtEveryTraceLevel).
func evWalk(from, to testrun.Peer, pkt []byte) (testrun.Path, error) {
	var p testrun.Path
	if from.Endpoint != nil {
		r, err := from.Endpoint.FromContainer(pkt)
		if err != nil {
			return p, err
		}
		p.Hops = append(p.Hops, r)
		want := testrun.ActOK
		if to.Endpoint != nil {
			want = testrun.ActRedirect
		}
		if r.Code != want {
			return p, nil
		}
		if to.Endpoint == nil {
			p.Delivered, p.Packet = r.Mark == 0, r.Packet
			return p, nil
		}
		pkt = r.Packet
	}
	if to.Endpoint == nil {
		return p, fmt.Errorf("walk: neither %s nor %s is an endpoint", from.Addr, to.Addr)
	}
	r, err := to.Endpoint.ToContainer(pkt)
	if err != nil {
		return p, err
	}
	p.Hops = append(p.Hops, r)
	if r.Code == testrun.ActOK && r.Mark == 0 {
		p.Delivered, p.Packet = true, r.Packet
	}
	return p, nil
}

// TestEventsHarnessSendAtEveryTraceLevel: Harness.Send (and Conn, which
// uses it) must walk a packet from one endpoint to another at every trace
// level: which events the datapath emits must not decide where the harness
// takes the packet.
func TestEventsHarnessSendAtEveryTraceLevel(t *testing.T) {
	for _, level := range []uint8{datapath.TraceEveryPacket, datapath.TraceConnectionEvents, datapath.TraceDropsOnly} {
		t.Run(fmt.Sprintf("trace-level-%d", level), func(t *testing.T) {
			h, a, b := evNewHarness(t, datapath.Settings{TraceLevel: level})
			conn := h.Conn(testrun.PodV4(a), testrun.PodV4(b), testrun.ProtoTCP, 40000, 80)
			if _, err := conn.Handshake(); err != nil {
				t.Errorf("handshake A -> B: %v", err)
			}
			p, err := conn.Send(true, testrun.PSH|testrun.ACK)
			if err != nil || !p.Delivered || len(p.Hops) != 2 {
				t.Errorf("established packet A -> B: %s (err %v), want delivered over two hops", p, err)
			}
		})
	}
}

// evCheckMetrics checks that the metrics are exactly want.
func evCheckMetrics(t *testing.T, h *testrun.Harness, want map[events.MetricKey]maps.MetricsValue) {
	t.Helper()
	mfCheckMetricsDelta(t, nil, mfMetrics(t, h), want)
}

// evAddMetric adds one packet of n bytes to want[(reason, dir)].
func evAddMetric(want map[events.MetricKey]maps.MetricsValue, reason dropreason.Reason, dir maps.Direction, n int) {
	k := events.MetricKey{Reason: reason, Direction: dir}
	v := want[k]
	v.Packets++
	v.Bytes += uint64(n)
	want[k] = v
}

// evCheckDropsReported: at every trace level a drop emits its drop event
// (and nothing else) and is counted.
func evCheckDropsReported(t *testing.T, h *testrun.Harness, a *testrun.Endpoint, want map[events.MetricKey]maps.MetricsValue) {
	t.Helper()
	lldp := mfEth(0x88cc, make([]byte, 40))
	mfExpectDrop(t, h, a, mfDirs[1], lldp, dropreason.UnsupportedL3Protocol)
	evAddMetric(want, dropreason.UnsupportedL3Protocol, maps.Ingress, len(lldp))
	if err := a.SetEnforcement(true, true); err != nil {
		t.Fatal(err)
	}
	denied := testrun.TCP(netip.AddrPortFrom(mfExtV4, 1234), netip.AddrPortFrom(mfPodV4, 8080), testrun.SYN, nil)
	mfExpectDrop(t, h, a, mfDirs[1], denied, dropreason.PolicyDenied)
	evAddMetric(want, dropreason.PolicyDenied, maps.Ingress, len(denied))
	denied = testrun.UDP(netip.AddrPortFrom(mfPodV4, 1234), netip.AddrPortFrom(mfExtV4, 8080), nil)
	mfExpectDrop(t, h, a, mfDirs[0], denied, dropreason.PolicyDenied)
	evAddMetric(want, dropreason.PolicyDenied, maps.Egress, len(denied))
}

// TestEventsTraceLevels: the same connections at each trace level. Under
// TraceEveryPacket every forward is traced; under TraceConnectionEvents
// only a connection's first packet and its state changes (first reply,
// FIN each way) are, while established packets that change nothing emit
// nothing; under TraceDropsOnly nothing is traced. Drops are reported at
// every level, and metrics count every packet at every level.
func TestEventsTraceLevels(t *testing.T) {
	levels := []struct {
		name  string
		level uint8
	}{
		{"TraceEveryPacket", datapath.TraceEveryPacket},
		{"TraceConnectionEvents", datapath.TraceConnectionEvents},
		{"TraceDropsOnly", datapath.TraceDropsOnly},
	}
	for _, l := range levels {
		for _, c := range evConnCases {
			t.Run(l.name+"/"+c.name, func(t *testing.T) {
				h, a, b := evNewHarness(t, datapath.Settings{TraceLevel: l.level})
				want := evWalkConn(t, h, a, b, c, l.level)
				evCheckDropsReported(t, h, a, want)
				evCheckMetrics(t, h, want)
			})
		}
	}
}

// TestEventsConnectionEventsNoiseFree: under TraceConnectionEvents a long
// established exchange emits exactly the traces of its state changes.
func TestEventsConnectionEventsNoiseFree(t *testing.T) {
	h, a := mfNewHarness(t, datapath.Settings{TraceLevel: datapath.TraceConnectionEvents})
	conn := h.Conn(testrun.External(mfExtV4), testrun.PodV4(a), testrun.ProtoTCP, 40000, 80)
	var traces int
	send := func(fromClient bool, flags testrun.TCPFlags) {
		p, err := conn.Send(fromClient, flags)
		if err != nil || !p.Delivered {
			t.Fatalf("not delivered: %s (%v)", p, err)
		}
		traces += len(p.Events())
	}
	send(true, testrun.SYN)
	send(false, testrun.SYN|testrun.ACK)
	for i := 0; i < 100; i++ {
		send(true, testrun.PSH|testrun.ACK)
		send(false, testrun.ACK)
	}
	if traces != 2 {
		t.Errorf("%d traces for a handshake and 200 established packets, want 2", traces)
	}
	send(false, testrun.RST)
	if traces != 3 {
		t.Errorf("an RST (the connection closes) emitted %d traces, want 1", traces-2)
	}
}

// TestEventsCaptureLen: Settings.CaptureLen sets how many bytes of packet
// head events carry (0 means 128, more than 128 is cut to 128), for traces
// and drops alike; a packet shorter than that is captured whole.
func TestEventsCaptureLen(t *testing.T) {
	for _, c := range []struct{ set, want int }{{0, 128}, {1, 1}, {32, 32}, {64, 64}, {128, 128}, {500, 128}} {
		t.Run(fmt.Sprintf("CaptureLen=%d", c.set), func(t *testing.T) {
			h, a := mfNewHarness(t, datapath.Settings{CaptureLen: uint32(c.set)})
			T, D := events.TypeTrace, events.TypeDrop
			long := testrun.UDP(netip.AddrPortFrom(mfPodV4, 5000), netip.AddrPortFrom(mfExtV4, 53), make([]byte, 200))
			r := mfExpectPass(t, h, a, mfDirs[0], long)
			if e, ok := r.Trace(); ok {
				evCheck(t, "trace", e, evWant{T, events.ObsToStack, 0, events.VerdictForwarded, 0, mfPodIdentity, evWorld, mfPodID, maps.Egress, maps.CTNew, 0}, long, c.want)
			}
			for _, n := range []int{14, 30, 100, 200} {
				pkt := mfEth(0x88cc, make([]byte, n-14))
				for i := range pkt[14:] {
					pkt[14+i] = byte(i)
				}
				r := mfExpectDrop(t, h, a, mfDirs[1], pkt, dropreason.UnsupportedL3Protocol)
				if e, ok := r.Drop(); ok {
					evCheck(t, fmt.Sprintf("drop of %d bytes", n), e, evWant{D, events.ObsToEndpoint, mfPodIfindex, events.VerdictDropped, dropreason.UnsupportedL3Protocol, 0, mfPodIdentity, mfPodID, maps.Ingress, maps.CTNew, 0}, pkt, c.want)
				}
			}
		})
	}
}

// TestEventsMetrics: after a mix of traffic the metrics are exactly the
// number of packets (and bytes) of each kind, by reason and direction, at
// every trace level.
func TestEventsMetrics(t *testing.T) {
	for _, level := range []uint8{datapath.TraceEveryPacket, datapath.TraceConnectionEvents, datapath.TraceDropsOnly} {
		t.Run(fmt.Sprintf("trace-level-%d", level), func(t *testing.T) {
			h, a, b := evNewHarness(t, datapath.Settings{TraceLevel: level})
			// B accepts TCP/80 from A only.
			if err := b.AddRule(testrun.Rule{Direction: maps.Ingress, Identity: mfPodIdentity, Protocol: mfProtoTCP, Ports: maps.PortRange{Lo: 80, Hi: 80}}); err != nil {
				t.Fatal(err)
			}
			if err := b.SetEnforcement(true, false); err != nil {
				t.Fatal(err)
			}
			want := map[events.MetricKey]maps.MetricsValue{}
			walk := func(p testrun.Path, err error) testrun.Path {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
				return p
			}
			pa, pb := testrun.PodV4(a), testrun.PodV4(b)
			ext := testrun.External(mfExtV4)
			// A -> external, three sizes; two replies.
			for _, n := range []int{1, 100, 1000} {
				pkt := testrun.UDP(netip.AddrPortFrom(mfPodV4, 5000), netip.AddrPortFrom(mfExtV4, 53), make([]byte, n))
				if p := walk(evWalk(pa, ext, pkt)); !p.Delivered {
					t.Fatalf("not delivered: %s", p)
				}
				evAddMetric(want, dropreason.Forwarded, maps.Egress, len(pkt))
			}
			for _, n := range []int{7, 700} {
				pkt := testrun.UDP(netip.AddrPortFrom(mfExtV4, 53), netip.AddrPortFrom(mfPodV4, 5000), make([]byte, n))
				if p := walk(evWalk(ext, pa, pkt)); !p.Delivered {
					t.Fatalf("not delivered: %s", p)
				}
				evAddMetric(want, dropreason.Forwarded, maps.Ingress, len(pkt))
			}
			// A -> B TCP/80: forwarded by both; TCP/81: forwarded by A,
			// denied by B; IPv6 to B's port 80 from A: allowed.
			for _, c := range []struct {
				dst     netip.AddrPort
				allowed bool
			}{
				{netip.AddrPortFrom(evPodBV4, 80), true},
				{netip.AddrPortFrom(evPodBV4, 81), false},
				{netip.AddrPortFrom(evPodBV6, 80), true},
			} {
				src, from, to := mfPodV4, pa, pb
				if c.dst.Addr().Is6() {
					src, from, to = mfPodV6, testrun.PodV6(a), testrun.PodV6(b)
				}
				pkt := testrun.TCP(netip.AddrPortFrom(src, 40000), c.dst, testrun.SYN, []byte("hello"))
				p := walk(evWalk(from, to, pkt))
				if len(p.Hops) != 2 || p.Delivered != c.allowed {
					t.Fatalf("A -> %s: %s, want two hops, delivered %v", c.dst, p, c.allowed)
				}
				evAddMetric(want, dropreason.Forwarded, maps.Egress, len(pkt))
				if c.allowed {
					evAddMetric(want, dropreason.Forwarded, maps.Ingress, len(pkt))
				} else {
					evAddMetric(want, dropreason.PolicyDenied, maps.Ingress, len(pkt))
				}
			}
			// Spoofed sources from A.
			for _, n := range []int{3, 30} {
				pkt := testrun.UDP(netip.AddrPortFrom(netip.MustParseAddr("10.0.0.99"), 5000), netip.AddrPortFrom(mfExtV4, 53), make([]byte, n))
				mfExpectDrop(t, h, a, mfDirs[0], pkt, dropreason.InvalidSourceIP)
				evAddMetric(want, dropreason.InvalidSourceIP, maps.Egress, len(pkt))
			}
			// Malformed packets to A.
			for _, n := range []int{14, 60, 1500} {
				pkt := mfEth(0x88cc, make([]byte, n-14))
				mfExpectDrop(t, h, a, mfDirs[1], pkt, dropreason.UnsupportedL3Protocol)
				evAddMetric(want, dropreason.UnsupportedL3Protocol, maps.Ingress, len(pkt))
			}
			cut := mfCut(mfIPv4(mfExtV4, mfPodV4, mfProtoTCP, nil, mfTCPSyn()), 44)
			mfExpectDrop(t, h, a, mfDirs[1], cut, dropreason.CTTruncatedOrInvalidHeader)
			evAddMetric(want, dropreason.CTTruncatedOrInvalidHeader, maps.Ingress, len(cut))
			// ARP both ways: forwarded.
			arp := mfEth(0x0806, make([]byte, 28))
			mfExpectPassAnyTrace(t, h, a, mfDirs[0], arp, level)
			evAddMetric(want, dropreason.Forwarded, maps.Egress, len(arp))
			mfExpectPassAnyTrace(t, h, a, mfDirs[1], arp, level)
			evAddMetric(want, dropreason.Forwarded, maps.Ingress, len(arp))

			// A's ingress: TCP/8080 to the L7 proxy, the rest denied.
			// Redirects are counted under PUNT_TO_PROXY.
			if err := a.AddRule(testrun.Rule{Direction: maps.Ingress, Protocol: mfProtoTCP, Ports: maps.PortRange{Lo: 8080, Hi: 8080}, ProxyPort: 15001, RuleID: 3}); err != nil {
				t.Fatal(err)
			}
			if err := a.SetEnforcement(true, false); err != nil {
				t.Fatal(err)
			}
			for _, n := range []int{0, 50} {
				pkt := testrun.TCP(netip.AddrPortFrom(mfExtV4, 30000+uint16(n)), netip.AddrPortFrom(mfPodV4, 8080), testrun.SYN, make([]byte, n))
				r := evRun(t, "to the proxy", a.ToContainer, pkt, testrun.ActOK)
				if r.Mark != 0x0200|15001<<16 {
					t.Errorf("to the proxy: mark %#x, want %#x", r.Mark, 0x0200|15001<<16)
				}
				if _, ok := r.Drop(); ok {
					t.Errorf("to the proxy: dropped: %v", r.Events)
				}
				evAddMetric(want, dropreason.PuntToProxy, maps.Ingress, len(pkt))
			}
			denied := testrun.TCP(netip.AddrPortFrom(mfExtV4, 30000), netip.AddrPortFrom(mfPodV4, 9090), testrun.SYN, nil)
			mfExpectDrop(t, h, a, mfDirs[1], denied, dropreason.PolicyDenied)
			evAddMetric(want, dropreason.PolicyDenied, maps.Ingress, len(denied))

			evCheckMetrics(t, h, want)
			var total uint64
			for _, v := range mfMetrics(t, h) {
				total += v.Packets
			}
			// 3+2 UDP, 3 TCP on two hops, 2 spoofed, 4 malformed, 2 ARP,
			// 2 to the proxy, 1 denied
			if runs := uint64(5 + 6 + 2 + 4 + 2 + 2 + 1); total != runs {
				t.Errorf("%d packets counted, want %d (one per program run)", total, runs)
			}
		})
	}
}

// mfExpectPassAnyTrace runs pkt and checks it passes untouched with no
// drop, and a trace only under TraceEveryPacket (ARP changes no state).
func mfExpectPassAnyTrace(t *testing.T, h *testrun.Harness, ep *testrun.Endpoint, d mfDir, pkt []byte, level uint8) {
	t.Helper()
	r, err := d.run(ep, pkt)
	if err != nil {
		t.Fatal(err)
	}
	if r.Code != testrun.ActOK || !bytes.Equal(r.Packet, pkt) {
		t.Errorf("%s: code %d, packet modified %v, want passed untouched", d.name, r.Code, !bytes.Equal(r.Packet, pkt))
	}
	if _, ok := r.Drop(); ok {
		t.Errorf("%s: dropped: %v", d.name, r.Events)
	}
	if level != datapath.TraceEveryPacket && len(r.Events) != 0 {
		t.Errorf("%s: events %v at trace level %d, want none", d.name, r.Events, level)
	}
}
