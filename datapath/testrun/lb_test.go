package testrun_test

// Load-balancing tests of the pod side (lxc.c): ClusterIP translation both
// ways with valid checksums, the service conntrack pin, backend selection
// (random, Maglev, session affinity, terminating backends), the rejection
// of a service without backends, egress policy against the backend,
// hairpin, and DSR replies. Helpers are prefixed lb; the topology is
// policy_test.go's (A, B, C).

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/ciliaproject/cilia/datapath"
	"github.com/ciliaproject/cilia/datapath/dropreason"
	"github.com/ciliaproject/cilia/datapath/internal/netnstest"
	"github.com/ciliaproject/cilia/datapath/maps"
	"github.com/ciliaproject/cilia/datapath/testrun"
)

const (
	lbPort        uint16 = 80   // frontend port
	lbBackendPort uint16 = 8080 // backends' target port
	lbRevNat      uint32 = 7
)

// lbVIP returns the ClusterIP of the tests in f's family.
func lbVIP(f dpFamily) netip.Addr {
	if f.icmp == testrun.ProtoICMP {
		return netip.MustParseAddr("10.96.0.10")
	}
	return netip.MustParseAddr("fd00:96::10")
}

// lbBackendID is the backend id the tests give endpoint ep.
func lbBackendID(ep *testrun.Endpoint) uint32 { return 100 + uint32(ep.Spec.ID) }

// lbService returns the TCP (proto) ClusterIP service VIP:80 with the
// given active and terminating endpoints as backends on port 8080.
func (tp *dpTopo) lbService(proto uint8, flags uint8, active, terminating []*testrun.Endpoint) testrun.Service {
	s := testrun.Service{Frontend: netip.AddrPortFrom(lbVIP(tp.f), lbPort), Proto: proto,
		Scope: maps.LBScopeInternal, Flags: flags, RevNatID: lbRevNat}
	for _, ep := range active {
		s.Active = append(s.Active, testrun.ServiceBackend{ID: lbBackendID(ep), Addr: tp.ap(ep, lbBackendPort)})
	}
	for _, ep := range terminating {
		s.Terminating = append(s.Terminating, testrun.ServiceBackend{ID: lbBackendID(ep), Addr: tp.ap(ep, lbBackendPort)})
	}
	return s
}

func (tp *dpTopo) lbPut(s testrun.Service) {
	tp.t.Helper()
	if err := tp.h.PutService(s); err != nil {
		tp.t.Fatalf("put service: %v", err)
	}
}

func (tp *dpTopo) vip(port uint16) netip.AddrPort { return netip.AddrPortFrom(lbVIP(tp.f), port) }

// lbFrame is what the tests read back from a frame.
type lbFrame struct {
	src, dst   netip.AddrPort
	proto      uint8
	tcpFlags   uint8
	seq, ack   uint32
	icmpType   uint8
	icmpCode   uint8
	icmpQuoted []byte // ICMP errors: the quoted IP packet
}

var (
	errLBIPChecksum = errors.New("bad IPv4 header checksum")
	errLBL4Checksum = errors.New("bad L4 checksum")
)

// lbInetSum returns the one's complement sum of b (16-bit words).
func lbInetSum(b []byte) uint32 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	return s
}

func lbFold(s uint32) uint16 {
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// lbParse parses an Ethernet frame with IPv4 or IPv6 (destination options
// skipped) and TCP, UDP or ICMP, and verifies every checksum: the IPv4
// header's, and the L4 one with its pseudo header (an IPv4 UDP checksum of
// 0 means none).
func lbParse(t lbTB, what string, frame []byte) lbFrame {
	t.Helper()
	var f lbFrame
	if len(frame) < 14 {
		t.Fatalf("%s: frame of %d bytes", what, len(frame))
	}
	var pseudo []byte
	var l4 []byte
	switch binary.BigEndian.Uint16(frame[12:]) {
	case 0x0800:
		ip := frame[14:]
		ihl := int(ip[0]&0xf) * 4
		tot := int(binary.BigEndian.Uint16(ip[2:]))
		if len(ip) < tot || tot < ihl {
			t.Fatalf("%s: IPv4 total length %d, have %d", what, tot, len(ip))
		}
		if lbFold(lbInetSum(ip[:ihl])) != 0xffff {
			t.Errorf("%s: %v", what, errLBIPChecksum)
		}
		f.proto = ip[9]
		src, dst := netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
		l4 = ip[ihl:tot]
		pseudo = append(append(append([]byte(nil), ip[12:20]...), 0, f.proto), byte(len(l4)>>8), byte(len(l4)))
		f.src, f.dst = netip.AddrPortFrom(src, 0), netip.AddrPortFrom(dst, 0)
	case 0x86dd:
		ip := frame[14:]
		plen := int(binary.BigEndian.Uint16(ip[4:]))
		if len(ip) < 40+plen {
			t.Fatalf("%s: IPv6 payload length %d, have %d", what, plen, len(ip)-40)
		}
		nh, off := ip[6], 40
		for nh == 60 || nh == 0 || nh == 43 {
			nh, off = ip[off], off+(int(ip[off+1])+1)*8
		}
		f.proto = nh
		src, dst := netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40]))
		l4 = ip[off : 40+plen]
		pseudo = append(append([]byte(nil), ip[8:40]...), byte(len(l4)>>24), byte(len(l4)>>16), byte(len(l4)>>8), byte(len(l4)), 0, 0, 0, nh)
		f.src, f.dst = netip.AddrPortFrom(src, 0), netip.AddrPortFrom(dst, 0)
	default:
		t.Fatalf("%s: not IP", what)
	}
	v4 := f.src.Addr().Is4()
	switch f.proto {
	case testrun.ProtoTCP, testrun.ProtoUDP:
		f.src = netip.AddrPortFrom(f.src.Addr(), binary.BigEndian.Uint16(l4[0:]))
		f.dst = netip.AddrPortFrom(f.dst.Addr(), binary.BigEndian.Uint16(l4[2:]))
		csumOff := 16
		if f.proto == testrun.ProtoUDP {
			csumOff = 6
		} else {
			f.seq, f.ack, f.tcpFlags = binary.BigEndian.Uint32(l4[4:]), binary.BigEndian.Uint32(l4[8:]), l4[13]
		}
		if !(v4 && f.proto == testrun.ProtoUDP && binary.BigEndian.Uint16(l4[csumOff:]) == 0) &&
			lbFold(lbInetSum(pseudo)+lbInetSum(l4)) != 0xffff {
			t.Errorf("%s: %v (protocol %d)", what, errLBL4Checksum, f.proto)
		}
	case testrun.ProtoICMP, testrun.ProtoICMPv6:
		f.icmpType, f.icmpCode = l4[0], l4[1]
		sum := lbInetSum(l4)
		if f.proto == testrun.ProtoICMPv6 {
			sum += lbInetSum(pseudo)
		}
		if lbFold(sum) != 0xffff {
			t.Errorf("%s: %v (ICMP)", what, errLBL4Checksum)
		}
		f.icmpQuoted = l4[8:]
	}
	return f
}

