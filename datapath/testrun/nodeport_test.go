package testrun_test

// Load balancing from outside the cluster at the node's uplink (host.c):
// NodePort, externalIPs and LoadBalancer IPs to a local backend, to a remote
// backend in SNAT mode (tunnel and native routing) and in DSR mode (IPv4
// option, IPv6 Destination Options), externalTrafficPolicy Local, and the
// translation of the replies. Node 1 is ovHarness's node; helpers are
// prefixed np.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/ciliaproject/cilia/datapath"
	"github.com/ciliaproject/cilia/datapath/dropreason"
	"github.com/ciliaproject/cilia/datapath/events"
	"github.com/ciliaproject/cilia/datapath/internal/netnstest"
	"github.com/ciliaproject/cilia/datapath/maps"
	"github.com/ciliaproject/cilia/datapath/testrun"
)

const (
	npNodePort   uint16 = 30080
	npTargetPort uint16 = 8080
	npIDBackend  uint32 = 3001 // the remote backend pod, on node 2's harness
)

var (
	npClient     = netip.MustParseAddr("198.51.100.7")
	npClient2    = netip.MustParseAddr("198.51.100.8")
	npClientV6   = netip.MustParseAddr("2001:db8::7")
	npExternalIP = netip.MustParseAddr("203.0.113.10")
)

// npService is one frontend with its external-scope backends.
type npService struct {
	frontend netip.AddrPort
	proto    uint8
	revNat   uint32
	flags    uint8
	// backends of the external entry; the internal entry has them too,
	// plus internalOnly (externalTrafficPolicy Local leaves remote
	// backends out of the external entry).
	backends, internalOnly []netip.AddrPort
}

// npPut writes s into node's load-balancing maps: backends (ids revNat*100+i),
// the reverse NAT entry and both scopes' entries.
func npPut(t *testing.T, node *datapath.Node, s npService) {
	t.Helper()
	fam, faddr := maps.AddrBytes(s.frontend.Addr())
	if err := node.PutLBRevNat(s.revNat, maps.LBRevNat{Addr: faddr, PortNet: maps.HostToNet16(s.frontend.Port()), Family: fam}); err != nil {
		t.Fatal(err)
	}
	ids := func(bs []netip.AddrPort, base int) []uint32 {
		var out []uint32
		for i, b := range bs {
			id := s.revNat*100 + uint32(base+i) + 1
			bf, ba := maps.AddrBytes(b.Addr())
			if err := node.PutLBBackend(id, maps.LBBackend{Addr: ba, PortNet: maps.HostToNet16(b.Port()), Proto: s.proto, Family: bf}); err != nil {
				t.Fatal(err)
			}
			out = append(out, id)
		}
		return out
	}
	external := ids(s.backends, 0)
	internal := append(append([]uint32(nil), external...), ids(s.internalOnly, len(s.backends))...)
	for _, sc := range []struct {
		scope uint8
		ids   []uint32
	}{{maps.LBScopeExternal, external}, {maps.LBScopeInternal, internal}} {
		key := maps.LBKey{Addr: faddr, DPortNet: maps.HostToNet16(s.frontend.Port()), Proto: s.proto, Family: fam, Scope: sc.scope}
		for i, id := range sc.ids {
			key.Slot = uint16(i + 1)
			if err := node.PutLBService(key, maps.LBService{BackendID: id}); err != nil {
				t.Fatal(err)
			}
		}
		key.Slot = 0
		if err := node.PutLBService(key, maps.LBService{Count: uint16(len(sc.ids)), RevNatID: s.revNat, Flags: s.flags}); err != nil {
			t.Fatal(err)
		}
	}
}

// npFrame is what the tests read back from a frame.
type npFrame struct {
	src, dst         netip.AddrPort
	ttl              uint8
	ipv4Options      []byte // IPv4: the options area
	destOpts         []byte // IPv6: the Destination Options header after the fixed header
	l4Proto          uint8
	csumErr          error
	srcMAC, dstMAC   []byte
	ipHeaderLen, len int
}

