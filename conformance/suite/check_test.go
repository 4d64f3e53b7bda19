package suite

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/cilium/cilium/api/v1/flow"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/ciliaproject/cilia/conformance/scenario"
	"github.com/ciliaproject/cilia/conformance/target"
)

func TestCheck(t *testing.T) {
	client := netip.MustParseAddr("10.0.1.2")
	node := netip.MustParseAddr("192.168.0.11")
	known := Addresses{Client: client, Nodes: []netip.Addr{node}}
	unknownClient := Addresses{Nodes: []netip.Addr{node}}
	tests := []struct {
		name        string
		exp         scenario.Expectation
		obs         target.Observation
		dropReasons bool
		addrs       Addresses
		want        []string
	}{
		{
			name: "allow observed allowed",
			exp:  scenario.Expectation{Verdict: scenario.Allow},
			obs:  target.Observation{Verdict: target.Allowed},
		},
		{
			name: "deny observed allowed",
			exp:  scenario.Expectation{Verdict: scenario.Deny},
			obs:  target.Observation{Verdict: target.Allowed},
			want: []string{"verdict: expected deny, observed allowed"},
		},
		{
			name: "unknown verdict",
			exp:  scenario.Expectation{Verdict: scenario.Allow},
			obs:  target.Observation{},
			want: []string{`verdict: expected allow, target returned unknown verdict ""`},
		},
		{
			name:        "drop reason checked when drop-reasons is tested",
			exp:         scenario.Expectation{Verdict: scenario.Deny, DropReason: "POLICY_DENIED"},
			obs:         target.Observation{Verdict: target.Denied, DropReason: "POLICY_DENY"},
			dropReasons: true,
			want:        []string{"dropReason: expected POLICY_DENIED, observed POLICY_DENY"},
		},
		{
			name:        "an empty drop reason is a mismatch",
			exp:         scenario.Expectation{Verdict: scenario.Deny, DropReason: "POLICY_DENIED"},
			obs:         target.Observation{Verdict: target.Denied},
			dropReasons: true,
			want:        []string{"dropReason: expected POLICY_DENIED, observed none"},
		},
		{
			name: "drop reason ignored when drop-reasons is not tested",
			exp:  scenario.Expectation{Verdict: scenario.Deny, DropReason: "POLICY_DENIED"},
			obs:  target.Observation{Verdict: target.Denied},
		},
		{
			name: "http status",
			exp:  scenario.Expectation{Verdict: scenario.Deny, HTTPStatus: 403},
			obs:  target.Observation{Verdict: target.Denied},
			want: []string{"httpStatus: expected 403, observed none"},
		},
		{
			name: "backend in",
			exp:  scenario.Expectation{Verdict: scenario.Allow, BackendIn: []string{"x/b-1", "x/b-2"}},
			obs:  target.Observation{Verdict: target.Allowed, Backend: "x/b-3"},
			want: []string{"backend: expected one of [x/b-1, x/b-2], observed x/b-3"},
		},
		{
			name: "backend in matches",
			exp:  scenario.Expectation{Verdict: scenario.Allow, BackendIn: []string{"x/b-1", "x/b-2"}},
			obs:  target.Observation{Verdict: target.Allowed, Backend: "x/b-2"},
		},
		{
			name:  "source seen client",
			exp:   scenario.Expectation{Verdict: scenario.Allow, SourceSeen: "client"},
			obs:   target.Observation{Verdict: target.Allowed, SourceSeen: node},
			addrs: known,
			want:  []string{"sourceSeen: expected the client's address 10.0.1.2, observed 192.168.0.11"},
		},
		{
			name:  "source seen client, mapped address",
			exp:   scenario.Expectation{Verdict: scenario.Allow, SourceSeen: "client"},
			obs:   target.Observation{Verdict: target.Allowed, SourceSeen: netip.AddrFrom16(client.As16())},
			addrs: known,
		},
		{
			name:  "source seen client, address left to the target",
			exp:   scenario.Expectation{Verdict: scenario.Allow, SourceSeen: "client"},
			obs:   target.Observation{Verdict: target.Allowed, SourceSeen: netip.MustParseAddr("10.244.0.9")},
			addrs: unknownClient,
		},
		{
			name:  "source seen client, address left to the target, node seen",
			exp:   scenario.Expectation{Verdict: scenario.Allow, SourceSeen: "client"},
			obs:   target.Observation{Verdict: target.Allowed, SourceSeen: node},
			addrs: unknownClient,
			want:  []string{"sourceSeen: expected the client's address, observed node address 192.168.0.11"},
		},
		{
			name:  "source seen node",
			exp:   scenario.Expectation{Verdict: scenario.Allow, SourceSeen: "node"},
			obs:   target.Observation{Verdict: target.Allowed, SourceSeen: client},
			addrs: known,
			want:  []string{"sourceSeen: expected a node address (192.168.0.11), observed 10.0.1.2"},
		},
		{
			name:  "source seen literal",
			exp:   scenario.Expectation{Verdict: scenario.Allow, SourceSeen: "10.9.9.9"},
			obs:   target.Observation{Verdict: target.Allowed, SourceSeen: netip.MustParseAddr("10.9.9.9")},
			addrs: known,
		},
		{
			name:  "source seen not reported",
			exp:   scenario.Expectation{Verdict: scenario.Allow, SourceSeen: "node"},
			obs:   target.Observation{Verdict: target.Allowed},
			addrs: known,
			want:  []string{"sourceSeen: expected a node address (192.168.0.11), the target did not report the source address"},
		},
		{
			name:        "every mismatch listed, verdict first",
			exp:         scenario.Expectation{Verdict: scenario.Deny, DropReason: "POLICY_DENIED", HTTPStatus: 403},
			obs:         target.Observation{Verdict: target.Allowed, HTTPStatus: 200},
			dropReasons: true,
			want: []string{
				"verdict: expected deny, observed allowed",
				"dropReason: expected POLICY_DENIED, observed none",
				"httpStatus: expected 403, observed 200",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Check(tt.exp, tt.obs, tt.dropReasons, tt.addrs)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Check = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestAddressesFor(t *testing.T) {
	sc := &scenario.Scenario{
		Cluster: scenario.Cluster{
			Nodes: []scenario.Node{
				{Name: "node-1", IPv4: netip.MustParseAddr("192.168.0.11"), IPv6: netip.MustParseAddr("fd00::11")},
				{Name: "node-2", IPv4: netip.MustParseAddr("192.168.0.12")},
			},
			Pods:      []scenario.Pod{{Namespace: "x", Name: "a", IPv4: netip.MustParseAddr("10.0.0.1")}},
			Externals: []scenario.External{{Name: "world", IPv4: netip.MustParseAddr("203.0.113.7")}},
		},
		Steps: []scenario.Step{{}, {AddPods: []scenario.Pod{{Namespace: "x", Name: "late", IPv6: netip.MustParseAddr("fd00::99")}}}},
	}
	tests := []struct {
		from   scenario.Peer
		family scenario.Family
		want   Addresses
	}{
		{scenario.Peer{Kind: scenario.PeerPod, Name: "x/a"}, scenario.IPv4,
			Addresses{netip.MustParseAddr("10.0.0.1"), []netip.Addr{netip.MustParseAddr("192.168.0.11"), netip.MustParseAddr("192.168.0.12")}}},
		{scenario.Peer{Kind: scenario.PeerPod, Name: "x/a"}, scenario.IPv6,
			Addresses{netip.Addr{}, []netip.Addr{netip.MustParseAddr("fd00::11")}}},
		{scenario.Peer{Kind: scenario.PeerPod, Name: "x/late"}, scenario.IPv6,
			Addresses{netip.MustParseAddr("fd00::99"), []netip.Addr{netip.MustParseAddr("fd00::11")}}},
		{scenario.Peer{Kind: scenario.PeerExternal, Name: "world"}, scenario.IPv4,
			Addresses{netip.MustParseAddr("203.0.113.7"), []netip.Addr{netip.MustParseAddr("192.168.0.11"), netip.MustParseAddr("192.168.0.12")}}},
		{scenario.Peer{Kind: scenario.PeerNode, Name: "node-2"}, scenario.IPv4,
			Addresses{netip.MustParseAddr("192.168.0.12"), []netip.Addr{netip.MustParseAddr("192.168.0.11"), netip.MustParseAddr("192.168.0.12")}}},
	}
	for _, tt := range tests {
		got := addressesFor(sc, scenario.Probe{From: tt.from, Family: tt.family})
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("addressesFor(%v, %s) = %+v, want %+v", tt.from, tt.family, got, tt.want)
		}
	}
}

func TestFormatFlow(t *testing.T) {
	tests := []struct {
		name string
		flow *flow.Flow
		want string
	}{
		{
			name: "policy drop",
			flow: &flow.Flow{
				Verdict:          flow.Verdict_DROPPED,
				DropReason:       133,
				DropReasonDesc:   flow.DropReason_POLICY_DENIED,
				IP:               &flow.IP{Source: "10.0.1.2", Destination: "10.0.1.10"},
				Source:           &flow.Endpoint{Namespace: "default", PodName: "xwing"},
				Destination:      &flow.Endpoint{Namespace: "default", PodName: "deathstar"},
				L4:               &flow.Layer4{Protocol: &flow.Layer4_TCP{TCP: &flow.TCP{SourcePort: 41000, DestinationPort: 80, Flags: &flow.TCPFlags{SYN: true}}}},
				TrafficDirection: flow.TrafficDirection_INGRESS,
				NodeName:         "node-1",
			},
			want: "DROPPED POLICY_DENIED default/xwing 10.0.1.2:41000 -> default/deathstar 10.0.1.10:80 TCP SYN ingress node-1",
		},
		{
			name: "forwarded IPv6 UDP reply to a world identity",
			flow: &flow.Flow{
				Verdict:               flow.Verdict_FORWARDED,
				IP:                    &flow.IP{Source: "fd00::1", Destination: "2001:db8::7"},
				Source:                &flow.Endpoint{Namespace: "x", PodName: "a"},
				Destination:           &flow.Endpoint{Identity: 2},
				L4:                    &flow.Layer4{Protocol: &flow.Layer4_UDP{UDP: &flow.UDP{SourcePort: 53, DestinationPort: 5353}}},
				TraceObservationPoint: flow.TraceObservationPoint_TO_STACK,
				TrafficDirection:      flow.TrafficDirection_EGRESS,
				IsReply:               wrapperspb.Bool(true),
			},
			want: "FORWARDED x/a [fd00::1]:53 -> identity:2 [2001:db8::7]:5353 UDP to-stack egress reply",
		},
		{
			name: "unknown drop code, L7",
			flow: &flow.Flow{
				Verdict:    flow.Verdict_DROPPED,
				DropReason: 250,
				L7:         &flow.Layer7{Record: &flow.Layer7_Http{Http: &flow.HTTP{Method: "POST", Url: "/v1/land", Code: 403}}},
			},
			want: "DROPPED drop-reason-250 ? -> ? HTTP POST /v1/land => 403",
		},
		{name: "nil", want: "<nil flow>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := FormatFlow(tt.flow); got != tt.want {
				t.Errorf("FormatFlow =\n %q\nwant\n %q", got, tt.want)
			}
		})
	}
}

func TestSafely(t *testing.T) {
	errBoom := errors.New("boom")
	tests := []struct {
		name string
		f    func() error
		want string
	}{
		{"nil", func() error { return nil }, ""},
		{"error passes through", func() error { return errBoom }, "boom"},
		{"panic becomes an error", func() error { panic("kaput") }, "target panicked in Probe: kaput\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := safely("Probe", tt.f)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("safely = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.want)):
				t.Errorf("safely = %v, want prefix %q", err, tt.want)
			}
		})
	}
}
