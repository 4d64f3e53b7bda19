package testrun_test

// Policy tests: every policy shape, allowed and denied, egress (the
// client's from_container) and ingress (the server's to_container), IPv4
// and IPv6. This file also holds the helpers shared with conntrack_test.go
// and icmp_test.go (all prefixed dp, to stay out of other test files' way).

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/ciliaproject/cilia/datapath"
	"github.com/ciliaproject/cilia/datapath/dropreason"
	"github.com/ciliaproject/cilia/datapath/events"
	"github.com/ciliaproject/cilia/datapath/maps"
	"github.com/ciliaproject/cilia/datapath/testrun"
)

// ---------------------------------------------------------------------------
// Shared helpers.

// Identities of the three test endpoints, and CIDR identities.
const (
	dpIDA     uint32 = 1001
	dpIDB     uint32 = 1002
	dpIDC     uint32 = 1003
	dpIDCIDR  uint32 = 16777217 // the external /24 (/64)
	dpIDHost  uint32 = 16777218 // the external host's /32 (/128)
	dpMagic   uint32 = 0x0200   // MARK_MAGIC_TO_PROXY
	dpFirstCP uint16 = 40000    // first client port of table probes
)

// dpFamily holds the addresses and ICMP numbers of one IP family.
type dpFamily struct {
	name       string
	a, b, c    netip.Addr // endpoints A, B, C
	spoof      netip.Addr // an address of no endpoint, in the pods' range
	ext        netip.Addr // a host outside the node, in extNet
	ext2       netip.Addr // another host in extNet
	ext3       netip.Addr // a host outside extNet
	extNet     netip.Prefix
	router     netip.Addr
	icmp       uint8 // IPPROTO_ICMP or IPPROTO_ICMPV6
	echoReq    uint8
	echoReply  uint8
	unreach    uint8 // destination unreachable
	portUnr    uint8 // its "port unreachable" code
	timeExc    uint8 // time exceeded
	tooBig     uint8 // v4: unreachable/frag needed, v6: packet too big
	tooBigCode uint8
}

var dpFamilies = []dpFamily{
	{
		name: "IPv4",
		a:    netip.MustParseAddr("10.0.0.1"), b: netip.MustParseAddr("10.0.0.2"), c: netip.MustParseAddr("10.0.0.3"),
		spoof: netip.MustParseAddr("10.0.0.99"),
		ext:   netip.MustParseAddr("192.0.2.10"), ext2: netip.MustParseAddr("192.0.2.20"),
		ext3: netip.MustParseAddr("198.51.100.30"), extNet: netip.MustParsePrefix("192.0.2.0/24"),
		router: netip.MustParseAddr("203.0.113.1"),
		icmp:   testrun.ProtoICMP, echoReq: 8, echoReply: 0,
		unreach: 3, portUnr: 3, timeExc: 11, tooBig: 3, tooBigCode: 4,
	},
	{
		name: "IPv6",
		a:    netip.MustParseAddr("fd00::1"), b: netip.MustParseAddr("fd00::2"), c: netip.MustParseAddr("fd00::3"),
		spoof: netip.MustParseAddr("fd00::99"),
		ext:   netip.MustParseAddr("2001:db8:1::10"), ext2: netip.MustParseAddr("2001:db8:1::20"),
		ext3: netip.MustParseAddr("2001:db8:2::30"), extNet: netip.MustParsePrefix("2001:db8:1::/64"),
		router: netip.MustParseAddr("2001:db8:ff::1"),
		icmp:   testrun.ProtoICMPv6, echoReq: 128, echoReply: 129,
		unreach: 1, portUnr: 4, timeExc: 3, tooBig: 2, tooBigCode: 0,
	},
}

// dpEachFamily runs fn as one subtest per IP family.
func dpEachFamily(t *testing.T, fn func(t *testing.T, f dpFamily)) {
	for _, f := range dpFamilies {
		t.Run(f.name, func(t *testing.T) { fn(t, f) })
	}
}

// dpTopo is a fresh harness with three endpoints A (id 1), B (id 2) and C
// (id 3), none enforcing policy.
type dpTopo struct {
	t       *testing.T
	h       *testrun.Harness
	f       dpFamily
	A, B, C *testrun.Endpoint
}

func newDPTopo(t *testing.T, f dpFamily, opts testrun.Options) *dpTopo {
	t.Helper()
	h := testrun.NewForTest(t, opts)
	v4 := dpFamilies[0]
	v6 := dpFamilies[1]
	tp := &dpTopo{t: t, h: h, f: f}
	for i, p := range []**testrun.Endpoint{&tp.A, &tp.B, &tp.C} {
		ep, err := h.AddEndpoint(testrun.EndpointSpec{
			ID: uint16(i + 1), Identity: dpIDA + uint32(i),
			IPv4: []netip.Addr{v4.a, v4.b, v4.c}[i], IPv6: []netip.Addr{v6.a, v6.b, v6.c}[i],
		})
		if err != nil {
			t.Fatalf("add endpoint %d: %v", i+1, err)
		}
		*p = ep
	}
	return tp
}

// addr returns ep's address of the topology's family.
func (tp *dpTopo) addr(ep *testrun.Endpoint) netip.Addr {
	if tp.f.icmp == testrun.ProtoICMP {
		return ep.Spec.IPv4
	}
	return ep.Spec.IPv6
}

func (tp *dpTopo) ap(ep *testrun.Endpoint, port uint16) netip.AddrPort {
	return netip.AddrPortFrom(tp.addr(ep), port)
}

func (tp *dpTopo) pod(ep *testrun.Endpoint) testrun.Peer {
	return testrun.Peer{Endpoint: ep, Addr: tp.addr(ep)}
}

func (tp *dpTopo) enforce(ep *testrun.Endpoint, ingress, egress bool) {
	tp.t.Helper()
	if err := ep.SetEnforcement(ingress, egress); err != nil {
		tp.t.Fatalf("set enforcement: %v", err)
	}
}

func (tp *dpTopo) addRule(ep *testrun.Endpoint, r testrun.Rule) {
	tp.t.Helper()
	if err := ep.AddRule(r); err != nil {
		tp.t.Fatalf("add rule %+v: %v", r, err)
	}
}

func (tp *dpTopo) delRule(ep *testrun.Endpoint, r testrun.Rule) {
	tp.t.Helper()
	if err := ep.DeleteRule(r); err != nil {
		tp.t.Fatalf("delete rule %+v: %v", r, err)
	}
}

func (tp *dpTopo) setIdentity(p netip.Prefix, id uint32) {
	tp.t.Helper()
	if err := tp.h.SetIdentity(p, id); err != nil {
		tp.t.Fatalf("set identity %s: %v", p, err)
	}
}

// revision returns ep's policy revision from the policy state map.
func (tp *dpTopo) revision(ep *testrun.Endpoint) uint32 {
	tp.t.Helper()
	key := uint32(ep.Spec.ID)
	var st maps.EndpointPolicyState
	if err := tp.h.Node.Maps[datapath.MapEndpointPolicy].Lookup(&key, &st); err != nil {
		tp.t.Fatalf("look up policy state of endpoint %d: %v", ep.Spec.ID, err)
	}
	return st.Revision
}

// packet crafts a first packet from src to dst: a TCP segment with flags,
// a UDP datagram, an SCTP INIT or, for the ICMP protocols, an echo request
// with the source port as identifier.
func (tp *dpTopo) packet(proto uint8, src, dst netip.AddrPort, flags testrun.TCPFlags) []byte {
	switch proto {
	case testrun.ProtoTCP:
		return testrun.TCP(src, dst, flags, nil)
	case testrun.ProtoUDP:
		return testrun.UDP(src, dst, []byte("cilia"))
	case testrun.ProtoSCTP:
		return testrun.SCTP(src, dst)
	case testrun.ProtoICMP, testrun.ProtoICMPv6:
		return testrun.ICMPEcho(src.Addr(), dst.Addr(), src.Port(), 1, false)
	}
	tp.t.Fatalf("packet: protocol %d", proto)
	return nil
}

