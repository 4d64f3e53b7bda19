package policy

import (
	"slices"
	"sort"
	"strings"
	"testing"

	slimv1 "github.com/cilium/cilium/pkg/k8s/slim/k8s/apis/meta/v1"
	ciliumapi "github.com/cilium/cilium/pkg/policy/api"

	"github.com/ciliaproject/cilia/agent/policy/load"
)

// termWant is the expected translation of one allow or deny term.
type termWant struct {
	deny    bool
	anyPeer bool     // Peers == nil (any peer)
	peers   []string // describe() of each peer, any order; empty and !anyPeer: selects nothing
	anyPort bool     // Ports == nil (any protocol and port)
	ports   []PortProto
}

// sectionWant is the expected translation of a present section.
type sectionWant struct {
	defaultDeny bool
	terms       []termWant
}

// ruleWant is the expected translation of one rule; a nil section is
// not present.
type ruleWant struct {
	subject string
	in, eg  *sectionWant
}

// Shorthands for expectations.
var (
	tcp   = func(lo, hi uint16) PortProto { return PortProto{Proto: protoTCP, Lo: lo, Hi: hi} }
	udp   = func(lo, hi uint16) PortProto { return PortProto{Proto: protoUDP, Lo: lo, Hi: hi} }
	sctp  = func(lo, hi uint16) PortProto { return PortProto{Proto: protoSCTP, Lo: lo, Hi: hi} }
	icmp  = func(typ uint16) PortProto { return PortProto{Proto: protoICMP, Lo: typ, Hi: typ} }
	icmp6 = func(typ uint16) PortProto { return PortProto{Proto: protoICMPv6, Lo: typ, Hi: typ} }
	// anyProto is what ANY (or no protocol) stands for.
	anyProto = func(lo, hi uint16) []PortProto { return []PortProto{tcp(lo, hi), udp(lo, hi), sctp(lo, hi)} }
)

// oneIn is a rule with one present ingress section of default deny.
func oneIn(subject string, terms ...termWant) []ruleWant {
	return []ruleWant{{subject: subject, in: &sectionWant{defaultDeny: true, terms: terms}}}
}

func oneEg(subject string, terms ...termWant) []ruleWant {
	return []ruleWant{{subject: subject, eg: &sectionWant{defaultDeny: true, terms: terms}}}
}

// peersTerm is an allow term of the given peers and any port.
func peersTerm(peers ...string) termWant {
	return termWant{peers: peers, anyPort: true}
}

// portsTerm is an allow term of any peer and the given ports.
func portsTerm(ports ...PortProto) termWant {
	return termWant{anyPeer: true, ports: ports}
}

// nothing is the term of the empty rule {}: no peer, any port.
var nothing = termWant{peers: []string{}, anyPort: true}

func checkRules(t *testing.T, got []*Rule, want []ruleWant) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d rules, want %d", len(got), len(want))
	}
	for i, w := range want {
		r := got[i]
		if s := describe(r.Subject); s != w.subject {
			t.Errorf("rule %d: subject %s, want %s", i, s, w.subject)
		}
		checkSection(t, i, "ingress", &r.Ingress, w.in)
		checkSection(t, i, "egress", &r.Egress, w.eg)
	}
}

func checkSection(t *testing.T, i int, dir string, got *Section, want *sectionWant) {
	t.Helper()
	if got.Present != (want != nil) {
		t.Errorf("rule %d: %s present = %v, want %v", i, dir, got.Present, want != nil)
	}
	if want == nil {
		if len(got.Rules) != 0 {
			t.Errorf("rule %d: %s not present but has %d terms", i, dir, len(got.Rules))
		}
		return
	}
	if got.DefaultDeny != want.defaultDeny {
		t.Errorf("rule %d: %s default deny = %v, want %v", i, dir, got.DefaultDeny, want.defaultDeny)
	}
	if len(got.Rules) != len(want.terms) {
		t.Errorf("rule %d: %s has %d terms, want %d", i, dir, len(got.Rules), len(want.terms))
		return
	}
	for j, w := range want.terms {
		g := got.Rules[j]
		where := dir + " term " + string(rune('0'+j))
		if g.Deny != w.deny {
			t.Errorf("rule %d %s: deny = %v, want %v", i, where, g.Deny, w.deny)
		}
		switch {
		case w.anyPeer && g.Peers != nil:
			t.Errorf("rule %d %s: peers %v, want any peer (nil)", i, where, describeAll(g.Peers))
		case !w.anyPeer && g.Peers == nil:
			t.Errorf("rule %d %s: any peer (nil), want %v", i, where, w.peers)
		case !w.anyPeer:
			wp := slices.Clone(w.peers)
			sort.Strings(wp)
			if gp := describeAll(g.Peers); !slices.Equal(gp, wp) {
				t.Errorf("rule %d %s: peers\n  %s\nwant\n  %s", i, where, strings.Join(gp, "\n  "), strings.Join(wp, "\n  "))
			}
		}
		switch {
		case w.anyPort && g.Ports != nil:
			t.Errorf("rule %d %s: ports %+v, want any port (nil)", i, where, g.Ports)
		case !w.anyPort && g.Ports == nil:
			t.Errorf("rule %d %s: any port (nil), want %+v", i, where, w.ports)
		case !w.anyPort:
			if gp, wp := sortedPorts(g.Ports), sortedPorts(w.ports); !slices.Equal(gp, wp) {
				t.Errorf("rule %d %s: ports %+v, want %+v", i, where, gp, wp)
			}
		}
		if g.Origin == nil || g.Origin.RuleID == 0 {
			t.Errorf("rule %d %s: no origin or rule ID", i, where)
		}
	}
}

