package testrun_test

// Cross-node tests: from_container encapsulating towards a remote node
// (tunnel mode) or passing to the stack (native routing), from_overlay
// (through the tunnel shim) delivering with the VNI's identity, and the
// uplink programs (host.c). Helpers are prefixed ov.

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket/layers"

	"github.com/ciliaproject/cilia/datapath"
	"github.com/ciliaproject/cilia/datapath/dropreason"
	"github.com/ciliaproject/cilia/datapath/events"
	"github.com/ciliaproject/cilia/datapath/maps"
	"github.com/ciliaproject/cilia/datapath/testrun"
)

const (
	ovTunnelIfindex uint32 = 7
	ovUplinkIfindex uint32 = 3
	ovIDLocal       uint32 = 1001     // the local pod
	ovIDRemote      uint32 = 2001     // what the ipcache says of the remote pods
	ovIDTunnel      uint32 = 0x0A0BB8 // an identity only the tunnel carries (bits 16-23 set)
	ovIDRemoteNode  uint32 = 6        // reserved:remote-node
)

var (
	ovNode1     = netip.MustParseAddr("192.168.0.1") // this node
	ovNode1v6   = netip.MustParseAddr("fd99::1")
	ovNode2     = netip.MustParseAddr("192.168.0.2") // the remote pods' node
	ovLocalV4   = netip.MustParseAddr("10.0.0.1")
	ovLocalV6   = netip.MustParseAddr("fd00::1")
	ovRemoteV4  = netip.MustParseAddr("10.1.0.5") // pod on node 2
	ovRemoteV6  = netip.MustParseAddr("fd00:1::5")
	ovOwnV4     = netip.MustParseAddr("10.0.0.9")     // tunnel endpoint is this node
	ovWorld     = netip.MustParseAddr("198.51.100.7") // not in the ipcache
	ovElsewhere = netip.MustParseAddr("10.2.0.9")     // routed, no local endpoint
)

// ovHarness returns a harness of node 1 (tunnel device tunnelIfindex, 0
// for native routing) with one local pod and the ipcache entries of two
// remote pods behind node 2.
func ovHarness(t *testing.T, tunnelIfindex uint32, s datapath.Settings) (*testrun.Harness, *testrun.Endpoint) {
	t.Helper()
	h := testrun.NewForTest(t, testrun.Options{
		Node: datapath.NodeOptions{Config: datapath.NodeConfig{
			IPv4: ovNode1, IPv6: ovNode1v6, UplinkIfindex: ovUplinkIfindex, TunnelIfindex: tunnelIfindex,
		}},
		Settings: s,
	})
	ep, err := h.AddEndpoint(testrun.EndpointSpec{ID: 1, Identity: ovIDLocal, IPv4: ovLocalV4, IPv6: ovLocalV6})
	if err != nil {
		t.Fatalf("add endpoint: %v", err)
	}
	tunnel := maps.IPCacheEntry{Identity: ovIDRemote, TunnelFamily: maps.FamilyIPv4}
	copy(tunnel.TunnelEndpoint[:], ovNode2.AsSlice())
	own := tunnel
	copy(own.TunnelEndpoint[:], ovNode1.AsSlice())
	for _, e := range []struct {
		addr  netip.Addr
		entry maps.IPCacheEntry
	}{
		{ovRemoteV4, tunnel},
		{ovRemoteV6, tunnel},
		{ovOwnV4, own},
		{ovNode2, maps.IPCacheEntry{Identity: ovIDRemoteNode}},
	} {
		if err := h.Node.SetIPCache(netip.PrefixFrom(e.addr, e.addr.BitLen()), e.entry); err != nil {
			t.Fatal(err)
		}
	}
	return h, ep
}

// ovShim loads from_overlay and a tunnel shim in front of it.
func ovShim(t *testing.T, h *testrun.Harness) *datapath.TunnelShim {
	t.Helper()
	ov, err := h.LoadOverlay()
	if err != nil {
		t.Fatalf("load overlay: %v", err)
	}
	shim, err := h.LoadTunnelShim(ov)
	if err != nil {
		t.Fatalf("load tunnel shim: %v", err)
	}
	return shim
}

// ovTrace returns the single trace of r, failing the test otherwise.
func ovTrace(t *testing.T, r testrun.Result) events.Event {
	t.Helper()
	if len(r.Events) != 1 {
		t.Fatalf("%s: %d events, want 1: %v", r.Program, len(r.Events), r.Events)
	}
	e, ok := r.Trace()
	if !ok {
		t.Fatalf("%s: no trace: %v", r.Program, r.Events)
	}
	return e
}