// lbQuoted returns the source and destination of the TCP/UDP packet an
// ICMP error quotes.
func lbQuoted(t *testing.T, q []byte) (src, dst netip.AddrPort) {
	t.Helper()
	if len(q) < 20 {
		t.Fatalf("quote of %d bytes", len(q))
	}
	if q[0]>>4 == 4 {
		ihl := int(q[0]&0xf) * 4
		if len(q) < ihl+4 {
			t.Fatalf("quote of %d bytes", len(q))
		}
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(q[12:16])), binary.BigEndian.Uint16(q[ihl:])),
			netip.AddrPortFrom(netip.AddrFrom4([4]byte(q[16:20])), binary.BigEndian.Uint16(q[ihl+2:]))
	}
	if len(q) < 44 {
		t.Fatalf("quote of %d bytes", len(q))
	}
	return netip.AddrPortFrom(netip.AddrFrom16([16]byte(q[8:24])), binary.BigEndian.Uint16(q[40:])),
		netip.AddrPortFrom(netip.AddrFrom16([16]byte(q[24:40])), binary.BigEndian.Uint16(q[42:]))
}

// lbSendSYN sends a SYN from A's port cport to VIP:80 through A's
// from_container only and returns the backend endpoint it was sent to.
func (tp *dpTopo) lbSendSYN(cport uint16) *testrun.Endpoint {
	tp.t.Helper()
	r, err := tp.A.FromContainer(testrun.TCP(tp.ap(tp.A, cport), tp.vip(lbPort), testrun.SYN, nil))
	if err != nil {
		tp.t.Fatal(err)
	}
	if r.Code != testrun.ActRedirect {
		tp.t.Fatalf("SYN from port %d: %s", cport, r)
	}
	f := lbParse(tp.t, "translated SYN", r.Packet)
	be := tp.h.EndpointByAddr(f.dst.Addr())
	if be == nil || f.dst.Port() != lbBackendPort || f.src != tp.ap(tp.A, cport) {
		tp.t.Fatalf("SYN from port %d translated to %s -> %s", cport, f.src, f.dst)
	}
	return be
}

// TestLBClusterIP: a TCP connection to a ClusterIP is DNATed to a backend,
// the backend's replies are reverse-NATed at the client, every later
// packet goes to the same backend (even after the backend set changes),
// and a gone backend is replaced.
func TestLBClusterIP(t *testing.T) {
	dpEachFamily(t, func(t *testing.T, f dpFamily) {
		tp := newDPTopo(t, f, testrun.Options{})
		tp.lbPut(tp.lbService(testrun.ProtoTCP, 0, []*testrun.Endpoint{tp.B, tp.C}, nil))
		client, vip := tp.ap(tp.A, 40000), tp.vip(lbPort)

		// SYN: DNATed, delivered to the backend with the client's address.
		p := tp.send(tp.A, testrun.TCP(client, vip, testrun.SYN, nil))
		tp.wantDelivered(p, "SYN")
		syn := lbParse(t, "SYN at the backend", p.Packet)
		be := tp.h.EndpointByAddr(syn.dst.Addr())
		if be == nil || be == tp.A || syn.dst.Port() != lbBackendPort || syn.src != client {
			t.Fatalf("SYN delivered as %s -> %s", syn.src, syn.dst)
		}
		if ev := tp.trace(p, 0, "SYN"); ev.DstIdentity != be.Spec.Identity || ev.CTState != maps.CTNew {
			t.Errorf("SYN trace at the client: %s, want the backend's identity %d", ev, be.Spec.Identity)
		}
		beAddr := syn.dst
		other := tp.B
		if be == tp.B {
			other = tp.C
		}
		svcCT, ok, err := tp.h.ServiceCT(client, vip, testrun.ProtoTCP)
		if err != nil || !ok || svcCT.BackendID != lbBackendID(be) || svcCT.RevNatID != lbRevNat {
			t.Errorf("service entry %+v (found %v, %v), want backend %d rev nat %d", svcCT, ok, err, lbBackendID(be), lbRevNat)
		}
		if e := tp.mustCT(client, beAddr, testrun.ProtoTCP, maps.Egress); e.RevNatID != lbRevNat {
			t.Errorf("client's entry %+v: want rev nat %d", e, lbRevNat)
		}

		// SYN-ACK from the backend: the client sees it from the VIP.
		p = tp.send(be, testrun.TCP(beAddr, client, testrun.SYN|testrun.ACK, nil))
		tp.wantDelivered(p, "SYN-ACK")
		synack := lbParse(t, "SYN-ACK at the client", p.Packet)
		if synack.src != vip || synack.dst != client || synack.tcpFlags != uint8(testrun.SYN|testrun.ACK) {
			t.Errorf("SYN-ACK delivered as %s -> %s flags %#x, want %s -> %s", synack.src, synack.dst, synack.tcpFlags, vip, client)
		}

		// ACK and data: the same backend.
		for _, fl := range []testrun.TCPFlags{testrun.ACK, testrun.PSH | testrun.ACK} {
			p = tp.send(tp.A, testrun.TCP(client, vip, fl, []byte("GET /")))
			tp.wantDelivered(p, "client packet")
			if got := lbParse(t, "client packet", p.Packet); got.dst != beAddr || got.src != client {
				t.Errorf("flags %#x: delivered as %s -> %s, want -> %s", fl, got.src, got.dst, beAddr)
			}
		}

		// The client's ACK says the server answered: the service entry
		// gets the connection's established lifetime, like its own entry.
		svcCT, _, _ = tp.h.ServiceCT(client, vip, testrun.ProtoTCP)
		if svcCT.Flags&maps.CTFlagReplySeen == 0 {
			t.Errorf("service entry %+v after the ACK: want reply seen", svcCT)
		}
		tp.wantExpires(svcCT, tp.trace(p, 0, "data"), dpLifeTCP, "service entry")

		// The backend set changes to the other endpoint only: the
		// connection keeps its backend, a new one gets the new set.
		tp.lbPut(tp.lbService(testrun.ProtoTCP, 0, []*testrun.Endpoint{other}, nil))
		p = tp.send(tp.A, testrun.TCP(client, vip, testrun.PSH|testrun.ACK, []byte("more")))
		if got := lbParse(t, "after the change", p.Packet); got.dst != beAddr {
			t.Errorf("established connection moved to %s after the backend set changed, want %s", got.dst, beAddr)
		}
		for cport := uint16(41000); cport < 41008; cport++ {
			if got := tp.lbSendSYN(cport); got != other {
				t.Errorf("new connection from port %d went to endpoint %d, want %d", cport, got.Spec.ID, other.Spec.ID)
			}
		}

		// The old backend is deleted: the connection's next packet
		// chooses again among the current backends.
		if err := tp.h.DeleteBackend(lbBackendID(be)); err != nil {
			t.Fatal(err)
		}
		r, err := tp.A.FromContainer(testrun.TCP(client, vip, testrun.PSH|testrun.ACK, []byte("again")))
		if err != nil {
			t.Fatal(err)
		}
		if got := lbParse(t, "after deletion", r.Packet); got.dst != tp.ap(other, lbBackendPort) {
			t.Errorf("after the backend was deleted: sent to %s, want %s", got.dst, tp.ap(other, lbBackendPort))
		}
	})
}