func sortedPorts(ps []PortProto) []PortProto {
	out := slices.Clone(ps)
	if out == nil {
		out = []PortProto{}
	}
	slices.SortFunc(out, func(a, b PortProto) int {
		switch {
		case a.Proto != b.Proto:
			return int(a.Proto) - int(b.Proto)
		case a.Lo != b.Lo:
			return int(a.Lo) - int(b.Lo)
		case a.Hi != b.Hi:
			return int(a.Hi) - int(b.Hi)
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}

func TestTranslateCilium(t *testing.T) {
	webX := sel(`any:app In ["web"]`, reqNsX)
	dbX := sel(`any:app In ["db"]`, reqCluster, reqNsX)
	reserved := func(name string) string { return sel("reserved:" + name + " Exists []") }
	cluster := []string{reserved("host"), reserved("remote-node"), reserved("health"), reserved("init"),
		reserved("unmanaged"), reserved("ingress"), reserved("kube-apiserver"), sel(reqCluster)}
	tests := []struct {
		name string
		doc  string
		want []ruleWant
	}{
		// The subject.
		{"CNP subject is limited to the policy namespace", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress: [{}]
`), oneIn(webX, nothing)},
		{"CNP subject: a namespace written in the selector is replaced", cnp(`
  endpointSelector: {matchLabels: {app: web, "k8s:io.kubernetes.pod.namespace": other}}
  ingress: [{}]
`), oneIn(webX, nothing)},
		{"CNP empty subject is the policy namespace", cnp(`
  endpointSelector: {}
  ingress: [{}]
`), oneIn(sel(reqNsX), nothing)},
		{"CNP subject expressions keep their sources", cnp(`
  endpointSelector:
    matchExpressions:
    - {key: tier, operator: NotIn, values: [b, a]}
    - {key: "k8s:app", operator: Exists}
    - {key: "k8s:canary", operator: DoesNotExist}
  ingress: [{}]
`), oneIn(sel(`any:tier NotIn ["a" "b"]`, `k8s:app Exists []`, `k8s:canary DoesNotExist []`, reqNsX), nothing)},
		{"CCNP subject is left as written", ccnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress: [{}]
`), oneIn(sel(`any:app In ["web"]`), nothing)},
		{"CCNP empty subject selects everything", ccnp(`
  endpointSelector: {}
  ingress: [{}]
`), oneIn(sel(), nothing)},
		{"CCNP subject with a namespace is left as written", ccnp(`
  endpointSelector: {matchLabels: {"k8s:io.kubernetes.pod.namespace": "y"}}
  ingress: [{}]
`), oneIn(sel(reqNsY), nothing)},

		// fromEndpoints / toEndpoints scoping in a CNP.
		{"CNP peer without namespace: policy namespace and cluster", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: db}}]
`), oneIn(webX, peersTerm(dbX))},
		{"CNP peer {} is every pod of the namespace", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{}]
`), oneIn(webX, peersTerm(sel(reqCluster, reqNsX)))},
		{"CNP peer with k8s: namespace key is as written", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {"k8s:io.kubernetes.pod.namespace": "y", app: db}}]
`), oneIn(webX, peersTerm(sel(reqNsY, `any:app In ["db"]`, reqCluster)))},
		{"CNP peer with plain namespace key is as written", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {io.kubernetes.pod.namespace: "y"}}]
`), oneIn(webX, peersTerm(sel(`any:io.kubernetes.pod.namespace In ["y"]`, reqCluster)))},
		{"CNP peer with any: namespace key is as written", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {"any:io.kubernetes.pod.namespace": "y"}}]
`), oneIn(webX, peersTerm(sel(`any:io.kubernetes.pod.namespace In ["y"]`, reqCluster)))},
		{"CNP peer with a namespace expression is as written", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints:
    - matchExpressions: [{key: "k8s:io.kubernetes.pod.namespace", operator: In, values: ["y", x]}]
`), oneIn(webX, peersTerm(sel(`k8s:io.kubernetes.pod.namespace In ["x" "y"]`, reqCluster)))},
		{"CNP peer with a namespace NotIn expression is not limited further", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints:
    - matchExpressions: [{key: "k8s:io.kubernetes.pod.namespace", operator: NotIn, values: [x]}]
`), oneIn(webX, peersTerm(sel(`k8s:io.kubernetes.pod.namespace NotIn ["x"]`, reqCluster)))},
		{"CNP peer on k8s: namespace labels spans namespaces", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {"k8s:io.cilium.k8s.namespace.labels.team": red}}]
`), oneIn(webX, peersTerm(sel(`k8s:io.cilium.k8s.namespace.labels.team In ["red"]`, reqCluster)))},
		{"CNP peer on plain namespace labels spans namespaces", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {io.cilium.k8s.namespace.labels.team: red, app: db}}]
`), oneIn(webX, peersTerm(sel(`any:io.cilium.k8s.namespace.labels.team In ["red"]`, `any:app In ["db"]`, reqCluster)))},
		{"CNP peer on a reserved label is left alone", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {"reserved:host": ""}}]
`), oneIn(webX, peersTerm(sel(`reserved:host In [""]`)))},
		{"CNP peer on a reserved expression is left alone", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchExpressions: [{key: "reserved:world", operator: Exists}]}]
`), oneIn(webX, peersTerm(sel(`reserved:world Exists []`)))},
		{"CNP peer naming the cluster gets no other cluster", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {"k8s:io.cilium.k8s.policy.cluster": other, app: db}}]
`), oneIn(webX, peersTerm(sel(`k8s:io.cilium.k8s.policy.cluster In ["other"]`, `any:app In ["db"]`, reqNsX)))},
		{"CNP NotIn-only peer gets the cluster filter", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchExpressions: [{key: app, operator: NotIn, values: [db]}]}]
