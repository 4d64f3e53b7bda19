package scenario

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/ciliaproject/cilia/conformance/features"
)

// mustParse parses src or fails the test.
func mustParse(t *testing.T, src string) *Scenario {
	t.Helper()
	sc, err := Parse("t.yaml", []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return sc
}

// probeLines formats every probe as "ID | expectation".
func probeLines(sc *Scenario) []string {
	var out []string
	for _, p := range sc.Probes() {
		out = append(out, p.ID+" | "+p.Expect.String())
	}
	return out
}

// diffLines reports the difference between two line lists.
func diffLines(t *testing.T, got, want []string) {
	t.Helper()
	if reflect.DeepEqual(got, want) {
		return
	}
	t.Errorf("got %d lines, want %d:\ngot:\n\t%s\nwant:\n\t%s", len(got), len(want),
		strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
}

func TestBadInputs(t *testing.T) {
	for _, c := range append(badCases, moreBadCases...) {
		t.Run(c.name, func(t *testing.T) {
			sc, err := Parse("t.yaml", []byte(c.src))
			if err == nil {
				t.Fatalf("Parse succeeded, want problems:\n%s", strings.Join(c.want, "\n"))
			}
			if sc != nil {
				t.Errorf("Parse returned a scenario with an error")
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error %T is not a *ValidationError: %v", err, err)
			}
			var got []string
			for _, p := range ve.Problems {
				got = append(got, p.String())
				if p.File != "t.yaml" {
					t.Errorf("problem %q has file %q", p, p.File)
				}
			}
			diffLines(t, got, c.want)
			if err.Error() != strings.Join(c.want, "\n") {
				t.Errorf("Error() = %q", err.Error())
			}
		})
	}
}

func TestErrorsAsThroughWrapping(t *testing.T) {
	_, err := Parse("x.yaml", []byte(head))
	wrapped := fmt.Errorf("suite: %w", err)
	var ve *ValidationError
	if !errors.As(wrapped, &ve) || len(ve.Problems) != 1 {
		t.Fatalf("errors.As(%v) = %v", wrapped, ve)
	}
	p := ve.Problems[0]
	if p.File != "x.yaml" || p.Line != 1 || p.Column != 1 || p.Path != "" {
		t.Errorf("problem = %+v", p)
	}
}

func TestProblemString(t *testing.T) {
	for _, c := range []struct {
		p    Problem
		want string
	}{
		{Problem{File: "a.yaml", Line: 3, Column: 7, Path: "probes[0].port", Message: "bad"}, "a.yaml:3:7: probes[0].port: bad"},
		{Problem{File: "a.yaml", Line: 3, Message: "bad"}, "a.yaml:3: bad"},
		{Problem{File: "a.yaml", Message: "bad"}, "a.yaml: bad"},
		{Problem{Path: "kind", Message: "bad"}, "kind: bad"},
	} {
		if got := c.p.String(); got != c.want {
			t.Errorf("String() = %q, want %q", got, c.want)
		}
	}
}

// docExampleRE finds the full scenario examples of the format reference.
var docExampleRE = regexp.MustCompile("(?s)```yaml\n(# example: (\\S+)\n.*?)```")

// docProbes are the exact probes each documentation example expands to.
var docProbes = map[string][]string{
	"star-wars": {
		"step 0: default/tiefighter -> default/deathstar http=80/TCP | allow",
		"step 0: default/xwing -> default/deathstar 80/TCP | deny dropReason=POLICY_DENIED",
		"step 0: default/tiefighter -> service:default/deathstar 80/TCP | allow backendIn=[default/deathstar] sourceSeen=client",
		"step 0: default/xwing -> default/deathstar 80/TCP ipv6 | deny",
		"step 0: default/tiefighter -> internet https=443/TCP | allow",
	},
	"services": {
		"step 0: default/client -> service:default/web http=80/TCP | allow backendIn=[default/web-1,default/web-2] sourceSeen=client",
		"step 0: laptop -> node:node-2 30080/TCP | allow backendIn=[default/web-1,default/web-2]",
	},
	"named-ports": {
		"step 0: default/client -> default/dns dns=53/UDP | allow",
		"step 0: default/client -> default/dns dns-tcp=53/TCP | allow",
		"step 0: default/client -> default/dns metrics=9153/TCP | deny",
		"step 0: default/client -> default/dns ICMP | deny",
	},
	"l7": {
		"step 0: default/tiefighter -> default/deathstar http=80/TCP http POST /v1/request-landing | allow",
		"step 0: default/tiefighter -> default/deathstar http=80/TCP http PUT /v1/exhaust-port | deny httpStatus=403",
		"step 0: default/tiefighter -> default/kafka kafka=9092/TCP kafka produce deathstar-plans | allow",
		"step 0: default/tiefighter -> default/kafka kafka=9092/TCP kafka fetch deathstar-plans | deny",
	},
	"matrix": {
		"step 0: x/b -> x/a 80/TCP | allow",
		"step 0: x/b -> x/a 81/TCP | allow",
		"step 0: y/a -> x/a 80/TCP | deny",
		"step 0: y/a -> x/a 81/TCP | deny",
		"step 0: y/a -> x/a serve-80=80/TCP | deny",
		"step 0: y/a -> x/b serve-80=80/TCP | allow",
	},
	"steps": {
		"step 0: x/b -> x/a http=80/TCP | allow",
		"step 1: x/b -> x/a http=80/TCP | deny",
		"step 2: x/c -> x/a http=80/TCP | allow",
		"step 3: x/c -> x/a http=80/TCP | deny",
	},
}

func TestDocExamples(t *testing.T) {
	doc, err := os.ReadFile("../../docs/scenario-format.md")
	if err != nil {
		t.Fatal(err)
	}
	examples := docExampleRE.FindAllSubmatch(doc, -1)
	if len(examples) != len(docProbes) {
		t.Errorf("docs/scenario-format.md has %d examples, the test knows %d", len(examples), len(docProbes))
	}
	for _, m := range examples {
		name, text := string(m[2]), string(m[1])
		t.Run(name, func(t *testing.T) {
			file := filepath.Join("testdata", "docs", name+".yaml")
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("every doc example must be in testdata: %v", err)
			}
			if string(data) != text {
				t.Errorf("%s differs from the example in docs/scenario-format.md", file)
			}
			sc, err := Load(file)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			diffLines(t, probeLines(sc), docProbes[name])
			if name == "steps" {
				checkDocStepsState(t, sc)
			}
		})
	}
	scs, err := LoadDir(filepath.Join("testdata", "docs"))
	if err != nil || len(scs) != len(docProbes) {
		t.Fatalf("LoadDir(testdata/docs) = %d scenarios, %v", len(scs), err)
	}
}

func TestDefaults(t *testing.T) {
	sc := mustParse(t, head+`cluster:
  pods:
    - {name: default/a, labels: {app: a}}
    - {name: x/b}
  externals:
    - {name: world, ipv6: "2001:db8::1"}
probes:
  - {from: default/a, to: x/b, port: 80, expect: allow}
  - {from: x/b, to: world, port: 443, family: ipv6, protocol: UDP, expect: deny}
  - {from: node:node-1, to: default/a, protocol: ICMP, expect: allow}
  - {from: default/a, to: "ip:fd00::99", port: 80, expect: deny}
`)
	st := sc.InitialState()
	wantNode := Node{Name: "node-1", IPv4: netip.MustParseAddr("192.168.0.11"), IPv6: netip.MustParseAddr("fd00:0:0:1::11")}
	if len(st.Nodes) != 1 || st.Nodes[0] != wantNode {
		t.Errorf("nodes = %+v, want [%+v]", st.Nodes, wantNode)
	}
	wantNS := []Namespace{
		{Name: "default", Labels: map[string]string{NamespaceNameLabel: "default"}},
		{Name: "x", Labels: map[string]string{NamespaceNameLabel: "x"}},
	}
	if !reflect.DeepEqual(st.Namespaces, wantNS) {
		t.Errorf("namespaces = %+v, want %+v", st.Namespaces, wantNS)
	}
	a, _ := st.Pod("default/a")
	b, _ := st.Pod("x/b")
	for _, c := range []struct {
		pod          Pod
		node, v4, v6 string
	}{
		{a, "node-1", "10.244.1.10", "fd00:10:244:1::10"},
		{b, "node-1", "10.244.1.11", "fd00:10:244:1::11"},
	} {
		if c.pod.Node != c.node || c.pod.IPv4.String() != c.v4 || c.pod.IPv6.String() != c.v6 {
			t.Errorf("pod %s: node %s, %s, %s; want %s, %s, %s", c.pod.Key(), c.pod.Node, c.pod.IPv4, c.pod.IPv6, c.node, c.v4, c.v6)
		}
	}
	if b.Labels == nil || len(b.Labels) != 0 {
		t.Errorf("pod without labels has %#v, want an empty map", b.Labels)
	}
	diffLines(t, probeLines(sc), []string{
		"step 0: default/a -> x/b 80/TCP | allow",
		"step 0: x/b -> world 443/UDP ipv6 | deny",
		"step 0: node:node-1 -> default/a ICMP | allow",
		"step 0: default/a -> ip:fd00::99 80/TCP ipv6 | deny",
	})
	p := sc.Steps[0].Probes
	if p[0].Protocol != TCP || p[0].Family != IPv4 || p[0].Features != nil || p[0].Line != 11 || p[0].Path != "probes[0]" {
		t.Errorf("probe 0 = %+v", p[0])
	}
	if p[1].Family != IPv6 || !reflect.DeepEqual(p[1].Features, []features.Feature{features.IPv6}) {
		t.Errorf("probe 1 = %+v", p[1])
	}
	if p[2].Port != 0 || p[2].Protocol != ICMP || p[2].From != (Peer{Kind: PeerNode, Name: "node-1"}) {
		t.Errorf("probe 2 = %+v", p[2])
	}
	if p[3].Family != IPv6 || p[3].To != (Peer{Kind: PeerIP, Addr: netip.MustParseAddr("fd00::99")}) {
		t.Errorf("probe 3 = %+v", p[3])
	}
	if sc.Steps[0].Index != 0 || sc.Steps[0].Line != 11 || len(sc.Steps) != 1 {
		t.Errorf("steps = %+v", sc.Steps)
	}
}

func TestAddressAssignment(t *testing.T) {
	sc := mustParse(t, head+`cluster:
  nodes:
    - {name: a, ipv4: 192.168.0.12}
    - {name: b}
    - {name: c}
  pods:
    - {name: default/p1, node: b}
    - {name: default/p2, node: b, ipv4: 10.244.2.11}
    - {name: default/p3, node: b}
    - {name: default/p4, node: b, ipv4: 10.1.1.1, ipv6: "fd00::1"}
    - {name: default/p5, node: b}
    - {name: default/p6}
  services:
    - {name: default/s1, ports: [{port: 80}]}
    - {name: default/s2, clusterIP: 10.96.0.11, ports: [{port: 80}]}
    - {name: default/s3, ports: [{port: 80}]}
    - {name: default/s4, type: NodePort, ports: [{name: a, port: 80, nodePort: 30001}, {name: b, port: 81}, {name: c, port: 82}]}
    - {name: default/s5, type: LoadBalancer, loadBalancerIPs: [172.16.0.1], ports: [{port: 80}]}
probes:
  - {from: default/p1, to: default/p2, port: 80, expect: allow}
steps:
  - addPods: [{name: default/p7, node: b}, {name: default/p8, node: b, ipv6: "fd00:10:244:2::14"}]
    probes:
      - {from: default/p7, to: default/p8, port: 80, expect: allow}
  - deletePods: [default/p7]
    addPods: [{name: default/p9, node: b, ipv4: 10.244.2.15}, {name: default/p7, node: b}]
    probes:
      - {from: default/p7, to: default/p9, port: 80, expect: allow}
`)
	addrs := func(st *State) []string {
		var out []string
		for _, n := range st.Nodes {
			out = append(out, fmt.Sprintf("node %s %s %s", n.Name, n.IPv4, n.IPv6))
		}
		for _, p := range st.Pods {
			out = append(out, fmt.Sprintf("pod %s %s %s %s", p.Key(), p.Node, p.IPv4, p.IPv6))
		}
		for _, s := range st.Services {
			var ports []string
			for _, p := range s.Ports {
				ports = append(ports, fmt.Sprintf("%d:%d", p.Port, p.NodePort))
			}
			out = append(out, fmt.Sprintf("service %s %s %s %v", s.Key(), s.ClusterIP, s.ClusterIPv6, ports))
		}
		return out
	}
	diffLines(t, addrs(sc.InitialState()), []string{
		// node a takes .12 (written), so b skips its .12 and takes .13.
		"node a 192.168.0.12 fd00:0:0:1::11",
		"node b 192.168.0.13 fd00:0:0:1::12",
		"node c 192.168.0.14 fd00:0:0:1::13",
		"pod default/p1 b 10.244.2.10 fd00:10:244:2::10",
		// 11 is written by p2 (IPv4) and so skipped for every pod.
		"pod default/p2 b 10.244.2.11 fd00:10:244:2::12",
		"pod default/p3 b 10.244.2.13 fd00:10:244:2::13",
		"pod default/p4 b 10.1.1.1 fd00::1",
		// 14 (IPv6 of p8, added later) and 15 (p9) are written later.
		"pod default/p5 b 10.244.2.16 fd00:10:244:2::16",
		"pod default/p6 a 10.244.1.10 fd00:10:244:1::10",
		"service default/s1 10.96.0.10 fd00:10:96::10 [80:0]",
		"service default/s2 10.96.0.11 invalid IP [80:0]",
		"service default/s3 10.96.0.12 fd00:10:96::12 [80:0]",
		"service default/s4 10.96.0.13 fd00:10:96::13 [80:30001 81:30000 82:30002]",
		"service default/s5 10.96.0.14 fd00:10:96::14 [80:30003]",
	})
	last := addrs(sc.StateAt(2))
	diffLines(t, last[3+4:3+4+4], []string{
		"pod default/p5 b 10.244.2.16 fd00:10:244:2::16",
		"pod default/p6 a 10.244.1.10 fd00:10:244:1::10",
		"pod default/p8 b 10.244.2.18 fd00:10:244:2::14",
		"pod default/p9 b 10.244.2.15 fd00:10:244:2::19",
	})
	p7 := sc.Steps[2].AddPods[1]
	if p7.Key() != "default/p7" || p7.IPv4.String() != "10.244.2.20" {
		t.Errorf("re-added p7 = %+v, want a new address 10.244.2.20", p7)
	}
	old, _ := sc.StateAt(1).Pod("default/p7")
	if old.IPv4.String() != "10.244.2.17" {
		t.Errorf("first p7 = %s, want 10.244.2.17", old.IPv4)
	}
}

func TestAddressReuseAfterDelete(t *testing.T) {
	sc := mustParse(t, head+`cluster:
  pods:
    - {name: default/a, ipv4: 10.0.0.5, labels: {role: old}}
    - {name: default/c}
probes:
  - {from: default/c, to: default/a, port: 80, expect: allow}
steps:
  - deletePods: [default/a]
    addPods: [{name: default/b, ipv4: 10.0.0.5, labels: {role: new}}]
    probes:
      - {from: default/c, to: "ip:10.0.0.5", port: 80, expect: deny}
`)
	owner, ok := sc.StateAt(1).Owner(netip.MustParseAddr("10.0.0.5"))
	if !ok || owner != (Peer{Kind: PeerPod, Name: "default/b"}) {
		t.Errorf("owner of 10.0.0.5 at step 1 = %v, %v", owner, ok)
	}
	if _, err := Parse("t.yaml", []byte(head+`cluster:
  pods:
    - {name: default/a, ipv4: 10.0.0.5}
    - {name: default/c}
steps:
  - addPods: [{name: default/b, ipv4: 10.0.0.5}]
    probes:
      - {from: default/c, to: default/a, port: 80, expect: deny}
`)); err == nil || !strings.Contains(err.Error(), "t.yaml:9:39: steps[0].addPods[0].ipv4: address 10.0.0.5 is already used by pod default/a") {
		t.Errorf("reusing a held address: %v", err)
	}
}

func TestMatrixExpansion(t *testing.T) {
	sc := mustParse(t, head+`cluster:
  nodes: [{name: n1}, {name: n2}]
  pods:
    - {name: x/a, ports: [{name: http, port: 80}, {name: dns, port: 53, protocol: UDP}]}
    - {name: x/b, ports: [{name: http, port: 8080}]}
    - {name: y/a, node: n2}
  externals:
    - {name: world, ipv4: 203.0.113.1, ports: [{name: http, port: 80}]}
  services:
    - {name: x/web, selector: {}, ports: [{name: http, port: 80}]}
matrix:
  - from: ["x/*", "*", world]
    to: ["*"]
    ports: [http, "53/UDP"]
    default: deny
    except:
      - {from: "x/*", to: "x/*", port: http}
      - {from: world, to: y/a, port: "53/UDP", expect: {verdict: deny, dropReason: POLICY_DENIED}}
  - from: [node:n2, y/a]
    to: [service:x/web, "ip:10.96.0.10", world]
    ports: [http, "80", ICMP]
    families: [ipv4, ipv6]
    default: allow
    except:
      - {from: "*", to: "ip:10.96.0.10", family: ipv4}
      - {from: node:n2, to: service:x/web, port: ICMP}
`)
	diffLines(t, probeLines(sc), []string{
		"step 0: x/a -> x/b http=8080/TCP | allow",
		"step 0: x/a -> x/b 53/UDP | deny",
		"step 0: x/a -> y/a 53/UDP | deny",
		"step 0: x/b -> x/a http=80/TCP | allow",
		"step 0: x/b -> x/a 53/UDP | deny",
		"step 0: x/b -> y/a 53/UDP | deny",
		"step 0: y/a -> x/a http=80/TCP | deny",
		"step 0: y/a -> x/a 53/UDP | deny",
		"step 0: y/a -> x/b http=8080/TCP | deny",
		"step 0: y/a -> x/b 53/UDP | deny",
		"step 0: world -> x/a http=80/TCP | deny",
		"step 0: world -> x/a 53/UDP | deny",
		"step 0: world -> x/b http=8080/TCP | deny",
		"step 0: world -> x/b 53/UDP | deny",
		"step 0: world -> y/a 53/UDP | deny dropReason=POLICY_DENIED",
		"step 0: node:n2 -> service:x/web http=80/TCP | allow",
		"step 0: node:n2 -> service:x/web http=80/TCP ipv6 | allow",
		"step 0: node:n2 -> service:x/web ICMP | deny",
		"step 0: node:n2 -> service:x/web ICMP ipv6 | deny",
		// "*" matches pods only, so the except leaves node:n2 alone.
		"step 0: node:n2 -> ip:10.96.0.10 80/TCP | allow",
		"step 0: node:n2 -> ip:10.96.0.10 ICMP | allow",
		"step 0: node:n2 -> world http=80/TCP | allow",
		"step 0: node:n2 -> world ICMP | allow",
		"step 0: y/a -> service:x/web http=80/TCP | allow",
		"step 0: y/a -> service:x/web http=80/TCP ipv6 | allow",
		"step 0: y/a -> service:x/web ICMP | allow",
		"step 0: y/a -> service:x/web ICMP ipv6 | allow",
		"step 0: y/a -> ip:10.96.0.10 80/TCP | deny",
		"step 0: y/a -> ip:10.96.0.10 ICMP | deny",
		"step 0: y/a -> world http=80/TCP | allow",
		"step 0: y/a -> world ICMP | allow",
	})
	var setByExcept, setByMatrix int
	for _, p := range sc.Steps[0].Probes {
		switch p.Path {
		case "matrix[0].except[0]", "matrix[0].except[1]", "matrix[1].except[0]", "matrix[1].except[1]":
			setByExcept++
		case "matrix[0]", "matrix[1]":
			setByMatrix++
		default:
			t.Errorf("probe %q has path %q", p.ID, p.Path)
		}
	}
	if setByExcept != 7 || setByMatrix != 24 {
		t.Errorf("paths: %d set by excepts, %d by matrices; want 7 and 24", setByExcept, setByMatrix)
	}
}

func TestNamedPorts(t *testing.T) {
	sc := mustParse(t, head+`cluster:
  pods:
    - {name: default/srv, ports: [{name: dns, port: 53, protocol: UDP}, {name: sctp, port: 9999, protocol: SCTP}]}
    - {name: default/cli}
  externals:
    - {name: ext, ipv4: 198.51.100.1, ports: [{name: https, port: 443}]}
  services:
    - name: default/dns
      selector: {}
      ports: [{name: dns, port: 53, targetPort: dns, protocol: UDP}, {name: metrics, port: 9153, targetPort: 9153}]
probes:
  - {from: default/cli, to: default/srv, port: dns, expect: allow}
  - {from: default/cli, to: default/srv, port: sctp, protocol: SCTP, expect: allow}
  - {from: default/cli, to: ext, port: https, expect: allow}
  - {from: default/cli, to: service:default/dns, port: dns, expect: allow}
  - {from: default/cli, to: service:default/dns, port: "9153", expect: allow}
`)
	var got []string
	for _, p := range sc.Probes() {
		got = append(got, fmt.Sprintf("%s %d %s %q", p.To, p.Port, p.Protocol, p.PortName))
	}
	diffLines(t, got, []string{
		`default/srv 53 UDP "dns"`,
		`default/srv 9999 SCTP "sctp"`,
		`ext 443 TCP "https"`,
		`service:default/dns 53 UDP "dns"`,
		`service:default/dns 9153 TCP ""`,
	})
	svc, _ := sc.InitialState().Service("default/dns")
	want := []ServicePort{
		{Name: "dns", Port: 53, TargetPort: "dns", Protocol: UDP},
		{Name: "metrics", Port: 9153, TargetPort: "9153", Protocol: TCP},
	}
	if !reflect.DeepEqual(svc.Ports, want) || svc.Type != "ClusterIP" || svc.SessionAffinity != "None" ||
		svc.AffinityTimeout != 10800 || svc.ExternalTrafficPolicy != "Cluster" {
		t.Errorf("service = %+v", svc)
	}
}

func TestStepStateEvolution(t *testing.T) {
	sc := mustParse(t, head+`cluster:
  namespaces: [{name: x, labels: {team: red}}]
  pods:
    - {name: x/a, labels: {app: a}}
    - {name: x/b, labels: {app: b}}
policies:
  - {apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: p1, namespace: x}, spec: {podSelector: {}}}
  - {apiVersion: cilium.io/v2, kind: CiliumClusterwideNetworkPolicy, metadata: {name: c1}, spec: {}}
  - {apiVersion: cilium.io/v2, kind: CiliumNetworkPolicy, metadata: {name: p2}, spec: {}}
steps:
  - setLabels:
      - {pod: x/a, labels: {app: z, tier: web}}
      - {namespace: x, labels: {team: blue}}
    apply:
      - {apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: p1, namespace: x}, spec: {podSelector: {matchLabels: {app: z}}}}
      - {apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: p3, namespace: y}, spec: {}}
    probes:
      - {from: x/a, to: x/b, port: 80, expect: allow}
  - addPods: [{name: z/c, labels: {app: c}}]
    deletePods: [x/b]
    delete:
      - {kind: CiliumClusterwideNetworkPolicy, name: c1}
      - {kind: CiliumNetworkPolicy, name: p2}
    setLabels: [{namespace: x, labels: {}}]
    probes:
      - {from: x/a, to: z/c, port: 80, expect: allow}
`)
	if len(sc.Steps) != 2 || sc.Steps[0].Index != 0 || sc.Steps[1].Index != 1 {
		t.Fatalf("steps = %+v", sc.Steps)
	}
	summary := func(st *State) string {
		var parts []string
		for _, n := range st.Namespaces {
			parts = append(parts, "ns "+n.Name+" "+strings.Join(sortedLabels(n.Labels), ","))
		}
		for _, p := range st.Pods {
			parts = append(parts, "pod "+p.Key()+" "+strings.Join(sortedLabels(p.Labels), ","))
		}
		for _, o := range st.Policies {
			spec := lookup(o.Node, "spec")
			parts = append(parts, fmt.Sprintf("policy %s line %d spec-line %d", objectName(o.Kind, o.Namespace, o.Name), o.Line, spec.Line))
		}
		return fmt.Sprintf("step %d:\n%s", st.Step, strings.Join(parts, "\n"))
	}
	want := []string{
		// p2 has no namespace: it is in default, which is implied.
		`step -1:
ns x kubernetes.io/metadata.name=x,team=red
ns default kubernetes.io/metadata.name=default
pod x/a app=a
pod x/b app=b
policy NetworkPolicy x/p1 line 10 spec-line 10
policy CiliumClusterwideNetworkPolicy c1 line 11 spec-line 11
policy CiliumNetworkPolicy default/p2 line 12 spec-line 12`,
		// p1 is replaced in place; p3 is added, with its namespace.
		`step 0:
ns x kubernetes.io/metadata.name=x,team=blue
ns default kubernetes.io/metadata.name=default
ns y kubernetes.io/metadata.name=y
pod x/a app=z,tier=web
pod x/b app=b
policy NetworkPolicy x/p1 line 18 spec-line 18
policy CiliumClusterwideNetworkPolicy c1 line 11 spec-line 11
policy CiliumNetworkPolicy default/p2 line 12 spec-line 12
policy NetworkPolicy y/p3 line 19 spec-line 19`,
		`step 1:
ns x kubernetes.io/metadata.name=x
ns default kubernetes.io/metadata.name=default
ns y kubernetes.io/metadata.name=y
ns z kubernetes.io/metadata.name=z
pod x/a app=z,tier=web
pod z/c app=c
policy NetworkPolicy x/p1 line 18 spec-line 18
policy NetworkPolicy y/p3 line 19 spec-line 19`,
	}
	got := []string{summary(sc.InitialState()), summary(sc.StateAt(0)), summary(sc.StateAt(1))}
	diffLines(t, got, want)

	s0, s1 := sc.Steps[0], sc.Steps[1]
	wantChanges := []LabelChange{
		{Pod: "x/a", Labels: map[string]string{"app": "z", "tier": "web"}},
		{Namespace: "x", Labels: map[string]string{"team": "blue", NamespaceNameLabel: "x"}},
	}
	if !reflect.DeepEqual(s0.SetLabels, wantChanges) {
		t.Errorf("step 0 SetLabels = %+v", s0.SetLabels)
	}
	if len(s0.Apply) != 2 || !reflect.DeepEqual(s0.AddNamespaces, []Namespace{{Name: "y", Labels: map[string]string{NamespaceNameLabel: "y"}}}) {
		t.Errorf("step 0 Apply %d, AddNamespaces %+v", len(s0.Apply), s0.AddNamespaces)
	}
	wantDelete := []ObjectRef{{Kind: "CiliumClusterwideNetworkPolicy", Name: "c1"}, {Kind: "CiliumNetworkPolicy", Namespace: "default", Name: "p2"}}
	if !reflect.DeepEqual(s1.Delete, wantDelete) || !reflect.DeepEqual(s1.DeletePods, []string{"x/b"}) ||
		len(s1.AddPods) != 1 || s1.AddPods[0].IPv4.String() != "10.244.1.12" || s1.AddPods[0].Node != "node-1" ||
		len(s1.AddNamespaces) != 1 || s1.AddNamespaces[0].Name != "z" {
		t.Errorf("step 1 = %+v", s1)
	}
	if sc.Cluster.Pods[0].Labels["app"] != "a" || len(sc.Policies) != 3 {
		t.Errorf("Cluster/Policies must be the initial state: %+v %d", sc.Cluster.Pods, len(sc.Policies))
	}

	// StateAt returns copies.
	st := sc.StateAt(0)
	st.Pods[0].Labels["app"] = "changed"
	st.Namespaces[0].Labels["team"] = "changed"
	if p, _ := sc.StateAt(0).Pod("x/a"); p.Labels["app"] != "z" {
		t.Errorf("mutating a StateAt result changed the scenario")
	}
	if sc.StateAt(2) != nil || sc.StateAt(-1) != nil {
		t.Errorf("StateAt out of range must be nil")
	}
}

func TestStepNumberingWithoutTopLevelProbes(t *testing.T) {
	sc := mustParse(t, head+`cluster: {pods: [{name: x/a}, {name: x/b}]}
steps:
  - probes: [{from: x/a, to: x/b, port: 80, expect: allow}]
  - setLabels: [{pod: x/a, labels: {a: b}}]
    probes: [{from: x/a, to: x/b, port: 80, expect: allow}]
`)
	diffLines(t, probeLines(sc), []string{
		"step 0: x/a -> x/b 80/TCP | allow",
		"step 1: x/a -> x/b 80/TCP | allow",
	})
	if sc.Steps[1].Line != 7 || sc.Steps[1].Probes[0].Path != "steps[1].probes[0]" || sc.Steps[1].Probes[0].Step != 1 {
		t.Errorf("step 1 = %+v", sc.Steps[1])
	}
}

func TestProbeIDs(t *testing.T) {
	sc := mustParse(t, head+`cluster: {pods: [{name: x/a, ports: [{name: http, port: 80}]}, {name: x/b}]}
probes:
  - {from: x/b, to: x/a, port: 80, expect: allow}
  - {from: x/b, to: x/a, port: 80, expect: allow}
  - {from: x/b, to: x/a, port: http, expect: allow}
  - {from: x/b, to: x/a, port: 80, http: {}, expect: allow}
  - {from: x/b, to: x/a, port: 80, http: {method: GET, path: /, headers: {a: b}}, expect: allow}
  - {from: x/b, to: x/a, port: 80, kafka: {apiKey: produce}, expect: allow}
  - {from: x/b, to: x/a, port: 80, kafka: {apiKey: produce, topic: t, clientID: c}, expect: allow}
  - {from: x/a, to: x/a, port: 80, family: ipv6, expect: allow}
matrix:
  - {from: [x/b], to: ["*"], ports: ["80/TCP"], default: allow}
`)
	diffLines(t, probeLines(sc), []string{
		"step 0: x/b -> x/a 80/TCP | allow",
		"step 0: x/b -> x/a 80/TCP #2 | allow",
		"step 0: x/b -> x/a http=80/TCP | allow",
		"step 0: x/b -> x/a 80/TCP http GET / | allow",
		"step 0: x/b -> x/a 80/TCP http GET / #2 | allow",
		"step 0: x/b -> x/a 80/TCP kafka produce | allow",
		"step 0: x/b -> x/a 80/TCP kafka produce t | allow",
		"step 0: x/a -> x/a 80/TCP ipv6 | allow",
		"step 0: x/b -> x/a 80/TCP #3 | allow",
	})
	p := sc.Steps[0].Probes
	if !reflect.DeepEqual(p[3].Features, []features.Feature{features.L7HTTP}) ||
		!reflect.DeepEqual(p[5].Features, []features.Feature{features.L7Kafka}) {
		t.Errorf("features: %v %v", p[3].Features, p[5].Features)
	}
	if !reflect.DeepEqual(*p[6].Kafka, KafkaRequest{APIKey: "produce", Topic: "t", ClientID: "c"}) ||
		!reflect.DeepEqual(*p[4].HTTP, HTTPRequest{Method: "GET", Path: "/", Headers: map[string]string{"a": "b"}}) {
		t.Errorf("requests: %+v %+v", p[6].Kafka, p[4].HTTP)
	}
}

func TestFeaturesAndPolicies(t *testing.T) {
	sc := mustParse(t, `apiVersion: conformance.cilia.dev/v1alpha1
kind: Scenario
metadata:
  name: feats
  description: d
  source: s
  features: [policy-l4, policy-l3]
cluster: {pods: [{name: x/a}, {name: x/b}]}
policies:
  - apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: p, namespace: x, labels: {any: thing}}
    spec: {whatever: [1, 2, 3]}
probes:
  - {from: x/a, to: x/b, port: 80, family: ipv6, expect: allow}
`)
	if !reflect.DeepEqual(sc.Features(), []features.Feature{features.PolicyL4, features.PolicyL3}) {
		t.Errorf("Features() = %v", sc.Features())
	}
	want := []features.Feature{features.IPv6, features.PolicyL3, features.PolicyL4}
	if !reflect.DeepEqual(sc.RequiredFeatures(), want) {
		t.Errorf("RequiredFeatures() = %v", sc.RequiredFeatures())
	}
	if sc.Metadata.Name != "feats" || sc.Metadata.Description != "d" || sc.Metadata.Source != "s" {
		t.Errorf("metadata = %+v", sc.Metadata)
	}
	o := sc.Policies[0]
	if o.APIVersion != "cilium.io/v2" || o.Kind != "CiliumNetworkPolicy" || o.Namespace != "x" || o.Name != "p" ||
		o.File != "t.yaml" || o.Line != 10 || o.Node == nil || lookup(o.Node, "spec") == nil {
		t.Errorf("policy = %+v", o)
	}
}

func TestLoadDir(t *testing.T) {
	dir := t.TempDir()
	write := func(rel, name string) {
		path := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		src := fmt.Sprintf("apiVersion: conformance.cilia.dev/v1alpha1\nkind: Scenario\nmetadata:\n  name: %s\n"+
			"cluster: {pods: [{name: x/a}, {name: x/b}]}\nprobes: [{from: x/a, to: x/b, port: 80, expect: allow}]\n", name)
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("b.yaml", "two")
	write("a/z.yml", "one")
	write("a/README.md", "ignored")
	write("c/d/e.YAML", "three")
	scs, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, sc := range scs {
		names = append(names, strings.TrimPrefix(sc.File, dir+"/")+"="+sc.Metadata.Name)
	}
	diffLines(t, names, []string{"a/z.yml=one", "b.yaml=two", "c/d/e.YAML=three"})

	write("c/dup.yaml", "two")
	if err := os.WriteFile(filepath.Join(dir, "broken.yaml"), []byte(head), 0o644); err != nil {
		t.Fatal(err)
	}
	scs, err = LoadDir(dir)
	var ve *ValidationError
	if scs != nil || !errors.As(err, &ve) {
		t.Fatalf("LoadDir = %v, %v; want a *ValidationError", scs, err)
	}
	var got []string
	for _, p := range ve.Problems {
		got = append(got, strings.ReplaceAll(p.String(), dir+"/", ""))
	}
	diffLines(t, got, []string{
		"broken.yaml:1:1: the scenario has no probes: add probes, a matrix or steps",
		`c/dup.yaml:4:9: metadata.name: duplicate scenario name "two" (also in b.yaml:4)`,
	})
	if _, err := LoadDir(filepath.Join(dir, "missing")); err == nil || errors.As(err, &ve) {
		t.Errorf("LoadDir of a missing directory = %v, want a plain error", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load("testdata/does-not-exist.yaml")
	var ve *ValidationError
	if err == nil || errors.As(err, &ve) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load = %v", err)
	}
}

func TestLabelValuesMayBeEmptyAndQuoted(t *testing.T) {
	sc := mustParse(t, head+`cluster:
  pods:
    - {name: x/a, labels: {enabled: "true", version: "1", empty: "", io.cilium/app: web}}
    - {name: x/b}
probes: [{from: x/a, to: x/b, port: "8080", expect: allow}]
`)
	want := map[string]string{"enabled": "true", "version": "1", "empty": "", "io.cilium/app": "web"}
	if p, _ := sc.InitialState().Pod("x/a"); !reflect.DeepEqual(p.Labels, want) {
		t.Errorf("labels = %v", p.Labels)
	}
	if sc.Steps[0].Probes[0].Port != 8080 {
		t.Errorf("a quoted number is a port number: %+v", sc.Steps[0].Probes[0])
	}
}

func TestServiceForms(t *testing.T) {
	sc := mustParse(t, head+`cluster:
  pods:
    - {name: default/web, labels: {app: web, tier: front}}
    - {name: default/db, labels: {app: db}}
    - {name: other/web, labels: {app: web}}
  services:
    - name: default/web
      type: LoadBalancer
      clusterIPs: [10.96.5.5, "fd00:10:96::55"]
      externalIPs: [192.168.0.11]
      loadBalancerIPs: [172.16.0.10]
      selector: {app: web}
      ports: [{port: 443, targetPort: 8443, protocol: TCP}]
      sessionAffinity: ClientIP
      sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}
      externalTrafficPolicy: Local
      annotations: {service.cilium.io/forwarding-mode: dsr, example.com/other: anything}
    - {name: default/v6only, clusterIP: "fd00:10:96::66", ports: [{port: 53, protocol: UDP}]}
probes:
  - {from: default/db, to: service:default/web, port: 443, family: ipv6, expect: allow}
  - {from: default/db, to: service:default/v6only, port: 53, protocol: UDP, family: ipv6, expect: allow}
  - {from: default/db, to: "ip:172.16.0.10", port: 443, expect: allow}
`)
	st := sc.InitialState()
	web, _ := st.Service("default/web")
	want := Service{
		Namespace: "default", Name: "web", Type: "LoadBalancer",
		ClusterIP: netip.MustParseAddr("10.96.5.5"), ClusterIPv6: netip.MustParseAddr("fd00:10:96::55"),
		ExternalIPs:     []netip.Addr{netip.MustParseAddr("192.168.0.11")},
		LoadBalancerIPs: []netip.Addr{netip.MustParseAddr("172.16.0.10")},
		Selector:        map[string]string{"app": "web"},
		Ports:           []ServicePort{{Port: 443, TargetPort: "8443", Protocol: TCP, NodePort: 30000}},
		SessionAffinity: "ClientIP", AffinityTimeout: 60, ExternalTrafficPolicy: "Local",
		Annotations: map[string]string{"service.cilium.io/forwarding-mode": "dsr", "example.com/other": "anything"},
		Line:        10,
	}
	if !reflect.DeepEqual(web, want) {
		t.Errorf("service =\n%+v\nwant\n%+v", web, want)
	}
	v6, _ := st.Service("default/v6only")
	if v6.ClusterIP.IsValid() || v6.ClusterIPv6.String() != "fd00:10:96::66" {
		t.Errorf("a service with a written IPv6 cluster IP only is single-stack: %+v", v6)
	}
	if _, err := Parse("t.yaml", []byte(head+`cluster:
  pods: [{name: default/a}]
  services: [{name: default/v6only, clusterIP: "fd00:10:96::66", ports: [{port: 80}]}]
probes:
  - {from: default/a, to: service:default/v6only, port: 80, expect: allow}
`)); err == nil || !strings.Contains(err.Error(), "t.yaml:8:27: probes[0].to: service default/v6only has no IPv4 address (the probe's family is ipv4)") {
		t.Errorf("IPv4 probe of an IPv6-only service: %v", err)
	}
}

func TestStateLookups(t *testing.T) {
	sc := mustParse(t, head+`cluster:
  pods:
    - {name: default/web, labels: {app: web, tier: front}}
    - {name: default/db, labels: {app: db}}
    - {name: other/web, labels: {app: web}}
  externals: [{name: ext, ipv4: 198.51.100.1}]
  services: [{name: default/web, selector: {app: web}, ports: [{port: 80}], type: LoadBalancer, loadBalancerIPs: [172.16.0.1]}]
probes: [{from: default/db, to: service:default/web, port: 80, expect: allow}]
`)
	st := sc.StateAt(0)
	keys := func(pods []Pod) []string {
		var out []string
		for _, p := range pods {
			out = append(out, p.Key())
		}
		return out
	}
	diffLines(t, keys(st.SelectPods("default", map[string]string{"app": "web"})), []string{"default/web"})
	diffLines(t, keys(st.SelectPods("", map[string]string{"app": "web"})), []string{"default/web", "other/web"})
	diffLines(t, keys(st.SelectPods("default", nil)), []string{"default/web", "default/db"})
	diffLines(t, keys(st.PodsInNamespace("other")), []string{"other/web"})
	svc, _ := st.Service("default/web")
	diffLines(t, keys(st.Backends(svc)), []string{"default/web"})
	if got := st.Backends(Service{Namespace: "default"}); got != nil {
		t.Errorf("a service without a selector has backends %v", keys(got))
	}
	for _, c := range []struct {
		addr string
		want Peer
	}{
		{"10.244.1.11", Peer{Kind: PeerPod, Name: "default/db"}},
		{"fd00:10:244:1::12", Peer{Kind: PeerPod, Name: "other/web"}},
		{"192.168.0.11", Peer{Kind: PeerNode, Name: "node-1"}},
		{"198.51.100.1", Peer{Kind: PeerExternal, Name: "ext"}},
		{"10.96.0.10", Peer{Kind: PeerService, Name: "default/web"}},
		{"172.16.0.1", Peer{Kind: PeerService, Name: "default/web"}},
	} {
		if got, ok := st.Owner(netip.MustParseAddr(c.addr)); !ok || got != c.want {
			t.Errorf("Owner(%s) = %v, %v; want %v", c.addr, got, ok, c.want)
		}
	}
	if _, ok := st.Owner(netip.MustParseAddr("10.9.9.9")); ok {
		t.Errorf("Owner of an unheld address must fail")
	}
	for _, c := range []struct {
		peer Peer
		fam  Family
		want string
	}{
		{Peer{Kind: PeerPod, Name: "default/web"}, IPv6, "fd00:10:244:1::10"},
		{Peer{Kind: PeerService, Name: "default/web"}, IPv4, "10.96.0.10"},
		{Peer{Kind: PeerNode, Name: "node-1"}, IPv6, "fd00:0:0:1::11"},
		{Peer{Kind: PeerExternal, Name: "ext"}, IPv6, "invalid IP"},
		{Peer{Kind: PeerIP, Addr: netip.MustParseAddr("1.2.3.4")}, IPv4, "1.2.3.4"},
		{Peer{Kind: PeerIP, Addr: netip.MustParseAddr("1.2.3.4")}, IPv6, "invalid IP"},
		{Peer{Kind: PeerPod, Name: "default/nope"}, IPv4, "invalid IP"},
	} {
		if got, _ := st.Addr(c.peer, c.fam); got.String() != c.want {
			t.Errorf("Addr(%v, %s) = %s, want %s", c.peer, c.fam, got, c.want)
		}
	}
	if n, ok := st.Namespace("other"); !ok || n.Labels[NamespaceNameLabel] != "other" {
		t.Errorf("Namespace(other) = %+v", n)
	}
	if x, ok := st.External("ext"); !ok || x.IPv4.String() != "198.51.100.1" {
		t.Errorf("External(ext) = %+v", x)
	}
	if _, ok := st.Policy("NetworkPolicy", "default", "x"); ok {
		t.Errorf("Policy found in a scenario without policies")
	}
}

// checkDocStepsState checks what docs/scenario-format.md says about the
// states of its steps example.
func checkDocStepsState(t *testing.T, sc *Scenario) {
	t.Helper()
	st2 := sc.StateAt(2)
	var pods []string
	for _, p := range st2.Pods {
		pods = append(pods, p.Key()+" "+p.IPv4.String())
	}
	diffLines(t, pods, []string{"x/a 10.244.1.10", "x/c 10.244.1.12"})
	st3 := sc.StateAt(3)
	if len(st3.Policies) != 1 || st3.Policies[0].Name != "deny-all" {
		t.Errorf("StateAt(3) policies = %+v", st3.Policies)
	}
}