// TestLBUDP: a UDP request is DNATed and its reply reverse-NATed, with
// valid checksums.
func TestLBUDP(t *testing.T) {
	dpEachFamily(t, func(t *testing.T, f dpFamily) {
		tp := newDPTopo(t, f, testrun.Options{})
		tp.lbPut(tp.lbService(testrun.ProtoUDP, 0, []*testrun.Endpoint{tp.B}, nil))
		client, vip, be := tp.ap(tp.A, 5353), tp.vip(lbPort), tp.ap(tp.B, lbBackendPort)
		p := tp.send(tp.A, testrun.UDP(client, vip, []byte("query")))
		tp.wantDelivered(p, "request")
		if got := lbParse(t, "request", p.Packet); got.src != client || got.dst != be {
			t.Errorf("request delivered as %s -> %s, want %s -> %s", got.src, got.dst, client, be)
		}
		p = tp.send(tp.B, testrun.UDP(be, client, []byte("answer")))
		tp.wantDelivered(p, "reply")
		if got := lbParse(t, "reply", p.Packet); got.src != vip || got.dst != client {
			t.Errorf("reply delivered as %s -> %s, want %s -> %s", got.src, got.dst, vip, client)
		}
	})
}

// TestLBSelection checks how new connections choose among backends.
func TestLBSelection(t *testing.T) {
	const maglevM = 251
	opts := testrun.Options{Node: datapath.NodeOptions{Config: datapath.NodeConfig{MaglevSize: maglevM}}}
	dpEachFamily(t, func(t *testing.T, f dpFamily) {
		for _, tc := range []struct {
			name string
			run  func(t *testing.T, tp *dpTopo)
		}{
			{"random spreads", func(t *testing.T, tp *dpTopo) {
				tp.lbPut(tp.lbService(testrun.ProtoTCP, 0, []*testrun.Endpoint{tp.B, tp.C}, nil))
				seen := map[uint16]int{}
				for cport := uint16(42000); cport < 42064; cport++ {
					seen[tp.lbSendSYN(cport).Spec.ID]++
				}
				if len(seen) != 2 {
					t.Errorf("64 connections went to endpoints %v, want both backends", seen)
				}
			}},
			{"maglev table[hash % M]", func(t *testing.T, tp *dpTopo) {
				tp.lbPut(tp.lbService(testrun.ProtoTCP, maps.LBFlagMaglev, []*testrun.Endpoint{tp.B, tp.C}, nil))
				table := make([]uint32, maglevM)
				for i := range table {
					table[i] = []uint32{lbBackendID(tp.B), lbBackendID(tp.C)}[i*7/maglevM%2]
				}
				if err := tp.h.Node.PutLBMaglev(lbRevNat, table); err != nil {
					t.Fatal(err)
				}
				seen := map[uint16]int{}
				for cport := uint16(43000); cport < 43032; cport++ {
					tuple := maps.NewTuple(tp.ap(tp.A, cport), tp.vip(lbPort), testrun.ProtoTCP, 0)
					want := table[maps.LBTupleHash(tuple)%maglevM]
					got := tp.lbSendSYN(cport)
					seen[got.Spec.ID]++
					if lbBackendID(got) != want {
						t.Errorf("port %d: backend %d, the table says %d", cport, lbBackendID(got), want)
					}
				}
				if len(seen) != 2 {
					t.Errorf("32 connections went to %v: the table maps to both", seen)
				}
				// A table that maps everything to C.
				for i := range table {
					table[i] = lbBackendID(tp.C)
				}
				if err := tp.h.Node.PutLBMaglev(lbRevNat, table); err != nil {
					t.Fatal(err)
				}
				for cport := uint16(43100); cport < 43116; cport++ {
					if got := tp.lbSendSYN(cport); got != tp.C {
						t.Errorf("port %d: endpoint %d, the table holds only C", cport, got.Spec.ID)
					}
				}
				if err := tp.h.Node.PutLBMaglev(lbRevNat, table[:10]); err == nil {
					t.Errorf("a table of 10 entries accepted for M = %d", maglevM)
				}
			}},
			{"affinity", func(t *testing.T, tp *dpTopo) {
				s := tp.lbService(testrun.ProtoTCP, maps.LBFlagAffinity, []*testrun.Endpoint{tp.B, tp.C}, nil)
				s.AffinityTimeout = 100
				tp.lbPut(s)
				first := tp.lbSendSYN(44000)
				for cport := uint16(44001); cport < 44032; cport++ {
					if got := tp.lbSendSYN(cport); got != first {
						t.Fatalf("port %d went to endpoint %d, the client's first connection to %d", cport, got.Spec.ID, first.Spec.ID)
					}
				}
				fam, client := maps.AddrBytes(tp.addr(tp.A))
				key := maps.LBAffinityKey{Client: client, RevNatID: lbRevNat, Family: fam}
				all, err := tp.h.Node.LBAffinities()
				if err != nil || all[key].BackendID != lbBackendID(first) {
					t.Fatalf("affinity entries %v (%v), want %+v -> backend %d", all, err, key, lbBackendID(first))
				}
				// A fresh entry naming the other backend is followed; an
				// expired one is not (Maglev sends everything to B then).
				tp.lbPut(tp.lbService(testrun.ProtoTCP, maps.LBFlagAffinity|maps.LBFlagMaglev, []*testrun.Endpoint{tp.B, tp.C}, nil))
				s.Flags = maps.LBFlagAffinity | maps.LBFlagMaglev
				tp.lbPut(s)
				table := make([]uint32, maglevM)
				for i := range table {
					table[i] = lbBackendID(tp.B)
				}
				if err := tp.h.Node.PutLBMaglev(lbRevNat, table); err != nil {
					t.Fatal(err)
				}
				now, err := datapath.Jiffies()
				if err != nil {
					t.Fatal(err)
				}
				hz := dpSec(t)
				for _, a := range []struct {
					what     string
					lastUsed uint64
					want     *testrun.Endpoint
				}{
					{"fresh entry", now - 10*hz, tp.C},
					{"expired entry", now - 200*hz, tp.B},
				} {
					if err := tp.h.Node.PutLBAffinity(key, maps.LBAffinityValue{LastUsed: a.lastUsed, BackendID: lbBackendID(tp.C)}); err != nil {
						t.Fatal(err)
					}
					if got := tp.lbSendSYN(44100); got != a.want {
						t.Errorf("%s: endpoint %d, want %d", a.what, got.Spec.ID, a.want.Spec.ID)
					}
					all, _ := tp.h.Node.LBAffinities()
					if v := all[key]; v.BackendID != lbBackendID(a.want) || v.LastUsed < now {
						t.Errorf("%s: affinity entry now %+v, want backend %d used now", a.what, v, lbBackendID(a.want))
					}
					// Close the connection so that the next SYN chooses.
					if _, err := tp.A.FromContainer(testrun.TCP(tp.ap(tp.A, 44100), tp.vip(lbPort), testrun.RST, nil)); err != nil {
						t.Fatal(err)
					}
				}
				// A remembered backend that left the service is not used.
				tp.lbPut(tp.lbService(testrun.ProtoTCP, maps.LBFlagAffinity|maps.LBFlagMaglev, []*testrun.Endpoint{tp.B}, nil))
				if err := tp.h.Node.PutLBAffinity(key, maps.LBAffinityValue{LastUsed: now, BackendID: lbBackendID(tp.C)}); err != nil {
					t.Fatal(err)
				}
				if got := tp.lbSendSYN(44200); got != tp.B {
					t.Errorf("remembered backend no longer in the service: endpoint %d, want B", got.Spec.ID)
				}
			}},
			{"terminating only without active", func(t *testing.T, tp *dpTopo) {
				tp.lbPut(tp.lbService(testrun.ProtoTCP, 0, []*testrun.Endpoint{tp.B}, []*testrun.Endpoint{tp.C}))
				for cport := uint16(45000); cport < 45032; cport++ {
					if got := tp.lbSendSYN(cport); got != tp.B {
						t.Fatalf("port %d: endpoint %d, want the active backend B", cport, got.Spec.ID)
					}
				}
				tp.lbPut(tp.lbService(testrun.ProtoTCP, 0, nil, []*testrun.Endpoint{tp.C}))
				for cport := uint16(45100); cport < 45108; cport++ {
					if got := tp.lbSendSYN(cport); got != tp.C {
						t.Fatalf("port %d: endpoint %d, want the terminating backend C", cport, got.Spec.ID)
					}
				}
			}},
		} {
			t.Run(tc.name, func(t *testing.T) { tc.run(t, newDPTopo(t, f, opts)) })
		}
	})
}