// send walks pkt sent by endpoint from and checks the per-hop invariants.
func (tp *dpTopo) send(from *testrun.Endpoint, pkt []byte) testrun.Path {
	tp.t.Helper()
	p, err := tp.h.Send(from, pkt)
	if err != nil {
		tp.t.Fatalf("send: %v (path %s)", err, p)
	}
	tp.checkPath(p)
	return p
}

// recv walks pkt arriving from outside the node to endpoint to.
func (tp *dpTopo) recv(to *testrun.Endpoint, pkt []byte) testrun.Path {
	tp.t.Helper()
	p, err := tp.h.Receive(to, pkt)
	if err != nil {
		tp.t.Fatalf("receive: %v (path %s)", err, p)
	}
	tp.checkPath(p)
	return p
}

// step sends the next packet of c and checks the per-hop invariants.
func (tp *dpTopo) step(c *testrun.Conn, fromClient bool, flags testrun.TCPFlags) testrun.Path {
	tp.t.Helper()
	return tp.walk(c, fromClient, c.Packet(fromClient, flags))
}

func (tp *dpTopo) walk(c *testrun.Conn, fromClient bool, pkt []byte) testrun.Path {
	tp.t.Helper()
	p, err := c.Walk(fromClient, pkt)
	if err != nil {
		tp.t.Fatalf("walk: %v (path %s)", err, p)
	}
	tp.checkPath(p)
	return p
}

// handshake runs c's opening exchange, which must be delivered.
func (tp *dpTopo) handshake(c *testrun.Conn) []testrun.Path {
	tp.t.Helper()
	ps, err := c.Handshake()
	if err != nil {
		tp.t.Fatalf("handshake: %v", err)
	}
	for _, p := range ps {
		tp.checkPath(p)
	}
	return ps
}

// checkPath checks what must hold for every hop of every path: one event
// per run (trace level "every packet"); a drop has exactly one drop event
// and TC_ACT_SHOT; a local redirect's trace names the next endpoint's
// ifindex; a proxy redirect carries the proxy mark.
func (tp *dpTopo) checkPath(p testrun.Path) {
	tp.t.Helper()
	for i, r := range p.Hops {
		if len(r.Events) != 1 {
			tp.t.Errorf("hop %d: want exactly one event, got %d: %s", i, len(r.Events), p)
			continue
		}
		ev := r.Events[0]
		switch r.Code {
		case testrun.ActShot:
			if !ev.IsDrop() || ev.Verdict != events.VerdictDropped || !ev.Reason.IsDrop() {
				tp.t.Errorf("hop %d: TC_ACT_SHOT without a drop event: %s", i, p)
			}
			if i != len(p.Hops)-1 || p.Delivered {
				tp.t.Errorf("hop %d: the walk went on after a drop: %s", i, p)
			}
		case testrun.ActRedirect:
			if ev.IsDrop() || ev.Verdict != events.VerdictForwarded || ev.ObservationPoint != events.ObsToEndpoint {
				tp.t.Errorf("hop %d: redirect without a FORWARDED TO_ENDPOINT trace: %s", i, p)
			}
			if r.Program != "from_container" {
				tp.t.Errorf("hop %d: %s redirected: %s", i, r.Program, p)
			}
			if i+1 >= len(p.Hops) {
				tp.t.Errorf("hop %d: redirect is the last hop: %s", i, p)
			}
			dst := dpDstAddr(r.Packet)
			next := tp.h.EndpointByAddr(dst)
			if next == nil || ev.Ifindex != next.Spec.Ifindex {
				tp.t.Errorf("hop %d: redirect to ifindex %d, want the ifindex of %s's endpoint: %s", i, ev.Ifindex, dst, p)
			}
		case testrun.ActOK:
			if ev.IsDrop() {
				tp.t.Errorf("hop %d: TC_ACT_OK with a drop event: %s", i, p)
				continue
			}
			if r.Mark != 0 {
				if ev.Verdict != events.VerdictRedirected || ev.ObservationPoint != events.ObsToProxy ||
					ev.Reason != dropreason.PuntToProxy || ev.ProxyPort == 0 ||
					r.Mark != dpMagic|uint32(ev.ProxyPort)<<16 {
					tp.t.Errorf("hop %d: mark %#x with trace %s (want REDIRECTED TO_PROXY PUNT_TO_PROXY, mark 0x0200|port<<16): %s",
						i, r.Mark, ev, p)
				}
			} else if ev.Verdict != events.VerdictForwarded {
				tp.t.Errorf("hop %d: TC_ACT_OK with verdict %s: %s", i, ev.Verdict, p)
			}
		default:
			tp.t.Errorf("hop %d: unexpected tc code %d: %s", i, r.Code, p)
		}
	}
}

// wantDelivered fails unless p reached its destination without drop.
func (tp *dpTopo) wantDelivered(p testrun.Path, what string) {
	tp.t.Helper()
	if !p.Delivered || p.Dropped() {
		tp.t.Fatalf("%s: want delivered, got %s", what, p)
	}
}

// wantDrop fails unless the last hop of p (hop number hop) dropped the
// packet for reason; it returns the drop event.
func (tp *dpTopo) wantDrop(p testrun.Path, hop int, reason dropreason.Reason, what string) events.Event {
	tp.t.Helper()
	if !p.Dropped() || p.Delivered || len(p.Hops) != hop+1 {
		tp.t.Fatalf("%s: want a drop (%s) at hop %d, got %s", what, reason, hop, p)
	}
	r := p.Hops[hop]
	ev, ok := r.Drop()
	if !ok || r.Code != testrun.ActShot {
		tp.t.Fatalf("%s: want TC_ACT_SHOT and a drop event at hop %d, got %s", what, hop, p)
	}
	if ev.Reason != reason {
		tp.t.Fatalf("%s: drop reason %s (%d), want %s (%d): %s", what, ev.Reason, ev.Reason, reason, reason, p)
	}
	return ev
}

// trace returns the trace event of hop i of p.
func (tp *dpTopo) trace(p testrun.Path, i int, what string) events.Event {
	tp.t.Helper()
	if i >= len(p.Hops) {
		tp.t.Fatalf("%s: no hop %d: %s", what, i, p)
	}
	ev, ok := p.Hops[i].Trace()
	if !ok {
		tp.t.Fatalf("%s: hop %d has no trace event: %s", what, i, p)
	}
	return ev
}

// wantCTStates fails unless the hops of p report the given CT states.
func (tp *dpTopo) wantCTStates(p testrun.Path, what string, states ...uint8) {
	tp.t.Helper()
	if len(p.Hops) != len(states) {
		tp.t.Errorf("%s: %d hops, want %d: %s", what, len(p.Hops), len(states), p)
		return
	}
	for i, s := range states {
		if len(p.Hops[i].Events) == 0 || p.Hops[i].Events[0].CTState != s {
			tp.t.Errorf("%s: hop %d: want CT state %d: %s", what, i, s, p)
		}
	}
}

// dpMetrics counts packets and bytes per metrics slot.
type dpMetrics map[events.MetricKey]maps.MetricsValue

func (m dpMetrics) add(reason dropreason.Reason, dir maps.Direction, pkt []byte) {
	k := events.MetricKey{Reason: reason, Direction: dir}
	v := m[k]
	v.Packets++
	v.Bytes += uint64(len(pkt))
	m[k] = v
}