// npParse reads addresses, ports, TTL and options of an Ethernet frame with
// IPv4 or IPv6 (at most one Destination Options header) and TCP or UDP, and
// checks the IPv4 header checksum and the L4 checksum.
func npParse(t *testing.T, frame []byte) npFrame {
	t.Helper()
	var f npFrame
	if len(frame) < 14+20 {
		t.Fatalf("frame too short: %x", frame)
	}
	f.dstMAC, f.srcMAC, f.len = frame[0:6], frame[6:12], len(frame)
	ip := frame[14:]
	var pseudo []byte
	var l4 []byte
	switch binary.BigEndian.Uint16(frame[12:14]) {
	case 0x0800:
		ihl := int(ip[0]&0x0f) * 4
		tot := int(binary.BigEndian.Uint16(ip[2:4]))
		if ihl < 20 || tot < ihl || tot > len(ip) {
			t.Fatalf("bad IPv4 header: ihl %d total %d frame %d", ihl, tot, len(ip))
		}
		if fold(sum16(ip[:ihl])) != 0xffff {
			f.csumErr = fmt.Errorf("IPv4 header checksum wrong")
		}
		f.ipv4Options = append([]byte(nil), ip[20:ihl]...)
		f.ttl, f.l4Proto, f.ipHeaderLen = ip[8], ip[9], ihl
		src, dst := netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
		l4 = ip[ihl:tot]
		pseudo = append(append(append([]byte(nil), ip[12:20]...), 0, ip[9]), byte(len(l4)>>8), byte(len(l4)))
		f.src, f.dst = netip.AddrPortFrom(src, 0), netip.AddrPortFrom(dst, 0)
	case 0x86dd:
		plen := int(binary.BigEndian.Uint16(ip[4:6]))
		if 40+plen > len(ip) {
			t.Fatalf("bad IPv6 payload length %d", plen)
		}
		next, off := ip[6], 40
		if next == 60 {
			hl := (int(ip[41]) + 1) * 8
			f.destOpts = append([]byte(nil), ip[40:40+hl]...)
			next, off = ip[40], 40+hl
		}
		f.ttl, f.l4Proto, f.ipHeaderLen = ip[7], next, off
		src, dst := netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40]))
		l4 = ip[off : 40+plen]
		pseudo = append(append([]byte(nil), ip[8:40]...), 0, 0, byte(len(l4)>>8), byte(len(l4)), 0, 0, 0, next)
		f.src, f.dst = netip.AddrPortFrom(src, 0), netip.AddrPortFrom(dst, 0)
	default:
		t.Fatalf("not IP: %x", frame[12:14])
	}
	if len(l4) < 8 {
		t.Fatalf("no L4 header")
	}
	f.src = netip.AddrPortFrom(f.src.Addr(), binary.BigEndian.Uint16(l4[0:2]))
	f.dst = netip.AddrPortFrom(f.dst.Addr(), binary.BigEndian.Uint16(l4[2:4]))
	if (f.l4Proto == 6 || f.l4Proto == 17) && fold(sum16(pseudo)+sum16(l4)) != 0xffff && f.csumErr == nil {
		f.csumErr = fmt.Errorf("L4 checksum wrong")
	}
	return f
}

func sum16(b []byte) uint32 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	return s
}

func fold(s uint32) uint16 {
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// npCheck fails the test unless f goes from src to dst with valid
// checksums.
func npCheck(t *testing.T, what string, f npFrame, src, dst netip.AddrPort) {
	t.Helper()
	if f.src != src || f.dst != dst {
		t.Errorf("%s: %s -> %s, want %s -> %s", what, f.src, f.dst, src, dst)
	}
	if f.csumErr != nil {
		t.Errorf("%s: %v", what, f.csumErr)
	}
}

// npTrace checks r's code and single trace (observation point, ifindex).
func npTrace(t *testing.T, r testrun.Result, code int, obs events.ObservationPoint, ifindex uint32) events.Event {
	t.Helper()
	tr := ovTrace(t, r)
	if r.Code != code || tr.ObservationPoint != obs || tr.Ifindex != ifindex {
		t.Fatalf("%s: code %d trace %v: want code %d, %s on ifindex %d", r.Program, r.Code, tr, code, obs, ifindex)
	}
	return tr
}

// npHost returns node 1's harness (ovHarness with tunnel device tunnel, 0:
// native routing), its local pod and its uplink programs.
func npHost(t *testing.T, tunnel uint32) (*testrun.Harness, *testrun.Endpoint, *datapath.Host) {
	t.Helper()
	h, ep := ovHarness(t, tunnel, datapath.Settings{})
	host, err := h.LoadHost()
	if err != nil {
		t.Fatalf("load host: %v", err)
	}
	return h, ep, host
}

func npTCP(src, dst netip.AddrPort, flags testrun.TCPFlags) []byte {
	return testrun.TCP(src, dst, flags, nil)
}

// TestNodePortLocalBackend: an outside client's packets to a NodePort, an
// externalIP or a LoadBalancer IP whose backend is on this node are
// translated to the backend, client address kept, delivered to the pod
// with the client's identity; the backend's replies leave through to_netdev
// with the frontend as source. The connection stays on its backend.
func TestNodePortLocalBackend(t *testing.T) {
	for _, tc := range []struct {
		name     string
		client   netip.Addr
		frontend netip.AddrPort
		backend  netip.AddrPort
		flags    uint8
	}{
		{"NodePort IPv4", npClient, netip.AddrPortFrom(ovNode1, npNodePort), netip.AddrPortFrom(ovLocalV4, npTargetPort), maps.LBFlagNodePort | maps.LBFlagExternal},
		{"NodePort IPv6", npClientV6, netip.AddrPortFrom(ovNode1v6, npNodePort), netip.AddrPortFrom(ovLocalV6, npTargetPort), maps.LBFlagNodePort | maps.LBFlagExternal},
		{"externalIP", npClient, netip.AddrPortFrom(npExternalIP, 80), netip.AddrPortFrom(ovLocalV4, npTargetPort), maps.LBFlagExternal},
		{"NodePort eTP Local", npClient, netip.AddrPortFrom(ovNode1, npNodePort), netip.AddrPortFrom(ovLocalV4, npTargetPort), maps.LBFlagNodePort | maps.LBFlagExternal | maps.LBFlagLocal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, ep, host := npHost(t, ovTunnelIfindex)
			npPut(t, h.Node, npService{frontend: tc.frontend, proto: testrun.ProtoTCP, revNat: 7, flags: tc.flags,
				backends: []netip.AddrPort{tc.backend}})
			client := netip.AddrPortFrom(tc.client, 40000)
			for i, flags := range []testrun.TCPFlags{testrun.SYN, testrun.ACK} {
				r, err := h.FromNetdev(host, npTCP(client, tc.frontend, flags))
				if err != nil {
					t.Fatal(err)
				}
				tr := npTrace(t, r, testrun.ActRedirect, events.ObsToEndpoint, ep.Spec.Ifindex)
				if tr.SrcIdentity != maps.IdentityWorld || tr.DstIdentity != ovIDLocal {
					t.Errorf("packet %d: trace %v: want world -> %d", i, tr, ovIDLocal)
				}
				if r.Mark != maps.IdentityMark(maps.IdentityWorld) {
					t.Errorf("packet %d: mark %#x, want the world identity's", i, r.Mark)
				}
				npCheck(t, "to the backend", npParse(t, r.Packet), client, tc.backend)
				ovDelivered(t, r.Packet, ep)
				p, err := h.Deliver(r)
				if err != nil {
					t.Fatal(err)
				}
				if !p.Delivered {
					t.Fatalf("packet %d not delivered: %s", i, p)
				}
			}
			// The backend answers; its reply leaves through the uplink.
			reply := npTCP(tc.backend, client, testrun.SYN|testrun.ACK)
			r, err := ep.FromContainer(reply)
			if err != nil {
				t.Fatal(err)
			}
			if r.Code != testrun.ActOK {
				t.Fatalf("from_container: %s", r)
			}
			r, err = h.ToNetdev(host, r.Packet)
			if err != nil {
				t.Fatal(err)
			}
			npTrace(t, r, testrun.ActOK, events.ObsToNetwork, ovUplinkIfindex)
			npCheck(t, "reply", npParse(t, r.Packet), tc.frontend, client)
		})
	}
}