`), oneIn(webX, peersTerm(sel(`any:app NotIn ["db"]`, reqCluster, reqNsX)))},
		{"CNP several peers of one term", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: db}}, {matchLabels: {"k8s:app": api}}]
`), oneIn(webX, peersTerm(dbX, sel(`k8s:app In ["api"]`, reqCluster, reqNsX)))},
		{"CNP toEndpoints scoping", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  egress:
  - toEndpoints: [{matchLabels: {app: db}}, {matchLabels: {"k8s:io.kubernetes.pod.namespace": "y"}}, {matchLabels: {"reserved:host": ""}}]
`), oneEg(webX, peersTerm(dbX, sel(reqNsY, reqCluster), sel(`reserved:host In [""]`)))},
		{"CNP deny terms are scoped like allows", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingressDeny:
  - fromEndpoints: [{matchLabels: {app: db}}]
  egressDeny:
  - toEndpoints: [{}]
`), []ruleWant{{subject: webX,
			in: &sectionWant{defaultDeny: true, terms: []termWant{{deny: true, peers: []string{dbX}, anyPort: true}}},
			eg: &sectionWant{defaultDeny: true, terms: []termWant{{deny: true, peers: []string{sel(reqCluster, reqNsX)}, anyPort: true}}}}}},

		// fromEndpoints scoping in a CCNP: pods of any namespace.
		{"CCNP peer without namespace requires the namespace label", ccnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: db}}]
`), oneIn(sel(`any:app In ["web"]`), peersTerm(sel(`any:app In ["db"]`, reqCluster, reqNsExists)))},
		{"CCNP peer {} is every pod", ccnp(`
  endpointSelector: {}
  ingress:
  - fromEndpoints: [{}]
`), oneIn(sel(), peersTerm(sel(reqCluster, reqNsExists)))},
		{"CCNP peer on namespace labels requires the namespace label", ccnp(`
  endpointSelector: {}
  ingress:
  - fromEndpoints: [{matchLabels: {"k8s:io.cilium.k8s.namespace.labels.team": red}}]
`), oneIn(sel(), peersTerm(sel(`k8s:io.cilium.k8s.namespace.labels.team In ["red"]`, reqCluster, reqNsExists)))},
		{"CCNP peer with a namespace is as written", ccnp(`
  endpointSelector: {}
  egress:
  - toEndpoints: [{matchLabels: {"k8s:io.kubernetes.pod.namespace": "y"}}]
`), oneEg(sel(), peersTerm(sel(reqNsY, reqCluster)))},
		{"CCNP reserved peer is left alone", ccnp(`
  endpointSelector: {}
  ingress:
  - fromEndpoints: [{matchExpressions: [{key: "reserved:host", operator: Exists}]}]
`), oneIn(sel(), peersTerm(sel(`reserved:host Exists []`)))},

		// Entities.
		{"entity all is the wildcard", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEntities: [all]
`), oneIn(webX, peersTerm("*"))},
		{"entity world", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  egress:
  - toEntities: [world]
`), oneEg(webX, peersTerm(reserved("world")))},
		{"entity cluster", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEntities: [cluster]
`), oneIn(webX, peersTerm(cluster...))},
		{"entity host", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEntities: [host]
`), oneIn(webX, peersTerm(reserved("host")))},
		{"entities remote-node, health, kube-apiserver, init, unmanaged, ingress", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEntities: [remote-node, health, kube-apiserver, init, unmanaged, ingress]
`), oneIn(webX, peersTerm(reserved("remote-node"), reserved("health"), reserved("kube-apiserver"),
			reserved("init"), reserved("unmanaged"), reserved("ingress")))},
		{"entity none selects nothing", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEntities: [none]
`), oneIn(webX, nothing)},
		{"entity none with ports selects nothing", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEntities: [none]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`), oneIn(webX, termWant{peers: []string{}, ports: []PortProto{tcp(80, 80)}})},

		// CIDRs.
		{"fromCIDR IPv4 and IPv6", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromCIDR: [10.0.0.0/8, "2001:db8::/32"]
`), oneIn(webX, peersTerm("cidr:10.0.0.0/8", "cidr:2001:db8::/32"))},
		{"fromCIDRSet with excepts", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromCIDRSet: [{cidr: 10.0.0.0/8, except: [10.2.0.0/16, 10.1.0.0/16]}]
`), oneIn(webX, peersTerm("cidr:10.0.0.0/8 except 10.1.0.0/16 except 10.2.0.0/16"))},
		{"toCIDRSet IPv6 with except", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  egress:
  - toCIDRSet: [{cidr: "2001:db8::/32", except: ["2001:db8:1::/48"]}]
`), oneEg(webX, peersTerm("cidr:2001:db8::/32 except 2001:db8:1::/48"))},
		{"toCIDR 0.0.0.0/0 is a CIDR, not the wildcard", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  egress:
  - toCIDR: [0.0.0.0/0]
`), oneEg(webX, peersTerm("cidr:0.0.0.0/0"))},
		{"a CIDR group reference alone selects nothing", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  egress:
  - toCIDRSet: [{cidrGroupRef: group}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`), oneEg(webX, termWant{peers: []string{}, ports: []PortProto{tcp(80, 80)}})},

		// Ports.
		{"TCP port", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`), oneIn(webX, portsTerm(tcp(80, 80)))},
		{"ANY is TCP, UDP and SCTP", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - toPorts: [{ports: [{port: "53", protocol: ANY}]}]
`), oneIn(webX, portsTerm(anyProto(53, 53)...))},
		{"no protocol is TCP, UDP and SCTP", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - toPorts: [{ports: [{port: "53"}]}]
`), oneIn(webX, portsTerm(anyProto(53, 53)...))},
		{"port 0 is any port", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - toPorts: [{ports: [{port: "0", protocol: UDP}]}]
`), oneIn(webX, portsTerm(udp(0, 0)))},
		{"endPort makes a range", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - toPorts: [{ports: [{port: "8000", endPort: 8080, protocol: TCP}]}]
`), oneIn(webX, portsTerm(tcp(8000, 8080)))},
		{"endPort with ANY", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  egress:
  - toPorts: [{ports: [{port: "1000", endPort: 1010}]}]
`), oneEg(webX, portsTerm(anyProto(1000, 1010)...))},
		{"named port with a protocol", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - toPorts: [{ports: [{port: http, protocol: TCP}]}]
`), oneIn(webX, portsTerm(PortProto{Proto: protoTCP, Name: "http"}))},
		{"named port without a protocol leaves it to the pod", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - toPorts: [{ports: [{port: http}]}]
`), oneIn(webX, portsTerm(PortProto{Name: "http"}))},
		{"SCTP and several port rules are flattened", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - toPorts:
    - ports: [{port: "80", protocol: TCP}, {port: "53", protocol: UDP}]
    - ports: [{port: "9", protocol: SCTP}]
`), oneIn(webX, portsTerm(tcp(80, 80), udp(53, 53), sctp(9, 9)))},
		{"an L7 rule's ports are allowed at L4", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: db}}]
    toPorts:
    - ports: [{port: "80", protocol: TCP}]
      rules:
        http: [{method: GET, path: /}]
