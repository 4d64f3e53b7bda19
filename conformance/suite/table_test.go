package suite

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/ciliaproject/cilia/conformance/scenario"
	"github.com/ciliaproject/cilia/conformance/target"
)

func TestRenderTruthTable(t *testing.T) {
	const allow, deny = scenario.Allow, scenario.Deny
	const allowed, denied = target.Allowed, target.Denied
	tests := []struct {
		name  string
		cells []Cell
		want  string
	}{
		{
			name: "one wrong cell, one skipped, one error, one not probed",
			cells: []Cell{
				{Row: "x/a", Column: "x/b:80/TCP", Expect: allow, Observed: allowed},
				{Row: "x/a", Column: "x/c:80/TCP", Expect: deny, Observed: denied},
				{Row: "y/a", Column: "x/b:80/TCP", Expect: deny, Observed: allowed, State: Wrong},
				{Row: "y/a", Column: "x/c:80/TCP", Expect: deny, State: NoObservation},
				{Row: "y/a", Column: "x/b:81/SCTP", Expect: allow, State: Unsupported},
			},
			want: `step 1: 5 probes, 3 not as expected

expected ("." allow, "X" deny):
     x/b:80/TCP  x/c:80/TCP  x/b:81/SCTP
x/a      .           X
y/a      X           X            .

observed ("." allowed, "X" denied, "?" no observation, "-" skipped: unsupported feature):
     x/b:80/TCP  x/c:80/TCP  x/b:81/SCTP
x/a      .           X
y/a      .           ?            -

diff ("!" wrong, "." as expected, "?" no observation, "-" skipped):
     x/b:80/TCP  x/c:80/TCP  x/b:81/SCTP
x/a      .           .
y/a      !           ?            -
`,
		},
		{
			name: "a wrong detail keeps the verdict marks, a repeated cell gets its own column",
			cells: []Cell{
				{Row: "a", Column: "b:80/TCP", Expect: deny, Observed: denied, State: Wrong},
				{Row: "a", Column: "b:80/TCP", Expect: allow, Observed: allowed},
			},
			want: `step 1: 2 probes, 1 not as expected

expected ("." allow, "X" deny):
   b:80/TCP  b:80/TCP #2
a     X           .

observed ("." allowed, "X" denied, "?" no observation, "-" skipped: unsupported feature):
   b:80/TCP  b:80/TCP #2
a     X           .

diff ("!" wrong, "." as expected, "?" no observation, "-" skipped):
   b:80/TCP  b:80/TCP #2
a     !           .
`,
		},
		{
			name: "wide tables number their columns",
			cells: []Cell{
				{Row: "a", Column: strings.Repeat("d", 100) + ":80/TCP", Expect: allow, Observed: allowed},
				{Row: "a", Column: strings.Repeat("e", 100) + ":80/TCP", Expect: allow, Observed: denied, State: Wrong},
			},
			want: `step 1: 2 probes, 1 not as expected

expected ("." allow, "X" deny):
   1  2
a  .  .

observed ("." allowed, "X" denied, "?" no observation, "-" skipped: unsupported feature):
   1  2
a  .  X

diff ("!" wrong, "." as expected, "?" no observation, "-" skipped):
   1  2
a  .  !

columns:
1  ` + strings.Repeat("d", 100) + `:80/TCP
2  ` + strings.Repeat("e", 100) + `:80/TCP
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := RenderTruthTable("step 1", tt.cells)
			if got != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestLabels(t *testing.T) {
	pod := func(name string) scenario.Peer { return scenario.Peer{Kind: scenario.PeerPod, Name: name} }
	tests := []struct {
		probe   scenario.Probe
		row     string
		column  string
		comment string
	}{
		{
			probe: scenario.Probe{From: pod("x/a"), To: pod("x/b"), Port: 80, Protocol: scenario.TCP, Family: scenario.IPv4},
			row:   "x/a", column: "x/b:80/TCP",
		},
		{
			probe: scenario.Probe{From: scenario.Peer{Kind: scenario.PeerNode, Name: "node-1"},
				To: scenario.Peer{Kind: scenario.PeerService, Name: "x/svc"}, Port: 80, PortName: "http",
				Protocol: scenario.TCP, Family: scenario.IPv6},
			row: "node:node-1", column: "service:x/svc:http/TCP/ipv6",
		},
		{
			probe: scenario.Probe{From: scenario.Peer{Kind: scenario.PeerExternal, Name: "internet"},
				To: scenario.Peer{Kind: scenario.PeerIP, Addr: netip.MustParseAddr("10.0.0.1")}, Protocol: scenario.ICMP},
			row: "internet", column: "ip:10.0.0.1:ICMP",
		},
		{
			probe: scenario.Probe{From: pod("x/a"), To: pod("x/b"), Port: 80, Protocol: scenario.TCP,
				HTTP: &scenario.HTTPRequest{Method: "GET", Path: "/v1"}},
			row: "x/a", column: "x/b:80/TCP GET /v1",
		},
		{
			probe: scenario.Probe{From: pod("x/a"), To: pod("x/k"), Port: 9092, Protocol: scenario.TCP,
				Kafka: &scenario.KafkaRequest{APIKey: "produce", Topic: "plans"}},
			row: "x/a", column: "x/k:9092/TCP kafka:produce/plans",
		},
	}
	for _, tt := range tests {
		if got := peerLabel(tt.probe.From); got != tt.row {
			t.Errorf("row = %q, want %q", got, tt.row)
		}
		if got := columnLabel(tt.probe); got != tt.column {
			t.Errorf("column = %q, want %q", got, tt.column)
		}
	}
}
