package model

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/cilium/cilium/pkg/policy/api"
	"go.yaml.in/yaml/v3"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/ciliaproject/cilia/conformance/scenario"
)

// Test fixtures: pods on two nodes in two namespaces, a node, the world.

func pod(ns, name, node string, labels map[string]string, nsLabels map[string]string, ports ...scenario.Port) endpoint {
	l := map[string]string{scenario.NamespaceNameLabel: ns}
	for k, v := range nsLabels {
		l[k] = v
	}
	return endpoint{
		kind:      kindPod,
		pod:       scenario.Pod{Namespace: ns, Name: name, Node: node, Labels: labels, Ports: ports, IPv4: netip.MustParseAddr("10.244.1.10")},
		namespace: scenario.Namespace{Name: ns, Labels: l},
		addr:      netip.MustParseAddr("10.244.1.10"),
		name:      ns + "/" + name,
	}
}

func node(name string) endpoint {
	return endpoint{kind: kindNode, node: name, addr: netip.MustParseAddr("192.168.0.11"), name: "node:" + name}
}

func world(addr string) endpoint {
	return endpoint{kind: kindWorld, addr: netip.MustParseAddr(addr), name: addr}
}

var (
	webX    = pod("x", "web", "node-1", map[string]string{"app": "web"}, map[string]string{"team": "a"}, scenario.Port{Name: "http", Port: 8080, Protocol: scenario.TCP}, scenario.Port{Name: "dns", Port: 53, Protocol: scenario.UDP})
	clientX = pod("x", "client", "node-2", map[string]string{"app": "client"}, map[string]string{"team": "a"})
	clientY = pod("y", "client", "node-1", map[string]string{"app": "client"}, map[string]string{"team": "b"})
)

func conn(proto scenario.Protocol, port uint16, to endpoint) connection {
	return connection{from: clientX, to: to, protocol: proto, port: port, family: scenario.IPv4}
}

func cnp(ns string) *policy {
	return &policy{obj: scenario.Object{Kind: "CiliumNetworkPolicy", Namespace: ns, Name: "p"}}
}

func ccnp() *policy {
	return &policy{obj: scenario.Object{Kind: "CiliumClusterwideNetworkPolicy", Name: "p"}}
}

// esel decodes a Cilium endpoint selector from JSON.
func esel(t *testing.T, js string) api.EndpointSelector {
	t.Helper()
	var es api.EndpointSelector
	if err := json.Unmarshal([]byte(js), &es); err != nil {
		t.Fatal(err)
	}
	return es
}