// TestLBNoBackend: a service without backends answers the pod itself: TCP
// with a RST, UDP with an ICMP port unreachable, from the frontend; the
// original packet is reported dropped with NO_SERVICE.
func TestLBNoBackend(t *testing.T) {
	dpEachFamily(t, func(t *testing.T, f dpFamily) {
		for _, tc := range []struct {
			name  string
			proto uint8
			pkt   func(tp *dpTopo) []byte
			check func(t *testing.T, tp *dpTopo, r lbFrame)
		}{
			{"TCP SYN", testrun.ProtoTCP, func(tp *dpTopo) []byte {
				return testrun.TCP(tp.ap(tp.A, 40000), tp.vip(lbPort), testrun.SYN, nil)
			}, func(t *testing.T, tp *dpTopo, r lbFrame) {
				// testrun.TCP sends seq 1000; the SYN counts one.
				if r.proto != testrun.ProtoTCP || r.tcpFlags != uint8(testrun.RST|testrun.ACK) || r.seq != 0 || r.ack != 1001 {
					t.Errorf("rejection: proto %d flags %#x seq %d ack %d, want RST|ACK seq 0 ack 1001", r.proto, r.tcpFlags, r.seq, r.ack)
				}
				if r.src != tp.vip(lbPort) || r.dst != tp.ap(tp.A, 40000) {
					t.Errorf("rejection %s -> %s, want %s -> %s", r.src, r.dst, tp.vip(lbPort), tp.ap(tp.A, 40000))
				}
			}},
			{"TCP data with ACK", testrun.ProtoTCP, func(tp *dpTopo) []byte {
				return testrun.TCP(tp.ap(tp.A, 40001), tp.vip(lbPort), testrun.PSH|testrun.ACK, []byte("hello"))
			}, func(t *testing.T, tp *dpTopo, r lbFrame) {
				// testrun.TCP acks 1: the RST takes its sequence from there.
				if r.tcpFlags != uint8(testrun.RST) || r.seq != 1 {
					t.Errorf("rejection: flags %#x seq %d, want RST seq 1", r.tcpFlags, r.seq)
				}
			}},
			{"UDP", testrun.ProtoUDP, func(tp *dpTopo) []byte {
				return testrun.UDP(tp.ap(tp.A, 5353), tp.vip(lbPort), []byte("query"))
			}, func(t *testing.T, tp *dpTopo, r lbFrame) {
				if r.proto != tp.f.icmp || r.icmpType != tp.f.unreach || r.icmpCode != tp.f.portUnr {
					t.Errorf("rejection: proto %d type %d code %d, want port unreachable", r.proto, r.icmpType, r.icmpCode)
				}
				if r.src.Addr() != lbVIP(tp.f) || r.dst.Addr() != tp.addr(tp.A) {
					t.Errorf("rejection %s -> %s", r.src, r.dst)
				}
				src, dst := lbQuoted(t, r.icmpQuoted)
				if src != tp.ap(tp.A, 5353) || dst != tp.vip(lbPort) {
					t.Errorf("quoted %s -> %s, want the query", src, dst)
				}
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				tp := newDPTopo(t, f, testrun.Options{})
				tp.lbPut(tp.lbService(tc.proto, 0, nil, nil))
				p, err := tp.h.Send(tp.A, tc.pkt(tp))
				if err != nil {
					t.Fatal(err)
				}
				if len(p.Hops) != 2 || p.Hops[0].Code != testrun.ActRedirect || !p.Delivered {
					t.Fatalf("want the rejection redirected back into A: %s", p)
				}
				ev, ok := p.Hops[0].Drop()
				if !ok || ev.Reason != dropreason.NoService || ev.Direction != maps.Egress || ev.EndpointID != tp.A.Spec.ID {
					t.Errorf("want a NO_SERVICE drop event of A's egress: %s", p)
				}
				if p.Hops[1].Program != "to_container" || p.Hops[1].Code != testrun.ActOK {
					t.Errorf("want A's to_container to let the rejection in: %s", p)
				}
				tc.check(t, tp, lbParse(t, "rejection", p.Packet))
			})
		}
	})
}