`), oneIn(webX, termWant{peers: []string{dbX}, ports: []PortProto{tcp(80, 80)}})},
		{"L3 and L4 together", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: db}}]
    toPorts: [{ports: [{port: "5432", protocol: TCP}]}]
`), oneIn(webX, termWant{peers: []string{dbX}, ports: []PortProto{tcp(5432, 5432)}})},

		// ICMP.
		{"ICMP type numbers and names", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - icmps: [{fields: [{type: 8}, {type: EchoReply}, {type: DestinationUnreachable, family: IPv4}, {type: TimeExceeded}]}]
`), oneIn(webX, portsTerm(icmp(8), icmp(0), icmp(3), icmp(11)))},
		{"ICMPv6 type numbers and names", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  egress:
  - icmps:
    - fields: [{family: IPv6, type: EchoRequest}, {family: IPv6, type: 135}, {family: IPv6, type: TimeExceeded}]
`), oneEg(webX, portsTerm(icmp6(128), icmp6(135), icmp6(3)))},
		{"ICMP with peers", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: db}}]
    icmps: [{fields: [{type: 8}]}]
`), oneIn(webX, termWant{peers: []string{dbX}, ports: []PortProto{icmp(8)}})},

		// Empty, L3-only and L4-only terms.
		{"the empty rule selects nothing", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress: [{}]
`), oneIn(webX, nothing)},
		{"the empty egress rule selects nothing", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  egress: [{}]
`), oneEg(webX, nothing)},
		{"L4-only is any peer", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  egress:
  - toPorts: [{ports: [{port: "443", protocol: TCP}]}]
`), oneEg(webX, portsTerm(tcp(443, 443)))},
		{"ICMP-only is any peer", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  egress:
  - icmps: [{fields: [{type: 8}]}]
`), oneEg(webX, portsTerm(icmp(8)))},
		{"L3-only is any port", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  egress:
  - toEndpoints: [{matchLabels: {app: db}}]
`), oneEg(webX, peersTerm(dbX))},
		{"toFQDNs alone selects nothing", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  egress:
  - toFQDNs: [{matchName: example.com}]
`), oneEg(webX, nothing)},
		// docs/policy-engine.md: "A term whose only L3 field is such a
		// part selects nothing (never everything)", toFQDNs included.
		{"toFQDNs with ports selects nothing, not any peer", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  egress:
  - toFQDNs: [{matchName: example.com}]
    toPorts: [{ports: [{port: "443", protocol: TCP}]}]
`), oneEg(webX, termWant{peers: []string{}, ports: []PortProto{tcp(443, 443)}})},
		{"toServices with ports selects nothing", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  egress:
  - toServices: [{k8sService: {serviceName: svc, namespace: x}}]
    toPorts: [{ports: [{port: "443", protocol: TCP}]}]
`), oneEg(webX, termWant{peers: []string{}, ports: []PortProto{tcp(443, 443)}})},

		// Sections and default deny.
		{"ingress only: egress not present", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress: [{fromEntities: [world]}]
`), oneIn(webX, peersTerm(reserved("world")))},
		{"ingressDeny alone makes ingress present", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingressDeny: [{fromEntities: [world]}]
`), oneIn(webX, termWant{deny: true, peers: []string{reserved("world")}, anyPort: true})},
		{"egressDeny alone makes egress present", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  egressDeny:
  - toPorts: [{ports: [{port: "22", protocol: TCP}]}]
`), oneEg(webX, termWant{deny: true, anyPeer: true, ports: []PortProto{tcp(22, 22)}})},
		{"allows come before denies", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingressDeny: [{fromEntities: [world]}]
  ingress: [{fromEntities: [host]}, {fromEntities: [cluster]}]
`), oneIn(webX, peersTerm(reserved("host")), peersTerm(cluster...),
			termWant{deny: true, peers: []string{reserved("world")}, anyPort: true})},
		{"enableDefaultDeny ingress false", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  enableDefaultDeny: {ingress: false}
  ingress: [{fromEntities: [host]}]
  egress: [{toEntities: [host]}]
`), []ruleWant{{subject: webX,
			in: &sectionWant{defaultDeny: false, terms: []termWant{peersTerm(reserved("host"))}},
			eg: &sectionWant{defaultDeny: true, terms: []termWant{peersTerm(reserved("host"))}}}}},
		{"enableDefaultDeny egress false, ingress true", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  enableDefaultDeny: {ingress: true, egress: false}
  ingressDeny: [{fromEntities: [world]}]
  egressDeny: [{toEntities: [world]}]
`), []ruleWant{{subject: webX,
			in: &sectionWant{defaultDeny: true, terms: []termWant{{deny: true, peers: []string{reserved("world")}, anyPort: true}}},
			eg: &sectionWant{defaultDeny: false, terms: []termWant{{deny: true, peers: []string{reserved("world")}, anyPort: true}}}}}},
		{"specs: one rule each", strings.Replace(cnpHeader, "spec:\n", "specs:\n", 1) + `
  - endpointSelector: {matchLabels: {app: web}}
    ingress: [{fromEntities: [host]}]
  - endpointSelector: {matchLabels: {app: db}}
    egress: [{toEntities: [world]}]
`, []ruleWant{
			{subject: webX, in: &sectionWant{defaultDeny: true, terms: []termWant{peersTerm(reserved("host"))}}},
			{subject: sel(`any:app In ["db"]`, reqNsX), eg: &sectionWant{defaultDeny: true, terms: []termWant{peersTerm(reserved("world"))}}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkRules(t, translateDoc(t, tt.doc), tt.want)
		})
	}
}

func TestTranslateHostPolicyIsSkipped(t *testing.T) {
	rules := translateDoc(t, ccnp(`
  nodeSelector: {matchLabels: {role: worker}}
  ingress: [{fromEntities: [cluster]}]
`))
	if len(rules) != 0 {
		t.Fatalf("a host policy (nodeSelector) gave %d rules, want none", len(rules))
	}
}

func TestTranslateNetworkPolicy(t *testing.T) {
	web := sel(`k8s:app In ["web"]`, reqNsX)
	tests := []struct {
		name string
		doc  string
		want []ruleWant
	}{
		{"subject is the podSelector in the namespace, k8s source", knp(`
  podSelector: {matchLabels: {app: web}}
  ingress: [{}]
`), oneIn(web, termWant{anyPeer: true, anyPort: true})},
		{"subject expressions", knp(`
  podSelector: {matchExpressions: [{key: app, operator: In, values: [web, api]}]}
  ingress: [{}]
`), oneIn(sel(`k8s:app In ["api" "web"]`, reqNsX), termWant{anyPeer: true, anyPort: true})},
		{"no policyTypes, no rules: ingress isolated", knp(`
  podSelector: {}
`), oneIn(sel(reqNsX))},
		{"no policyTypes, egress rules: both directions", knp(`
  podSelector: {matchLabels: {app: web}}
  egress: [{}]
`), []ruleWant{{subject: web, in: &sectionWant{defaultDeny: true},
			eg: &sectionWant{defaultDeny: true, terms: []termWant{{anyPeer: true, anyPort: true}}}}}},
		{"policyTypes Egress: ingress rules ignored", knp(`
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
  ingress: [{}]
`), oneEg(web)},
		{"policyTypes Ingress: egress rules ignored", knp(`
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
  ingress: [{ports: [{port: 80}]}]
  egress: [{}]
`), oneIn(web, portsTerm(tcp(80, 80)))},
		{"policyTypes both, no rules", knp(`
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress, Egress]
`), []ruleWant{{subject: web, in: &sectionWant{defaultDeny: true}, eg: &sectionWant{defaultDeny: true}}}},
		{"podSelector peer is the policy namespace", knp(`
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: db}}}, {podSelector: {}}]
`), oneIn(web, peersTerm(sel(`k8s:app In ["db"]`, reqCluster, reqNsX), sel(reqCluster, reqNsX)))},
		{"podSelector peer expressions", knp(`
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchExpressions: [{key: app, operator: NotIn, values: [db]}]}}]
`), oneIn(web, peersTerm(sel(`k8s:app NotIn ["db"]`, reqCluster, reqNsX)))},
		{"namespaceSelector peer selects on namespace labels", knp(`
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {team: red}}}]
`), oneIn(web, peersTerm(sel(`k8s:io.cilium.k8s.namespace.labels.team In ["red"]`, reqCluster)))},
		{"namespaceSelector expressions get the prefix", knp(`
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{namespaceSelector: {matchExpressions: [{key: team, operator: In, values: [red, blue]}]}}]
`), oneIn(web, peersTerm(sel(`k8s:io.cilium.k8s.namespace.labels.team In ["blue" "red"]`, reqCluster)))},
		{"namespaceSelector {} is every namespace", knp(`
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{namespaceSelector: {}}]
`), oneIn(web, peersTerm(sel(reqNsExists, reqCluster)))},
		{"namespaceSelector and podSelector are ANDed", knp(`
  podSelector: {matchLabels: {app: web}}
  egress:
  - to: [{namespaceSelector: {matchLabels: {team: red}}, podSelector: {matchLabels: {app: db}}}]