// ovExpectDrop checks that r dropped the packet with reason, reporting
// src identity, and returns the drop event.
func ovExpectDrop(t *testing.T, r testrun.Result, reason dropreason.Reason, src uint32) events.Event {
	t.Helper()
	if r.Code != testrun.ActShot {
		t.Fatalf("%s: code %d, want TC_ACT_SHOT: %v", r.Program, r.Code, r.Events)
	}
	d, ok := r.Drop()
	if !ok || len(r.Events) != 1 {
		t.Fatalf("%s: want exactly one drop event, got %v", r.Program, r.Events)
	}
	if d.Reason != reason || d.SrcIdentity != src {
		t.Fatalf("%s: drop %s src %d, want %s src %d", r.Program, d.Reason, d.SrcIdentity, reason, src)
	}
	return d
}

// ovDelivered checks that frame was rewritten for delivery to ep: its
// MACs and a TTL (hop limit) one below the original's 64.
func ovDelivered(t *testing.T, frame []byte, ep *testrun.Endpoint) {
	t.Helper()
	if !bytes.Equal(frame[0:6], ep.Spec.MAC) || !bytes.Equal(frame[6:12], ep.Spec.NodeMAC) {
		t.Errorf("MACs %x -> %x, want %s -> %s", frame[6:12], frame[0:6], ep.Spec.NodeMAC, ep.Spec.MAC)
	}
	ttl := frame[14+8] // IPv4 TTL
	if frame[12] == 0x86 {
		ttl = frame[14+7] // IPv6 hop limit
	}
	if ttl != 63 {
		t.Errorf("TTL %d, want 63", ttl)
	}
}

// TestEncapFromContainer: a pod's packet to a pod behind another node's
// tunnel endpoint is encapsulated (tunnel key set, redirect to the VXLAN
// device) in tunnel mode, with the pod's identity as the VNI; anything
// else, and everything in native routing, goes to the stack unchanged.
func TestEncapFromContainer(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tunnel  uint32
		src     netip.Addr
		dst     netip.Addr
		wantEnc bool
	}{
		{"tunnel IPv4 to remote pod", ovTunnelIfindex, ovLocalV4, ovRemoteV4, true},
		{"tunnel IPv6 over IPv4 underlay", ovTunnelIfindex, ovLocalV6, ovRemoteV6, true},
		{"tunnel endpoint is this node", ovTunnelIfindex, ovLocalV4, ovOwnV4, false},
		{"no tunnel endpoint (world)", ovTunnelIfindex, ovLocalV4, ovWorld, false},
		{"remote node itself", ovTunnelIfindex, ovLocalV4, ovNode2, false},
		{"native routing IPv4", 0, ovLocalV4, ovRemoteV4, false},
		{"native routing IPv6", 0, ovLocalV6, ovRemoteV6, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ep := ovHarness(t, tc.tunnel, datapath.Settings{})
			pkt := testrun.TCP(netip.AddrPortFrom(tc.src, 40000), netip.AddrPortFrom(tc.dst, 80), testrun.SYN, nil)
			r, err := ep.FromContainer(pkt)
			if err != nil {
				t.Fatal(err)
			}
			tr := ovTrace(t, r)
			if !bytes.Equal(r.Packet, pkt) {
				t.Errorf("packet changed:\n got %x\nwant %x", r.Packet, pkt)
			}
			if tr.SrcIdentity != ovIDLocal || tr.Direction != maps.Egress || tr.EndpointID != 1 {
				t.Errorf("trace %v: want src identity %d, egress, ep 1", tr, ovIDLocal)
			}
			if !tc.wantEnc {
				if r.Code != testrun.ActOK || tr.ObservationPoint != events.ObsToStack || tr.Ifindex != 0 {
					t.Fatalf("code %d, trace %v: want TC_ACT_OK to the stack", r.Code, tr)
				}
				if tr.TunnelID != 0 || tr.TunnelEndpoint.IsValid() {
					t.Errorf("trace %v carries a tunnel key, want none", tr)
				}
				return
			}
			if r.Code != testrun.ActRedirect {
				t.Fatalf("code %d, want TC_ACT_REDIRECT: %v", r.Code, tr)
			}
			if tr.ObservationPoint != events.ObsToOverlay || tr.Ifindex != ovTunnelIfindex {
				t.Errorf("trace %v: want TO_OVERLAY on ifindex %d", tr, ovTunnelIfindex)
			}
			if tr.TunnelID != ovIDLocal || tr.TunnelEndpoint != ovNode2 {
				t.Errorf("trace tunnel %s vni %d, want %s vni %d", tr.TunnelEndpoint, tr.TunnelID, ovNode2, ovIDLocal)
			}
			if tr.DstIdentity != ovIDRemote {
				t.Errorf("trace dst identity %d, want %d", tr.DstIdentity, ovIDRemote)
			}
		})
	}
}