// TestLBEgressPolicyOnBackend: egress policy is enforced against the
// backend's identity after DNAT.
func TestLBEgressPolicyOnBackend(t *testing.T) {
	dpEachFamily(t, func(t *testing.T, f dpFamily) {
		tp := newDPTopo(t, f, testrun.Options{})
		tp.lbPut(tp.lbService(testrun.ProtoTCP, 0, []*testrun.Endpoint{tp.B}, nil))
		tp.enforce(tp.A, false, true)
		tp.addRule(tp.A, testrun.Rule{Direction: maps.Egress, Identity: dpIDC, Protocol: testrun.ProtoTCP, RuleID: 300})
		ev := tp.wantDrop(tp.send(tp.A, testrun.TCP(tp.ap(tp.A, 40000), tp.vip(lbPort), testrun.SYN, nil)), 0,
			dropreason.PolicyDenied, "SYN to a backend the policy does not allow")
		if ev.DstIdentity != dpIDB {
			t.Errorf("drop event %s: want the backend's identity %d", ev, dpIDB)
		}
		// Allowing the backend's identity on the target port lets it through.
		tp.addRule(tp.A, testrun.Rule{Direction: maps.Egress, Identity: dpIDB, Protocol: testrun.ProtoTCP,
			Ports: maps.PortRange{Lo: lbBackendPort, Hi: lbBackendPort}, RuleID: 301})
		p := tp.send(tp.A, testrun.TCP(tp.ap(tp.A, 40001), tp.vip(lbPort), testrun.SYN, nil))
		tp.wantDelivered(p, "SYN allowed to the backend's port")
		if ev := tp.trace(p, 0, "allowed SYN"); ev.RuleID != 301 {
			t.Errorf("allowed SYN: rule %d, want 301 (the target port's)", ev.RuleID)
		}
	})
}

// TestLBHairpin: a pod reaching itself through a service sees the
// frontend address as source; its answers go back translated, so the
// handshake completes; ingress policy does not apply.
func TestLBHairpin(t *testing.T) {
	dpEachFamily(t, func(t *testing.T, f dpFamily) {
		tp := newDPTopo(t, f, testrun.Options{})
		tp.lbPut(tp.lbService(testrun.ProtoTCP, 0, []*testrun.Endpoint{tp.A}, nil))
		tp.enforce(tp.A, true, true) // ingress: nothing allowed
		tp.addRule(tp.A, testrun.Rule{Direction: maps.Egress, Identity: dpIDA, Protocol: testrun.ProtoTCP, RuleID: 400})
		client, vip := tp.ap(tp.A, 40000), tp.vip(lbPort)
		server, seenFrom := tp.ap(tp.A, lbBackendPort), tp.vip(40000)

		steps := []struct {
			what     string
			src, dst netip.AddrPort
			flags    testrun.TCPFlags
			wantSrc  netip.AddrPort
			wantDst  netip.AddrPort
		}{
			{"SYN", client, vip, testrun.SYN, seenFrom, server},
			{"SYN-ACK", server, seenFrom, testrun.SYN | testrun.ACK, vip, client},
			{"ACK", client, vip, testrun.ACK, seenFrom, server},
			{"server data", server, seenFrom, testrun.PSH | testrun.ACK, vip, client},
		}
		for _, s := range steps {
			p := tp.send(tp.A, testrun.TCP(s.src, s.dst, s.flags, nil))
			tp.wantDelivered(p, s.what)
			if len(p.Hops) != 2 || p.Hops[1].Program != "to_container" {
				t.Errorf("%s: want A's from_container then A's to_container: %s", s.what, p)
			}
			got := lbParse(t, s.what, p.Packet)
			if got.src != s.wantSrc || got.dst != s.wantDst {
				t.Errorf("%s: delivered as %s -> %s, want %s -> %s", s.what, got.src, got.dst, s.wantSrc, s.wantDst)
			}
		}
		// Egress policy applies with the pod's own identity.
		tp.delRule(tp.A, testrun.Rule{Direction: maps.Egress, Identity: dpIDA, Protocol: testrun.ProtoTCP, RuleID: 400})
		ev := tp.wantDrop(tp.send(tp.A, testrun.TCP(tp.ap(tp.A, 40001), vip, testrun.SYN, nil)), 0,
			dropreason.PolicyDenied, "hairpin SYN without egress rule")
		if ev.DstIdentity != dpIDA {
			t.Errorf("drop event %s: want the pod's own identity %d", ev, dpIDA)
		}
	})
}