// wantMetrics fails unless the metrics map holds exactly want.
func (tp *dpTopo) wantMetrics(want dpMetrics) {
	tp.t.Helper()
	got, err := tp.h.Metrics()
	if err != nil {
		tp.t.Fatalf("read metrics: %v", err)
	}
	for k, w := range want {
		if got[k] != w {
			tp.t.Errorf("metrics {%s %s}: got %+v, want %+v", k.Reason, k.Direction, got[k], w)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			tp.t.Errorf("metrics {%s %s}: unexpected %+v", k.Reason, k.Direction, g)
		}
	}
}

// wantMetricPackets fails unless slot (reason, dir) counts n packets.
func (tp *dpTopo) wantMetricPackets(reason dropreason.Reason, dir maps.Direction, n uint64) {
	tp.t.Helper()
	got, err := tp.h.Metrics()
	if err != nil {
		tp.t.Fatalf("read metrics: %v", err)
	}
	if g := got[events.MetricKey{Reason: reason, Direction: dir}].Packets; g != n {
		tp.t.Errorf("metrics {%s %s}: %d packets, want %d (all: %v)", reason, dir, g, n, got)
	}
}

// lookupCT returns the conntrack entry of (src, dst, proto, dir).
func (tp *dpTopo) lookupCT(src, dst netip.AddrPort, proto uint8, dir maps.Direction) (maps.CTEntry, bool) {
	tp.t.Helper()
	e, ok, err := tp.h.LookupCT(maps.NewTuple(src, dst, proto, dir))
	if err != nil {
		tp.t.Fatalf("look up conntrack: %v", err)
	}
	return e, ok
}

func (tp *dpTopo) mustCT(src, dst netip.AddrPort, proto uint8, dir maps.Direction) maps.CTEntry {
	tp.t.Helper()
	e, ok := tp.lookupCT(src, dst, proto, dir)
	if !ok {
		tp.t.Fatalf("no conntrack entry %s", maps.NewTuple(src, dst, proto, dir))
	}
	return e
}

// dpDstAddr returns the destination IP of an Ethernet frame.
func dpDstAddr(frame []byte) netip.Addr {
	switch binary.BigEndian.Uint16(frame[12:14]) {
	case 0x0800:
		return netip.AddrFrom4([4]byte(frame[30:34]))
	case 0x86dd:
		return netip.AddrFrom16([16]byte(frame[38:54]))
	}
	return netip.Addr{}
}

// dpSetTTL returns a copy of frame with the IPv4 TTL (header checksum
// fixed) or IPv6 hop limit set to ttl.
func dpSetTTL(frame []byte, ttl uint8) []byte {
	out := append([]byte(nil), frame...)
	if binary.BigEndian.Uint16(out[12:14]) == 0x0800 {
		ihl := int(out[14]&0x0f) * 4
		out[14+8] = ttl
		out[14+10], out[14+11] = 0, 0
		binary.BigEndian.PutUint16(out[14+10:], dpIPv4Checksum(out[14:14+ihl]))
		return out
	}
	out[14+7] = ttl
	return out
}

// dpIPv4Checksum is the RFC 791 checksum of hdr (its checksum field must
// be zero for a fresh computation; over a valid header it returns 0).
func dpIPv4Checksum(hdr []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(hdr); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(hdr[i:]))
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// ---------------------------------------------------------------------------
// The policy table.

// dpSel names the identity of a rule relative to the policy's subject.
type dpSel uint8

const (
	dpPeer  dpSel = iota // the peer the probes talk to
	dpAnyID              // identity 0
	dpOther              // the third endpoint
)

// dpICMPProto stands for the family's ICMP protocol in tables.
const dpICMPProto uint8 = 255

type dpRule struct {
	sel   dpSel
	proto uint8 // 0: any protocol; dpICMPProto: ICMP/ICMPv6
	ports maps.PortRange
	echo  bool // the port is the family's echo request type
	deny  bool
	proxy uint16
	id    uint32
}

type dpProbe struct {
	other bool  // talk to the other endpoint instead of the peer
	proto uint8 // dpICMPProto: an echo request
	port  uint16
	// What the subject's program must do.
	drop  dropreason.Reason // 0: the packet passes
	rule  uint32
	proxy uint16
	match uint8
}

func (p dpProbe) name() string {
	who := "peer"
	if p.other {
		who = "other"
	}
	proto := map[uint8]string{testrun.ProtoTCP: "tcp", testrun.ProtoUDP: "udp", testrun.ProtoSCTP: "sctp", dpICMPProto: "echo"}[p.proto]
	return fmt.Sprintf("%s %s/%d", who, proto, p.port)
}

type dpPolicyCase struct {
	name    string
	enforce bool
	rules   []dpRule
	probes  []dpProbe
}

const (
	dpTCP  = testrun.ProtoTCP
	dpUDP  = testrun.ProtoUDP
	dpSCTP = testrun.ProtoSCTP
	dpEcho = dpICMPProto
)

func dpRange(lo, hi uint16) maps.PortRange { return maps.PortRange{Lo: lo, Hi: hi} }
func dpPort(port uint16) maps.PortRange    { return maps.PortRange{Lo: port, Hi: port} }

var (
	dpML3   = events.MatchL3
	dpML4   = events.MatchL4
	dpML3L4 = events.MatchL3 | events.MatchL4
	dpMAny  = events.MatchAny
)