// TestEncapTrackedAndReplies: established connections are encapsulated
// too, in both directions of a connection: the local pod's reply to a
// remote pod that connected to it goes back through the tunnel.
func TestEncapTrackedAndReplies(t *testing.T) {
	h, ep := ovHarness(t, ovTunnelIfindex, datapath.Settings{})
	for _, tc := range []struct {
		name   string
		client testrun.Peer
		server testrun.Peer
	}{
		{"local client", testrun.PodV4(ep), testrun.External(ovRemoteV4)},
		{"remote client", testrun.External(ovRemoteV4), testrun.PodV4(ep)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := h.Conn(tc.client, tc.server, testrun.ProtoTCP, 41000, 8080)
			localIsClient := tc.client.Endpoint != nil
			for i, step := range []struct {
				fromClient bool
				flags      testrun.TCPFlags
			}{{true, testrun.SYN}, {false, testrun.SYN | testrun.ACK}, {true, testrun.ACK}, {false, testrun.ACK}} {
				pkt := c.Packet(step.fromClient, step.flags)
				if step.fromClient != localIsClient {
					// From the remote pod: arrives at to_container.
					r, err := ep.ToContainer(pkt)
					if err != nil {
						t.Fatal(err)
					}
					if r.Code != testrun.ActOK {
						t.Fatalf("step %d: to_container code %d: %v", i, r.Code, r.Events)
					}
					continue
				}
				r, err := ep.FromContainer(pkt)
				if err != nil {
					t.Fatal(err)
				}
				tr := ovTrace(t, r)
				if r.Code != testrun.ActRedirect || tr.ObservationPoint != events.ObsToOverlay ||
					tr.TunnelID != ovIDLocal || tr.TunnelEndpoint != ovNode2 {
					t.Fatalf("step %d: code %d trace %v: want encapsulated to %s vni %d", i, r.Code, tr, ovNode2, ovIDLocal)
				}
				if i > 0 && tr.CTState == maps.CTNew {
					t.Errorf("step %d: ct state new, want a tracked connection", i)
				}
			}
		})
	}
}