// lbWithDSR returns frame (Ethernet, IPv4 or IPv6 without extension
// headers) with the DSR information of dsr.h for frontend fe inserted
// after the fixed IP header.
func lbWithDSR(frame []byte, fe netip.AddrPort) []byte {
	out := append([]byte(nil), frame[:14]...)
	ip := frame[14:]
	if ip[0]>>4 == 4 {
		ihl := int(ip[0]&0xf) * 4
		hdr := append([]byte(nil), ip[:ihl]...)
		hdr[0] += 2
		binary.BigEndian.PutUint16(hdr[2:], binary.BigEndian.Uint16(hdr[2:])+8)
		a := fe.Addr().As4()
		opt := []byte{0x9a, 8, byte(fe.Port() >> 8), byte(fe.Port()), a[0], a[1], a[2], a[3]}
		hdr = append(hdr, opt...)
		hdr[10], hdr[11] = 0, 0
		c := ^lbFold(lbInetSum(hdr))
		binary.BigEndian.PutUint16(hdr[10:], c)
		return append(append(out, hdr...), ip[ihl:]...)
	}
	hdr := append([]byte(nil), ip[:40]...)
	nh := hdr[6]
	hdr[6] = 60
	binary.BigEndian.PutUint16(hdr[4:], binary.BigEndian.Uint16(hdr[4:])+24)
	a := fe.Addr().As16()
	ext := append([]byte{nh, 2, 0x1b, 20}, a[:]...)
	ext = append(ext, byte(fe.Port()>>8), byte(fe.Port()), 0, 0)
	return append(append(append(out, hdr...), ext...), ip[40:]...)
}

// TestLBDSRReply: a connection that reaches a backend with a DSR frontend
// is recorded with it, and the backend's replies leave with the frontend
// as source, to the client directly.
func TestLBDSRReply(t *testing.T) {
	dpEachFamily(t, func(t *testing.T, f dpFamily) {
		tp := newDPTopo(t, f, testrun.Options{})
		fe := netip.AddrPortFrom(f.ext2, 80) // an external IP of the service
		s := testrun.Service{Frontend: fe, Proto: testrun.ProtoTCP, Scope: maps.LBScopeExternal,
			Flags: maps.LBFlagExternal | maps.LBFlagDSR, RevNatID: 9,
			Active: []testrun.ServiceBackend{{ID: lbBackendID(tp.B), Addr: tp.ap(tp.B, lbBackendPort)}}}
		tp.lbPut(s)
		client, be := netip.AddrPortFrom(f.ext, 50000), tp.ap(tp.B, lbBackendPort)

		p := tp.recv(tp.B, lbWithDSR(testrun.TCP(client, be, testrun.SYN, nil), fe))
		tp.wantDelivered(p, "SYN with the DSR frontend")
		e := tp.mustCT(client, be, testrun.ProtoTCP, maps.Ingress)
		if e.Flags&maps.CTFlagDSR == 0 || e.RevNatID != 9 {
			t.Fatalf("backend's entry %+v: want the DSR flag and rev nat 9", e)
		}
		p = tp.send(tp.B, testrun.TCP(be, client, testrun.SYN|testrun.ACK, nil))
		tp.wantDelivered(p, "SYN-ACK")
		if got := lbParse(t, "DSR reply", p.Packet); got.src != fe || got.dst != client {
			t.Errorf("reply leaves as %s -> %s, want %s -> %s", got.src, got.dst, fe, client)
		}
		// Without the DSR information (or for a frontend that is not DSR)
		// replies keep the backend's address.
		client2 := netip.AddrPortFrom(f.ext, 50001)
		tp.wantDelivered(tp.recv(tp.B, testrun.TCP(client2, be, testrun.SYN, nil)), "plain SYN")
		p = tp.send(tp.B, testrun.TCP(be, client2, testrun.SYN|testrun.ACK, nil))
		if got := lbParse(t, "plain reply", p.Packet); got.src != be {
			t.Errorf("plain reply leaves from %s, want %s", got.src, be)
		}
		s.Flags = maps.LBFlagExternal
		tp.lbPut(s)
		client3 := netip.AddrPortFrom(f.ext, 50002)
		tp.wantDelivered(tp.recv(tp.B, lbWithDSR(testrun.TCP(client3, be, testrun.SYN, nil), fe)), "SYN naming a non-DSR frontend")
		if e := tp.mustCT(client3, be, testrun.ProtoTCP, maps.Ingress); e.Flags&maps.CTFlagDSR != 0 || e.RevNatID != 0 {
			t.Errorf("entry %+v for a frontend that is not DSR", e)
		}
	})
}

