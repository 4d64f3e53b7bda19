package model

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/ciliaproject/cilia/conformance/scenario"
)

// lbCluster is the cluster of the load-balancing tests. Addresses (file
// order per node): node-1 192.168.0.11, node-2 192.168.0.12; web-1
// 10.244.1.10, client 10.244.1.11, other/web-x 10.244.1.12 on node-1;
// web-2 10.244.2.10, web-3 10.244.2.11 on node-2.
const lbCluster = `
apiVersion: conformance.cilia.dev/v1alpha1
kind: Scenario
metadata: {name: lb, features: [lb-clusterip, lb-nodeport]}
cluster:
  nodes: [{name: node-1}, {name: node-2}]
  namespaces: [{name: other}]
  pods:
    - {name: default/web-1, labels: {app: web, pod: web-1}, node: node-1, ports: [{name: http, port: 8080}]}
    - {name: default/web-2, labels: {app: web, pod: web-2}, node: node-2, ports: [{name: http, port: 8081}]}
    - {name: default/web-3, labels: {app: web, pod: web-3}, node: node-2}
    - {name: default/client, labels: {app: client}, node: node-1}
    - {name: other/web-x, labels: {app: web}, node: node-1, ports: [{name: http, port: 8080}]}
  externals:
    - {name: laptop, ipv4: 198.51.100.20, ipv6: "2001:db8::20"}
  services:
    - name: default/web
      type: NodePort
      clusterIPs: [10.96.0.10, "fd00:10:96::10"]
      externalIPs: [203.0.113.50, "2001:db8:50::1"]
      selector: {app: web}
      ports: [{name: http, port: 80, targetPort: http, nodePort: 30080}]
    - name: default/web-all
      clusterIP: 10.96.0.20
      selector: {app: web}
      ports: [{port: 80, targetPort: 9000}]
    - name: default/web-local
      type: NodePort
      externalTrafficPolicy: Local
      selector: {app: web}
      ports: [{port: 80, targetPort: http, nodePort: 30081}]
    - name: default/only-2
      type: NodePort
      selector: {pod: web-2}
      ports: [{port: 80, targetPort: http, nodePort: 30082}]
    - name: default/only-2-dsr
      type: NodePort
      selector: {pod: web-2}
      ports: [{port: 80, targetPort: http, nodePort: 30083}]
      annotations: {service.cilium.io/forwarding-mode: dsr}
    - name: default/only-1
      type: LoadBalancer
      loadBalancerIPs: [203.0.113.60]
      selector: {pod: web-1}
      ports: [{port: 443, targetPort: http, nodePort: 30084}]
    - name: default/affinity
      selector: {app: web}
      sessionAffinity: ClientIP
      ports: [{port: 80, targetPort: 9000}]
    - name: default/empty
      type: NodePort
      selector: {app: nothing}
      ports: [{port: 80, nodePort: 30085}]
    - name: default/client
      clusterIPs: [10.96.0.40, "fd00:10:96::40"]
      selector: {app: client}
      ports: [{port: 80, targetPort: 8080}]
    - name: default/v4-only
      type: NodePort
      clusterIP: 10.96.0.30
      selector: {app: web}
      ports: [{port: 80, targetPort: 9000, nodePort: 30086}]
`