// TestOverlayIdentityFromVNI: from_overlay takes the source identity from
// the VNI, hands it to to_container in the mark, and ingress policy is
// enforced against it, not against what the ipcache says of the source
// address (ovIDRemote, which the policy does not allow).
func TestOverlayIdentityFromVNI(t *testing.T) {
	h, ep := ovHarness(t, ovTunnelIfindex, datapath.Settings{})
	shim := ovShim(t, h)
	if err := ep.SetEnforcement(true, false); err != nil {
		t.Fatal(err)
	}
	if err := ep.AddRule(testrun.Rule{Direction: maps.Ingress, Identity: ovIDTunnel, Protocol: testrun.ProtoTCP, Ports: dpPort(80), RuleID: 77}); err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct {
		name    string
		src     netip.Addr
		dst     netip.Addr
		vni     uint32
		allowed bool
	}{
		{"IPv4 allowed identity", ovRemoteV4, ovLocalV4, ovIDTunnel, true},
		{"IPv6 allowed identity", ovRemoteV6, ovLocalV6, ovIDTunnel, true},
		{"IPv4 identity of the ipcache denied", ovRemoteV4, ovLocalV4, ovIDRemote, false},
		{"IPv6 other identity denied", ovRemoteV6, ovLocalV6, 4242, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A port of its own: a new connection, not one tracked by
			// an earlier case.
			pkt := testrun.TCP(netip.AddrPortFrom(tc.src, 42000+uint16(i)), netip.AddrPortFrom(tc.dst, 80), testrun.SYN, nil)
			r, err := h.FromOverlay(shim, pkt, &testrun.TunnelKey{VNI: tc.vni, Remote: ovNode2, Local: ovNode1})
			if err != nil {
				t.Fatal(err)
			}
			if r.Code != testrun.ActRedirect {
				t.Fatalf("from_overlay code %d, want TC_ACT_REDIRECT: %v", r.Code, r.Events)
			}
			tr := ovTrace(t, r)
			if tr.ObservationPoint != events.ObsToEndpoint || tr.Ifindex != ep.Spec.Ifindex ||
				tr.EndpointID != 0 || tr.Direction != maps.Ingress {
				t.Errorf("trace %v: want TO_ENDPOINT ifindex %d, ep 0, ingress", tr, ep.Spec.Ifindex)
			}
			if tr.SrcIdentity != tc.vni || tr.DstIdentity != ovIDLocal || tr.TunnelID != tc.vni || tr.TunnelEndpoint != ovNode2 {
				t.Errorf("trace %v: want %d->%d from %s vni %d", tr, tc.vni, ovIDLocal, ovNode2, tc.vni)
			}
			if r.Mark != maps.IdentityMark(tc.vni) {
				t.Errorf("mark %#x, want %#x (identity %d)", r.Mark, maps.IdentityMark(tc.vni), tc.vni)
			}
			ovDelivered(t, r.Packet, ep)

			p, err := h.Deliver(r)
			if err != nil {
				t.Fatal(err)
			}
			last := p.Hops[len(p.Hops)-1]
			if !tc.allowed {
				ovExpectDrop(t, last, dropreason.PolicyDenied, tc.vni)
				return
			}
			if !p.Delivered || last.Mark != 0 {
				t.Fatalf("not delivered (mark after %#x): %s", last.Mark, p)
			}
			if tr := ovTrace(t, last); tr.SrcIdentity != tc.vni || tr.RuleID != 77 {
				t.Errorf("to_container trace %v: want src identity %d, rule 77", tr, tc.vni)
			}
		})
	}
}