func TestLabelSelectorMatches(t *testing.T) {
	labels := labelSet{{sourceK8s, "app", "web"}, {sourceK8s, "tier", "front"}, {sourceReserved, "host", ""}}
	for _, tc := range []struct {
		name string
		sel  selector
		want bool
	}{
		{"empty selects all", nil, true},
		{"In", selector{{sourceAny, "app", "In", []string{"web", "db"}}}, true},
		{"In other value", selector{{sourceAny, "app", "In", []string{"db"}}}, false},
		{"source k8s", selector{{sourceK8s, "app", "In", []string{"web"}}}, true},
		{"wrong source", selector{{sourceReserved, "app", "In", []string{"web"}}}, false},
		{"NotIn absent key", selector{{sourceAny, "env", "NotIn", []string{"prod"}}}, true},
		{"NotIn present value", selector{{sourceAny, "app", "NotIn", []string{"web"}}}, false},
		{"Exists", selector{{sourceAny, "tier", "Exists", nil}}, true},
		{"DoesNotExist", selector{{sourceAny, "tier", "DoesNotExist", nil}}, false},
		{"AND", selector{{sourceAny, "app", "In", []string{"web"}}, {sourceAny, "tier", "In", []string{"back"}}}, false},
		{"unknown operator", selector{{sourceAny, "app", "Gt", []string{"1"}}}, false},
	} {
		if got := labelSelectorMatches(tc.sel, labels); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestSplitSource(t *testing.T) {
	for key, want := range map[string][2]string{
		"app":                                  {sourceAny, "app"},
		"k8s:app":                              {sourceK8s, "app"},
		"reserved:host":                        {sourceReserved, "host"},
		"any:io.kubernetes.pod.namespace":      {sourceAny, keyPodNamespace},
		"k8s:io.cilium.k8s.namespace.labels.a": {sourceK8s, "io.cilium.k8s.namespace.labels.a"},
	} {
		src, k := splitSource(key)
		if src != want[0] || k != want[1] {
			t.Errorf("splitSource(%q) = %q, %q; want %q, %q", key, src, k, want[0], want[1])
		}
	}
}

func TestProtocolCovers(t *testing.T) {
	for _, tc := range []struct {
		rule  string
		probe scenario.Protocol
		want  bool
	}{
		{"", scenario.TCP, true}, {"ANY", scenario.UDP, true}, {"any", scenario.SCTP, true},
		{"ANY", scenario.ICMP, false}, {"", scenario.ICMP, false},
		{"TCP", scenario.TCP, true}, {"TCP", scenario.UDP, false}, {"SCTP", scenario.SCTP, true},
	} {
		if got := protocolCovers(tc.rule, tc.probe); got != tc.want {
			t.Errorf("protocolCovers(%q, %s) = %v, want %v", tc.rule, tc.probe, got, tc.want)
		}
	}
}

func TestPortMatches(t *testing.T) {
	for _, tc := range []struct {
		name string
		ps   portSpec
		c    connection
		want bool
	}{
		{"number", portSpec{protocol: "TCP", number: 80}, conn(scenario.TCP, 80, webX), true},
		{"other number", portSpec{protocol: "TCP", number: 80}, conn(scenario.TCP, 81, webX), false},
		{"other protocol", portSpec{protocol: "TCP", number: 80}, conn(scenario.UDP, 80, webX), false},
		{"every port", portSpec{protocol: "UDP"}, conn(scenario.UDP, 9999, webX), true},
		{"ANY every port", portSpec{}, conn(scenario.SCTP, 5000, webX), true},
		{"never ICMP", portSpec{}, conn(scenario.ICMP, 0, webX), false},
		{"range low", portSpec{protocol: "TCP", number: 8000, endPort: 8100}, conn(scenario.TCP, 8000, webX), true},
		{"range high", portSpec{protocol: "TCP", number: 8000, endPort: 8100}, conn(scenario.TCP, 8100, webX), true},
		{"range out", portSpec{protocol: "TCP", number: 8000, endPort: 8100}, conn(scenario.TCP, 8101, webX), false},
		{"named", portSpec{protocol: "TCP", name: "http"}, conn(scenario.TCP, 8080, webX), true},
		{"named wrong number", portSpec{protocol: "TCP", name: "http"}, conn(scenario.TCP, 80, webX), false},
	} {
		if got := portMatches(tc.ps, tc.c); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestNamedPortResolves(t *testing.T) {
	for _, tc := range []struct {
		name, port, proto string
		c                 connection
		want              bool
	}{
		{"tcp name", "http", "", conn(scenario.TCP, 8080, webX), true},
		{"udp name", "dns", "UDP", conn(scenario.UDP, 53, webX), true},
		{"name of another protocol", "dns", "TCP", conn(scenario.TCP, 53, webX), false},
		{"probe protocol differs from the pod's", "dns", "", conn(scenario.TCP, 53, webX), false},
		{"unknown name", "metrics", "", conn(scenario.TCP, 9090, webX), false},
		{"pod without the name", "http", "", conn(scenario.TCP, 8080, clientY), false},
		{"not a pod", "http", "", conn(scenario.TCP, 8080, world("203.0.113.7")), false},
	} {
		if got := namedPortResolves(tc.port, tc.proto, tc.c); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestICMPMatches(t *testing.T) {
	v4 := conn(scenario.ICMP, 0, webX)
	v6 := v4
	v6.family = scenario.IPv6
	for _, tc := range []struct {
		name, family, typ string
		c                 connection
		want              bool
	}{
		{"echo v4, default family", "", "8", v4, true},
		{"echo v4", "IPv4", "8", v4, true},
		{"other type", "IPv4", "0", v4, false},
		{"v4 rule, v6 probe", "IPv4", "8", v6, false},
		{"echo v6", "IPv6", "128", v6, true},
		{"v6 rule, v4 probe", "IPv6", "128", v4, false},
		{"not ICMP", "IPv4", "8", conn(scenario.TCP, 8, webX), false},
	} {
		if got := icmpMatches(tc.family, tc.typ, tc.c); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestCIDRSetAllows(t *testing.T) {
	for _, tc := range []struct {
		name, cidr string
		except     []string
		peer       endpoint
		want       bool
	}{
		{"inside", "203.0.113.0/24", nil, world("203.0.113.7"), true},
		{"outside", "203.0.113.0/24", nil, world("198.51.100.7"), false},
		{"in except", "203.0.113.0/24", []string{"203.0.113.0/28"}, world("203.0.113.7"), false},
		{"beside except", "203.0.113.0/24", []string{"203.0.113.0/28"}, world("203.0.113.77"), true},
		{"bare address", "203.0.113.7", nil, world("203.0.113.7"), true},
		{"v4 /0 covers v4", "0.0.0.0/0", nil, world("198.51.100.1"), true},
		{"v4 /0 not v6", "0.0.0.0/0", nil, world("2001:db8::1"), false},
		{"v6 /0 covers v6", "::/0", nil, world("2001:db8::1"), true},
		{"never a pod", "10.0.0.0/8", nil, webX, false},
		{"never a node", "192.168.0.0/16", nil, node("node-1"), false},
		{"garbage", "not-a-cidr", nil, world("203.0.113.7"), false},
	} {
		if got := cidrSetAllows(tc.cidr, tc.except, tc.peer); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
		if got := ipBlockAllows(tc.cidr, tc.except, tc.peer); got != tc.want {
			t.Errorf("ipBlock %s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestEntitySelects(t *testing.T) {
	w4, w6 := world("203.0.113.7"), world("2001:db8::7")
	for _, tc := range []struct {
		entity string
		peer   endpoint
		want   bool
	}{
		{"all", w4, true}, {"all", webX, true},
		{"world", w4, true}, {"world", w6, true}, {"world", webX, false}, {"world", node("node-2"), false},
		{"world-ipv4", w4, true}, {"world-ipv4", w6, false}, {"world-ipv6", w6, true},
		{"cluster", webX, true}, {"cluster", node("node-1"), true}, {"cluster", node("node-2"), true}, {"cluster", w4, false},
		{"host", node("node-1"), true}, {"host", node("node-2"), false},
		{"remote-node", node("node-2"), true}, {"remote-node", node("node-1"), false}, {"remote-node", webX, false},
		{"none", w4, false}, {"health", webX, false}, {"kube-apiserver", node("node-1"), false},
	} {
		if got := entitySelects(tc.entity, tc.peer, "node-1"); got != tc.want {
			t.Errorf("entity %s, peer %s: got %v, want %v", tc.entity, tc.peer.name, got, tc.want)
		}
	}
}

func TestEndpointSelectorSelects(t *testing.T) {
	for _, tc := range []struct {
		name string
		pol  *policy
		sel  string
		peer endpoint
		want bool
	}{
		{"CNP {} own namespace", cnp("x"), `{}`, clientX, true},
		{"CNP {} other namespace", cnp("x"), `{}`, clientY, false},
		{"CNP {} not the world", cnp("x"), `{}`, world("203.0.113.7"), false},
		{"CNP {} not a node", cnp("x"), `{}`, node("node-1"), false},
		{"CNP labels scoped", cnp("x"), `{"matchLabels":{"app":"client"}}`, clientY, false},
		{"CNP names the namespace", cnp("x"), `{"matchLabels":{"k8s:io.kubernetes.pod.namespace":"y"}}`, clientY, true},
		{"CNP any-source namespace", cnp("x"), `{"matchLabels":{"io.kubernetes.pod.namespace":"y","app":"client"}}`, clientY, true},
		{"CNP namespace labels span namespaces", cnp("x"), `{"matchLabels":{"io.cilium.k8s.namespace.labels.team":"b"}}`, clientY, true},
		{"CNP NotIn only: pods, not the world", cnp("x"), `{"matchExpressions":[{"key":"app","operator":"NotIn","values":["web"]}]}`, world("203.0.113.7"), false},
		{"CCNP {} every pod", ccnp(), `{}`, clientY, true},
		{"CCNP {} not a node", ccnp(), `{}`, node("node-1"), false},
		{"reserved:host", cnp("x"), `{"matchLabels":{"reserved:host":""}}`, node("node-1"), true},
		{"reserved:host is not a remote node", cnp("x"), `{"matchLabels":{"reserved:host":""}}`, node("node-2"), false},
		{"reserved:world", ccnp(), `{"matchLabels":{"reserved:world":""}}`, world("203.0.113.7"), true},
		{"cluster key other cluster", cnp("x"), `{"matchLabels":{"io.cilium.k8s.policy.cluster":"other"}}`, clientX, false},
	} {
		if got := endpointSelectorSelects(tc.pol, esel(t, tc.sel), tc.peer, "node-1"); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestCiliumSubjectSelects(t *testing.T) {
	rule := func(js string) *api.Rule {
		var r api.Rule
		if err := json.Unmarshal([]byte(js), &r); err != nil {
			t.Fatal(err)
		}
		return &r
	}
	for _, tc := range []struct {
		name string
		pol  *policy
		rule string
		pod  endpoint
		want bool
	}{
		{"CNP own namespace", cnp("x"), `{"endpointSelector":{}}`, webX, true},
		{"CNP other namespace", cnp("x"), `{"endpointSelector":{}}`, clientY, false},
		{"CNP written namespace is replaced", cnp("x"), `{"endpointSelector":{"matchLabels":{"k8s:io.kubernetes.pod.namespace":"y"}}}`, webX, true},
		{"CNP plain namespace key is ANDed", cnp("x"), `{"endpointSelector":{"matchLabels":{"io.kubernetes.pod.namespace":"y"}}}`, webX, false},
		{"CCNP every namespace", ccnp(), `{"endpointSelector":{"matchLabels":{"app":"client"}}}`, clientY, true},
		{"host policy selects no pod", ccnp(), `{"nodeSelector":{}}`, webX, false},
	} {
		if got := ciliumSubjectSelects(tc.pol, rule(tc.rule), tc.pod); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestCiliumTerms(t *testing.T) {
	rule := func(js string) *api.Rule {
		var r api.Rule
		if err := json.Unmarshal([]byte(js), &r); err != nil {
			t.Fatal(err)
		}
		return &r
	}
	for _, tc := range []struct {
		name string
		rule string
		c    connection
		want bool
	}{
		{"empty rule allows nothing", `{"ingress":[{}]}`, conn(scenario.TCP, 80, webX), false},
		{"L4-only: every peer", `{"ingress":[{"toPorts":[{"ports":[{"port":"80"}]}]}]}`, conn(scenario.TCP, 80, webX), true},
		{"L4-only: other port", `{"ingress":[{"toPorts":[{"ports":[{"port":"80"}]}]}]}`, conn(scenario.TCP, 81, webX), false},
		{"L3-only: every port and ICMP", `{"ingress":[{"fromEndpoints":[{}]}]}`, conn(scenario.ICMP, 0, webX), true},
		{"L3+L4", `{"ingress":[{"fromEndpoints":[{"matchLabels":{"app":"client"}}],"toPorts":[{"ports":[{"port":"8080","protocol":"TCP"}]}]}]}`, conn(scenario.TCP, 8080, webX), true},
		{"toPorts does not cover ICMP", `{"ingress":[{"fromEndpoints":[{}],"toPorts":[{"ports":[{"port":"0"}]}]}]}`, conn(scenario.ICMP, 0, webX), false},
		{"icmps", `{"ingress":[{"icmps":[{"fields":[{"type":"EchoRequest"}]}]}]}`, conn(scenario.ICMP, 0, webX), true},
		{"icmps do not cover TCP", `{"ingress":[{"icmps":[{"fields":[{"type":8}]}]}]}`, conn(scenario.TCP, 80, webX), false},
		{"unenforced L3 selects nothing", `{"ingress":[{"fromRequires":["app"]}]}`, conn(scenario.TCP, 80, webX), false},
		{"named port", `{"ingress":[{"toPorts":[{"ports":[{"port":"http","protocol":"TCP"}]}]}]}`, conn(scenario.TCP, 8080, webX), true},
		{"toPorts entry without ports: no port (Cilium 1.20 mergeL4Filter)", `{"ingress":[{"fromEndpoints":[{}],"toPorts":[{"ports":[{"port":"80"}]},{"rules":{"http":[{}]}}]}]}`, conn(scenario.TCP, 9999, webX), false},
		{"port range", `{"ingress":[{"toPorts":[{"ports":[{"port":"8000","endPort":8100,"protocol":"TCP"}]}]}]}`, conn(scenario.TCP, 8080, webX), true},
	} {
		allow, _ := ingressTerms(rule(tc.rule))
		got := false
		for _, term := range allow {
			got = got || ciliumTermMatches(cnp("x"), term, clientX, tc.c, "node-1")
		}
		if got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestDefaultDenyApplies(t *testing.T) {
	f := false
	if !defaultDenyApplies(&api.Rule{}, ingress) {
		t.Error("default deny is on by default")
	}
	r := &api.Rule{EnableDefaultDeny: api.DefaultDenyConfig{Ingress: &f}}
	if defaultDenyApplies(r, ingress) || !defaultDenyApplies(r, egress) {
		t.Error("enableDefaultDeny.ingress false turns off ingress only")
	}
}

func TestKNP(t *testing.T) {
	np := func(y string) *networkingv1.NetworkPolicy {
		var n networkingv1.NetworkPolicy
		var v any
		if err := yaml.Unmarshal([]byte(y), &v); err != nil {
			t.Fatal(err)
		}
		js, _ := json.Marshal(v)
		if err := json.Unmarshal(js, &n); err != nil {
			t.Fatal(err)
		}
		n.Namespace = "x"
		return &n
	}
	t.Run("policyTypes", func(t *testing.T) {
		for _, tc := range []struct {
			spec         string
			ingr, egress bool
		}{
			{`spec: {podSelector: {}}`, true, false},
			{`spec: {podSelector: {}, egress: [{}]}`, true, true},
			{`spec: {podSelector: {}, policyTypes: [Egress], ingress: [{}]}`, false, true},
			{`spec: {podSelector: {}, policyTypes: [Ingress, Egress]}`, true, true},
		} {
			p := np(tc.spec)
			if knpPolicyTypes(p, ingress) != tc.ingr || knpPolicyTypes(p, egress) != tc.egress {
				t.Errorf("%s: want ingress %v egress %v", tc.spec, tc.ingr, tc.egress)
			}
		}
	})
	t.Run("peers", func(t *testing.T) {
		for _, tc := range []struct {
			name, peer string
			ep         endpoint
			want       bool
		}{
			{"podSelector own namespace", `{podSelector: {matchLabels: {app: client}}}`, clientX, true},
			{"podSelector other namespace", `{podSelector: {matchLabels: {app: client}}}`, clientY, false},
			{"namespaceSelector {}", `{namespaceSelector: {}}`, clientY, true},
			{"namespaceSelector {} not world", `{namespaceSelector: {}}`, world("203.0.113.7"), false},
			{"namespaceSelector labels", `{namespaceSelector: {matchLabels: {team: b}}}`, clientY, true},
			{"namespaceSelector by name", `{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: "y"}}}`, clientY, true},
			{"ns AND pod", `{namespaceSelector: {matchLabels: {team: b}}, podSelector: {matchLabels: {app: web}}}`, clientY, false},
			{"ipBlock world", `{ipBlock: {cidr: 203.0.113.0/24}}`, world("203.0.113.7"), true},
			{"ipBlock never a pod", `{ipBlock: {cidr: 10.0.0.0/8}}`, clientY, false},
		} {
			p := np(`spec: {podSelector: {}, ingress: [{from: [` + tc.peer + `]}]}`)
			if got := knpPeerSelects(p, p.Spec.Ingress[0].From[0], tc.ep); got != tc.want {
				t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
			}
		}
	})
	t.Run("ports", func(t *testing.T) {
		for _, tc := range []struct {
			name, port string
			c          connection
			want       bool
		}{
			{"default TCP", `{port: 8080}`, conn(scenario.TCP, 8080, webX), true},
			{"default TCP not UDP", `{port: 53}`, conn(scenario.UDP, 53, webX), false},
			{"protocol only", `{protocol: UDP}`, conn(scenario.UDP, 9999, webX), true},
			{"named", `{port: dns, protocol: UDP}`, conn(scenario.UDP, 53, webX), true},
			{"range", `{port: 8000, endPort: 8100}`, conn(scenario.TCP, 8100, webX), true},
		} {
			p := np(`spec: {podSelector: {}, ingress: [{ports: [` + tc.port + `]}]}`)
			if got := knpPortMatches(p.Spec.Ingress[0].Ports[0], tc.c); got != tc.want {
				t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
			}
		}
	})
	t.Run("rules", func(t *testing.T) {
		p := np(`spec: {podSelector: {}, ingress: [{}]}`)
		if !knpRuleAllows(p, nil, nil, world("203.0.113.7"), conn(scenario.ICMP, 0, webX)) {
			t.Error("an empty rule allows every peer, protocol and port")
		}
	})
}

func TestDecide(t *testing.T) {
	for _, tc := range []struct {
		name       string
		v          directionVerdict
		ownNode    bool
		ok         bool
		dropReason string
	}{
		{"not enforced", directionVerdict{dir: ingress}, false, true, ""},
		{"enforced, nothing allows", directionVerdict{dir: ingress, enforced: true, defaultDeny: true}, false, false, DropPolicyDenied},
		{"allowed", directionVerdict{dir: ingress, enforced: true, defaultDeny: true, allowedBy: []string{"a"}}, false, true, ""},
		{"deny beats allow", directionVerdict{dir: ingress, enforced: true, defaultDeny: true, allowedBy: []string{"a"}, deniedBy: []string{"d"}}, false, false, DropPolicyDeny},
		{"no default deny", directionVerdict{dir: egress, enforced: true}, false, true, ""},
		{"no default deny still denies", directionVerdict{dir: egress, enforced: true, deniedBy: []string{"d"}}, false, false, DropPolicyDeny},
		{"allow-localhost", directionVerdict{dir: ingress, enforced: true, defaultDeny: true}, true, true, ""},
		{"allow-localhost is ingress only", directionVerdict{dir: egress, enforced: true, defaultDeny: true}, true, false, DropPolicyDenied},
	} {
		ok, reason, _ := tc.v.decide(tc.ownNode)
		if ok != tc.ok || reason != tc.dropReason {
			t.Errorf("%s: got %v %q, want %v %q", tc.name, ok, reason, tc.ok, tc.dropReason)
		}
	}
}

func TestDecodeErrorNamesFileAndLine(t *testing.T) {
	var doc yaml.Node
	src := "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: bad}\nspec:\n  ingress: {notalist: true}\n"
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatal(err)
	}
	obj := scenario.Object{Kind: "CiliumNetworkPolicy", Namespace: "default", Name: "bad", Node: doc.Content[0], File: "f.yaml", Line: 7}
	_, err := New(&scenario.State{Policies: []scenario.Object{obj}})
	if err == nil || !strings.HasPrefix(err.Error(), "f.yaml:7: CiliumNetworkPolicy default/bad: ") {
		t.Fatalf("got %v, want an error naming f.yaml:7 and the policy", err)
	}
}