// TestNodePortSNAT: a remote backend in SNAT mode: the source becomes the
// node (client port kept), the packet is encapsulated with VNI remote-node
// to the backend's node (tunnel mode) or routed out of the uplink (native
// routing); the backend's replies arriving at the uplink are translated
// back (source the frontend, destination the client) and routed out of the
// uplink. A second client with the same port gets another port.
func TestNodePortSNAT(t *testing.T) {
	for _, tc := range []struct {
		name     string
		tunnel   uint32
		client   netip.Addr
		client2  netip.Addr
		frontend netip.AddrPort
		backend  netip.AddrPort
		node     netip.Addr
	}{
		{"tunnel IPv4", ovTunnelIfindex, npClient, npClient2, netip.AddrPortFrom(ovNode1, npNodePort), netip.AddrPortFrom(ovRemoteV4, npTargetPort), ovNode1},
		{"tunnel IPv6", ovTunnelIfindex, npClientV6, netip.MustParseAddr("2001:db8::8"), netip.AddrPortFrom(ovNode1v6, npNodePort), netip.AddrPortFrom(ovRemoteV6, npTargetPort), ovNode1v6},
		{"native IPv4", 0, npClient, npClient2, netip.AddrPortFrom(ovNode1, npNodePort), netip.AddrPortFrom(ovRemoteV4, npTargetPort), ovNode1},
		{"native externalIP", 0, npClient, npClient2, netip.AddrPortFrom(npExternalIP, 443), netip.AddrPortFrom(ovRemoteV4, npTargetPort), ovNode1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, _, host := npHost(t, tc.tunnel)
			npPut(t, h.Node, npService{frontend: tc.frontend, proto: testrun.ProtoTCP, revNat: 8,
				flags: maps.LBFlagNodePort | maps.LBFlagExternal, backends: []netip.AddrPort{tc.backend}})

			forward := func(client netip.AddrPort, flags testrun.TCPFlags) npFrame {
				t.Helper()
				r, err := h.FromNetdev(host, npTCP(client, tc.frontend, flags))
				if err != nil {
					t.Fatal(err)
				}
				if tc.tunnel != 0 {
					tr := npTrace(t, r, testrun.ActRedirect, events.ObsToOverlay, ovTunnelIfindex)
					if tr.TunnelID != ovIDRemoteNode || tr.TunnelEndpoint != ovNode2 {
						t.Errorf("trace %v: want VNI %d to %s", tr, ovIDRemoteNode, ovNode2)
					}
				} else {
					npTrace(t, r, testrun.ActRedirect, events.ObsToNetwork, ovUplinkIfindex)
				}
				f := npParse(t, r.Packet)
				if f.ttl != 63 {
					t.Errorf("TTL %d, want 63 (routed)", f.ttl)
				}
				return f
			}
			back := func(from, to, wantDst netip.AddrPort) {
				t.Helper()
				r, err := h.FromNetdev(host, npTCP(from, to, testrun.SYN|testrun.ACK))
				if err != nil {
					t.Fatal(err)
				}
				tr := npTrace(t, r, testrun.ActRedirect, events.ObsToNetwork, ovUplinkIfindex)
				if tr.DstIdentity != maps.IdentityWorld {
					t.Errorf("reply trace %v: want destination world", tr)
				}
				npCheck(t, "reply", npParse(t, r.Packet), tc.frontend, wantDst)
			}

			c1 := netip.AddrPortFrom(tc.client, 40000)
			f := forward(c1, testrun.SYN)
			npCheck(t, "SNATed", f, netip.AddrPortFrom(tc.node, 40000), tc.backend)
			if f2 := forward(c1, testrun.ACK); f2.src != f.src || f2.dst != f.dst {
				t.Errorf("second packet %s -> %s, want the first's %s -> %s", f2.src, f2.dst, f.src, f.dst)
			}
			back(tc.backend, f.src, c1)

			// Same client port from another client: another node port.
			c2 := netip.AddrPortFrom(tc.client2, 40000)
			g := forward(c2, testrun.SYN)
			if g.src.Addr() != tc.node || g.src.Port() == 40000 || g.src.Port() < 32768 || g.src.Port() > 60999 {
				t.Errorf("second client SNATed to %s, want %s with a port of 32768-60999 other than 40000", g.src, tc.node)
			}
			back(tc.backend, g.src, c2)
			back(tc.backend, f.src, c1)

			// Not a reply of a translated connection: untouched.
			stray := npTCP(tc.backend, netip.AddrPortFrom(tc.node, 50001), testrun.ACK)
			r, err := h.FromNetdev(host, stray)
			if err != nil {
				t.Fatal(err)
			}
			if r.Code != testrun.ActOK || !bytes.Equal(r.Packet, stray) {
				t.Errorf("stray packet: code %d, changed %v, want passed unchanged", r.Code, !bytes.Equal(r.Packet, stray))
			}
		})
	}
}

