package main

import (
	"bytes"
	"strings"
	"testing"
)

// traceScenario is a scenario with an L3/L4 rule and a deny rule.
const traceScenario = `apiVersion: conformance.cilia.dev/v1alpha1
kind: Scenario
metadata: {name: trace, features: [policy-l3, policy-l4, policy-deny]}
cluster:
  pods:
    - {name: default/server, labels: {app: server}, ports: [{name: http, port: 80, protocol: TCP}]}
    - {name: default/client, labels: {app: client}}
    - {name: default/banned, labels: {app: banned}}
policies:
  - apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: allow-clients, namespace: default}
    spec:
      endpointSelector: {matchLabels: {app: server}}
      ingress:
        - fromEndpoints: [{matchLabels: {app: client}}, {matchLabels: {app: banned}}]
          toPorts: [{ports: [{port: http, protocol: TCP}]}]
      ingressDeny:
        - fromEndpoints: [{matchLabels: {app: banned}}]
probes:
  - {from: default/client, to: default/server, port: 80, expect: allow}
`

func TestPolicyTrace(t *testing.T) {
	file := writeFile(t, "trace.yaml", traceScenario)
	tests := []struct {
		from, port string
		want       []string
	}{
		{"default/client", "80/TCP", []string{
			"Ingress at default/server",
			"CiliumNetworkPolicy default/allow-clients spec (",
			"allowed by entry identity",
			"spec.ingress[0]",
			"Verdict: ALLOWED",
		}},
		{"default/client", "http", []string{"80/TCP (named port http)", "Verdict: ALLOWED"}},
		{"default/client", "81/TCP", []string{"no rule allows identity", "POLICY_DENIED, default deny", "Verdict: DENIED"}},
		{"default/banned", "80/TCP", []string{"denied by entry", "POLICY_DENY", "spec.ingressDeny[0]", "Verdict: DENIED"}},
	}
	for _, tt := range tests {
		t.Run(tt.from+" "+tt.port, func(t *testing.T) {
			var out bytes.Buffer
			cmd := newRootCmd()
			cmd.SetOut(&out)
			cmd.SetErr(&out)
			cmd.SetArgs([]string{"policy", "trace", "--scenario", file, "--from", tt.from, "--to", "default/server", "--port", tt.port})
			if err := cmd.Execute(); err != nil {
				t.Fatalf("trace: %v\n%s", err, out.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}

func TestPolicyTraceErrors(t *testing.T) {
	file := writeFile(t, "trace.yaml", traceScenario)
	for _, args := range [][]string{
		{"--from", "default/nope", "--to", "default/server", "--port", "80/TCP"},
		{"--from", "default/client", "--to", "default/server", "--port", "nope"},
		{"--from", "default/client", "--to", "default/server", "--port", "80/XTP"},
	} {
		cmd := newRootCmd()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(append([]string{"policy", "trace", "--scenario", file}, args...))
		if err := cmd.Execute(); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}