// TestOverlayRecheckKeepsTunnelIdentity: after a policy change, a tracked
// connection from the overlay is re-checked against the identity the
// tunnel carries, not the ipcache's: it stays allowed while a rule allows
// that identity, and is dropped once the rule is gone.
func TestOverlayRecheckKeepsTunnelIdentity(t *testing.T) {
	h, ep := ovHarness(t, ovTunnelIfindex, datapath.Settings{})
	shim := ovShim(t, h)
	if err := ep.SetEnforcement(true, false); err != nil {
		t.Fatal(err)
	}
	rule := testrun.Rule{Direction: maps.Ingress, Identity: ovIDTunnel, Protocol: testrun.ProtoTCP, Ports: dpPort(80)}
	if err := ep.AddRule(rule); err != nil {
		t.Fatal(err)
	}
	key := &testrun.TunnelKey{VNI: ovIDTunnel, Remote: ovNode2, Local: ovNode1}
	send := func(flags testrun.TCPFlags) testrun.Path {
		t.Helper()
		pkt := testrun.TCP(netip.AddrPortFrom(ovRemoteV4, 43000), netip.AddrPortFrom(ovLocalV4, 80), flags, nil)
		r, err := h.FromOverlay(shim, pkt, key)
		if err != nil {
			t.Fatal(err)
		}
		p, err := h.Deliver(r)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if p := send(testrun.SYN); !p.Delivered {
		t.Fatalf("SYN not delivered: %s", p)
	}
	for _, step := range []struct {
		name    string
		change  func() error
		allowed bool
	}{
		{"unrelated policy change", func() error {
			return ep.AddRule(testrun.Rule{Direction: maps.Ingress, Identity: 4242, Protocol: testrun.ProtoUDP, Ports: dpPort(53)})
		}, true},
		{"rule removed", func() error { return ep.DeleteRule(rule) }, false},
	} {
		if err := step.change(); err != nil {
			t.Fatal(err)
		}
		p := send(testrun.ACK)
		if step.allowed && !p.Delivered {
			t.Fatalf("%s: not delivered: %s", step.name, p)
		}
		if !step.allowed {
			ovExpectDrop(t, p.Hops[len(p.Hops)-1], dropreason.PolicyDenied, ovIDTunnel)
		}
	}
}

// TestOverlayNoIdentity: a packet without a tunnel key, or with VNI 0, is
// dropped; one for no local endpoint goes to the stack.
func TestOverlayNoIdentity(t *testing.T) {
	h, _ := ovHarness(t, ovTunnelIfindex, datapath.Settings{})
	shim := ovShim(t, h)
	pkt := testrun.UDP(netip.AddrPortFrom(ovRemoteV4, 5000), netip.AddrPortFrom(ovLocalV4, 53), []byte("q"))
	t.Run("no tunnel key", func(t *testing.T) {
		r, err := h.FromOverlay(shim, pkt, nil)
		if err != nil {
			t.Fatal(err)
		}
		d := ovExpectDrop(t, r, dropreason.ErrorRetrievingTunnelKey, 0)
		if d.ObservationPoint != events.ObsFromOverlay || d.Ifindex != ovTunnelIfindex || d.TunnelEndpoint.IsValid() {
			t.Errorf("drop %v: want FROM_OVERLAY on ifindex %d without tunnel", d, ovTunnelIfindex)
		}
	})
	t.Run("VNI 0", func(t *testing.T) {
		r, err := h.FromOverlay(shim, pkt, &testrun.TunnelKey{VNI: 0, Remote: ovNode2, Local: ovNode1})
		if err != nil {
			t.Fatal(err)
		}
		d := ovExpectDrop(t, r, dropreason.InvalidIdentity, 0)
		if d.TunnelEndpoint != ovNode2 || d.TunnelID != 0 {
			t.Errorf("drop %v: want tunnel endpoint %s", d, ovNode2)
		}
	})
	t.Run("not for a local endpoint", func(t *testing.T) {
		other := testrun.UDP(netip.AddrPortFrom(ovRemoteV4, 5000), netip.AddrPortFrom(ovElsewhere, 53), []byte("q"))
		r, err := h.FromOverlay(shim, other, &testrun.TunnelKey{VNI: ovIDTunnel, Remote: ovNode2, Local: ovNode1})
		if err != nil {
			t.Fatal(err)
		}
		tr := ovTrace(t, r)
		if r.Code != testrun.ActOK || tr.ObservationPoint != events.ObsToStack || tr.SrcIdentity != ovIDTunnel {
			t.Errorf("code %d trace %v: want TC_ACT_OK to the stack from identity %d", r.Code, tr, ovIDTunnel)
		}
		if !bytes.Equal(r.Packet, other) || r.Mark != 0 {
			t.Errorf("packet changed or marked (%#x)", r.Mark)
		}
	})
	t.Run("malformed inner packet", func(t *testing.T) {
		bad := bytes.Clone(pkt)
		bad[14] = 5<<4 | bad[14]&0x0f // IP version 5
		r, err := h.FromOverlay(shim, bad, &testrun.TunnelKey{VNI: ovIDTunnel, Remote: ovNode2, Local: ovNode1})
		if err != nil {
			t.Fatal(err)
		}
		ovExpectDrop(t, r, dropreason.InvalidPacket, ovIDTunnel)
	})
}

// TestHostFromNetdev: the uplink's ingress program passes VXLAN for the
// node to the stack, delivers packets for local pods with the source's
// ipcache identity in the mark (to_container enforces against it), and
// sends the rest to the host or the stack.
func TestHostFromNetdev(t *testing.T) {
	h, ep := ovHarness(t, ovTunnelIfindex, datapath.Settings{})
	host, err := h.LoadHost()
	if err != nil {
		t.Fatalf("load host: %v", err)
	}
	if err := ep.SetEnforcement(true, false); err != nil {
		t.Fatal(err)
	}
	for _, id := range []uint32{maps.IdentityWorld, ovIDRemote} {
		if err := ep.AddRule(testrun.Rule{Direction: maps.Ingress, Identity: id, Protocol: testrun.ProtoTCP, Ports: dpPort(80)}); err != nil {
			t.Fatal(err)
		}
	}
	inner := testrun.TCP(netip.AddrPortFrom(ovRemoteV4, 40000), netip.AddrPortFrom(ovLocalV4, 80), testrun.SYN, nil)
	// VXLAN header: flags (I), VNI 1001, then the inner frame.
	vxlan := append([]byte{0x08, 0, 0, 0, 0, 0x03, 0xe9, 0}, inner...)
	arp := testrun.Serialize(
		&layers.Ethernet{SrcMAC: testrun.DefaultSrcMAC, DstMAC: net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, EthernetType: layers.EthernetTypeARP},
		&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: layers.ARPRequest, SourceHwAddress: testrun.DefaultSrcMAC, SourceProtAddress: ovNode2.AsSlice(),
			DstHwAddress: make([]byte, 6), DstProtAddress: ovNode1.AsSlice()})
	tcp := func(src, dst netip.Addr, port uint16) []byte {
		return testrun.TCP(netip.AddrPortFrom(src, 40000), netip.AddrPortFrom(dst, port), testrun.SYN, nil)
	}
	for _, tc := range []struct {
		name     string
		pkt      []byte
		code     int
		obs      events.ObservationPoint
		srcID    uint32 // identity in the trace and, on delivery, the mark
		events   int    // events of from_netdev (ARP: a trace too)
		deliver  bool   // to_container lets it in
		denyWith dropreason.Reason
	}{
		{name: "VXLAN to the node", pkt: testrun.UDP(netip.AddrPortFrom(ovNode2, 51000), netip.AddrPortFrom(ovNode1, 8472), vxlan),
			code: testrun.ActOK, obs: events.ObsToStack, srcID: ovIDRemoteNode},
		{name: "world to local pod allowed", pkt: tcp(ovWorld, ovLocalV4, 80), code: testrun.ActRedirect,
			obs: events.ObsToEndpoint, srcID: maps.IdentityWorld, deliver: true},
		{name: "world to local pod IPv6 denied", pkt: tcp(netip.MustParseAddr("2001:db8::7"), ovLocalV6, 81), code: testrun.ActRedirect,
			obs: events.ObsToEndpoint, srcID: maps.IdentityWorld, denyWith: dropreason.PolicyDenied},
		{name: "native routing: remote pod's identity", pkt: tcp(ovRemoteV4, ovLocalV4, 80), code: testrun.ActRedirect,
			obs: events.ObsToEndpoint, srcID: ovIDRemote, deliver: true},
		{name: "to the node", pkt: tcp(ovWorld, ovNode1, 22), code: testrun.ActOK, obs: events.ObsToHost, srcID: maps.IdentityWorld},
		{name: "to the node IPv6", pkt: tcp(netip.MustParseAddr("2001:db8::7"), ovNode1v6, 22), code: testrun.ActOK, obs: events.ObsToHost, srcID: maps.IdentityWorld},
		{name: "UDP 8472 not to the node", pkt: testrun.UDP(netip.AddrPortFrom(ovNode2, 51000), netip.AddrPortFrom(ovElsewhere, 8472), vxlan),
			code: testrun.ActOK, obs: events.ObsToStack, srcID: ovIDRemoteNode},
		{name: "elsewhere", pkt: tcp(ovWorld, ovElsewhere, 80), code: testrun.ActOK, obs: events.ObsToStack, srcID: maps.IdentityWorld},
		{name: "ARP", pkt: arp, code: testrun.ActOK, obs: events.ObsToStack, srcID: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := h.FromNetdev(host, tc.pkt)
			if err != nil {
				t.Fatal(err)
			}
			tr := ovTrace(t, r)
			if r.Code != tc.code || tr.ObservationPoint != tc.obs || tr.SrcIdentity != tc.srcID {
				t.Fatalf("code %d trace %v: want code %d, %s, src identity %d", r.Code, tr, tc.code, tc.obs, tc.srcID)
			}
			if tr.EndpointID != 0 || tr.Direction != maps.Ingress {
				t.Errorf("trace %v: want ep 0, ingress", tr)
			}
			if tc.code != testrun.ActRedirect {
				if !bytes.Equal(r.Packet, tc.pkt) || r.Mark != 0 {
					t.Errorf("passed packet changed or marked (%#x)", r.Mark)
				}
				return
			}
			if tr.Ifindex != ep.Spec.Ifindex || tr.DstIdentity != ovIDLocal {
				t.Errorf("trace %v: want ifindex %d, dst identity %d", tr, ep.Spec.Ifindex, ovIDLocal)
			}
			if r.Mark != maps.IdentityMark(tc.srcID) {
				t.Errorf("mark %#x, want %#x", r.Mark, maps.IdentityMark(tc.srcID))
			}
			ovDelivered(t, r.Packet, ep)
			p, err := h.Deliver(r)
			if err != nil {
				t.Fatal(err)
			}
			last := p.Hops[len(p.Hops)-1]
			if !tc.deliver {
				ovExpectDrop(t, last, tc.denyWith, tc.srcID)
				return
			}
			if !p.Delivered {
				t.Fatalf("not delivered: %s", p)
			}
			if tr := ovTrace(t, last); tr.SrcIdentity != tc.srcID {
				t.Errorf("to_container trace %v: want src identity %d", tr, tc.srcID)
			}
		})
	}
	t.Run("malformed", func(t *testing.T) {
		bad := tcp(ovWorld, ovLocalV4, 80)
		bad[14] = 5<<4 | bad[14]&0x0f // IP version 5
		r, err := h.FromNetdev(host, bad)
		if err != nil {
			t.Fatal(err)
		}
		d := ovExpectDrop(t, r, dropreason.InvalidPacket, 0)
		if d.ObservationPoint != events.ObsFromNetwork || d.Ifindex != ovUplinkIfindex {
			t.Errorf("drop %v: want FROM_NETWORK on ifindex %d", d, ovUplinkIfindex)
		}
	})
}