// TestNodePortNoBackend: a connection from the network to a frontend
// without any backend is rejected as Kubernetes expects (a TCP RST or an
// ICMP port unreachable from the frontend, back out of the uplink to the
// hop it came from) with a NO_SERVICE drop event; an externalTrafficPolicy
// Local frontend without a local backend drops it (no rejection).
func TestNodePortNoBackend(t *testing.T) {
	for _, tc := range []struct {
		name   string
		svc    npService
		reject bool
	}{
		{"no backend", npService{frontend: netip.AddrPortFrom(ovNode1, npNodePort), proto: testrun.ProtoTCP, revNat: 9,
			flags: maps.LBFlagNodePort | maps.LBFlagExternal}, true},
		{"eTP Local without local backend", npService{frontend: netip.AddrPortFrom(ovNode1, npNodePort), proto: testrun.ProtoTCP, revNat: 9,
			flags: maps.LBFlagNodePort | maps.LBFlagExternal | maps.LBFlagLocal, internalOnly: []netip.AddrPort{netip.AddrPortFrom(ovRemoteV4, npTargetPort)}}, false},
		{"UDP externalIP without backend", npService{frontend: netip.AddrPortFrom(npExternalIP, 53), proto: testrun.ProtoUDP, revNat: 9,
			flags: maps.LBFlagExternal}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, _, host := npHost(t, ovTunnelIfindex)
			npPut(t, h.Node, tc.svc)
			client := netip.AddrPortFrom(npClient, 40000)
			pkt := npTCP(client, tc.svc.frontend, testrun.SYN)
			if tc.svc.proto == testrun.ProtoUDP {
				pkt = testrun.UDP(client, tc.svc.frontend, []byte("q"))
			}
			r, err := h.FromNetdev(host, pkt)
			if err != nil {
				t.Fatal(err)
			}
			if !tc.reject {
				d := ovExpectDrop(t, r, dropreason.NoService, maps.IdentityWorld)
				if d.ObservationPoint != events.ObsFromNetwork || d.Ifindex != ovUplinkIfindex {
					t.Errorf("drop %v: want FROM_NETWORK on ifindex %d", d, ovUplinkIfindex)
				}
				return
			}
			if r.Code != testrun.ActRedirect {
				t.Fatalf("code %d, want TC_ACT_REDIRECT (the rejection): %v", r.Code, r.Events)
			}
			d, ok := r.Drop()
			if !ok || len(r.Events) != 1 || d.Reason != dropreason.NoService {
				t.Fatalf("want exactly one NO_SERVICE drop event, got %v", r.Events)
			}
			if !bytes.Equal(r.Packet[0:6], pkt[6:12]) || !bytes.Equal(r.Packet[6:12], pkt[0:6]) {
				t.Errorf("rejection MACs %x -> %x, want the packet's swapped", r.Packet[6:12], r.Packet[0:6])
			}
			out := gopacket.NewPacket(r.Packet, layers.LayerTypeEthernet, gopacket.Default)
			ip, _ := out.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
			if ip == nil || !ip.SrcIP.Equal(tc.svc.frontend.Addr().AsSlice()) || !ip.DstIP.Equal(client.Addr().AsSlice()) {
				t.Fatalf("rejection is not IPv4 frontend -> client: %v", out)
			}
			if tc.svc.proto == testrun.ProtoTCP {
				tcp, _ := out.Layer(layers.LayerTypeTCP).(*layers.TCP)
				if tcp == nil || !tcp.RST || uint16(tcp.SrcPort) != tc.svc.frontend.Port() || uint16(tcp.DstPort) != client.Port() {
					t.Fatalf("want a RST from the frontend's port to the client's: %v", out)
				}
				return
			}
			icmp, _ := out.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
			if icmp == nil || icmp.TypeCode != layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodePort) {
				t.Fatalf("want an ICMP port unreachable: %v", out)
			}
		})
	}
}

