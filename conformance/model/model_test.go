package model

import (
	"strings"
	"testing"

	"github.com/ciliaproject/cilia/conformance/scenario"
)

const starWars = `
apiVersion: conformance.cilia.dev/v1alpha1
kind: Scenario
metadata: {name: sw, features: [policy-l3, policy-l4, policy-deny]}
cluster:
  nodes: [{name: node-1}, {name: node-2}]
  pods:
    - {name: default/deathstar, labels: {org: empire, class: deathstar}, node: node-1, ports: [{name: http, port: 80}]}
    - {name: default/tiefighter, labels: {org: empire, class: tiefighter}, node: node-2}
    - {name: default/xwing, labels: {org: alliance, class: xwing}, node: node-2}
  externals:
    - {name: internet, ipv4: 203.0.113.7}
policies:
  - apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: rule1}
    spec:
      endpointSelector: {matchLabels: {class: deathstar}}
      ingress:
        - fromEndpoints: [{matchLabels: {org: empire}}]
          toPorts: [{ports: [{port: "80", protocol: TCP}]}]
      ingressDeny:
        - fromEntities: [world]
probes:
  - {from: default/tiefighter, to: default/deathstar, port: http, expect: allow}
  - {from: default/xwing, to: default/deathstar, port: 80, expect: deny}
  - {from: internet, to: default/deathstar, port: 80, expect: deny}
  - {from: "node:node-1", to: default/deathstar, port: 80, expect: allow}
  - {from: "node:node-2", to: default/deathstar, port: 80, expect: deny}
  - {from: default/xwing, to: internet, port: 443, expect: allow}
`

// TestProbe checks whole answers: verdict, drop reason, source, backend and
// the explanation.
func TestProbe(t *testing.T) {
	sc, err := scenario.Parse("sw.yaml", []byte(starWars))
	if err != nil {
		t.Fatal(err)
	}
	st := sc.StateAt(0)
	m, err := New(st)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		verdict    scenario.Verdict
		dropReason string
		backend    string
		why        string
	}{
		{scenario.Allow, "", "default/deathstar", "ingress allowed by CiliumNetworkPolicy default/rule1"},
		{scenario.Deny, DropPolicyDenied, "", "nothing allows it"},
		{scenario.Deny, DropPolicyDeny, "", "ingress denied by CiliumNetworkPolicy default/rule1"},
		{scenario.Allow, "", "default/deathstar", "allow-localhost"},
		{scenario.Deny, DropPolicyDenied, "", "nothing allows it"},
		{scenario.Allow, "", "", "egress not enforced"},
	}
	probes := sc.Steps[0].Probes
	if len(probes) != len(want) {
		t.Fatalf("%d probes, want %d", len(probes), len(want))
	}
	for i, p := range probes {
		a, err := m.Probe(p)
		if err != nil {
			t.Fatalf("%s: %v", p.ID, err)
		}
		w := want[i]
		if a.Verdict != w.verdict || a.DropReason != w.dropReason || a.Backend != w.backend || !strings.Contains(a.Why, w.why) {
			t.Errorf("%s: got %+v, want %+v", p.ID, a, w)
		}
		if p.Expect.Verdict != a.Verdict {
			t.Errorf("%s: the test scenario expects %s", p.ID, p.Expect.Verdict)
		}
		if a.Verdict == scenario.Allow {
			if src, _ := st.Addr(p.From, p.Family); a.SourceSeen != src {
				t.Errorf("%s: source seen %s, want the client's %s", p.ID, a.SourceSeen, src)
			}
		}
	}
}