var dpPolicyCases = []dpPolicyCase{
	{
		name: "no enforcement allows all",
		probes: []dpProbe{
			{proto: dpTCP, port: 80}, {proto: dpUDP, port: 53}, {proto: dpSCTP, port: 9899},
			{proto: dpEcho}, {other: true, proto: dpTCP, port: 443},
		},
	},
	{
		name: "enforced without entries denies all", enforce: true,
		probes: []dpProbe{
			{proto: dpTCP, port: 80, drop: dropreason.PolicyDenied},
			{proto: dpUDP, port: 53, drop: dropreason.PolicyDenied},
			{proto: dpSCTP, port: 9899, drop: dropreason.PolicyDenied},
			{proto: dpEcho, drop: dropreason.PolicyDenied},
			{other: true, proto: dpTCP, port: 80, drop: dropreason.PolicyDenied},
		},
	},
	{
		name: "L3 only", enforce: true,
		rules: []dpRule{{sel: dpPeer, id: 11}},
		probes: []dpProbe{
			{proto: dpTCP, port: 80, rule: 11, match: dpML3},
			{proto: dpTCP, port: 65535, rule: 11, match: dpML3},
			{proto: dpUDP, port: 53, rule: 11, match: dpML3},
			{proto: dpSCTP, port: 9899, rule: 11, match: dpML3},
			{proto: dpEcho, rule: 11, match: dpML3},
			{other: true, proto: dpTCP, port: 80, drop: dropreason.PolicyDenied},
			{other: true, proto: dpEcho, drop: dropreason.PolicyDenied},
		},
	},
	{
		name: "L4 only", enforce: true,
		rules: []dpRule{{sel: dpAnyID, proto: dpTCP, ports: dpPort(80), id: 12}},
		probes: []dpProbe{
			{proto: dpTCP, port: 80, rule: 12, match: dpML4},
			{other: true, proto: dpTCP, port: 80, rule: 12, match: dpML4},
			{proto: dpTCP, port: 81, drop: dropreason.PolicyDenied},
			{proto: dpTCP, port: 79, drop: dropreason.PolicyDenied},
			{proto: dpUDP, port: 80, drop: dropreason.PolicyDenied},
			{proto: dpSCTP, port: 80, drop: dropreason.PolicyDenied},
			{proto: dpEcho, drop: dropreason.PolicyDenied},
		},
	},
	{
		name: "L3+L4", enforce: true,
		rules: []dpRule{{sel: dpPeer, proto: dpTCP, ports: dpPort(80), id: 13}},
		probes: []dpProbe{
			{proto: dpTCP, port: 80, rule: 13, match: dpML3L4},
			{other: true, proto: dpTCP, port: 80, drop: dropreason.PolicyDenied},
			{proto: dpTCP, port: 8080, drop: dropreason.PolicyDenied},
			{proto: dpUDP, port: 80, drop: dropreason.PolicyDenied},
		},
	},
	{
		name: "L3 with protocol, any port", enforce: true,
		rules: []dpRule{{sel: dpPeer, proto: dpUDP, id: 14}},
		probes: []dpProbe{
			{proto: dpUDP, port: 53, rule: 14, match: dpML3L4},
			{proto: dpUDP, port: 1, rule: 14, match: dpML3L4},
			{proto: dpUDP, port: 65535, rule: 14, match: dpML3L4},
			{proto: dpTCP, port: 53, drop: dropreason.PolicyDenied},
			{other: true, proto: dpUDP, port: 53, drop: dropreason.PolicyDenied},
		},
	},
	{
		name: "port ranges", enforce: true,
		rules: []dpRule{
			{sel: dpPeer, proto: dpTCP, ports: dpRange(1000, 1999), id: 15},
			{sel: dpAnyID, proto: dpUDP, ports: dpRange(5001, 5003), id: 16},
			{sel: dpPeer, proto: dpSCTP, ports: dpRange(65534, 65535), id: 17},
		},
		probes: []dpProbe{
			{proto: dpTCP, port: 1000, rule: 15, match: dpML3L4},
			{proto: dpTCP, port: 1001, rule: 15, match: dpML3L4},
			{proto: dpTCP, port: 1024, rule: 15, match: dpML3L4},
			{proto: dpTCP, port: 1500, rule: 15, match: dpML3L4},
			{proto: dpTCP, port: 1999, rule: 15, match: dpML3L4},
			{proto: dpTCP, port: 999, drop: dropreason.PolicyDenied},
			{proto: dpTCP, port: 2000, drop: dropreason.PolicyDenied},
			{proto: dpTCP, port: 2047, drop: dropreason.PolicyDenied},
			{other: true, proto: dpTCP, port: 1500, drop: dropreason.PolicyDenied},
			{proto: dpUDP, port: 1500, drop: dropreason.PolicyDenied},
			{proto: dpUDP, port: 5000, drop: dropreason.PolicyDenied},
			{proto: dpUDP, port: 5001, rule: 16, match: dpML4},
			{proto: dpUDP, port: 5002, rule: 16, match: dpML4},
			{other: true, proto: dpUDP, port: 5003, rule: 16, match: dpML4},
			{proto: dpUDP, port: 5004, drop: dropreason.PolicyDenied},
			{proto: dpSCTP, port: 65533, drop: dropreason.PolicyDenied},
			{proto: dpSCTP, port: 65534, rule: 17, match: dpML3L4},
			{proto: dpSCTP, port: 65535, rule: 17, match: dpML3L4},
		},
	},
	{
		name: "wildcard protocol and identity", enforce: true,
		rules: []dpRule{{sel: dpAnyID, id: 18}},
		probes: []dpProbe{
			{proto: dpTCP, port: 80, rule: 18, match: dpMAny},
			{proto: dpUDP, port: 53, rule: 18, match: dpMAny},
			{proto: dpSCTP, port: 1, rule: 18, match: dpMAny},
			{proto: dpEcho, rule: 18, match: dpMAny},
			{other: true, proto: dpTCP, port: 22, rule: 18, match: dpMAny},
		},
	},
	{
		name: "UDP and SCTP", enforce: true,
		rules: []dpRule{
			{sel: dpPeer, proto: dpUDP, ports: dpPort(53), id: 19},
			{sel: dpAnyID, proto: dpSCTP, ports: dpPort(9899), id: 20},
		},
		probes: []dpProbe{
			{proto: dpUDP, port: 53, rule: 19, match: dpML3L4},
			{proto: dpUDP, port: 54, drop: dropreason.PolicyDenied},
			{proto: dpTCP, port: 53, drop: dropreason.PolicyDenied},
			{other: true, proto: dpUDP, port: 53, drop: dropreason.PolicyDenied},
			{proto: dpSCTP, port: 9899, rule: 20, match: dpML4},
			{other: true, proto: dpSCTP, port: 9899, rule: 20, match: dpML4},
			{proto: dpSCTP, port: 9900, drop: dropreason.PolicyDenied},
			{proto: dpTCP, port: 9899, drop: dropreason.PolicyDenied},
			{proto: dpUDP, port: 9899, drop: dropreason.PolicyDenied},
		},
	},
	{
		name: "ICMP echo request type as port", enforce: true,
		rules: []dpRule{{sel: dpPeer, proto: dpEcho, echo: true, id: 21}},
		probes: []dpProbe{
			{proto: dpEcho, rule: 21, match: dpML3L4},
			{other: true, proto: dpEcho, drop: dropreason.PolicyDenied},
			{proto: dpTCP, port: 8, drop: dropreason.PolicyDenied},
			{proto: dpTCP, port: 128, drop: dropreason.PolicyDenied},
			{proto: dpUDP, port: 8, drop: dropreason.PolicyDenied},
		},
	},
	{
		name: "ICMP any type", enforce: true,
		rules: []dpRule{{sel: dpAnyID, proto: dpEcho, id: 22}},
		probes: []dpProbe{
			{proto: dpEcho, rule: 22, match: dpML4},
			{other: true, proto: dpEcho, rule: 22, match: dpML4},
			{proto: dpTCP, port: 80, drop: dropreason.PolicyDenied},
		},
	},
	{
		name: "deny L3 identity beats allow L4-only any identity", enforce: true,
		rules: []dpRule{
			{sel: dpPeer, deny: true, id: 23},
			{sel: dpAnyID, proto: dpTCP, ports: dpPort(80), id: 24},
		},
		probes: []dpProbe{
			{proto: dpTCP, port: 80, drop: dropreason.PolicyDeny, rule: 23, match: dpML3},
			{proto: dpUDP, port: 53, drop: dropreason.PolicyDeny, rule: 23, match: dpML3},
			{proto: dpEcho, drop: dropreason.PolicyDeny, rule: 23, match: dpML3},
			{other: true, proto: dpTCP, port: 80, rule: 24, match: dpML4},
			{other: true, proto: dpTCP, port: 81, drop: dropreason.PolicyDenied},
		},
	},
	{
		name: "deny L4-only beats allow L3 identity", enforce: true,
		rules: []dpRule{
			{sel: dpAnyID, proto: dpTCP, ports: dpPort(80), deny: true, id: 25},
			{sel: dpPeer, id: 26},
		},
		probes: []dpProbe{
			{proto: dpTCP, port: 80, drop: dropreason.PolicyDeny, rule: 25, match: dpML4},
			{proto: dpTCP, port: 81, rule: 26, match: dpML3},
			{proto: dpUDP, port: 80, rule: 26, match: dpML3},
			{other: true, proto: dpTCP, port: 80, drop: dropreason.PolicyDeny, rule: 25, match: dpML4},
			{other: true, proto: dpTCP, port: 81, drop: dropreason.PolicyDenied},
		},
	},
	{
		name: "deny L3+L4 inside allow L3 of the same identity", enforce: true,
		rules: []dpRule{
			{sel: dpPeer, id: 27},
			{sel: dpPeer, proto: dpTCP, ports: dpPort(22), deny: true, id: 28},
		},
		probes: []dpProbe{
			{proto: dpTCP, port: 22, drop: dropreason.PolicyDeny, rule: 28, match: dpML3L4},
			{proto: dpTCP, port: 23, rule: 27, match: dpML3},
			{proto: dpUDP, port: 22, rule: 27, match: dpML3},
		},
	},
	{
		name: "deny port range beats any-identity allow range", enforce: true,
		rules: []dpRule{
			{sel: dpAnyID, proto: dpTCP, ports: dpRange(1000, 1999), id: 29},
			{sel: dpPeer, proto: dpTCP, ports: dpRange(1500, 1599), deny: true, id: 30},
		},
		probes: []dpProbe{
			{proto: dpTCP, port: 1499, rule: 29, match: dpML4},
			{proto: dpTCP, port: 1500, drop: dropreason.PolicyDeny, rule: 30, match: dpML3L4},
			{proto: dpTCP, port: 1599, drop: dropreason.PolicyDeny, rule: 30, match: dpML3L4},
			{proto: dpTCP, port: 1600, rule: 29, match: dpML4},
			{other: true, proto: dpTCP, port: 1550, rule: 29, match: dpML4},
		},
	},
	{
		name: "deny of another identity leaves the peer alone", enforce: true,
		rules: []dpRule{
			{sel: dpOther, deny: true, id: 31},
			{sel: dpPeer, id: 32},
			{sel: dpAnyID, proto: dpTCP, ports: dpPort(80), id: 33},
		},
		probes: []dpProbe{
			{proto: dpTCP, port: 80, rule: 33, match: dpML4},
			{proto: dpTCP, port: 81, rule: 32, match: dpML3},
			{other: true, proto: dpTCP, port: 80, drop: dropreason.PolicyDeny, rule: 31, match: dpML3},
		},
	},
	{
		name: "longer prefix wins: L4-only port over L3 identity", enforce: true,
		rules: []dpRule{
			{sel: dpPeer, id: 34},
			{sel: dpAnyID, proto: dpTCP, ports: dpPort(80), proxy: 8080, id: 35},
		},
		probes: []dpProbe{
			{proto: dpTCP, port: 80, rule: 35, proxy: 8080, match: dpML4},
			{proto: dpTCP, port: 81, rule: 34, match: dpML3},
		},
	},
	{
		name: "longer prefix wins: L4-only port over L3 protocol", enforce: true,
		rules: []dpRule{
			{sel: dpPeer, proto: dpTCP, proxy: 9000, id: 36},
			{sel: dpAnyID, proto: dpTCP, ports: dpPort(80), id: 37},
		},
		probes: []dpProbe{
			{proto: dpTCP, port: 80, rule: 37, match: dpML4},
			{proto: dpTCP, port: 81, rule: 36, proxy: 9000, match: dpML3L4},
			{other: true, proto: dpTCP, port: 81, drop: dropreason.PolicyDenied},
		},
	},
	{
		name: "longer prefix wins: L3+L4 port over any-identity protocol", enforce: true,
		rules: []dpRule{
			{sel: dpPeer, proto: dpTCP, ports: dpPort(80), id: 38},
			{sel: dpAnyID, proto: dpTCP, proxy: 9001, id: 39},
		},
		probes: []dpProbe{
			{proto: dpTCP, port: 80, rule: 38, match: dpML3L4},
			{proto: dpTCP, port: 81, rule: 39, proxy: 9001, match: dpML4},
			{other: true, proto: dpTCP, port: 80, rule: 39, proxy: 9001, match: dpML4},
		},
	},
	{
		name: "longer prefix wins: single port over range block", enforce: true,
		rules: []dpRule{
			{sel: dpPeer, proto: dpTCP, ports: dpRange(1000, 1999), id: 40},
			{sel: dpAnyID, proto: dpTCP, ports: dpPort(1000), proxy: 9002, id: 41},
		},
		probes: []dpProbe{
			{proto: dpTCP, port: 1000, rule: 41, proxy: 9002, match: dpML4},
			{proto: dpTCP, port: 1001, rule: 40, match: dpML3L4},
		},
	},
	{
		name: "tie goes to the identity: plain over proxy", enforce: true,
		rules: []dpRule{
			{sel: dpPeer, proto: dpTCP, ports: dpPort(80), id: 42},
			{sel: dpAnyID, proto: dpTCP, ports: dpPort(80), proxy: 9003, id: 43},
		},
		probes: []dpProbe{
			{proto: dpTCP, port: 80, rule: 42, match: dpML3L4},
			{other: true, proto: dpTCP, port: 80, rule: 43, proxy: 9003, match: dpML4},
		},
	},
	{
		name: "tie goes to the identity: proxy over plain", enforce: true,
		rules: []dpRule{
			{sel: dpPeer, proto: dpUDP, proxy: 9004, id: 44},
			{sel: dpAnyID, proto: dpUDP, id: 45},
		},
		probes: []dpProbe{
			{proto: dpUDP, port: 53, rule: 44, proxy: 9004, match: dpML3L4},
			{other: true, proto: dpUDP, port: 53, rule: 45, match: dpML4},
		},
	},
	{
		name: "tie goes to the identity: L3 over any", enforce: true,
		rules: []dpRule{
			{sel: dpPeer, proxy: 9005, id: 46},
			{sel: dpAnyID, id: 47},
		},
		probes: []dpProbe{
			{proto: dpTCP, port: 80, rule: 46, proxy: 9005, match: dpML3},
			{other: true, proto: dpTCP, port: 80, rule: 47, match: dpMAny},
		},
	},
	{
		name: "proxy redirect", enforce: true,
		rules: []dpRule{
			{sel: dpPeer, proto: dpTCP, ports: dpPort(80), proxy: 15001, id: 48},
			{sel: dpAnyID, proto: dpUDP, ports: dpPort(53), proxy: 15053, id: 49},
		},
		probes: []dpProbe{
			{proto: dpTCP, port: 80, rule: 48, proxy: 15001, match: dpML3L4},
			{proto: dpUDP, port: 53, rule: 49, proxy: 15053, match: dpML4},
			{other: true, proto: dpUDP, port: 53, rule: 49, proxy: 15053, match: dpML4},
			{proto: dpTCP, port: 81, drop: dropreason.PolicyDenied},
		},
	},
}