// TestNodePortDSR: a remote backend in DSR mode: only the destination is
// translated, the frontend travels in an IPv4 option or an IPv6
// Destination Options header, and the packet is routed out of the uplink
// (in tunnel mode too). At the backend's node the packet is delivered with
// the client's identity and to_container finds the frontend (dsr.h): the
// backend's reply leaves its node with the frontend as source, straight
// to the client.
func TestNodePortDSR(t *testing.T) {
	for _, tc := range []struct {
		name     string
		client   netip.Addr
		frontend netip.AddrPort
		backend  netip.AddrPort
		node2    netip.Addr
		wantOpts func(fe netip.AddrPort) []byte
	}{
		{"IPv4", npClient, netip.AddrPortFrom(ovNode1, npNodePort), netip.AddrPortFrom(ovRemoteV4, npTargetPort), ovNode2,
			func(fe netip.AddrPort) []byte {
				a := fe.Addr().As4()
				return []byte{0x9a, 8, byte(fe.Port() >> 8), byte(fe.Port()), a[0], a[1], a[2], a[3]}
			}},
		{"IPv6", npClientV6, netip.AddrPortFrom(ovNode1v6, npNodePort), netip.AddrPortFrom(ovRemoteV6, npTargetPort), netip.MustParseAddr("fd99::2"),
			func(fe netip.AddrPort) []byte {
				a := fe.Addr().As16()
				out := []byte{6 /* TCP */, 2, 0x1b, 20}
				out = append(out, a[:]...)
				return append(out, byte(fe.Port()>>8), byte(fe.Port()), 0, 0)
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc := npService{frontend: tc.frontend, proto: testrun.ProtoTCP, revNat: 11,
				flags: maps.LBFlagNodePort | maps.LBFlagExternal | maps.LBFlagDSR, backends: []netip.AddrPort{tc.backend}}
			h, _, host := npHost(t, ovTunnelIfindex)
			npPut(t, h.Node, svc)
			client := netip.AddrPortFrom(tc.client, 40000)
			in := npTCP(client, tc.frontend, testrun.SYN)
			r, err := h.FromNetdev(host, in)
			if err != nil {
				t.Fatal(err)
			}
			tr := npTrace(t, r, testrun.ActRedirect, events.ObsToNetwork, ovUplinkIfindex)
			if tr.SrcIdentity != maps.IdentityWorld || tr.DstIdentity != ovIDRemote || tr.TunnelID != 0 {
				t.Errorf("trace %v: want world -> %d, not encapsulated", tr, ovIDRemote)
			}
			f := npParse(t, r.Packet)
			npCheck(t, "DSR", f, client, tc.backend)
			opts := f.ipv4Options
			extra := 8
			if tc.client.Is6() {
				opts, extra = f.destOpts, 24
			}
			if want := tc.wantOpts(tc.frontend); !bytes.Equal(opts, want) {
				t.Errorf("DSR information %x, want %x", opts, want)
			}
			if f.len != len(in)+extra || f.ttl != 63 {
				t.Errorf("length %d TTL %d, want %d and 63", f.len, f.ttl, len(in)+extra)
			}
			// The kernel's own parser accepts it.
			if pk := gopacket.NewPacket(r.Packet, layers.LayerTypeEthernet, gopacket.Default); pk.ErrorLayer() != nil {
				t.Errorf("gopacket: %v", pk.ErrorLayer().Error())
			}

			// The backend's node: its uplink delivers the packet to the
			// backend pod with the client's identity.
			h2 := testrun.NewForTest(t, testrun.Options{Node: datapath.NodeOptions{Config: datapath.NodeConfig{
				IPv4: ovNode2, IPv6: tc.node2, UplinkIfindex: ovUplinkIfindex, TunnelIfindex: ovTunnelIfindex,
			}}})
			be, err := h2.AddEndpoint(testrun.EndpointSpec{ID: 5, Identity: npIDBackend, IPv4: ovRemoteV4, IPv6: ovRemoteV6})
			if err != nil {
				t.Fatal(err)
			}
			npPut(t, h2.Node, svc)
			host2, err := h2.LoadHost()
			if err != nil {
				t.Fatal(err)
			}
			r, err = h2.FromNetdev(host2, r.Packet)
			if err != nil {
				t.Fatal(err)
			}
			npTrace(t, r, testrun.ActRedirect, events.ObsToEndpoint, be.Spec.Ifindex)
			p, err := h2.Deliver(r)
			if err != nil {
				t.Fatal(err)
			}
			if !p.Delivered {
				t.Fatalf("not delivered to the backend: %s", p)
			}
			if tr := ovTrace(t, p.Hops[len(p.Hops)-1]); tr.SrcIdentity != maps.IdentityWorld {
				t.Errorf("to_container trace %v: want source identity world", tr)
			}
			// The backend replies: from_container translates the source
			// back to the frontend, and the reply goes to the stack (not
			// through node 1).
			r, err = be.FromContainer(npTCP(tc.backend, client, testrun.SYN|testrun.ACK))
			if err != nil {
				t.Fatal(err)
			}
			npTrace(t, r, testrun.ActOK, events.ObsToStack, 0)
			npCheck(t, "DSR reply", npParse(t, r.Packet), tc.frontend, client)
		})
	}
}

// TestNodePortDSRNoRoom: an IPv4 packet whose options area is full cannot
// carry the DSR option: it is forwarded in SNAT mode instead.
func TestNodePortDSRNoRoom(t *testing.T) {
	h, _, host := npHost(t, 0)
	frontend := netip.AddrPortFrom(ovNode1, npNodePort)
	backend := netip.AddrPortFrom(ovRemoteV4, npTargetPort)
	npPut(t, h.Node, npService{frontend: frontend, proto: testrun.ProtoTCP, revNat: 12,
		flags: maps.LBFlagNodePort | maps.LBFlagExternal | maps.LBFlagDSR, backends: []netip.AddrPort{backend}})
	client := netip.AddrPortFrom(npClient, 40000)
	nops := make([]layers.IPv4Option, 36)
	for i := range nops {
		nops[i] = layers.IPv4Option{OptionType: 1, OptionLength: 1}
	}
	nops = append(nops, layers.IPv4Option{OptionType: 0, OptionLength: 1}) // EOL: 37 bytes, padded to 40
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: client.Addr().AsSlice(), DstIP: frontend.Addr().AsSlice(), Options: nops}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(client.Port()), DstPort: layers.TCPPort(frontend.Port()), SYN: true, Window: 1024}
	tcp.SetNetworkLayerForChecksum(ip)
	pkt := testrun.Serialize(&layers.Ethernet{SrcMAC: testrun.DefaultSrcMAC, DstMAC: testrun.DefaultDstMAC, EthernetType: layers.EthernetTypeIPv4}, ip, tcp)
	if pkt[14]&0x0f != 15 {
		t.Fatalf("test packet IHL %d, want 15", pkt[14]&0x0f)
	}
	r, err := h.FromNetdev(host, pkt)
	if err != nil {
		t.Fatal(err)
	}
	npTrace(t, r, testrun.ActRedirect, events.ObsToNetwork, ovUplinkIfindex)
	f := npParse(t, r.Packet)
	npCheck(t, "SNAT fallback", f, netip.AddrPortFrom(ovNode1, 40000), backend)
	if len(f.ipv4Options) != 40 || f.ipv4Options[0] != 1 {
		t.Errorf("options %x: want the client's 40 bytes", f.ipv4Options)
	}
}