`), []ruleWant{{subject: web, in: &sectionWant{defaultDeny: true}, eg: &sectionWant{defaultDeny: true,
			terms: []termWant{peersTerm(sel(`k8s:io.cilium.k8s.namespace.labels.team In ["red"]`, `k8s:app In ["db"]`, reqCluster))}}}}},
		{"namespaceSelector {} and podSelector", knp(`
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{namespaceSelector: {}, podSelector: {matchLabels: {app: db}}}]
`), oneIn(web, peersTerm(sel(reqNsExists, `k8s:app In ["db"]`, reqCluster)))},
		{"ipBlock with except", knp(`
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}, {ipBlock: {cidr: "2001:db8::/32"}}]
`), oneIn(web, peersTerm("cidr:10.0.0.0/8 except 10.1.0.0/16", "cidr:2001:db8::/32"))},
		{"empty from is any peer, empty ports any port", knp(`
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: []
    ports: []
`), oneIn(web, termWant{anyPeer: true, anyPort: true})},
		{"ports: protocol defaults to TCP", knp(`
  podSelector: {matchLabels: {app: web}}
  ingress:
  - ports:
    - {port: 80}
    - {protocol: UDP, port: 53}
    - {protocol: SCTP, port: 9}
    - {protocol: TCP}
    - {port: 8000, endPort: 8080}
    - {port: http}
    - {protocol: UDP, port: dns}