// TestHostToNetdev: the uplink's egress program passes everything
// unchanged with a TO_NETWORK trace carrying the source's identity.
func TestHostToNetdev(t *testing.T) {
	h, _ := ovHarness(t, ovTunnelIfindex, datapath.Settings{})
	host, err := h.LoadHost()
	if err != nil {
		t.Fatalf("load host: %v", err)
	}
	for _, tc := range []struct {
		name     string
		src, dst netip.Addr
		srcID    uint32
		dstID    uint32
	}{
		{"pod to world", ovLocalV4, ovWorld, ovIDLocal, maps.IdentityWorld},
		{"pod IPv6 to remote pod", ovLocalV6, ovRemoteV6, ovIDLocal, ovIDRemote},
		{"node to remote node", ovNode1, ovNode2, maps.IdentityWorld, ovIDRemoteNode},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkt := testrun.UDP(netip.AddrPortFrom(tc.src, 5000), netip.AddrPortFrom(tc.dst, 53), []byte("q"))
			r, err := h.ToNetdev(host, pkt)
			if err != nil {
				t.Fatal(err)
			}
			tr := ovTrace(t, r)
			if r.Code != testrun.ActOK || !bytes.Equal(r.Packet, pkt) {
				t.Fatalf("code %d: want TC_ACT_OK, packet unchanged", r.Code)
			}
			if tr.ObservationPoint != events.ObsToNetwork || tr.Ifindex != ovUplinkIfindex || tr.Direction != maps.Egress ||
				tr.SrcIdentity != tc.srcID || tr.DstIdentity != tc.dstID {
				t.Errorf("trace %v: want TO_NETWORK ifindex %d egress %d->%d", tr, ovUplinkIfindex, tc.srcID, tc.dstID)
			}
		})
	}
}