// TestPolicyShapes runs every case of dpPolicyCases for both families and
// both directions: egress policy of A for packets A -> B (peer) or A -> C
// (other), ingress policy of B for packets A -> B (peer) or C -> B
// (other). Every probe checks the verdict, the event of the policy hop and,
// at the end, the metrics.
func TestPolicyShapes(t *testing.T) {
	for _, c := range dpPolicyCases {
		t.Run(c.name, func(t *testing.T) {
			dpEachFamily(t, func(t *testing.T, f dpFamily) {
				for _, dir := range []maps.Direction{maps.Egress, maps.Ingress} {
					t.Run(dir.String(), func(t *testing.T) { runDPPolicyCase(t, f, dir, c) })
				}
			})
		})
	}
}

func runDPPolicyCase(t *testing.T, f dpFamily, dir maps.Direction, c dpPolicyCase) {
	tp := newDPTopo(t, f, testrun.Options{})
	subject, peer, other := tp.A, tp.B, tp.C
	if dir == maps.Ingress {
		subject, peer = tp.B, tp.A
	}
	if c.enforce {
		tp.enforce(subject, dir == maps.Ingress, dir == maps.Egress)
	}
	for _, r := range c.rules {
		rule := testrun.Rule{Direction: dir, Protocol: r.proto, Ports: r.ports, Deny: r.deny, ProxyPort: r.proxy, RuleID: r.id}
		switch r.sel {
		case dpPeer:
			rule.Identity = peer.Spec.Identity
		case dpOther:
			rule.Identity = other.Spec.Identity
		}
		if r.proto == dpICMPProto {
			rule.Protocol = f.icmp
		}
		if r.echo {
			rule.Ports = dpPort(uint16(f.echoReq))
		}
		tp.addRule(subject, rule)
	}
	want := dpMetrics{}
	for i, pb := range c.probes {
		remote := peer
		if pb.other {
			remote = other
		}
		proto := pb.proto
		if proto == dpICMPProto {
			proto = f.icmp
		}
		cport := dpFirstCP + uint16(i)
		sender, src, dst, hop := subject, tp.ap(subject, cport), tp.ap(remote, pb.port), 0
		srcID, dstID := subject.Spec.Identity, remote.Spec.Identity
		if dir == maps.Ingress {
			sender, src, dst, hop = remote, tp.ap(remote, cport), tp.ap(subject, pb.port), 1
			srcID, dstID = remote.Spec.Identity, subject.Spec.Identity
		}
		pkt := tp.packet(proto, src, dst, testrun.SYN)
		p := tp.send(sender, pkt)
		what := pb.name()
		if dir == maps.Ingress {
			// The sender enforces nothing: its hop forwards to the subject.
			want.add(dropreason.Forwarded, maps.Egress, pkt)
			if len(p.Hops) < 2 || p.Hops[0].Code != testrun.ActRedirect {
				t.Errorf("%s: the sender's hop must redirect to the subject: %s", what, p)
				continue
			}
		}
		var ev events.Event
		switch {
		case pb.drop != 0:
			ev = tp.wantDrop(p, hop, pb.drop, what)
			want.add(pb.drop, dir, pkt)
			wantObs := events.ObsFromEndpoint
			if dir == maps.Ingress {
				wantObs = events.ObsToEndpoint
			}
			if ev.ObservationPoint != wantObs || ev.Ifindex != subject.Spec.Ifindex {
				t.Errorf("%s: drop seen at %s ifindex %d, want %s ifindex %d: %s", what,
					ev.ObservationPoint, ev.Ifindex, wantObs, subject.Spec.Ifindex, p)
			}
		case pb.proxy != 0:
			if len(p.Hops) != hop+1 || p.Delivered {
				t.Errorf("%s: a proxy redirect ends the walk at hop %d: %s", what, hop, p)
				continue
			}
			r := p.Hops[hop]
			ev = tp.trace(p, hop, what)
			want.add(dropreason.PuntToProxy, dir, pkt)
			if r.Code != testrun.ActOK || r.Mark != dpMagic|uint32(pb.proxy)<<16 {
				t.Errorf("%s: code %d mark %#x, want %d and %#x: %s", what, r.Code, r.Mark, testrun.ActOK,
					dpMagic|uint32(pb.proxy)<<16, p)
			}
			if ev.Verdict != events.VerdictRedirected || ev.ObservationPoint != events.ObsToProxy ||
				ev.Reason != dropreason.PuntToProxy || ev.ProxyPort != pb.proxy {
				t.Errorf("%s: trace %s (verdict %s, reason %s, proxy port %d), want REDIRECTED TO_PROXY PUNT_TO_PROXY port %d",
					what, ev, ev.Verdict, ev.Reason, ev.ProxyPort, pb.proxy)
			}
		default:
			tp.wantDelivered(p, what)
			if len(p.Hops) != 2 {
				t.Errorf("%s: want 2 hops: %s", what, p)
				continue
			}
			ev = tp.trace(p, hop, what)
			want.add(dropreason.Forwarded, dir, pkt)
			if dir == maps.Egress {
				want.add(dropreason.Forwarded, maps.Ingress, pkt)
			}
			wantCode, wantIfindex := testrun.ActRedirect, remote.Spec.Ifindex
			if dir == maps.Ingress {
				wantCode, wantIfindex = testrun.ActOK, subject.Spec.Ifindex
			}
			if p.Hops[hop].Code != wantCode || ev.Ifindex != wantIfindex || ev.ObservationPoint != events.ObsToEndpoint ||
				ev.Verdict != events.VerdictForwarded || ev.ProxyPort != 0 || p.Hops[hop].Mark != 0 {
				t.Errorf("%s: want code %d, FORWARDED TO_ENDPOINT ifindex %d, no proxy: %s", what, wantCode, wantIfindex, p)
			}
		}
		if ev.EndpointID != subject.Spec.ID || ev.Direction != dir || ev.SrcIdentity != srcID || ev.DstIdentity != dstID {
			t.Errorf("%s: event %s: want ep=%d dir=%s %d->%d", what, ev, subject.Spec.ID, dir, srcID, dstID)
		}
		if ev.CTState != maps.CTNew || ev.RuleID != pb.rule || ev.PolicyMatch != pb.match {
			t.Errorf("%s: event %s: ct %d rule %d match %d, want ct NEW rule %d match %d", what, ev,
				ev.CTState, ev.RuleID, ev.PolicyMatch, pb.rule, pb.match)
		}
	}
	tp.wantMetrics(want)
}

