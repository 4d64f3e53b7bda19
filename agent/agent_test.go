package agent

import (
	"net/netip"
	"testing"

	"github.com/ciliaproject/cilia/agent/identity"
	"github.com/ciliaproject/cilia/agent/policy"
	"github.com/ciliaproject/cilia/agent/policy/load"
	"github.com/ciliaproject/cilia/datapath/maps"
)

// testCluster is two namespaces with three pods each, on one node, plus a
// second node.
func testCluster(t *testing.T) (*Agent, map[string]*MemoryDatapath) {
	t.Helper()
	a := New()
	dps := map[string]*MemoryDatapath{"node-1": NewMemoryDatapath(), "node-2": NewMemoryDatapath()}
	must(t, a.AddNode(Node{Name: "node-1", IPv4: netip.MustParseAddr("192.168.0.11")}, dps["node-1"]))
	must(t, a.AddNode(Node{Name: "node-2", IPv4: netip.MustParseAddr("192.168.0.12")}, dps["node-2"]))
	must(t, a.SetNamespace("x", map[string]string{"kubernetes.io/metadata.name": "x", "team": "blue"}))
	must(t, a.SetNamespace("y", map[string]string{"kubernetes.io/metadata.name": "y", "team": "red"}))
	ip := 10
	for _, ns := range []string{"x", "y"} {
		for _, name := range []string{"a", "b", "c"} {
			ip++
			node := "node-1"
			if name == "c" {
				node = "node-2"
			}
			must(t, a.AddPod(Pod{Namespace: ns, Name: name, Node: node, Labels: map[string]string{"pod": name},
				IPv4:  netip.AddrFrom4([4]byte{10, 244, 1, byte(ip)}),
				Ports: []policy.NamedPort{{Name: "http", Port: uint16(8000 + ip), Proto: 6}}}))
		}
	}
	return a, dps
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func apply(t *testing.T, a *Agent, doc string) {
	t.Helper()
	res := load.Bytes("test.yaml", []byte(doc))
	if res.HasErrors(false) || len(res.Policies) == 0 {
		t.Fatalf("load policy: %v", res.Diagnostics)
	}
	for _, p := range res.Policies {
		must(t, a.ApplyPolicy(p))
	}
}

// verdict decides from → to as the datapath would: egress at from (if a
// pod), ingress at to (if a pod).
func verdict(t *testing.T, a *Agent, from, to string, proto uint8, port uint16) string {
	t.Helper()
	addrOf := func(s string) (netip.Addr, string) {
		if addr, err := netip.ParseAddr(s); err == nil {
			return addr, ""
		}
		ps := a.pods[s]
		if ps == nil {
			t.Fatalf("no pod %s", s)
		}
		return ps.pod.IPv4, ps.pod.Node
	}
	fromAddr, fromNode := addrOf(from)
	toAddr, toNode := addrOf(to)
	if fromNode != "" {
		pol, err := a.EndpointPolicy(from)
		must(t, err)
		peer, err := a.IdentityOfAddr(fromNode, toAddr)
		must(t, err)
		if d := pol.Lookup(maps.Egress, peer, proto, port); !d.Allowed {
			return "egress:" + d.DropReason
		}
	}
	if toNode != "" {
		pol, err := a.EndpointPolicy(to)
		must(t, err)
		peer, err := a.IdentityOfAddr(toNode, fromAddr)
		must(t, err)
		if d := pol.Lookup(maps.Ingress, peer, proto, port); !d.Allowed {
			return "ingress:" + d.DropReason
		}
	}
	return "allow"
}

type probe struct {
	from, to string
	proto    uint8
	port     uint16
	want     string
}

func TestResolution(t *testing.T) {
	tests := []struct {
		name     string
		policies string
		probes   []probe
	}{{
		name: "no policy allows everything",
		probes: []probe{
			{"x/a", "y/b", 6, 80, "allow"},
			{"203.0.113.7", "x/a", 17, 53, "allow"},
		},
	}, {
		name: "CNP L3 ingress scoped to the policy namespace",
		policies: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: x}
spec:
  endpointSelector: {matchLabels: {pod: a}}
  ingress:
  - fromEndpoints: [{matchLabels: {pod: b}}]
`,
		probes: []probe{
			{"x/b", "x/a", 6, 80, "allow"},
			{"x/b", "x/a", 1, 8, "allow"},
			{"y/b", "x/a", 6, 80, "ingress:POLICY_DENIED"},
			{"x/c", "x/a", 6, 80, "ingress:POLICY_DENIED"},
			{"x/a", "x/b", 6, 80, "allow"},
			{"192.168.0.11", "x/a", 6, 80, "allow"}, // own node: allow-localhost
			{"192.168.0.12", "x/a", 6, 80, "ingress:POLICY_DENIED"},
		},
	}, {
		name: "namespace labels span namespaces",
		policies: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: x}
spec:
  endpointSelector: {}
  ingress:
  - fromEndpoints: [{matchLabels: {io.cilium.k8s.namespace.labels.team: red}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`,
		probes: []probe{
			{"y/a", "x/b", 6, 80, "allow"},
			{"y/a", "x/b", 6, 81, "ingress:POLICY_DENIED"},
			{"y/a", "x/b", 17, 80, "ingress:POLICY_DENIED"},
			{"x/a", "x/b", 6, 80, "ingress:POLICY_DENIED"},
		},
	}, {
		name: "deny wins over a more specific allow",
		policies: `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: allow, namespace: x}
spec:
  endpointSelector: {matchLabels: {pod: a}}
  ingress:
  - fromEndpoints: [{matchLabels: {pod: b}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: deny, namespace: x}
spec:
  endpointSelector: {matchLabels: {pod: a}}
  ingressDeny:
  - fromEndpoints: [{matchLabels: {pod: b}}]
    toPorts: [{ports: [{port: "0", protocol: TCP}]}]
`,
		probes: []probe{
			{"x/b", "x/a", 6, 80, "ingress:POLICY_DENY"},
			{"x/b", "x/a", 17, 80, "ingress:POLICY_DENIED"},
		},
	}, {
		name: "KNP egress ipBlock with except and named port egress",
		policies: `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress:
  - to: [{ipBlock: {cidr: 203.0.113.0/24, except: [203.0.113.0/28]}}]
  - to: [{namespaceSelector: {matchLabels: {team: red}}}]
    ports: [{port: http}]
`,
		probes: []probe{
			{"x/a", "203.0.113.100", 6, 443, "allow"},
			{"x/a", "203.0.113.7", 6, 443, "egress:POLICY_DENIED"},
			{"x/a", "198.51.100.1", 6, 443, "egress:POLICY_DENIED"},
			{"x/a", "y/b", 6, 8015, "allow"}, // y/b's http
			{"x/a", "y/b", 6, 8014, "egress:POLICY_DENIED"},
			{"x/a", "y/a", 6, 8014, "allow"}, // y/a's http
			{"x/a", "x/b", 6, 8012, "egress:POLICY_DENIED"},
		},
	}, {
		name: "enableDefaultDeny false only adds denies",
		policies: `
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: p}
spec:
  endpointSelector: {}
  enableDefaultDeny: {ingress: false}
  ingressDeny:
  - fromEntities: [world]
`,
		probes: []probe{
			{"203.0.113.7", "x/a", 6, 80, "ingress:POLICY_DENY"},
			{"y/a", "x/a", 6, 80, "allow"},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, _ := testCluster(t)
			if tt.policies != "" {
				apply(t, a, tt.policies)
			}
			for _, p := range tt.probes {
				if got := verdict(t, a, p.from, p.to, p.proto, p.port); got != p.want {
					t.Errorf("%s -> %s %d/%d: got %s, want %s", p.from, p.to, p.port, p.proto, got, p.want)
				}
			}
		})
	}
}

