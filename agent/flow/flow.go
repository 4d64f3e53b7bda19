// Package flow turns datapath events into Hubble flows
// (github.com/cilium/cilium/api/v1/flow), the form users see verdicts in.
package flow

import (
	"net/netip"

	"github.com/cilium/cilium/api/v1/flow"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ciliaproject/cilia/datapath/events"
	"github.com/ciliaproject/cilia/datapath/maps"
)

// PodNamer returns the namespace and name of the pod with addr, if any.
type PodNamer func(addr netip.Addr) (namespace, name string, ok bool)

// FromEvent converts a trace or drop event. names names the endpoints
// (nil: addresses only).
func FromEvent(e events.Event, names PodNamer) *flow.Flow {
	f := &flow.Flow{
		Time:    timestamppb.Now(),
		Verdict: flow.Verdict(e.Verdict),
		Source:  &flow.Endpoint{Identity: e.SrcIdentity},
		Destination: &flow.Endpoint{
			Identity: e.DstIdentity,
		},
		TraceObservationPoint: flow.TraceObservationPoint(e.ObservationPoint),
		PolicyMatchType:       uint32(e.PolicyMatch),
	}
	switch e.Direction {
	case maps.Ingress:
		f.TrafficDirection = flow.TrafficDirection_INGRESS
	case maps.Egress:
		f.TrafficDirection = flow.TrafficDirection_EGRESS
	}
	if e.IsDrop() {
		f.Verdict = flow.Verdict_DROPPED
		f.DropReasonDesc = e.Reason.FlowDropReason()
		f.EventType = &flow.CiliumEventType{Type: 1, SubType: int32(e.Reason)}
	} else {
		f.EventType = &flow.CiliumEventType{Type: 4, SubType: int32(e.ObservationPoint)}
	}
	decodePacket(f, e.Data)
	f.Tunnel = tunnel(e)
	if names != nil {
		for _, ep := range []*flow.Endpoint{f.Source, f.Destination} {
			var ip string
			if f.IP != nil {
				if ep == f.Source {
					ip = f.IP.Source
				} else {
					ip = f.IP.Destination
				}
			}
			if a, err := netip.ParseAddr(ip); err == nil {
				if ns, name, ok := names(a); ok {
					ep.Namespace, ep.PodName = ns, name
				}
			}
		}
	}
	return f
}

// decodePacket fills the IP and L4 fields from the packet head.
func decodePacket(f *flow.Flow, data []byte) {
	pkt := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.DecodeOptions{Lazy: true, NoCopy: true})
	switch ip := pkt.NetworkLayer().(type) {
	case *layers.IPv4:
		f.IP = &flow.IP{Source: ip.SrcIP.String(), Destination: ip.DstIP.String(), IpVersion: flow.IPVersion_IPv4}
	case *layers.IPv6:
		f.IP = &flow.IP{Source: ip.SrcIP.String(), Destination: ip.DstIP.String(), IpVersion: flow.IPVersion_IPv6}
	}
	for _, l := range pkt.Layers() {
		switch l4 := l.(type) {
		case *layers.TCP:
			f.L4 = &flow.Layer4{Protocol: &flow.Layer4_TCP{TCP: &flow.TCP{
				SourcePort: uint32(l4.SrcPort), DestinationPort: uint32(l4.DstPort),
				Flags: &flow.TCPFlags{SYN: l4.SYN, ACK: l4.ACK, FIN: l4.FIN, RST: l4.RST, PSH: l4.PSH},
			}}}
		case *layers.UDP:
			f.L4 = &flow.Layer4{Protocol: &flow.Layer4_UDP{UDP: &flow.UDP{
				SourcePort: uint32(l4.SrcPort), DestinationPort: uint32(l4.DstPort)}}}
		case *layers.SCTP:
			f.L4 = &flow.Layer4{Protocol: &flow.Layer4_SCTP{SCTP: &flow.SCTP{
				SourcePort: uint32(l4.SrcPort), DestinationPort: uint32(l4.DstPort)}}}
		case *layers.ICMPv4:
			f.L4 = &flow.Layer4{Protocol: &flow.Layer4_ICMPv4{ICMPv4: &flow.ICMPv4{
				Type: uint32(l4.TypeCode.Type()), Code: uint32(l4.TypeCode.Code())}}}
		case *layers.ICMPv6:
			f.L4 = &flow.Layer4{Protocol: &flow.Layer4_ICMPv6{ICMPv6: &flow.ICMPv6{
				Type: uint32(l4.TypeCode.Type()), Code: uint32(l4.TypeCode.Code())}}}
		}
	}
}

// tunnel returns the VXLAN tunnel of an encapsulated packet (TO_OVERLAY:
// the remote node is the outer destination) or of one that came out of the
// overlay (the remote node is the outer source), or nil. The event knows
// the remote node and the VNI only, so the other outer address and the
// outer L4 header stay empty.
func tunnel(e events.Event) *flow.Tunnel {
	if !e.TunnelEndpoint.IsValid() {
		return nil
	}
	t := &flow.Tunnel{Protocol: flow.Tunnel_VXLAN, Vni: e.TunnelID, IP: &flow.IP{IpVersion: flow.IPVersion_IPv4}}
	if e.TunnelEndpoint.Is6() {
		t.IP.IpVersion = flow.IPVersion_IPv6
	}
	if e.ObservationPoint == events.ObsToOverlay {
		t.IP.Destination = e.TunnelEndpoint.String()
	} else {
		t.IP.Source = e.TunnelEndpoint.String()
	}
	return t
}