`), oneIn(web, portsTerm(tcp(80, 80), udp(53, 53), sctp(9, 9), tcp(0, 0), tcp(8000, 8080),
			PortProto{Proto: protoTCP, Name: "http"}, PortProto{Proto: protoUDP, Name: "dns"}))},
		{"peers and ports", knp(`
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
  egress:
  - to: [{podSelector: {matchLabels: {app: db}}}]
    ports: [{port: 5432}]
  - to: [{ipBlock: {cidr: 0.0.0.0/0}}]
`), oneEg(web, termWant{peers: []string{sel(`k8s:app In ["db"]`, reqCluster, reqNsX)}, ports: []PortProto{tcp(5432, 5432)}},
			peersTerm("cidr:0.0.0.0/0"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkRules(t, translateDoc(t, tt.doc), tt.want)
		})
	}
}

// TestTranslatedSelectorsSelect checks what translated peer selectors
// select among the pods of namespaces x (team blue), y (team red), z,
// the reserved identities and CIDR identities.
func TestTranslatedSelectorsSelect(t *testing.T) {
	reservedAll := []string{"host", "world", "unmanaged", "health", "init", "remote-node", "kube-apiserver", "ingress"}
	tests := []struct {
		name string
		doc  string
		want []string // identities the first term's peers select (union)
	}{
		{"CNP {} peer: pods of the namespace", cnp(`
  endpointSelector: {}
  ingress: [{fromEndpoints: [{}]}]
`), []string{"x/a", "x/b", "x/c"}},
		{"CCNP {} peer: every pod", ccnp(`
  endpointSelector: {}
  ingress: [{fromEndpoints: [{}]}]
`), []string{"x/a", "x/b", "x/c", "y/a", "y/b", "z/a"}},
		{"CNP peer on namespace labels: across namespaces", cnp(`
  endpointSelector: {}
  ingress: [{fromEndpoints: [{matchLabels: {"k8s:io.cilium.k8s.namespace.labels.team": red}}]}]
`), []string{"y/a", "y/b"}},
		{"CNP app=db peer: this namespace only", cnp(`
  endpointSelector: {}
  ingress: [{fromEndpoints: [{matchLabels: {app: db}}]}]
`), []string{"x/b"}},
		{"CNP peer of another namespace", cnp(`
  endpointSelector: {}
  ingress: [{fromEndpoints: [{matchLabels: {"k8s:io.kubernetes.pod.namespace": "y", app: db}}]}]
`), []string{"y/b"}},
		{"CNP NotIn-only peer never selects reserved identities", cnp(`
  endpointSelector: {}
  ingress: [{fromEndpoints: [{matchExpressions: [{key: app, operator: NotIn, values: [db]}]}]}]
`), []string{"x/a", "x/c"}},
		{"CCNP DoesNotExist-only peer never selects reserved identities", ccnp(`
  endpointSelector: {}
  ingress: [{fromEndpoints: [{matchExpressions: [{key: app, operator: DoesNotExist}]}]}]
`), []string{"z/a"}},
		{"reserved host peer", cnp(`
  endpointSelector: {}
  ingress: [{fromEndpoints: [{matchLabels: {"reserved:host": ""}}]}]
`), []string{"host"}},
		{"entity cluster: in-cluster reserved identities and pods", cnp(`
  endpointSelector: {}
  ingress: [{fromEntities: [cluster]}]
`), []string{"host", "unmanaged", "health", "init", "remote-node", "kube-apiserver", "ingress",
			"x/a", "x/b", "x/c", "y/a", "y/b", "z/a"}},
		{"entity world: world and every CIDR identity", cnp(`
  endpointSelector: {}
  ingress: [{fromEntities: [world]}]
`), []string{"world", "cidr:0.0.0.0/0", "cidr:10.0.0.0/8", "cidr:10.1.0.0/16", "cidr:::/0"}},
		{"entity none", cnp(`
  endpointSelector: {}
  ingress: [{fromEntities: [none]}]
`), nil},
		{"entity all (the wildcard, identity 0)", cnp(`
  endpointSelector: {}
  ingress: [{fromEntities: [all]}]
`), append([]string{"x/a", "x/b", "x/c", "y/a", "y/b", "z/a",
			"cidr:0.0.0.0/0", "cidr:10.0.0.0/8", "cidr:10.1.0.0/16", "cidr:::/0"}, reservedAll...)},
		{"CIDR 0.0.0.0/0: IPv4 CIDR identities only", cnp(`
  endpointSelector: {}
  ingress: [{fromCIDR: [0.0.0.0/0]}]
`), []string{"cidr:0.0.0.0/0", "cidr:10.0.0.0/8", "cidr:10.1.0.0/16"}},
		{"CIDR set with except", cnp(`
  endpointSelector: {}
  ingress: [{fromCIDRSet: [{cidr: 10.0.0.0/8, except: [10.1.0.0/16]}]}]