// TestPolicyDenyEventAndMetrics checks a denied and an allowed packet in
// each direction: the drop event's identities, endpoint and direction, and
// exact metrics afterwards.
func TestPolicyDenyEventAndMetrics(t *testing.T) {
	dpEachFamily(t, func(t *testing.T, f dpFamily) {
		tp := newDPTopo(t, f, testrun.Options{})
		// A may send TCP/80 to B; B accepts TCP/80 from A only.
		tp.enforce(tp.A, false, true)
		tp.addRule(tp.A, testrun.Rule{Direction: maps.Egress, Identity: dpIDB, Protocol: dpTCP, Ports: dpPort(80), RuleID: 1})
		tp.enforce(tp.B, true, false)
		tp.addRule(tp.B, testrun.Rule{Direction: maps.Ingress, Identity: dpIDA, Protocol: dpTCP, Ports: dpPort(80), RuleID: 2})
		want := dpMetrics{}

		denied := tp.packet(dpTCP, tp.ap(tp.A, 40000), tp.ap(tp.B, 81), testrun.SYN)
		p := tp.send(tp.A, denied)
		ev := tp.wantDrop(p, 0, dropreason.PolicyDenied, "A->B tcp/81")
		if ev.EndpointID != 1 || ev.Direction != maps.Egress || ev.SrcIdentity != dpIDA || ev.DstIdentity != dpIDB ||
			ev.RuleID != 0 || ev.ObservationPoint != events.ObsFromEndpoint || ev.Ifindex != tp.A.Spec.Ifindex {
			t.Errorf("egress drop event %s (obs %s ifindex %d)", ev, ev.ObservationPoint, ev.Ifindex)
		}
		want.add(dropreason.PolicyDenied, maps.Egress, denied)
		tp.wantMetrics(want)

		allowed := tp.packet(dpTCP, tp.ap(tp.A, 40001), tp.ap(tp.B, 80), testrun.SYN)
		p = tp.send(tp.A, allowed)
		tp.wantDelivered(p, "A->B tcp/80")
		if p.Hops[0].Code != testrun.ActRedirect || tp.trace(p, 0, "A->B").Ifindex != tp.B.Spec.Ifindex {
			t.Errorf("A->B tcp/80: want TC_ACT_REDIRECT to B's ifindex %d: %s", tp.B.Spec.Ifindex, p)
		}
		if ev := tp.trace(p, 1, "A->B"); ev.EndpointID != 2 || ev.Direction != maps.Ingress || ev.RuleID != 2 ||
			ev.Ifindex != tp.B.Spec.Ifindex || p.Hops[1].Code != testrun.ActOK {
			t.Errorf("A->B tcp/80 at B: %s", p)
		}
		want.add(dropreason.Forwarded, maps.Egress, allowed)
		want.add(dropreason.Forwarded, maps.Ingress, allowed)
		tp.wantMetrics(want)

		// C may send anything (no enforcement) but B's ingress denies it.
		fromC := tp.packet(dpTCP, tp.ap(tp.C, 40002), tp.ap(tp.B, 80), testrun.SYN)
		p = tp.send(tp.C, fromC)
		ev = tp.wantDrop(p, 1, dropreason.PolicyDenied, "C->B tcp/80")
		if ev.EndpointID != 2 || ev.Direction != maps.Ingress || ev.SrcIdentity != dpIDC || ev.DstIdentity != dpIDB ||
			ev.ObservationPoint != events.ObsToEndpoint || ev.Ifindex != tp.B.Spec.Ifindex || ev.CTState != maps.CTNew {
			t.Errorf("ingress drop event %s (obs %s ifindex %d)", ev, ev.ObservationPoint, ev.Ifindex)
		}
		if len(p.Events()) != 2 {
			t.Errorf("C->B: want 2 events (trace at C, drop at B): %s", p)
		}
		want.add(dropreason.Forwarded, maps.Egress, fromC)
		want.add(dropreason.PolicyDenied, maps.Ingress, fromC)
		tp.wantMetrics(want)
	})
}

