package flow

import (
	"net/netip"
	"testing"

	"github.com/cilium/cilium/api/v1/flow"
	"github.com/cilium/cilium/api/v1/observer"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/ciliaproject/cilia/datapath/dropreason"
	"github.com/ciliaproject/cilia/datapath/events"
	"github.com/ciliaproject/cilia/datapath/maps"
	dptestrun "github.com/ciliaproject/cilia/datapath/testrun"
)

func TestFromEventDrop(t *testing.T) {
	src, dst := netip.MustParseAddrPort("10.0.0.1:40000"), netip.MustParseAddrPort("10.0.0.2:80")
	e := events.Event{
		Type: events.TypeDrop, Direction: maps.Ingress, Reason: dropreason.Reason(133),
		SrcIdentity: 258, DstIdentity: 256, Data: dptestrun.TCP(src, dst, dptestrun.SYN, nil),
	}
	names := func(a netip.Addr) (string, string, bool) {
		if a == dst.Addr() {
			return "default", "server", true
		}
		return "", "", false
	}
	f := FromEvent(e, names)
	if f.GetVerdict() != flow.Verdict_DROPPED || f.GetDropReasonDesc() != flow.DropReason_POLICY_DENIED {
		t.Errorf("verdict %s reason %s", f.GetVerdict(), f.GetDropReasonDesc())
	}
	if f.GetTrafficDirection() != flow.TrafficDirection_INGRESS {
		t.Errorf("direction %s", f.GetTrafficDirection())
	}
	if f.GetIP().GetSource() != "10.0.0.1" || f.GetL4().GetTCP().GetDestinationPort() != 80 || !f.GetL4().GetTCP().GetFlags().GetSYN() {
		t.Errorf("packet fields: %v %v", f.GetIP(), f.GetL4())
	}
	if f.GetDestination().GetPodName() != "server" || f.GetSource().GetPodName() != "" || f.GetSource().GetIdentity() != 258 {
		t.Errorf("endpoints: %v -> %v", f.GetSource(), f.GetDestination())
	}
	// hubble observe --input-file reads GetFlowsResponse in protojson.
	resp := &observer.GetFlowsResponse{ResponseTypes: &observer.GetFlowsResponse_Flow{Flow: f}}
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	var back observer.GetFlowsResponse
	if err := protojson.Unmarshal(b, &back); err != nil {
		t.Fatalf("unmarshal %s: %v", b, err)
	}
	if back.GetFlow().GetDropReasonDesc() != flow.DropReason_POLICY_DENIED {
		t.Errorf("round trip lost the drop reason: %s", b)
	}
}

func TestFromEventTraceICMPv6(t *testing.T) {
	e := events.Event{Type: events.TypeTrace, Direction: maps.Egress, Verdict: events.Verdict(flow.Verdict_FORWARDED),
		Data: dptestrun.ICMPEcho(netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2"), 7, 1, false)}
	f := FromEvent(e, nil)
	if f.GetVerdict() != flow.Verdict_FORWARDED || f.GetIP().GetIpVersion() != flow.IPVersion_IPv6 {
		t.Errorf("flow %v", f)
	}
	if f.GetL4().GetICMPv6().GetType() != 128 {
		t.Errorf("ICMPv6 type %d", f.GetL4().GetICMPv6().GetType())
	}
}

func TestFromEventTunnel(t *testing.T) {
	pkt := dptestrun.TCP(netip.MustParseAddrPort("10.0.0.1:40000"), netip.MustParseAddrPort("10.1.0.5:80"), dptestrun.SYN, nil)
	node2 := netip.MustParseAddr("192.168.0.2")
	for _, tc := range []struct {
		name     string
		obs      events.ObservationPoint
		tep      netip.Addr
		vni      uint32
		wantNil  bool
		src, dst string
	}{
		{name: "encapsulated", obs: events.ObsToOverlay, tep: node2, vni: 1001, dst: "192.168.0.2"},
		{name: "from the overlay", obs: events.ObsToEndpoint, tep: node2, vni: 2001, src: "192.168.0.2"},
		{name: "no tunnel", obs: events.ObsToStack, wantNil: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := events.Event{Type: events.TypeTrace, ObservationPoint: tc.obs, Verdict: events.VerdictForwarded,
				TunnelID: tc.vni, TunnelEndpoint: tc.tep, Data: pkt}
			f := FromEvent(e, nil)
			if f.GetTraceObservationPoint() != flow.TraceObservationPoint(tc.obs) {
				t.Errorf("observation point %s, want %s", f.GetTraceObservationPoint(), tc.obs)
			}
			tun := f.GetTunnel()
			if tc.wantNil {
				if tun != nil {
					t.Errorf("tunnel %v, want none", tun)
				}
				return
			}
			if tun.GetProtocol() != flow.Tunnel_VXLAN || tun.GetVni() != tc.vni ||
				tun.GetIP().GetSource() != tc.src || tun.GetIP().GetDestination() != tc.dst {
				t.Errorf("tunnel %v: want VXLAN vni %d %q -> %q", tun, tc.vni, tc.src, tc.dst)
			}
			if f.GetIP().GetDestination() != "10.1.0.5" {
				t.Errorf("inner IP %v", f.GetIP())
			}
		})
	}
}