`), []string{"cidr:10.0.0.0/8"}},
		{"KNP podSelector {}: pods of the namespace", knp(`
  podSelector: {}
  ingress: [{from: [{podSelector: {}}]}]
`), []string{"x/a", "x/b", "x/c"}},
		{"KNP namespaceSelector {}: every pod", knp(`
  podSelector: {}
  ingress: [{from: [{namespaceSelector: {}}]}]
`), []string{"x/a", "x/b", "x/c", "y/a", "y/b", "z/a"}},
		{"KNP namespaceSelector team=red", knp(`
  podSelector: {}
  ingress: [{from: [{namespaceSelector: {matchLabels: {team: red}}}]}]
`), []string{"y/a", "y/b"}},
		{"KNP namespaceSelector by metadata.name and podSelector", knp(`
  podSelector: {}
  ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: "y"}}, podSelector: {matchLabels: {app: db}}}]}]
`), []string{"y/b"}},
		{"KNP namespaceSelector NotIn: not the reserved identities", knp(`
  podSelector: {}
  ingress: [{from: [{namespaceSelector: {matchExpressions: [{key: team, operator: NotIn, values: [red]}]}}]}]
`), []string{"x/a", "x/b", "x/c", "z/a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t)
			e.standardPods()
			e.pod("z/a") // no app label
			for _, c := range []string{"0.0.0.0/0", "10.0.0.0/8", "10.1.0.0/16", "::/0"} {
				e.cidr(c)
			}
			rules := translateDoc(t, tt.doc)
			term := rules[0].Ingress.Rules[0]
			var got []string
			for _, id := range e.alloc.All() {
				for _, s := range term.Peers {
					if s.Matches(id) {
						got = append(got, e.names[id.ID])
						break
					}
				}
			}
			if !equalSets(got, tt.want) {
				sort.Strings(got)
				want := slices.Clone(tt.want)
				sort.Strings(want)
				t.Errorf("peers %v select\n  %v\nwant\n  %v", describeAll(term.Peers), got, want)
			}
		})
	}
}

func TestTranslateOrigins(t *testing.T) {
	cnpDoc := `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: origins, namespace: x}
specs:
- endpointSelector: {matchLabels: {app: web}}   # <R0>
  ingress:
  - fromEndpoints: [{matchLabels: {app: db}}]   # <R0-I0>
  - toPorts: [{ports: [{port: "80", protocol: TCP}]}]   # <R0-I1>
  ingressDeny:
  - fromEntities: [world]   # <R0-ID0>
- endpointSelector: {}   # <R1>
  egress:
  - toEntities: [world]   # <R1-E0>
  egressDeny:
  - toCIDR: [10.0.0.0/8]   # <R1-ED0>
`
	ccnpDoc := `apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata:
  name: cw
spec:   # <S>
  endpointSelector: {}
  egress:
  - toEntities: [host]   # <S-E0>
`
	knpDoc := `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: np
  namespace: "y"
spec:   # <S>
  podSelector: {}
  ingress:
  - from: [{podSelector: {}}]   # <S-I0>
  - ports: [{port: 80}]   # <S-I1>
  egress:
  - {}   # <S-E0>