// TestPolicyWorldAndCIDRIdentity checks the identity of an external
// address: world (2) on an ipcache miss, a CIDR identity once a prefix
// covers it, the most specific prefix winning; in both directions.
func TestPolicyWorldAndCIDRIdentity(t *testing.T) {
	dpEachFamily(t, func(t *testing.T, f dpFamily) {
		for _, dir := range []maps.Direction{maps.Egress, maps.Ingress} {
			t.Run(dir.String(), func(t *testing.T) {
				tp := newDPTopo(t, f, testrun.Options{})
				ep := tp.A
				if dir == maps.Ingress {
					ep = tp.B
				}
				tp.enforce(ep, dir == maps.Ingress, dir == maps.Egress)
				tp.addRule(ep, testrun.Rule{Direction: dir, Identity: maps.IdentityWorld, Protocol: dpTCP, Ports: dpPort(443), RuleID: 60})
				port := uint16(41000)
				// probe sends TCP SYN between ep and remote:dport (or
				// remote -> ep:dport for ingress) and checks the verdict and
				// the remote identity in the event.
				probe := func(what string, remote netip.Addr, dport uint16, remoteID uint32, rule uint32, drop dropreason.Reason) {
					t.Helper()
					port++
					var p testrun.Path
					if dir == maps.Egress {
						p = tp.send(ep, tp.packet(dpTCP, tp.ap(ep, port), netip.AddrPortFrom(remote, dport), testrun.SYN))
					} else {
						p = tp.recv(ep, tp.packet(dpTCP, netip.AddrPortFrom(remote, port), tp.ap(ep, dport), testrun.SYN))
					}
					var ev events.Event
					if drop != 0 {
						ev = tp.wantDrop(p, 0, drop, what)
					} else {
						tp.wantDelivered(p, what)
						if len(p.Hops) != 1 || p.Hops[0].Code != testrun.ActOK {
							t.Errorf("%s: want one hop passing with TC_ACT_OK: %s", what, p)
						}
						ev = tp.trace(p, 0, what)
						wantObs, wantIf := events.ObsToStack, uint32(0)
						if dir == maps.Ingress {
							wantObs, wantIf = events.ObsToEndpoint, ep.Spec.Ifindex
						}
						if ev.ObservationPoint != wantObs || ev.Ifindex != wantIf {
							t.Errorf("%s: trace at %s ifindex %d, want %s ifindex %d", what, ev.ObservationPoint, ev.Ifindex, wantObs, wantIf)
						}
					}
					gotID := ev.DstIdentity
					if dir == maps.Ingress {
						gotID = ev.SrcIdentity
					}
					if gotID != remoteID || ev.RuleID != rule {
						t.Errorf("%s: event %s: remote identity %d rule %d, want %d and %d", what, ev, gotID, ev.RuleID, remoteID, rule)
					}
				}
				probe("world allowed", f.ext, 443, maps.IdentityWorld, 60, 0)
				probe("world wrong port", f.ext, 444, maps.IdentityWorld, 0, dropreason.PolicyDenied)

				// A CIDR identity replaces world for the prefix.
				tp.setIdentity(f.extNet, dpIDCIDR)
				probe("cidr, world rule no longer applies", f.ext, 443, dpIDCIDR, 0, dropreason.PolicyDenied)
				probe("outside the prefix is still world", f.ext3, 443, maps.IdentityWorld, 60, 0)
				tp.addRule(ep, testrun.Rule{Direction: dir, Identity: dpIDCIDR, Protocol: dpTCP, Ports: dpPort(443), RuleID: 61})
				probe("cidr allowed", f.ext, 443, dpIDCIDR, 61, 0)

				// The most specific prefix wins.
				tp.setIdentity(netip.PrefixFrom(f.ext, f.ext.BitLen()), dpIDHost)
				probe("host prefix, cidr rule no longer applies", f.ext, 443, dpIDHost, 0, dropreason.PolicyDenied)
				probe("other host in the cidr", f.ext2, 443, dpIDCIDR, 61, 0)
				tp.addRule(ep, testrun.Rule{Direction: dir, Identity: dpIDHost, Protocol: dpTCP, Ports: dpPort(443), RuleID: 62})
				probe("host allowed", f.ext, 443, dpIDHost, 62, 0)
				probe("host wrong port", f.ext, 80, dpIDHost, 0, dropreason.PolicyDenied)

				// Deleting the host prefix falls back to the CIDR.
				if err := tp.h.DeleteIdentity(netip.PrefixFrom(f.ext, f.ext.BitLen())); err != nil {
					t.Fatal(err)
				}
				probe("host prefix deleted", f.ext, 443, dpIDCIDR, 61, 0)
			})
		}
	})
}

// TestPolicySourceSpoofing checks that a pod sending from an address that
// is not its own is dropped with INVALID_SOURCE_IP, enforcement or not.
func TestPolicySourceSpoofing(t *testing.T) {
	dpEachFamily(t, func(t *testing.T, f dpFamily) {
		tp := newDPTopo(t, f, testrun.Options{})
		want := dpMetrics{}
		for _, src := range []netip.Addr{f.spoof, f.b, f.ext} {
			for _, proto := range []uint8{dpTCP, dpUDP, f.icmp} {
				what := fmt.Sprintf("A sends from %s proto %d", src, proto)
				pkt := tp.packet(proto, netip.AddrPortFrom(src, 40000), tp.ap(tp.C, 80), testrun.SYN)
				p := tp.send(tp.A, pkt)
				ev := tp.wantDrop(p, 0, dropreason.InvalidSourceIP, what)
				if ev.EndpointID != 1 || ev.Direction != maps.Egress || ev.SrcIdentity != dpIDA ||
					ev.ObservationPoint != events.ObsFromEndpoint || ev.Ifindex != tp.A.Spec.Ifindex {
					t.Errorf("%s: drop event %s", what, ev)
				}
				want.add(dropreason.InvalidSourceIP, maps.Egress, pkt)
			}
		}
		// No conntrack entry was created by the spoofed packets.
		if ct, err := tp.h.CTEntries(); err != nil || len(ct) != 0 {
			t.Errorf("conntrack after spoofed packets: %v %v", ct, err)
		}
		// Its own address still works.
		pkt := tp.packet(dpTCP, tp.ap(tp.A, 40000), tp.ap(tp.C, 80), testrun.SYN)
		tp.wantDelivered(tp.send(tp.A, pkt), "A from its own address")
		want.add(dropreason.Forwarded, maps.Egress, pkt)
		want.add(dropreason.Forwarded, maps.Ingress, pkt)
		tp.wantMetrics(want)
	})
}