// TestNodeProgramsTraceLevel: under TraceDropsOnly the node programs emit
// no traces but still report drops; under TraceConnectionEvents only
// deliveries to an endpoint are traced.
func TestNodeProgramsTraceLevel(t *testing.T) {
	for _, tc := range []struct {
		name          string
		level         uint8
		wantDelivery  int // events of a from_netdev delivery
		wantPassStack int // events of a to_netdev pass
	}{
		{"every packet", datapath.TraceEveryPacket, 1, 1},
		{"connection events", datapath.TraceConnectionEvents, 1, 0},
		{"drops only", datapath.TraceDropsOnly, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := ovHarness(t, ovTunnelIfindex, datapath.Settings{TraceLevel: tc.level})
			host, err := h.LoadHost()
			if err != nil {
				t.Fatal(err)
			}
			shim := ovShim(t, h)
			pkt := testrun.UDP(netip.AddrPortFrom(ovWorld, 5000), netip.AddrPortFrom(ovLocalV4, 53), []byte("q"))
			r, err := h.FromNetdev(host, pkt)
			if err != nil {
				t.Fatal(err)
			}
			if r.Code != testrun.ActRedirect || len(r.Events) != tc.wantDelivery {
				t.Errorf("from_netdev: code %d, events %v, want redirect with %d", r.Code, r.Events, tc.wantDelivery)
			}
			if r, err = h.ToNetdev(host, pkt); err != nil {
				t.Fatal(err)
			} else if len(r.Events) != tc.wantPassStack {
				t.Errorf("to_netdev: events %v, want %d", r.Events, tc.wantPassStack)
			}
			if r, err = h.FromOverlay(shim, pkt, nil); err != nil {
				t.Fatal(err)
			}
			ovExpectDrop(t, r, dropreason.ErrorRetrievingTunnelKey, 0)
		})
	}
}