`
	type originWant struct {
		path, marker string
	}
	tests := []struct {
		name, doc, policy string
		// origins of the rules and their terms, in order (rule, its
		// ingress terms, its egress terms, next rule...)
		want []originWant
	}{
		{"CNP specs", cnpDoc, "CiliumNetworkPolicy x/origins", []originWant{
			{"specs[0]", "# <R0>"},
			{"specs[0].ingress[0]", "# <R0-I0>"}, {"specs[0].ingress[1]", "# <R0-I1>"}, {"specs[0].ingressDeny[0]", "# <R0-ID0>"},
			{"specs[1]", "# <R1>"},
			{"specs[1].egress[0]", "# <R1-E0>"}, {"specs[1].egressDeny[0]", "# <R1-ED0>"},
		}},
		{"CCNP spec", ccnpDoc, "CiliumClusterwideNetworkPolicy cw", []originWant{
			{"spec", "# <S>"}, {"spec.egress[0]", "# <S-E0>"},
		}},
		{"NetworkPolicy", knpDoc, "NetworkPolicy y/np", []originWant{
			{"spec", "# <S>"}, {"spec.ingress[0]", "# <S-I0>"}, {"spec.ingress[1]", "# <S-I1>"}, {"spec.egress[0]", "# <S-E0>"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var issued []uint32
			n := uint32(100)
			rules, err := Translate(loadPolicy(t, tt.doc), func() uint32 { n += 7; issued = append(issued, n); return n })
			if err != nil {
				t.Fatal(err)
			}
			var got []*Origin
			for _, r := range rules {
				got = append(got, r.Origin)
				for _, pr := range r.Ingress.Rules {
					got = append(got, pr.Origin)
				}
				for _, pr := range r.Egress.Rules {
					got = append(got, pr.Origin)
				}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d origins, want %d", len(got), len(tt.want))
			}
			seen := map[uint32]bool{}
			for i, w := range tt.want {
				o := got[i]
				wantLine := lineOf(t, tt.doc, w.marker)
				if o.Path != w.path || o.Line != wantLine || o.File != "test.yaml" || o.Policy != tt.policy {
					t.Errorf("origin %d = {%s %s %s:%d}, want {%s %s test.yaml:%d}", i, o.Policy, o.Path, o.File, o.Line,
						tt.policy, w.path, wantLine)
				}
				if !slices.Contains(issued, o.RuleID) || seen[o.RuleID] {
					t.Errorf("origin %d: rule ID %d not issued by nextID or used twice", i, o.RuleID)
				}
				seen[o.RuleID] = true
			}
			if len(issued) != len(got) {
				t.Errorf("nextID called %d times for %d origins", len(issued), len(got))
			}
			if s := got[1].String(); !strings.HasPrefix(s, tt.policy+" "+tt.want[1].path+" (test.yaml:") {
				t.Errorf("Origin.String() = %q", s)
			}
		})
	}
}

// TestTranslateErrors feeds Translate objects the loader would have
// rejected: errors name the field path.
func TestTranslateErrors(t *testing.T) {
	ls := func(key string, op string) ciliumapi.EndpointSelector {
		return ciliumapi.EndpointSelector{LabelSelector: &slimv1.LabelSelector{MatchExpressions: []slimv1.LabelSelectorRequirement{
			{Key: key, Operator: slimv1.LabelSelectorOperator(op)}}}}
	}
	all := ciliumapi.EndpointSelector{LabelSelector: &slimv1.LabelSelector{}}
	cnpOf := func(r *ciliumapi.Rule) *load.Policy {
		return &load.Policy{Kind: load.KindCNP, Namespace: "x", Name: "bad", File: "bad.yaml", Rules: ciliumapi.Rules{r},
			RulePaths: []string{"spec"}}
	}
	tests := []struct {
		name    string
		p       *load.Policy
		wantErr string
	}{
		{"unknown kind", &load.Policy{Kind: "Pod", Name: "x"}, `unknown kind "Pod"`},
		{"NetworkPolicy without its object", &load.Policy{Kind: load.KindKNP, Namespace: "x", Name: "np"}, "no NetworkPolicy object"},
		{"unknown operator in the subject", cnpOf(&ciliumapi.Rule{EndpointSelector: ls("app", "Bogus")}),
			`spec.endpointSelector: unknown operator "Bogus"`},
		{"unknown operator in a peer", cnpOf(&ciliumapi.Rule{EndpointSelector: all, Ingress: []ciliumapi.IngressRule{{
			IngressCommonRule: ciliumapi.IngressCommonRule{FromEndpoints: []ciliumapi.EndpointSelector{ls("app", "Bogus")}}}}}),
			`spec.ingress[0].fromEndpoints[0]: unknown operator "Bogus"`},
		{"bad CIDR", cnpOf(&ciliumapi.Rule{EndpointSelector: all, Egress: []ciliumapi.EgressRule{{
			EgressCommonRule: ciliumapi.EgressCommonRule{ToCIDR: ciliumapi.CIDRSlice{"10.0.0.300/8"}}}}}),
			"spec.egress[0].toCIDR[0]"},
		{"bad except", cnpOf(&ciliumapi.Rule{EndpointSelector: all, Ingress: []ciliumapi.IngressRule{{
			IngressCommonRule: ciliumapi.IngressCommonRule{FromCIDRSet: ciliumapi.CIDRRuleSlice{{Cidr: "10.0.0.0/8",
				ExceptCIDRs: []ciliumapi.CIDR{"nope"}}}}}}}),
			"spec.ingress[0].fromCIDRSet[0].except[0]"},
		{"endPort below port", cnpOf(&ciliumapi.Rule{EndpointSelector: all, Ingress: []ciliumapi.IngressRule{{
			ToPorts: ciliumapi.PortRules{{Ports: []ciliumapi.PortProtocol{{Port: "80", EndPort: 79, Protocol: ciliumapi.ProtoTCP}}}}}}}),
			"spec.ingress[0].toPorts[0].ports[0]"},
		{"named port with endPort", cnpOf(&ciliumapi.Rule{EndpointSelector: all, Ingress: []ciliumapi.IngressRule{{
			ToPorts: ciliumapi.PortRules{{Ports: []ciliumapi.PortProtocol{{Port: "http", EndPort: 90, Protocol: ciliumapi.ProtoTCP}}}}}}}),
			"named port"},
		{"unknown protocol", cnpOf(&ciliumapi.Rule{EndpointSelector: all, Ingress: []ciliumapi.IngressRule{{
			ToPorts: ciliumapi.PortRules{{Ports: []ciliumapi.PortProtocol{{Port: "80", Protocol: "GRE"}}}}}}}),
			`unknown protocol "GRE"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Translate(tt.p, func() uint32 { return 1 })
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Translate error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestEntitySelectorsAndProtoNames(t *testing.T) {
	if got := EntitySelectors("none"); got == nil || len(got) != 0 {
		t.Errorf(`EntitySelectors("none") = %v, want an empty non-nil list`, got)
	}
	for _, e := range []string{"world", "world-ipv4", "world-ipv6"} {
		if got := describeAll(EntitySelectors(e)); !slices.Equal(got, []string{sel("reserved:world Exists []")}) {
			t.Errorf("EntitySelectors(%q) = %v, want reserved:world", e, got)
		}
	}
	if got := EntitySelectors("all"); len(got) != 1 || !got[0].Wildcard {
		t.Errorf(`EntitySelectors("all") = %v, want the wildcard`, describeAll(got))
	}
	for name, want := range map[string]uint8{"TCP": 6, "tcp": 6, "UDP": 17, "SCTP": 132, "ICMP": 1, "icmpv6": 58} {
		if got, ok := ProtoNumber(name); !ok || got != want {
			t.Errorf("ProtoNumber(%q) = %d, %v, want %d", name, got, ok, want)
		}
	}
	for _, name := range []string{"ANY", "GRE", "", "TCPX"} {
		if got, ok := ProtoNumber(name); ok {
			t.Errorf("ProtoNumber(%q) = %d, want not found", name, got)
		}
	}
	if ProtoName(47) != "proto-47" || ProtoName(0) != "ANY" {
		t.Errorf("ProtoName(47) = %q, ProtoName(0) = %q", ProtoName(47), ProtoName(0))
	}
}