// TestDatapathMatchesResolution checks that what the agent wrote into each
// endpoint's map is exactly the resolved map state.
func TestDatapathMatchesResolution(t *testing.T) {
	a, dps := testCluster(t)
	apply(t, a, `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: x}
spec:
  podSelector: {}
  ingress:
  - from: [{podSelector: {matchLabels: {pod: b}}}]
    ports: [{port: 80}, {port: 1000, endPort: 1100, protocol: UDP}]
`)
	must(t, a.SetPodLabels("y/a", map[string]string{"pod": "b"}))
	for key, ps := range a.pods {
		ep := a.nodes[ps.pod.Node].endpoints[key]
		mem := dps[ps.pod.Node].Endpoints[ep.id]
		want := ep.policy.MapState()
		if len(mem.Policy) != len(want) {
			t.Fatalf("%s: datapath has %d entries, resolution %d", key, len(mem.Policy), len(want))
		}
		for k, v := range want {
			if mem.Policy[k] != v.Entry {
				t.Errorf("%s: key %+v: datapath %+v, want %+v", key, k, mem.Policy[k], v.Entry)
			}
		}
		if mem.Ingress != ep.policy.Ingress.Enforced || mem.Egress != ep.policy.Egress.Enforced {
			t.Errorf("%s: enforcement %v/%v, want %v/%v", key, mem.Ingress, mem.Egress,
				ep.policy.Ingress.Enforced, ep.policy.Egress.Enforced)
		}
	}
}

// TestIncrementalWrites checks that changes touch only affected entries.
func TestIncrementalWrites(t *testing.T) {
	a, dps := testCluster(t)
	apply(t, a, `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: x}
spec:
  endpointSelector: {matchLabels: {pod: a}}
  ingress:
  - fromEndpoints: [{matchLabels: {role: client}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`)
	xa := a.nodes["node-1"].endpoints["x/a"]
	mem := dps["node-1"].Endpoints[xa.id]
	puts, dels := mem.Puts, mem.Deletes

	// A policy for namespace y does not touch x/a.
	apply(t, a, `
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: q, namespace: "y"}
spec:
  endpointSelector: {}
  ingress: [{}]
`)
	if mem.Puts != puts || mem.Deletes != dels {
		t.Fatalf("unrelated policy wrote x/a's map: puts %d->%d deletes %d->%d", puts, mem.Puts, dels, mem.Deletes)
	}

	// A new client identity adds exactly one entry to x/a.
	must(t, a.AddPod(Pod{Namespace: "x", Name: "client", Node: "node-2", Labels: map[string]string{"role": "client"},
		IPv4: netip.MustParseAddr("10.244.2.50")}))
	if mem.Puts != puts+1 || mem.Deletes != dels {
		t.Fatalf("new identity: puts %d->%d deletes %d->%d, want exactly one put", puts, mem.Puts, dels, mem.Deletes)
	}
	id, err := a.PodIdentity("x/client")
	must(t, err)
	if got := verdict(t, a, "x/client", "x/a", 6, 80); got != "allow" {
		t.Fatalf("client -> x/a: %s", got)
	}

	// Deleting the pod releases the identity and deletes that entry only.
	must(t, a.DeletePod("x/client"))
	if mem.Deletes != dels+1 {
		t.Fatalf("released identity: deletes %d->%d, want one", dels, mem.Deletes)
	}
	if _, ok := a.Identity(id.ID); ok {
		t.Fatal("identity of the deleted pod still allocated")
	}
	for k := range mem.Policy {
		if identity.NumericIdentity(k.Identity) == id.ID {
			t.Fatalf("entry of released identity %d left: %+v", id.ID, k)
		}
	}
}
