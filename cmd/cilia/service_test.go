package main

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
)

// serviceScenario has a NodePort service (Maglev, affinity, DSR,
// externalTrafficPolicy Local, a named target port) with backends on two
// nodes; step 1 marks web-1 terminating, step 2 deletes both.
const serviceScenario = `apiVersion: conformance.cilia.dev/v1alpha1
kind: Scenario
metadata: {name: service-list, features: [lb-nodeport, lb-maglev]}
cluster:
  nodes:
    - {name: node-1, ipv4: 192.168.0.11}
    - {name: node-2, ipv4: 192.168.0.12}
  pods:
    - {name: default/web-1, node: node-1, ipv4: 10.244.1.10, labels: {app: web}, ports: [{name: http, port: 8080}]}
    - {name: default/web-2, node: node-2, ipv4: 10.244.2.10, labels: {app: web}, ports: [{name: http, port: 8080}]}
    - {name: default/client, node: node-1, ipv4: 10.244.1.20}
  services:
    - name: default/web
      type: NodePort
      clusterIP: 10.96.0.10
      externalTrafficPolicy: Local
      sessionAffinity: ClientIP
      sessionAffinityConfig: {clientIP: {timeoutSeconds: 30}}
      selector: {app: web}
      annotations: {service.cilium.io/lb-algorithm: maglev, service.cilium.io/forwarding-mode: dsr}
      ports: [{port: 80, targetPort: http, nodePort: 30080}]
probes:
  - {from: default/client, to: service:default/web, port: 80, expect: allow}
steps:
  - terminatePods: [default/web-1]
    probes:
      - {from: default/client, to: service:default/web, port: 80, expect: allow}
  - deletePods: [default/web-1, default/web-2]
    probes:
      - {from: default/client, to: service:default/web, port: 80, expect: {verdict: deny, dropReason: NO_SERVICE}}
`

func runService(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd := newRootCmd()
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(append([]string{"service", "list"}, args...))
	err := cmd.Execute()
	return out.String(), err
}

func TestServiceListTable(t *testing.T) {
	file := writeFile(t, "svc.yaml", serviceScenario)
	tests := []struct {
		name string
		args []string
		want []string
		not  []string
	}{
		{"node-1", []string{"--maglev-size", "251"}, []string{
			"Node node-1, step 0: 9 frontend entries (Maglev table size 251)",
			"10.96.0.10:80/TCP  default/web  ClusterIP  scope=internal  flags=affinity(30s),maglev  rev-nat=",
			"192.168.0.11:30080/TCP  default/web  NodePort  scope=internal  flags=nodeport,external,affinity(30s),maglev,dsr",
			"192.168.0.11:30080/TCP  default/web  NodePort  scope=external  flags=nodeport,external,local,affinity(30s),dsr",
			"10.244.1.10:8080  default/web-1  node-1  active",
			"10.244.2.10:8080  default/web-2  node-2  active",
			"(126/251)", "(125/251)",
		}, []string{"PROBLEM", "terminating"}},
		{"node-2 external entries hold node-2's backend", []string{"--node", "node-2"}, []string{
			"Node node-2, step 0",
			"192.168.0.12:30080/TCP  default/web  NodePort  scope=external  flags=nodeport,external,local,affinity(30s),dsr",
		}, nil},
		{"step 1: web-1 terminating, out of the Maglev table", []string{"--step", "1"}, []string{
			"10.244.1.10:8080  default/web-1  node-1  terminating  0.00% (0/16381)",
			"10.244.2.10:8080  default/web-2  node-2  active       100.00% (16381/16381)",
		}, []string{"PROBLEM"}},
		{"step 2: no backends", []string{"--step", "2"}, []string{"no backends"}, []string{"default/web-1", "PROBLEM"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := runService(t, append([]string{"--scenario", file}, tt.args...)...)
			if err != nil {
				t.Fatalf("service list: %v\n%s", err, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tt.not {
				if strings.Contains(out, w) {
					t.Errorf("output has %q:\n%s", w, out)
				}
			}
		})
	}
	// node-2's external entry for its own address has web-2 only.
	out, err := runService(t, "--scenario", file, "--node", "node-2", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var l serviceList
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	found := false
	for _, f := range l.Frontends {
		if f.Address.String() == "192.168.0.12:30080" && f.Scope == "external" {
			found = true
			if len(f.Backends) != 1 || f.Backends[0].Pod != "default/web-2" {
				t.Errorf("node-2 external entry: %+v", f.Backends)
			}
		}
	}
	if !found {
		t.Errorf("no external entry for node-2's address:\n%s", out)
	}
}

func TestServiceListJSON(t *testing.T) {
	file := writeFile(t, "svc.yaml", serviceScenario)
	out, err := runService(t, "--scenario", file, "-o", "json")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var l serviceList
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	if l.Node != "node-1" || l.MaglevSize != 16381 || len(l.Frontends) != 9 {
		t.Fatalf("node %q, M %d, %d frontends", l.Node, l.MaglevSize, len(l.Frontends))
	}
	for _, f := range l.Frontends {
		if f.MaglevSize == 0 {
			continue
		}
		total, entries := 0.0, 0
		for _, b := range f.Backends {
			total += b.MaglevShare
			entries += b.MaglevEntries
		}
		if entries != f.MaglevSize || math.Abs(total-100) > 1e-9 {
			t.Errorf("%s %s: Maglev shares sum to %d entries, %.4f%%", f.Address, f.Scope, entries, total)
		}
	}
}

func TestServiceListErrors(t *testing.T) {
	file := writeFile(t, "svc.yaml", serviceScenario)
	for _, args := range [][]string{
		{"--step", "3"},
		{"--step", "-1"},
		{"--node", "node-9"},
		{"-o", "yaml"},
		{"--maglev-size", "1000"},
	} {
		if out, err := runService(t, append([]string{"--scenario", file}, args...)...); err == nil {
			t.Errorf("%v: no error:\n%s", args, out)
		}
	}
}