// TestLBMaglevSize: the node refuses a Maglev table size that is no prime
// or too large.
func TestLBMaglevSize(t *testing.T) {
	testrun.RequirePrivileges(t)
	for _, tc := range []struct {
		size uint32
		ok   bool
	}{{0, true}, {251, true}, {16381, true}, {100, false}, {16411, false}, {1, false}} {
		n, err := datapath.NewNode(datapath.NodeOptions{Config: datapath.NodeConfig{MaglevSize: tc.size}})
		if tc.ok {
			if err != nil {
				t.Errorf("size %d: %v", tc.size, err)
				continue
			}
			want := tc.size
			if want == 0 {
				want = datapath.DefaultMaglevSize
			}
			if n.MaglevSize() != want {
				t.Errorf("size %d: node uses %d", tc.size, n.MaglevSize())
			}
			n.Close()
			continue
		}
		if !errors.Is(err, datapath.ErrInvalidMaglevSize) {
			if n != nil {
				n.Close()
			}
			t.Errorf("size %d: error %v, want ErrInvalidMaglevSize", tc.size, err)
		}
	}
}

// TestLBParseChecksums checks the checksum verification the tests rely
// on: crafted packets pass, and each corrupted checksum is caught.
func TestLBParseChecksums(t *testing.T) {
	for _, f := range dpFamilies {
		client, server := netip.AddrPortFrom(f.a, 40000), netip.AddrPortFrom(f.b, 80)
		for _, tc := range []struct {
			name    string
			frame   []byte
			corrupt int // offset from the end of the frame's IP header
			ip      bool
		}{
			{"TCP", testrun.TCP(client, server, testrun.SYN, []byte("x")), 16, false},
			{"UDP", testrun.UDP(client, server, []byte("x")), 6, false},
			{"ICMP error", testrun.ICMPError(f.b, f.a, f.unreach, f.portUnr, testrun.UDP(client, server, nil)), 2, false},
			{"IPv4 header", testrun.TCP(client, server, testrun.SYN, nil), -10, true},
		} {
			if tc.ip && f.icmp != testrun.ProtoICMP {
				continue
			}
			t.Run(f.name+" "+tc.name, func(t *testing.T) {
				ft := &lbRecorder{}
				lbParseInto(ft, tc.frame)
				if ft.Failed() {
					t.Fatalf("a crafted packet fails the check")
				}
				bad := append([]byte(nil), tc.frame...)
				l4 := 14 + 20
				if f.icmp != testrun.ProtoICMP {
					l4 = 14 + 40
				}
				bad[l4+tc.corrupt] ^= 0x40
				ft = &lbRecorder{}
				lbParseInto(ft, bad)
				if !ft.Failed() {
					t.Errorf("a corrupted checksum passes the check")
				}
			})
		}
	}
}