// lbScenario loads lbCluster with more top-level sections (policies,
// probes, steps); a placeholder probe is added when extra has none.
func lbScenario(t *testing.T, extra string) *scenario.Scenario {
	t.Helper()
	if !strings.Contains(extra, "probes:") {
		extra += "\nprobes:\n  - {from: default/client, to: default/web-1, port: 8080, expect: allow}\n"
	}
	sc, err := scenario.Parse("lb.yaml", []byte(lbCluster+extra))
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

// lbModel is the model of a step of a load-balancing scenario.
func lbModel(t *testing.T, sc *scenario.Scenario, step int) *Model {
	t.Helper()
	m, err := New(sc.StateAt(step))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// peer parses a peer as scenario files write it.
func peer(s string) scenario.Peer {
	kind, name, found := strings.Cut(s, ":")
	switch {
	case found && kind == "ip":
		return scenario.Peer{Kind: scenario.PeerIP, Addr: netip.MustParseAddr(name)}
	case found && kind == "service":
		return scenario.Peer{Kind: scenario.PeerService, Name: name}
	case found && kind == "node":
		return scenario.Peer{Kind: scenario.PeerNode, Name: name}
	case strings.Contains(s, "/"):
		return scenario.Peer{Kind: scenario.PeerPod, Name: s}
	}
	return scenario.Peer{Kind: scenario.PeerExternal, Name: s}
}

// tcp is a TCP probe from a client source port; the family is the ip:
// destination's, else IPv4 unless the destination ends in " ipv6".
func tcp(from, to string, port, sport uint16) scenario.Probe {
	fam := scenario.IPv4
	if t, ok := strings.CutSuffix(to, " ipv6"); ok {
		to, fam = t, scenario.IPv6
	}
	p := scenario.Probe{From: peer(from), To: peer(to), Port: port, Protocol: scenario.TCP, Family: fam, SourcePort: sport}
	if p.To.Kind == scenario.PeerIP && p.To.Addr.Is6() {
		p.Family = scenario.IPv6
	}
	p.ID = fmt.Sprintf("%s -> %s %d/%s %s from port %d", from, to, port, p.Protocol, p.Family, sport)
	return p
}

// TestServiceFrontends checks which destinations are service frontends:
// the cluster IPs of service:, node ports on node: and node addresses,
// cluster IPs, external IPs and load-balancer IPs at a service port (both
// families); and what is not (a node at another port, a single-stack
// service's node port in the other family).
func TestServiceFrontends(t *testing.T) {
	m := lbModel(t, lbScenario(t, ""), 0)
	cases := []struct {
		probe scenario.Probe
		// frontend is the String of the frontend, "" for no frontend.
		frontend string
	}{
		{tcp("default/client", "service:default/web", 80, 40000), "service default/web 10.96.0.10:80/TCP (ClusterIP)"},
		{tcp("default/client", "service:default/web ipv6", 80, 40000), "service default/web [fd00:10:96::10]:80/TCP (ClusterIP)"},
		{tcp("default/client", "ip:10.96.0.10", 80, 40000), "service default/web 10.96.0.10:80/TCP (ClusterIP)"},
		{tcp("laptop", "node:node-2", 30080, 40000), "service default/web 192.168.0.12:30080/TCP (NodePort)"},
		{tcp("laptop", "node:node-2 ipv6", 30080, 40000), "service default/web [fd00:0:0:1::12]:30080/TCP (NodePort)"},
		{tcp("laptop", "ip:192.168.0.11", 30080, 40000), "service default/web 192.168.0.11:30080/TCP (NodePort)"},
		{tcp("laptop", "ip:203.0.113.50", 80, 40000), "service default/web 203.0.113.50:80/TCP (externalIP)"},
		{tcp("laptop", "ip:2001:db8:50::1", 80, 40000), "service default/web [2001:db8:50::1]:80/TCP (externalIP)"},
		{tcp("laptop", "ip:203.0.113.60", 443, 40000), "service default/only-1 203.0.113.60:443/TCP (LoadBalancer IP)"},
		{tcp("laptop", "ip:192.168.0.12", 30084, 40000), "service default/only-1 192.168.0.12:30084/TCP (NodePort)"},
		{tcp("laptop", "node:node-1", 30086, 40000), "service default/v4-only 192.168.0.11:30086/TCP (NodePort)"},
		// Not frontends: a node at a port no service has, an external IP
		// at a port the service does not expose, a single-stack IPv4
		// service's node port over IPv6.
		{tcp("laptop", "node:node-1", 22, 40000), ""},
		{tcp("laptop", "ip:203.0.113.50", 81, 40000), ""},
		{tcp("laptop", "node:node-1 ipv6", 30086, 40000), ""},
	}
	for _, c := range cases {
		f, ok, err := findFrontend(m.state, c.probe)
		if err != nil {
			t.Errorf("%s: %v", c.probe.ID, err)
			continue
		}
		got := ""
		if ok {
			got = f.String()
		}
		if got != c.frontend {
			t.Errorf("%s: frontend %q, want %q", c.probe.ID, got, c.frontend)
		}
	}
}

// TestServiceNotModelled checks that what the model does not evaluate is
// an error wrapping ErrNotModelled, never a guess.
func TestServiceNotModelled(t *testing.T) {
	m := lbModel(t, lbScenario(t, ""), 0)
	icmp := tcp("default/client", "service:default/web", 0, 0)
	icmp.Protocol = scenario.ICMP
	for _, p := range []scenario.Probe{
		tcp("node:node-1", "service:default/web", 80, 40000), // a node as a service client
		tcp("node:node-2", "node:node-1", 30080, 40000),      // idem, at a node port
		tcp("laptop", "ip:10.96.0.10", 80, 40000),            // a cluster IP from outside
		tcp("default/client", "ip:10.96.0.10", 81, 40000),    // a cluster IP at a port it does not expose
		tcp("default/client", "ip:203.0.113.60", 80, 40000),  // a load-balancer IP idem
		icmp, // ICMP to a service
	} {
		_, err := m.Probe(p)
		if !errors.Is(err, ErrNotModelled) {
			t.Errorf("%s: error %v, want one wrapping ErrNotModelled", p.ID, err)
		}
	}
}

// TestServiceBackends checks which backends a new connection may use:
// the selector within the service's namespace, a named targetPort
// resolved on each pod (a pod without the name is no backend), a numeric
// one on every pod, externalTrafficPolicy Local at the entry node for
// external traffic only, and terminating backends only when no active
// one is left.
func TestServiceBackends(t *testing.T) {
	sc := lbScenario(t, `
steps:
  - probes: [{from: default/client, to: default/web-1, port: 8080, expect: allow}]
  - terminatePods: [default/web-1, default/web-2]
    probes: [{from: default/client, to: default/web-1, port: 8080, expect: allow}]
  - terminatePods: [default/web-3]
    probes: [{from: default/client, to: default/web-1, port: 8080, expect: allow}]
`)
	cases := []struct {
		step  int
		probe scenario.Probe
		// entry is the entry node of external traffic, "" for a pod
		// client.
		entry string
		want  string // pod:port, comma-separated
	}{
		{0, tcp("default/client", "service:default/web", 80, 0), "", "default/web-1:8080,default/web-2:8081"},
		{0, tcp("default/client", "service:default/web ipv6", 80, 0), "", "default/web-1:8080,default/web-2:8081"},
		{0, tcp("default/client", "service:default/web-all", 80, 0), "", "default/web-1:9000,default/web-2:9000,default/web-3:9000"},
		{0, tcp("default/client", "service:default/web-local", 80, 0), "", "default/web-1:8080,default/web-2:8081"},
		{0, tcp("laptop", "node:node-1", 30081, 0), "node-1", "default/web-1:8080"},
		{0, tcp("laptop", "node:node-2", 30081, 0), "node-2", "default/web-2:8081"},
		{0, tcp("laptop", "node:node-2", 30080, 0), "node-2", "default/web-1:8080,default/web-2:8081"},
		{0, tcp("laptop", "node:node-1", 30082, 0), "node-1", "default/web-2:8081"},
		{0, tcp("laptop", "node:node-2", 30085, 0), "node-2", ""},
		// Step 1: web-1 and web-2 terminate; web-3 is active but has no
		// port http.
		{1, tcp("default/client", "service:default/web", 80, 0), "", "default/web-1:8080,default/web-2:8081"},
		{1, tcp("default/client", "service:default/web-all", 80, 0), "", "default/web-3:9000"},
		{1, tcp("laptop", "node:node-1", 30081, 0), "node-1", "default/web-1:8080"},
		// Step 2: all terminate: all are used.
		{2, tcp("default/client", "service:default/web-all", 80, 0), "", "default/web-1:9000,default/web-2:9000,default/web-3:9000"},
	}
	for _, c := range cases {
		m := lbModel(t, sc, c.step)
		f, ok, err := findFrontend(m.state, c.probe)
		if err != nil || !ok {
			t.Fatalf("%s: no frontend (%v)", c.probe.ID, err)
		}
		var got []string
		for _, b := range eligibleBackends(m.state, f, c.probe.Family, c.entry) {
			got = append(got, fmt.Sprintf("%s:%d", b.pod.Key(), b.port))
		}
		if strings.Join(got, ",") != c.want {
			t.Errorf("step %d: %s entering at %q: backends %v, want %s", c.step, c.probe.ID, c.entry, got, c.want)
		}
	}
}

// backendsOver probes repeatedly from source ports first..first+n-1 and
// returns the backend of each.
func backendsOver(t *testing.T, m *Model, p scenario.Probe, first, n int) []string {
	t.Helper()
	var out []string
	for sport := first; sport < first+n; sport++ {
		p.SourcePort = uint16(sport)
		a, err := m.Probe(p)
		if err != nil {
			t.Fatal(err)
		}
		if a.Verdict != scenario.Allow {
			t.Fatalf("%s: %s (%s)", p.ID, a.Verdict, a.Why)
		}
		out = append(out, a.Backend)
	}
	return out
}

func distinct(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return slices.Compact(out)
}

// TestServiceSelection checks the choice of a backend: fresh source ports
// spread over every backend, one source port always gets one backend,
// sessionAffinity ClientIP keeps a client on one backend whatever its
// source port (and different clients spread).
func TestServiceSelection(t *testing.T) {
	sc := lbScenario(t, `
probes:
  - {from: default/client, to: default/web-1, port: 8080, expect: allow}
steps:
  - addPods:
      - {name: default/c2, labels: {app: c}, node: node-2}
      - {name: default/c3, labels: {app: c}, node: node-2}
      - {name: default/c4, labels: {app: c}, node: node-2}
      - {name: default/c5, labels: {app: c}, node: node-2}
    probes: [{from: default/client, to: default/web-1, port: 8080, expect: allow}]
`)
	m := lbModel(t, sc, 1)
	all := []string{"default/web-1", "default/web-2", "default/web-3"}

	spread := backendsOver(t, m, tcp("default/client", "service:default/web-all", 80, 0), 40000, 30)
	if got := distinct(spread); !slices.Equal(got, all) {
		t.Errorf("30 connections from fresh ports reached %v, want all of %v", got, all)
	}
	spread6 := backendsOver(t, m, tcp("default/client", "service:default/web ipv6", 80, 0), 40000, 30)
	if got := distinct(spread6); !slices.Equal(got, all[:2]) {
		t.Errorf("IPv6: 30 connections from fresh ports reached %v, want all of %v", got, all[:2])
	}
	external := backendsOver(t, m, tcp("laptop", "node:node-1", 30080, 0), 40000, 30)
	if got := distinct(external); len(got) != 2 {
		t.Errorf("30 external connections reached %v, want both backends", got)
	}

	p := tcp("default/client", "service:default/web-all", 80, 41234)
	first, _ := m.Probe(p)
	for i := 0; i < 5; i++ {
		if a, _ := m.Probe(p); a.Backend != first.Backend {
			t.Errorf("source port 41234: backend %s, then %s", first.Backend, a.Backend)
		}
	}

	var perClient []string
	for _, c := range []string{"default/client", "default/c2", "default/c3", "default/c4", "default/c5"} {
		got := distinct(backendsOver(t, m, tcp(c, "service:default/affinity", 80, 0), 40000, 20))
		if len(got) != 1 {
			t.Errorf("sessionAffinity ClientIP: %s reached %v, want one backend", c, got)
		}
		perClient = append(perClient, got...)
	}
	if len(distinct(perClient)) < 2 {
		t.Errorf("sessionAffinity ClientIP: every client on %v, want clients spread", distinct(perClient))
	}
}

// TestServiceConsistency checks that removing a backend moves only the
// connections that were on it: for many clients (address and source
// port), the backend after web-2 is deleted is the one before unless it
// was web-2. It checks the same for a Maglev service's node port and for
// affinity clients.
func TestServiceConsistency(t *testing.T) {
	sc := lbScenario(t, `
probes:
  - {from: default/client, to: default/web-1, port: 8080, expect: allow}
steps:
  - deletePods: [default/web-2]
    probes: [{from: default/client, to: default/web-1, port: 8080, expect: allow}]
`)
	before, after := lbModel(t, sc, 0), lbModel(t, sc, 1)
	for _, p := range []scenario.Probe{
		tcp("default/client", "service:default/web-all", 80, 0),
		tcp("default/client", "service:default/web ipv6", 80, 0),
		tcp("laptop", "node:node-1", 30080, 0),
		tcp("laptop", "ip:203.0.113.50", 80, 0),
	} {
		b := backendsOver(t, before, p, 40000, 300)
		a := backendsOver(t, after, p, 40000, 300)
		moved, onRemoved := 0, 0
		for i := range b {
			if b[i] == "default/web-2" {
				onRemoved++
				if a[i] == "default/web-2" {
					t.Errorf("%s port %d: still on the deleted web-2", p.ID, 40000+i)
				}
				continue
			}
			if a[i] != b[i] {
				moved++
				t.Errorf("%s port %d: moved from %s to %s although %s remains", p.ID, 40000+i, b[i], a[i], b[i])
			}
		}
		if onRemoved == 0 {
			t.Errorf("%s: no connection was on web-2: the test shows nothing", p.ID)
		}
	}

	// Affinity: clients by address only, over many client addresses.
	p := tcp("default/client", "service:default/affinity", 80, 0)
	fb, _, _ := findFrontend(before.state, p)
	fa, _, _ := findFrontend(after.state, p)
	bs, as := eligibleBackends(before.state, fb, p.Family, ""), eligibleBackends(after.state, fa, p.Family, "")
	if len(bs) != 3 || len(as) != 2 {
		t.Fatalf("affinity: %d then %d backends, want 3 then 2", len(bs), len(as))
	}
	onRemoved := 0
	for i := 1; i <= 300; i++ {
		c := netip.AddrFrom4([4]byte{10, 1, byte(i / 256), byte(i % 256)})
		b, a := chooseBackend(bs, fb, c, 1, true), chooseBackend(as, fa, c, 2, true)
		switch {
		case b.pod.Key() == "default/web-2":
			onRemoved++
		case a.pod.Key() != b.pod.Key():
			t.Errorf("affinity: client %s moved from %s to %s", c, b.pod.Key(), a.pod.Key())
		}
	}
	if onRemoved == 0 {
		t.Errorf("affinity: no client was on web-2: the test shows nothing")
	}
}

// TestServiceNoBackends checks NO_SERVICE: a service whose selector
// matches nothing (from a pod and from outside), and externalTrafficPolicy
// Local entered at a node without a local backend; in-cluster clients of
// that service still reach every backend.
func TestServiceNoBackends(t *testing.T) {
	sc := lbScenario(t, `
steps:
  - deletePods: [default/web-1]
    probes: [{from: default/client, to: default/web-2, port: 8080, expect: allow}]
`)
	m := lbModel(t, sc, 0) // steps[0] is step 0: there are no top-level probes
	for _, c := range []struct {
		probe   scenario.Probe
		verdict scenario.Verdict
	}{
		{tcp("default/client", "service:default/empty", 80, 40000), scenario.Deny},
		{tcp("laptop", "node:node-1", 30085, 40000), scenario.Deny},
		{tcp("laptop", "node:node-1", 30081, 40000), scenario.Deny},
		{tcp("laptop", "node:node-2", 30081, 40000), scenario.Allow},
		{tcp("default/client", "service:default/web-local", 80, 40000), scenario.Allow},
		{tcp("default/client", "ip:192.168.0.11", 30081, 40000), scenario.Allow},
	} {
		a, err := m.Probe(c.probe)
		if err != nil {
			t.Fatal(err)
		}
		if a.Verdict != c.verdict {
			t.Errorf("%s: %s (%s), want %s", c.probe.ID, a.Verdict, a.Why, c.verdict)
			continue
		}
		if c.verdict == scenario.Deny && (a.DropReason != DropNoService || a.Backend != "" || len(a.ReplyVia) != 0) {
			t.Errorf("%s: %+v, want dropReason %s and no backend", c.probe.ID, a, DropNoService)
		}
	}
}

// TestServiceSourceAndReply checks the source address the backend sees
// and the nodes the reply passes: a pod client keeps its address (also at
// a node port); an external client keeps its address when the backend is
// on the entry node, with DSR and with externalTrafficPolicy Local, and is
// source NATed to the entry node's address otherwise; a pod reaching
// itself sees the frontend address. External IPs enter at the first node.
func TestServiceSourceAndReply(t *testing.T) {
	m := lbModel(t, lbScenario(t, ""), 0)
	const (
		client = "10.244.1.11"
		laptop = "198.51.100.20"
		node1  = "192.168.0.11"
		node2  = "192.168.0.12"
	)
	cases := []struct {
		probe   scenario.Probe
		backend string
		seen    string
		via     string
	}{
		{tcp("default/client", "service:default/only-2", 80, 40000), "default/web-2", client, "node-1,node-2"},
		{tcp("default/client", "node:node-2", 30082, 40000), "default/web-2", client, "node-1,node-2"},
		{tcp("default/client", "ip:203.0.113.60", 443, 40000), "default/web-1", client, "node-1"},
		{tcp("default/client", "service:default/only-2-dsr", 80, 40000), "default/web-2", client, "node-1,node-2"},
		{tcp("laptop", "node:node-2", 30082, 40000), "default/web-2", laptop, "node-2"},
		{tcp("laptop", "node:node-1", 30082, 40000), "default/web-2", node1, "node-1,node-2"},
		{tcp("laptop", "node:node-1 ipv6", 30082, 40000), "default/web-2", "fd00:0:0:1::11", "node-1,node-2"},
		{tcp("laptop", "node:node-1", 30083, 40000), "default/web-2", laptop, "node-2"},
		{tcp("laptop", "node:node-2", 30081, 40000), "default/web-2", laptop, "node-2"},
		{tcp("laptop", "ip:203.0.113.60", 443, 40000), "default/web-1", laptop, "node-1"},
		{tcp("laptop", "node:node-2", 30084, 40000), "default/web-1", node2, "node-1,node-2"},
		{tcp("default/client", "service:default/client", 80, 40000), "default/client", "10.96.0.40", "node-1"},
		{tcp("default/client", "service:default/client ipv6", 80, 40000), "default/client", "fd00:10:96::40", "node-1"},
	}
	for _, c := range cases {
		a, err := m.Probe(c.probe)
		if err != nil {
			t.Fatal(err)
		}
		if a.Verdict != scenario.Allow || a.Backend != c.backend || a.SourceSeen.String() != c.seen || strings.Join(a.ReplyVia, ",") != c.via {
			t.Errorf("%s: %s backend %s seen %s via %v (%s); want allow backend %s seen %s via %s",
				c.probe.ID, a.Verdict, a.Backend, a.SourceSeen, a.ReplyVia, a.Why, c.backend, c.seen, c.via)
		}
	}
	// An external IP of a service whose backends are on both nodes: source
	// NAT exactly when the backend is not on node-1, the first node.
	p := tcp("laptop", "ip:203.0.113.50", 80, 0)
	for sport := uint16(40000); sport < 40020; sport++ {
		p.SourcePort = sport
		a, _ := m.Probe(p)
		want := laptop
		if a.Backend == "default/web-2" {
			want = node1
		}
		if a.SourceSeen.String() != want {
			t.Errorf("%s: backend %s seen %s, want %s", p.ID, a.Backend, a.SourceSeen, want)
		}
	}
}

// TestServicePolicy checks that policy applies to the backend as to a
// direct connection at the target port: the client's egress towards the
// backend (the service port does not count), the backend's ingress from
// the source it sees (the client, or the entry node as remote-node when
// source NATed), and for a pod reaching itself egress only.
func TestServicePolicy(t *testing.T) {
	sc := lbScenario(t, `
policies:
  - apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: web-2-in}
    spec:
      endpointSelector: {matchLabels: {pod: web-2}}
      ingress:
        - fromEndpoints: [{matchLabels: {app: client}}]
          toPorts: [{ports: [{port: "8081"}]}]
        - fromEntities: [remote-node]
          toPorts: [{ports: [{port: "8081"}]}]
  - apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: web-1-in}
    spec:
      endpointSelector: {matchLabels: {pod: web-1}}
      ingress:
        - fromEntities: [world]
  - apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: client-in-out}
    spec:
      endpointSelector: {matchLabels: {app: client}}
      ingress: [{}]
      egress:
        - toEndpoints: [{matchLabels: {pod: web-2}}]
          toPorts: [{ports: [{port: "8081"}]}]
        - toEndpoints: [{matchLabels: {pod: web-1}}]
          toPorts: [{ports: [{port: "80"}]}]
  - apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: client-self}
    spec:
      endpointSelector: {matchLabels: {app: client}}
      egress:
        - toEndpoints: [{matchLabels: {app: client}}]
          toPorts: [{ports: [{port: "8080"}]}]
`)
	m := lbModel(t, sc, 0)
	cases := []struct {
		probe      scenario.Probe
		verdict    scenario.Verdict
		dropReason string
		why        string
	}{
		// Egress to web-2 at its target port 8081 is allowed; web-2
		// allows the client in.
		{tcp("default/client", "service:default/only-2", 80, 40000), scenario.Allow, "", "web-2 ingress allowed"},
		// Egress allows web-1 at 80, the service port of only-1 (443 ->
		// http 8080): the target port counts, so denied.
		{tcp("default/client", "ip:203.0.113.60", 443, 40000), scenario.Deny, DropPolicyDenied, "default/client egress: nothing allows it"},
		// From outside: source NAT at node-1 makes web-2 see remote-node,
		// allowed; entering at node-2 web-2 sees the world, denied.
		{tcp("laptop", "node:node-1", 30082, 40000), scenario.Allow, "", "web-2 ingress allowed"},
		{tcp("laptop", "node:node-2", 30082, 40000), scenario.Deny, DropPolicyDenied, "web-2 ingress: nothing allows it"},
		// DSR: web-2 sees the world even through node-1.
		{tcp("laptop", "node:node-1", 30083, 40000), scenario.Deny, DropPolicyDenied, "direct server return"},
		// web-1 allows the world: through node-2 it sees remote-node.
		{tcp("laptop", "node:node-1", 30084, 40000), scenario.Allow, "", "web-1 ingress allowed"},
		{tcp("laptop", "node:node-2", 30084, 40000), scenario.Deny, DropPolicyDenied, "web-1 ingress: nothing allows it"},
		// Hairpin: the client's ingress allows nothing from itself
		// ([{}] allows nothing), but ingress is skipped; egress to itself
		// at 8080 is allowed.
		{tcp("default/client", "service:default/client", 80, 40000), scenario.Allow, "", "hairpin"},
	}
	for _, c := range cases {
		a, err := m.Probe(c.probe)
		if err != nil {
			t.Fatal(err)
		}
		if a.Verdict != c.verdict || a.DropReason != c.dropReason || !strings.Contains(a.Why, c.why) {
			t.Errorf("%s: %s %s (%s); want %s %s (%q)", c.probe.ID, a.Verdict, a.DropReason, a.Why, c.verdict, c.dropReason, c.why)
		}
	}
}

// TestHairpinEgressDeny checks that a pod reaching itself through a
// service is subject to its egress policy with itself as the peer, at
// the target port.
func TestHairpinEgressDeny(t *testing.T) {
	sc := lbScenario(t, `
policies:
  - apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: client-no-self}
    spec:
      endpointSelector: {matchLabels: {app: client}}
      egressDeny:
        - toEndpoints: [{matchLabels: {app: client}}]
          toPorts: [{ports: [{port: "8080"}]}]
`)
	a, err := lbModel(t, sc, 0).Probe(tcp("default/client", "service:default/client", 80, 40000))
	if err != nil {
		t.Fatal(err)
	}
	if a.Verdict != scenario.Deny || a.DropReason != DropPolicyDeny {
		t.Errorf("hairpin with egress denied to itself: %+v, want deny %s", a, DropPolicyDeny)
	}
}