// TestPolicyLocalDeliveryRewrite checks the L2/L3 rewrite of local
// delivery: MACs of the destination endpoint and its node side, TTL/hop
// limit minus one with a valid IPv4 checksum, nothing else changed; TTL 1
// is dropped with TTL_EXCEEDED.
func TestPolicyLocalDeliveryRewrite(t *testing.T) {
	dpEachFamily(t, func(t *testing.T, f dpFamily) {
		for _, proto := range []uint8{dpTCP, dpUDP, f.icmp} {
			t.Run(fmt.Sprintf("proto%d", proto), func(t *testing.T) {
				tp := newDPTopo(t, f, testrun.Options{})
				want := dpMetrics{}
				for _, ttl := range []uint8{64, 2, 255} {
					orig := dpSetTTL(tp.packet(proto, tp.ap(tp.A, 40000+uint16(ttl)), tp.ap(tp.B, 80), testrun.SYN), ttl)
					p := tp.send(tp.A, orig)
					what := fmt.Sprintf("ttl %d", ttl)
					tp.wantDelivered(p, what)
					want.add(dropreason.Forwarded, maps.Egress, orig)
					want.add(dropreason.Forwarded, maps.Ingress, orig)
					if p.Hops[0].Code != testrun.ActRedirect || tp.trace(p, 0, what).Ifindex != tp.B.Spec.Ifindex {
						t.Errorf("%s: want a redirect to B (ifindex %d): %s", what, tp.B.Spec.Ifindex, p)
					}
					got := p.Packet
					if len(got) != len(orig) {
						t.Fatalf("%s: delivered %d bytes, sent %d", what, len(got), len(orig))
					}
					if !dpBytesEqual(got[0:6], tp.B.Spec.MAC) || !dpBytesEqual(got[6:12], tp.B.Spec.NodeMAC) {
						t.Errorf("%s: MACs dst %s src %s, want %s (B) and %s (B's node side)", what,
							net.HardwareAddr(got[0:6]), net.HardwareAddr(got[6:12]), tp.B.Spec.MAC, tp.B.Spec.NodeMAC)
					}
					// The to_container hop changes nothing more.
					if !dpBytesEqual(p.Hops[0].Packet, got) {
						t.Errorf("%s: to_container modified the packet", what)
					}
					pkt := gopacket.NewPacket(got, layers.LayerTypeEthernet, gopacket.Default)
					if el := pkt.ErrorLayer(); el != nil {
						t.Fatalf("%s: delivered packet does not decode: %v", what, el.Error())
					}
					var rest, origRest []byte
					if ip4, ok := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
						if ip4.TTL != ttl-1 {
							t.Errorf("%s: TTL %d, want %d", what, ip4.TTL, ttl-1)
						}
						hdr := append([]byte(nil), ip4.Contents...)
						if dpIPv4Checksum(hdr) != 0 {
							hdr[10], hdr[11] = 0, 0
							t.Errorf("%s: IPv4 header checksum %#04x invalid, want %#04x", what, ip4.Checksum, dpIPv4Checksum(hdr))
						}
						// Only TTL and checksum (bytes 8, 10, 11 of the header) changed.
						rest = append(append(append([]byte(nil), got[14:14+8]...), got[14+9:14+10]...), got[14+12:]...)
						origRest = append(append(append([]byte(nil), orig[14:14+8]...), orig[14+9:14+10]...), orig[14+12:]...)
					} else if ip6, ok := pkt.Layer(layers.LayerTypeIPv6).(*layers.IPv6); ok {
						if ip6.HopLimit != ttl-1 {
							t.Errorf("%s: hop limit %d, want %d", what, ip6.HopLimit, ttl-1)
						}
						rest = append(append([]byte(nil), got[12:14+7]...), got[14+8:]...)
						origRest = append(append([]byte(nil), orig[12:14+7]...), orig[14+8:]...)
					} else {
						t.Fatalf("%s: no IP layer", what)
					}
					if !dpBytesEqual(rest, origRest) {
						t.Errorf("%s: bytes other than MACs, TTL and checksum changed:\n got %x\nwant %x", what, rest, origRest)
					}
				}
				// TTL 1 (and 0) cannot be forwarded.
				for _, ttl := range []uint8{1, 0} {
					orig := dpSetTTL(tp.packet(proto, tp.ap(tp.A, 41000+uint16(ttl)), tp.ap(tp.B, 80), testrun.SYN), ttl)
					ev := tp.wantDrop(tp.send(tp.A, orig), 0, dropreason.TTLExceeded, fmt.Sprintf("ttl %d", ttl))
					if ev.EndpointID != 1 || ev.Direction != maps.Egress || ev.DstIdentity != dpIDB {
						t.Errorf("ttl %d: drop event %s", ttl, ev)
					}
					want.add(dropreason.TTLExceeded, maps.Egress, orig)
				}
				// A packet from outside the node is not rewritten.
				in := tp.packet(proto, netip.AddrPortFrom(f.ext, 40000), tp.ap(tp.B, 80), testrun.SYN)
				p := tp.recv(tp.B, in)
				tp.wantDelivered(p, "from outside")
				if !dpBytesEqual(p.Packet, in) {
					t.Errorf("from outside: to_container modified the packet")
				}
				want.add(dropreason.Forwarded, maps.Ingress, in)
				tp.wantMetrics(want)
			})
		}
	})
}

func dpBytesEqual(a, b []byte) bool { return string(a) == string(b) }

// TestPolicyIPv4ChecksumAfterTTLDecrement sweeps every forwardable TTL and
// a spread of header contents: the incrementally updated IPv4 header
// checksum must always verify.
func TestPolicyIPv4ChecksumAfterTTLDecrement(t *testing.T) {
	tp := newDPTopo(t, dpFamilies[0], testrun.Options{})
	n := 0
	for ttl := 2; ttl <= 255; ttl++ {
		for _, sport := range []uint16{40000, 1, 65535, 12345} {
			n++
			orig := dpSetTTL(testrun.UDP(netip.AddrPortFrom(tp.f.a, sport), netip.AddrPortFrom(tp.f.b, uint16(ttl)), make([]byte, n%7)), uint8(ttl))
			p, err := tp.h.Send(tp.A, orig)
			if err != nil || !p.Delivered {
				t.Fatalf("ttl %d: %v %s", ttl, err, p)
			}
			hdr := p.Packet[14 : 14+20]
			if hdr[8] != uint8(ttl-1) || dpIPv4Checksum(hdr) != 0 {
				t.Fatalf("ttl %d: delivered header %x: ttl %d, checksum does not verify", ttl, hdr, hdr[8])
			}
		}
	}
}

// TestPolicyDirectionsAreSeparate: an egress entry does not allow
// ingress traffic from the same identity and vice versa.
func TestPolicyDirectionsAreSeparate(t *testing.T) {
	dpEachFamily(t, func(t *testing.T, f dpFamily) {
		tp := newDPTopo(t, f, testrun.Options{})
		tp.enforce(tp.A, true, true)
		tp.addRule(tp.A, testrun.Rule{Direction: maps.Egress, Identity: dpIDB, Protocol: dpTCP, Ports: dpPort(80), RuleID: 1})
		tp.addRule(tp.A, testrun.Rule{Direction: maps.Ingress, Identity: dpIDC, Protocol: dpTCP, Ports: dpPort(80), RuleID: 2})
		tp.wantDelivered(tp.send(tp.A, testrun.TCP(tp.ap(tp.A, 40000), tp.ap(tp.B, 80), testrun.SYN, nil)), "A->B egress allowed")
		ev := tp.wantDrop(tp.send(tp.B, testrun.TCP(tp.ap(tp.B, 40001), tp.ap(tp.A, 80), testrun.SYN, nil)), 1,
			dropreason.PolicyDenied, "B->A: the egress entry for B does not allow ingress")
		if ev.Direction != maps.Ingress || ev.EndpointID != 1 || ev.SrcIdentity != dpIDB {
			t.Errorf("drop event %s", ev)
		}
		tp.wantDelivered(tp.send(tp.C, testrun.TCP(tp.ap(tp.C, 40002), tp.ap(tp.A, 80), testrun.SYN, nil)), "C->A ingress allowed")
		ev = tp.wantDrop(tp.send(tp.A, testrun.TCP(tp.ap(tp.A, 40003), tp.ap(tp.C, 80), testrun.SYN, nil)), 0,
			dropreason.PolicyDenied, "A->C: the ingress entry for C does not allow egress")
		if ev.Direction != maps.Egress || ev.DstIdentity != dpIDC {
			t.Errorf("drop event %s", ev)
		}
	})
}