// lbTB is the part of testing.TB lbParse reports through.
type lbTB interface {
	Helper()
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// lbRecorder is an lbTB that only records whether it failed.
type lbRecorder struct{ failed bool }

func (r *lbRecorder) Helper()               {}
func (r *lbRecorder) Errorf(string, ...any) { r.failed = true }
func (r *lbRecorder) Fatalf(string, ...any) { r.failed = true; panic(r) }
func (r *lbRecorder) Failed() bool          { return r.failed }

// lbParseInto runs lbParse on frame, reporting into r only.
func lbParseInto(r *lbRecorder, frame []byte) {
	defer func() {
		if p := recover(); p != nil && p != r {
			panic(p)
		}
	}()
	lbParse(r, "frame", frame)
}

// TestLBICMPErrorTranslated: an ICMP error the backend sends about a
// translated flow reaches the client from the frontend, quoting the flow
// as the client sent it, with valid checksums.
func TestLBICMPErrorTranslated(t *testing.T) {
	dpEachFamily(t, func(t *testing.T, f dpFamily) {
		tp := newDPTopo(t, f, testrun.Options{})
		tp.lbPut(tp.lbService(testrun.ProtoUDP, 0, []*testrun.Endpoint{tp.B}, nil))
		client, vip, be := tp.ap(tp.A, 5353), tp.vip(lbPort), tp.ap(tp.B, lbBackendPort)
		p := tp.send(tp.A, testrun.UDP(client, vip, []byte("query")))
		tp.wantDelivered(p, "request")
		errFrame := testrun.ICMPError(be.Addr(), client.Addr(), f.unreach, f.portUnr, p.Packet)
		p = tp.send(tp.B, errFrame)
		tp.wantDelivered(p, "ICMP error")
		got := lbParse(t, "ICMP error at the client", p.Packet)
		if got.src.Addr() != vip.Addr() || got.dst.Addr() != client.Addr() || got.icmpType != f.unreach {
			t.Errorf("error delivered as %s -> %s type %d, want from %s", got.src, got.dst, got.icmpType, vip.Addr())
		}
		src, dst := lbQuoted(t, got.icmpQuoted)
		if src != client || dst != vip {
			t.Errorf("error quotes %s -> %s, want %s -> %s", src, dst, client, vip)
		}
		if q := got.icmpQuoted; q[0]>>4 == 4 && lbFold(lbInetSum(q[:int(q[0]&0xf)*4])) != 0xffff {
			t.Errorf("quoted IPv4 header checksum is wrong")
		}
		if ev := tp.trace(p, 1, "ICMP error"); ev.CTState != maps.CTRelated {
			t.Errorf("ICMP error at the client: %s, want RELATED", ev)
		}
	})
}

// lbRealPod is a pod of TestLBRealTraffic with its attached programs.
type lbRealPod struct {
	*netnstest.Pod
	ep *datapath.Endpoint
}

// TestLBRealTraffic connects real sockets through attached programs (the
// node namespace has forwarding off and no routes to the pods: only the
// datapath delivers): pod1 reaches pod2 through a ClusterIP, reaches
// itself through a ClusterIP (hairpin: connect() completes and the server
// sees the frontend address), and gets "connection refused" at once from
// a ClusterIP without backends.
func TestLBRealTraffic(t *testing.T) {
	testrun.RequirePrivileges(t)
	nodeNS := testrun.FreshNetns(t)
	for _, sysctl := range []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"} {
		if err := os.WriteFile(sysctl, []byte("0"), 0o644); err != nil {
			t.Fatalf("turn off %s: %v", sysctl, err)
		}
	}
	node, err := datapath.NewNode(datapath.NodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	var pods []*lbRealPod
	for i := 1; i <= 2; i++ {
		spec := netnstest.PodSpec{
			HostIfName: fmt.Sprintf("lxc%d", i),
			IPv4:       netip.AddrFrom4([4]byte{10, 200, 0, byte(i)}),
			IPv6:       netip.MustParseAddr(fmt.Sprintf("fd00:200::%d", i)),
			MAC:        net.HardwareAddr{0x02, 0, 0, 0, 0, byte(i)},
			HostMAC:    net.HardwareAddr{0x02, 0, 0, 0xff, 0, byte(i)},
		}
		np := netnstest.AddPod(t, nodeNS, spec)
		identity := 1000 + uint32(i)
		ep, err := node.LoadEndpoint(datapath.EndpointConfig{ID: uint16(i), Identity: identity,
			Ifindex: uint32(np.HostIfindex), IPv4: spec.IPv4, IPv6: spec.IPv6}, datapath.Settings{})
		if err != nil {
			t.Fatalf("load endpoint %d: %v", i, err)
		}
		t.Cleanup(func() { ep.Close() })
		info := maps.EndpointInfo{Ifindex: uint32(np.HostIfindex), EndpointID: uint16(i), Identity: identity}
		copy(info.MAC[:], spec.MAC)
		copy(info.NodeMAC[:], spec.HostMAC)
		for _, a := range []netip.Addr{spec.IPv4, spec.IPv6} {
			k := maps.NewAddrKey(a)
			if err := node.Maps[datapath.MapEndpoints].Put(&k, &info); err != nil {
				t.Fatal(err)
			}
			if err := node.SetIPCache(netip.PrefixFrom(a, a.BitLen()), maps.IPCacheEntry{Identity: identity}); err != nil {
				t.Fatal(err)
			}
		}
		if err := ep.SetEnforcement(false, false); err != nil {
			t.Fatal(err)
		}
		if err := ep.Attach(np.HostIfindex, ""); err != nil {
			t.Fatalf("attach endpoint %d: %v", i, err)
		}
		t.Cleanup(func() { ep.Detach() })
		pods = append(pods, &lbRealPod{Pod: np, ep: ep})
	}
	pod1, pod2 := pods[0], pods[1]

	for _, fam := range []struct {
		name           string
		addr           func(p *lbRealPod) netip.Addr
		vip, hp, empty netip.Addr
	}{
		{"IPv4", func(p *lbRealPod) netip.Addr { return p.Spec.IPv4 },
			netip.MustParseAddr("10.96.0.10"), netip.MustParseAddr("10.96.0.11"), netip.MustParseAddr("10.96.0.12")},
		{"IPv6", func(p *lbRealPod) netip.Addr { return p.Spec.IPv6 },
			netip.MustParseAddr("fd00:96::10"), netip.MustParseAddr("fd00:96::11"), netip.MustParseAddr("fd00:96::12")},
	} {
		t.Run(fam.name, func(t *testing.T) {
			put := func(vip netip.Addr, rev uint32, backends ...*lbRealPod) {
				fa, faddr := maps.AddrBytes(vip)
				key := maps.LBKey{Addr: faddr, DPortNet: maps.HostToNet16(80), Proto: testrun.ProtoTCP, Family: fa}
				for i, b := range backends {
					_, baddr := maps.AddrBytes(fam.addr(b))
					id := rev*10 + uint32(i)
					if err := node.PutLBBackend(id, maps.LBBackend{Addr: baddr, PortNet: maps.HostToNet16(8080), Proto: testrun.ProtoTCP, Family: fa}); err != nil {
						t.Fatal(err)
					}
					key.Slot = uint16(i + 1)
					if err := node.PutLBService(key, maps.LBService{BackendID: id}); err != nil {
						t.Fatal(err)
					}
				}
				if err := node.PutLBRevNat(rev, maps.LBRevNat{Addr: faddr, PortNet: maps.HostToNet16(80), Family: fa}); err != nil {
					t.Fatal(err)
				}
				key.Slot = 0
				if err := node.PutLBService(key, maps.LBService{Count: uint16(len(backends)), RevNatID: rev}); err != nil {
					t.Fatal(err)
				}
			}
			put(fam.vip, 1, pod2)
			put(fam.hp, 2, pod1)
			put(fam.empty, 3)
			netnstest.Listen(t, pod2.NS, netip.AddrPortFrom(fam.addr(pod2), 8080), "pod2")
			seen := lbListenRemote(t, pod1.NS, netip.AddrPortFrom(fam.addr(pod1), 8080))

			if got, err := netnstest.Dial(pod1.NS, netip.AddrPortFrom(fam.vip, 80), 3*time.Second); err != nil || got != "pod2" {
				t.Errorf("pod1 -> ClusterIP -> pod2: %q, %v", got, err)
			}
			if got, err := netnstest.Dial(pod1.NS, netip.AddrPortFrom(fam.hp, 80), 3*time.Second); err != nil || got != "hello" {
				t.Errorf("pod1 -> ClusterIP -> pod1 (hairpin): %q, %v", got, err)
			} else if remote := <-seen; remote.Addr() != fam.hp {
				t.Errorf("hairpin: the server saw the client as %s, want the frontend %s", remote, fam.hp)
			}
			start := time.Now()
			_, err := netnstest.Dial(pod1.NS, netip.AddrPortFrom(fam.empty, 80), 3*time.Second)
			if !errors.Is(err, syscall.ECONNREFUSED) || time.Since(start) > time.Second {
				t.Errorf("ClusterIP without backends: %v after %s, want connection refused at once", err, time.Since(start))
			}
		})
	}
}

// lbListenRemote listens on addr inside ns, answers "hello" to each
// connection and sends the address each client came from on the channel.
func lbListenRemote(t *testing.T, ns netns.NsHandle, addr netip.AddrPort) <-chan netip.AddrPort {
	t.Helper()
	var ln net.Listener
	if err := netnstest.Do(ns, func() error {
		var err error
		ln, err = net.Listen("tcp", addr.String())
		return err
	}); err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan netip.AddrPort, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ch <- netip.MustParseAddrPort(c.RemoteAddr().String())
			c.Write([]byte("hello"))
			c.Close()
		}
	}()
	return ch
}