// TestNodePortUDP: UDP through a NodePort in SNAT mode, both ways.
func TestNodePortUDP(t *testing.T) {
	h, _, host := npHost(t, 0)
	frontend := netip.AddrPortFrom(ovNode1, 30053)
	backend := netip.AddrPortFrom(ovRemoteV4, 53)
	npPut(t, h.Node, npService{frontend: frontend, proto: testrun.ProtoUDP, revNat: 13,
		flags: maps.LBFlagNodePort | maps.LBFlagExternal, backends: []netip.AddrPort{backend}})
	client := netip.AddrPortFrom(npClient, 5353)
	r, err := h.FromNetdev(host, testrun.UDP(client, frontend, []byte("query")))
	if err != nil {
		t.Fatal(err)
	}
	npTrace(t, r, testrun.ActRedirect, events.ObsToNetwork, ovUplinkIfindex)
	f := npParse(t, r.Packet)
	npCheck(t, "request", f, netip.AddrPortFrom(ovNode1, 5353), backend)
	r, err = h.FromNetdev(host, testrun.UDP(backend, f.src, []byte("answer")))
	if err != nil {
		t.Fatal(err)
	}
	npTrace(t, r, testrun.ActRedirect, events.ObsToNetwork, ovUplinkIfindex)
	npCheck(t, "response", npParse(t, r.Packet), frontend, client)
}

// TestNodePortPinned: with several backends, every packet of a connection
// goes to the backend its first packet got (the conntrack service entry),
// and connections from many client ports spread over the backends; when
// the pinned backend is removed, the connection moves to a remaining one.
func TestNodePortPinned(t *testing.T) {
	h, _, host := npHost(t, 0)
	frontend := netip.AddrPortFrom(ovNode1, npNodePort)
	backends := []netip.AddrPort{netip.AddrPortFrom(ovRemoteV4, 8080), netip.AddrPortFrom(ovRemoteV4, 8081), netip.AddrPortFrom(ovRemoteV4, 8082)}
	svc := npService{frontend: frontend, proto: testrun.ProtoTCP, revNat: 14,
		flags: maps.LBFlagNodePort | maps.LBFlagExternal, backends: backends}
	npPut(t, h.Node, svc)
	send := func(port uint16, flags testrun.TCPFlags) netip.AddrPort {
		t.Helper()
		r, err := h.FromNetdev(host, npTCP(netip.AddrPortFrom(npClient, port), frontend, flags))
		if err != nil {
			t.Fatal(err)
		}
		npTrace(t, r, testrun.ActRedirect, events.ObsToNetwork, ovUplinkIfindex)
		return npParse(t, r.Packet).dst
	}
	seen := map[netip.AddrPort]int{}
	for port := uint16(41000); port < 41030; port++ {
		first := send(port, testrun.SYN)
		seen[first]++
		for i := 0; i < 3; i++ {
			if got := send(port, testrun.ACK); got != first {
				t.Fatalf("client port %d: packet %d went to %s, the connection is on %s", port, i+2, got, first)
			}
		}
	}
	if len(seen) < 2 {
		t.Errorf("30 connections all went to %v, want them spread", seen)
	}

	// Remove the backend of client port 41000's connection (npPut gave
	// backend i the id revNat*100+i+1): make before break, the remaining
	// ones in slots 1 and 2, then slot 0's count, then the backend.
	pinned := send(41000, testrun.ACK)
	var remaining []netip.AddrPort
	var remainingIDs []uint32
	pinnedID := uint32(0)
	for i, b := range backends {
		id := svc.revNat*100 + uint32(i) + 1
		if b == pinned {
			pinnedID = id
			continue
		}
		remaining, remainingIDs = append(remaining, b), append(remainingIDs, id)
	}
	fam, faddr := maps.AddrBytes(frontend.Addr())
	for _, sc := range []uint8{maps.LBScopeExternal, maps.LBScopeInternal} {
		key := maps.LBKey{Addr: faddr, DPortNet: maps.HostToNet16(frontend.Port()), Proto: testrun.ProtoTCP, Family: fam, Scope: sc}
		for i, id := range remainingIDs {
			key.Slot = uint16(i + 1)
			if err := h.Node.PutLBService(key, maps.LBService{BackendID: id}); err != nil {
				t.Fatal(err)
			}
		}
		key.Slot = 0
		if err := h.Node.PutLBService(key, maps.LBService{Count: 2, RevNatID: svc.revNat, Flags: svc.flags}); err != nil {
			t.Fatal(err)
		}
		key.Slot = 3
		if err := h.Node.DeleteLBService(key); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.Node.DeleteLBBackend(pinnedID); err != nil {
		t.Fatal(err)
	}
	if got := send(41000, testrun.ACK); got == pinned || (got != remaining[0] && got != remaining[1]) {
		t.Errorf("after its backend %s went, the connection went to %s, want one of %v", pinned, got, remaining)
	}
}

// TestNodePortTraceLevel: under TraceConnectionEvents only the packet that
// chose the backend is traced; later packets of the connection and the
// translated replies are not.
func TestNodePortTraceLevel(t *testing.T) {
	h, _ := ovHarness(t, 0, datapath.Settings{TraceLevel: datapath.TraceConnectionEvents})
	host, err := h.LoadHost()
	if err != nil {
		t.Fatal(err)
	}
	frontend := netip.AddrPortFrom(ovNode1, npNodePort)
	backend := netip.AddrPortFrom(ovRemoteV4, npTargetPort)
	npPut(t, h.Node, npService{frontend: frontend, proto: testrun.ProtoTCP, revNat: 15,
		flags: maps.LBFlagNodePort | maps.LBFlagExternal, backends: []netip.AddrPort{backend}})
	client := netip.AddrPortFrom(npClient, 40000)
	for i, tc := range []struct {
		pkt    []byte
		events int
	}{
		{npTCP(client, frontend, testrun.SYN), 1},
		{npTCP(backend, netip.AddrPortFrom(ovNode1, 40000), testrun.SYN|testrun.ACK), 0},
		{npTCP(client, frontend, testrun.ACK), 0},
	} {
		r, err := h.FromNetdev(host, tc.pkt)
		if err != nil {
			t.Fatal(err)
		}
		if r.Code != testrun.ActRedirect || len(r.Events) != tc.events {
			t.Errorf("packet %d: code %d events %v, want a redirect with %d events", i, r.Code, r.Events, tc.events)
		}
	}
}

// npRealNode is one node of the real-traffic topology.
type npRealNode struct {
	ns      netns.NsHandle
	node    *datapath.Node
	ifindex int // eth0, the uplink
	rd      *events.Reader
}

// npRealLink connects ns to the fabric's bridge: a veth with eth0 (mac,
// addr) in ns and its peer in the fabric. Returns eth0's ifindex.
func npRealLink(t *testing.T, fabric netns.NsHandle, br *netlink.Bridge, ns netns.NsHandle, name string, mac net.HardwareAddr, addr netip.Prefix) int {
	t.Helper()
	fh, err := netlink.NewHandleAt(fabric)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	nh, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer nh.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, MasterIndex: br.Index}, PeerName: "eth0",
		PeerHardwareAddr: mac, PeerNamespace: netlink.NsFd(int(ns))}
	if err := fh.LinkAdd(veth); err != nil {
		t.Fatalf("add veth %s: %v", name, err)
	}
	if err := fh.LinkSetUp(veth); err != nil {
		t.Fatal(err)
	}
	eth0, err := nh.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	lo, err := nh.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []netlink.Link{eth0, lo} {
		if err := nh.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	if err := nh.AddrAdd(eth0, &netlink.Addr{IPNet: &net.IPNet{IP: addr.Addr().AsSlice(), Mask: net.CIDRMask(addr.Bits(), 32)}}); err != nil {
		t.Fatal(err)
	}
	return eth0.Attrs().Index
}

// npSysctls sets net sysctls inside ns.
func npSysctls(t *testing.T, ns netns.NsHandle, kv map[string]string) {
	t.Helper()
	err := netnstest.Do(ns, func() error {
		for k, v := range kv {
			if err := os.WriteFile("/proc/sys/net/"+k, []byte(v), 0o644); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("sysctl: %v", err)
	}
}

// npRealNodeAt loads a datapath for the node in ns (address addr, uplink
// ifindex) and attaches its uplink programs.
func npRealNodeAt(t *testing.T, ns netns.NsHandle, addr netip.Addr, ifindex int) *npRealNode {
	t.Helper()
	node, err := datapath.NewNode(datapath.NodeOptions{Config: datapath.NodeConfig{IPv4: addr, UplinkIfindex: uint32(ifindex)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	rd, err := events.NewReader(node.Maps[datapath.MapEvents])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rd.Close() })
	host, err := node.LoadHost(datapath.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { host.Close() })
	if err := netnstest.Do(ns, func() error { return host.Attach(ifindex, "") }); err != nil {
		t.Fatalf("attach host programs: %v", err)
	}
	t.Cleanup(func() { host.Detach() })
	return &npRealNode{ns: ns, node: node, ifindex: ifindex, rd: rd}
}

// TestNodePortRealTraffic: real TCP connections from a client through a
// NodePort of node 1 to a backend pod on node 2, with every program
// attached (tcx) and the nodes, the client and a bridge in their own
// network namespaces. SNAT: the backend sees node 1 as the client, and the
// reply goes back through node 1. DSR: the backend sees the client, and
// node 2 answers the client directly. The client's socket only accepts a
// reply from node1:nodePort, so a completed connection shows the reply was
// translated.
func TestNodePortRealTraffic(t *testing.T) {
	testrun.RequirePrivileges(t)
	var (
		clientAddr = netip.MustParseAddr("192.168.50.100")
		node1Addr  = netip.MustParseAddr("192.168.50.1")
		node2Addr  = netip.MustParseAddr("192.168.50.2")
		podAddr    = netip.MustParseAddr("10.1.0.5")
		frontend   = netip.AddrPortFrom(node1Addr, npNodePort)
		backend    = netip.AddrPortFrom(podAddr, npTargetPort)
	)
	for _, tc := range []struct {
		name     string
		flags    uint8
		wantPeer netip.Addr // the client address the backend sees
	}{
		{"SNAT", maps.LBFlagNodePort | maps.LBFlagExternal, node1Addr},
		{"DSR", maps.LBFlagNodePort | maps.LBFlagExternal | maps.LBFlagDSR, clientAddr},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fabric, clientNS, n1NS, n2NS := netnstest.NewNetns(t), netnstest.NewNetns(t), netnstest.NewNetns(t), netnstest.NewNetns(t)
			fh, err := netlink.NewHandleAt(fabric)
			if err != nil {
				t.Fatal(err)
			}
			defer fh.Close()
			br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
			if err := fh.LinkAdd(br); err != nil {
				t.Fatal(err)
			}
			if err := fh.LinkSetUp(br); err != nil {
				t.Fatal(err)
			}
			npRealLink(t, fabric, br, clientNS, "c", net.HardwareAddr{2, 0xc, 0, 0, 0, 1}, netip.PrefixFrom(clientAddr, 24))
			if1 := npRealLink(t, fabric, br, n1NS, "n1", net.HardwareAddr{2, 0xa, 0, 0, 0, 1}, netip.PrefixFrom(node1Addr, 24))
			if2 := npRealLink(t, fabric, br, n2NS, "n2", net.HardwareAddr{2, 0xa, 0, 0, 0, 2}, netip.PrefixFrom(node2Addr, 24))
			for _, ns := range []netns.NsHandle{n1NS, n2NS} {
				npSysctls(t, ns, map[string]string{"ipv4/ip_forward": "1", "ipv4/conf/all/rp_filter": "0", "ipv4/conf/default/rp_filter": "0"})
			}
			// Node 1 routes the pods of node 2 via node 2.
			n1h, err := netlink.NewHandleAt(n1NS)
			if err != nil {
				t.Fatal(err)
			}
			defer n1h.Close()
			if err := n1h.RouteAdd(&netlink.Route{LinkIndex: if1, Dst: &net.IPNet{IP: net.IP{10, 1, 0, 0}, Mask: net.CIDRMask(16, 32)}, Gw: node2Addr.AsSlice()}); err != nil {
				t.Fatalf("route on node 1: %v", err)
			}

			n1 := npRealNodeAt(t, n1NS, node1Addr, if1)
			n2 := npRealNodeAt(t, n2NS, node2Addr, if2)
			pod := netnstest.AddPod(t, n2NS, netnstest.PodSpec{HostIfName: "lxc1", IPv4: podAddr,
				MAC: net.HardwareAddr{2, 0, 0, 0, 0, 5}, HostMAC: net.HardwareAddr{2, 0, 0, 0xff, 0, 5}})
			npSysctls(t, n2NS, map[string]string{"ipv4/conf/lxc1/rp_filter": "0"})
			ep, err := n2.node.LoadEndpoint(datapath.EndpointConfig{ID: 5, Identity: npIDBackend, Ifindex: uint32(pod.HostIfindex), IPv4: podAddr}, datapath.Settings{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ep.Close() })
			info := maps.EndpointInfo{Ifindex: uint32(pod.HostIfindex), EndpointID: 5, Identity: npIDBackend}
			copy(info.MAC[:], pod.Spec.MAC)
			copy(info.NodeMAC[:], pod.Spec.HostMAC)
			ek := maps.NewAddrKey(podAddr)
			if err := n2.node.Maps[datapath.MapEndpoints].Put(&ek, &info); err != nil {
				t.Fatal(err)
			}
			if err := ep.SetEnforcement(false, false); err != nil {
				t.Fatal(err)
			}
			if err := netnstest.Do(n2NS, func() error { return ep.Attach(pod.HostIfindex, "") }); err != nil {
				t.Fatalf("attach endpoint: %v", err)
			}
			t.Cleanup(func() { ep.Detach() })
			svc := npService{frontend: frontend, proto: testrun.ProtoTCP, revNat: 20, flags: tc.flags, backends: []netip.AddrPort{backend}}
			for _, n := range []*npRealNode{n1, n2} {
				if err := n.node.SetIPCache(netip.PrefixFrom(podAddr, 32), maps.IPCacheEntry{Identity: npIDBackend}); err != nil {
					t.Fatal(err)
				}
				npPut(t, n.node, svc)
			}
			for _, p := range []struct {
				n  *npRealNode
				a  netip.Addr
				id uint32
			}{{n1, node2Addr, ovIDRemoteNode}, {n2, node1Addr, ovIDRemoteNode}} {
				if err := p.n.node.SetIPCache(netip.PrefixFrom(p.a, 32), maps.IPCacheEntry{Identity: p.id}); err != nil {
					t.Fatal(err)
				}
			}

			// The backend tells the client whom it sees.
			var ln net.Listener
			if err := netnstest.Do(pod.NS, func() error {
				var err error
				ln, err = net.Listen("tcp", backend.String())
				return err
			}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					c.Write([]byte(c.RemoteAddr().String()))
					c.Close()
				}
			}()

			got, err := netnstest.Dial(clientNS, frontend, 3*time.Second)
			if err != nil {
				for _, n := range []*npRealNode{n1, n2} {
					evs, _ := n.rd.Drain()
					t.Logf("events of the node at %d: %v", n.ifindex, evs)
				}
				t.Fatalf("connect to %s: %v", frontend, err)
			}
			seen, err := netip.ParseAddrPort(got)
			if err != nil || seen.Addr() != tc.wantPeer {
				t.Fatalf("the backend saw %q, want %s", got, tc.wantPeer)
			}
		})
	}
}
