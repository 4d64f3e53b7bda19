package policy

import (
	"strings"
	"testing"

	"github.com/ciliaproject/cilia/agent/identity"
	"github.com/ciliaproject/cilia/datapath/maps"
)

// probe is one packet looked up in an endpoint's policy; want is
// "allow", "unenforced", "POLICY_DENY" or "POLICY_DENIED".
type probe struct {
	dir   maps.Direction
	peer  string
	proto uint8
	port  uint16
	want  string
}

func in(peer string, proto uint8, port uint16, want string) probe {
	return probe{maps.Ingress, peer, proto, port, want}
}

func eg(peer string, proto uint8, port uint16, want string) probe {
	return probe{maps.Egress, peer, proto, port, want}
}

// named renames a single-policy document (policy p) so that several can
// be applied together.
func named(name, doc string) string {
	return strings.Replace(doc, "{name: p,", "{name: "+name+",", 1)
}

const (
	pTCP  = protoTCP
	pUDP  = protoUDP
	pICMP = protoICMP
)

func TestResolve(t *testing.T) {
	// Pods (helpers_test.go standardPods): x/a web (the subject), x/b db,
	// x/c client, y/a web, y/b db.
	httpPorts := map[string][]NamedPort{
		"x/b": {{Name: "http", Port: 8081, Proto: pTCP}},
		"x/c": {{Name: "http", Port: 8082, Proto: pTCP}},
		"y/b": {{Name: "http", Port: 8083, Proto: pTCP}},
	}
	tests := []struct {
		name      string
		doc       string
		cidrs     []string
		own       []NamedPort            // the subject's named ports
		peerPorts map[string][]NamedPort // named ports of other pods
		noPeers   bool                   // resolve with a nil PeerPorts
		ingress   bool                   // ingress enforced
		egress    bool                   // egress enforced
		want      map[string]string      // the whole MapState
		probes    []probe
	}{
		{name: "no policy: nothing enforced", want: map[string]string{},
			probes: []probe{in("y/b", pTCP, 80, "unenforced"), eg("world", pUDP, 53, "unenforced")}},
		{name: "a policy of another pod does not enforce", doc: cnp(`
  endpointSelector: {matchLabels: {app: db}}
  ingress: [{}]
  egress: [{}]
`), want: map[string]string{}, probes: []probe{in("x/c", pTCP, 80, "unenforced"), eg("x/c", pTCP, 80, "unenforced")}},
		{name: "ingress policy enforces ingress only", doc: cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress: [{fromEndpoints: [{matchLabels: {app: db}}]}]
`), ingress: true,
			want: map[string]string{"in host ANY": "allow", "in x/b ANY": "allow"},
			probes: []probe{in("x/b", pTCP, 80, "allow"), in("x/c", pTCP, 80, "POLICY_DENIED"),
				in("y/b", pTCP, 80, "POLICY_DENIED"), in("host", pTCP, 10250, "allow"),
				eg("x/c", pTCP, 80, "unenforced")}},
		{name: "egress policy: no allow-localhost", doc: cnp(`
  endpointSelector: {matchLabels: {app: web}}
  egress:
  - toEndpoints: [{matchLabels: {app: db}}]
    toPorts: [{ports: [{port: "5432", protocol: TCP}]}]
`), egress: true,
			want: map[string]string{"eg x/b TCP/5432": "allow"},
			probes: []probe{eg("x/b", pTCP, 5432, "allow"), eg("x/b", pTCP, 5433, "POLICY_DENIED"),
				eg("x/b", pUDP, 5432, "POLICY_DENIED"), eg("host", pTCP, 5432, "POLICY_DENIED"),
				in("x/c", pTCP, 1, "unenforced")}},
		{name: "empty rule: only the host gets in", doc: cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress: [{}]
`), ingress: true,
			want:   map[string]string{"in host ANY": "allow"},
			probes: []probe{in("x/b", pTCP, 80, "POLICY_DENIED"), in("world", pUDP, 53, "POLICY_DENIED"), in("host", pUDP, 53, "allow")}},
		{name: "CCNP subject", doc: ccnp(`
  endpointSelector: {matchLabels: {app: web}}
  egress: [{toEntities: [world]}]
`), egress: true,
			want:   map[string]string{"eg world ANY": "allow"},
			probes: []probe{eg("world", pTCP, 443, "allow"), eg("x/b", pTCP, 443, "POLICY_DENIED")}},
		{name: "enableDefaultDeny false: allow-all plus denies", doc: cnp(`
  endpointSelector: {matchLabels: {app: web}}
  enableDefaultDeny: {ingress: false}
  ingressDeny: [{fromEndpoints: [{matchLabels: {app: db}}]}]
`), ingress: true,
			want: map[string]string{"in any ANY": "allow", "in host ANY": "allow", "in x/b ANY": "deny"},
			probes: []probe{in("x/c", pTCP, 80, "allow"), in("y/b", pTCP, 80, "allow"), in("world", pTCP, 80, "allow"),
				in("x/b", pTCP, 80, "POLICY_DENY")}},
		{name: "enableDefaultDeny false on egress", doc: cnp(`
  endpointSelector: {matchLabels: {app: web}}
  enableDefaultDeny: {egress: false}
  egressDeny: [{toEntities: [world]}]
`), egress: true,
			want:   map[string]string{"eg any ANY": "allow", "eg world ANY": "deny"},
			probes: []probe{eg("x/b", pTCP, 80, "allow"), eg("world", pTCP, 80, "POLICY_DENY"), in("world", pTCP, 80, "unenforced")}},
		// Rules are ordered by policy: the one with default deny (p) comes
		// first, so a "last rule wins" reading would get it wrong.
		{name: "one selecting rule with default deny: no allow-all", doc: cnp(`
  endpointSelector: {}
  ingress: [{fromEndpoints: [{matchLabels: {app: client}}]}]
`) + "---\n" + named("q", cnp(`
  endpointSelector: {matchLabels: {app: web}}
  enableDefaultDeny: {ingress: false}
  ingressDeny: [{fromEndpoints: [{matchLabels: {app: db}}]}]
`)), ingress: true,
			want:   map[string]string{"in host ANY": "allow", "in x/b ANY": "deny", "in x/c ANY": "allow"},
			probes: []probe{in("x/c", pTCP, 80, "allow"), in("y/b", pTCP, 80, "POLICY_DENIED"), in("x/b", pTCP, 80, "POLICY_DENY")}},
		{name: "a deny covering an allow of the same identity removes it", doc: cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: db}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
  ingressDeny: [{fromEndpoints: [{matchLabels: {app: db}}]}]
`), ingress: true,
			want:   map[string]string{"in host ANY": "allow", "in x/b ANY": "deny"},
			probes: []probe{in("x/b", pTCP, 80, "POLICY_DENY")}},
		{name: "allow and deny of the same key: deny", doc: cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: db}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
  ingressDeny:
  - fromEndpoints: [{matchLabels: {app: db}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`), ingress: true,
			want:   map[string]string{"in host ANY": "allow", "in x/b TCP/80": "deny"},
			probes: []probe{in("x/b", pTCP, 80, "POLICY_DENY"), in("x/b", pTCP, 81, "POLICY_DENIED")}},
		{name: "a longer deny inside a shorter allow keeps both", doc: cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress: [{fromEndpoints: [{matchLabels: {app: db}}]}]
  ingressDeny:
  - fromEndpoints: [{matchLabels: {app: db}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`), ingress: true,
			want: map[string]string{"in host ANY": "allow", "in x/b ANY": "allow", "in x/b TCP/80": "deny"},
			probes: []probe{in("x/b", pTCP, 80, "POLICY_DENY"), in("x/b", pTCP, 81, "allow"), in("x/b", pTCP, 79, "allow"),
				in("x/b", pUDP, 80, "allow")}},
		{name: "a denied range covers an allowed port inside it", doc: cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: db}}]
    toPorts: [{ports: [{port: "85", protocol: TCP}]}]
  ingressDeny:
  - fromEndpoints: [{matchLabels: {app: db}}]
    toPorts: [{ports: [{port: "80", endPort: 90, protocol: TCP}]}]
`), ingress: true,
			want: map[string]string{"in host ANY": "allow", "in x/b TCP/80-87": "deny", "in x/b TCP/88-89": "deny", "in x/b TCP/90": "deny"},
			probes: []probe{in("x/b", pTCP, 85, "POLICY_DENY"), in("x/b", pTCP, 90, "POLICY_DENY"),
				in("x/b", pTCP, 91, "POLICY_DENIED"), in("x/b", pTCP, 79, "POLICY_DENIED")}},
		{name: "a denied port inside an allowed range keeps the range", doc: cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: db}}]
    toPorts: [{ports: [{port: "80", endPort: 81, protocol: TCP}]}]
  ingressDeny:
  - fromEndpoints: [{matchLabels: {app: db}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`), ingress: true,
			want:   map[string]string{"in host ANY": "allow", "in x/b TCP/80-81": "allow", "in x/b TCP/80": "deny"},
			probes: []probe{in("x/b", pTCP, 80, "POLICY_DENY"), in("x/b", pTCP, 81, "allow")}},
		{name: "a denied protocol covers its ports only", doc: cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: db}}]
    toPorts: [{ports: [{port: "443", protocol: TCP}, {port: "443", protocol: UDP}]}]
  ingressDeny:
  - fromEndpoints: [{matchLabels: {app: db}}]
    toPorts: [{ports: [{port: "0", protocol: TCP}]}]
`), ingress: true,
			want:   map[string]string{"in host ANY": "allow", "in x/b TCP": "deny", "in x/b UDP/443": "allow"},
			probes: []probe{in("x/b", pTCP, 443, "POLICY_DENY"), in("x/b", pUDP, 443, "allow")}},
		{name: "a deny of another identity keeps the allow", doc: cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: db}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
  ingressDeny: [{fromEndpoints: [{matchLabels: {app: client}}]}]
`), ingress: true,
			want:   map[string]string{"in host ANY": "allow", "in x/b TCP/80": "allow", "in x/c ANY": "deny"},
			probes: []probe{in("x/b", pTCP, 80, "allow"), in("x/c", pTCP, 80, "POLICY_DENY")}},
		{name: "a deny of any peer beats an identity's allow", doc: cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress: [{fromEndpoints: [{matchLabels: {app: db}}]}]
  ingressDeny: [{toPorts: [{ports: [{port: "80", protocol: TCP}]}]}]
`), ingress: true,
			want: map[string]string{"in host ANY": "allow", "in x/b ANY": "allow", "in any TCP/80": "deny"},
			probes: []probe{in("x/b", pTCP, 80, "POLICY_DENY"), in("x/b", pTCP, 81, "allow"),
				in("host", pTCP, 80, "POLICY_DENY"), in("host", pTCP, 81, "allow"), in("x/c", pTCP, 80, "POLICY_DENY")}},
		{name: "CIDR deny inside world allow", cidrs: []string{"10.0.0.0/8", "10.1.0.0/16", "192.168.0.0/16"}, doc: cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress: [{fromEntities: [world]}]
  ingressDeny: [{fromCIDRSet: [{cidr: 10.0.0.0/8, except: [10.1.0.0/16]}]}]
`), ingress: true,
			want: map[string]string{"in host ANY": "allow", "in world ANY": "allow", "in cidr:10.0.0.0/8 ANY": "deny",
				"in cidr:10.1.0.0/16 ANY": "allow", "in cidr:192.168.0.0/16 ANY": "allow"},
			probes: []probe{in("cidr:10.0.0.0/8", pTCP, 80, "POLICY_DENY"), in("cidr:10.1.0.0/16", pTCP, 80, "allow"),
				in("world", pTCP, 80, "allow"), in("x/b", pTCP, 80, "POLICY_DENIED")}},
		{name: "entity cluster", doc: cnp(`
  endpointSelector: {matchLabels: {app: web}}
  egress: [{toEntities: [cluster]}]
`), cidrs: []string{"10.0.0.0/8"}, egress: true,
			want: map[string]string{"eg host ANY": "allow", "eg remote-node ANY": "allow", "eg health ANY": "allow",
				"eg init ANY": "allow", "eg unmanaged ANY": "allow", "eg ingress ANY": "allow", "eg kube-apiserver ANY": "allow",
				"eg x/a ANY": "allow", "eg x/b ANY": "allow", "eg x/c ANY": "allow", "eg y/a ANY": "allow", "eg y/b ANY": "allow"},
			probes: []probe{eg("world", pTCP, 80, "POLICY_DENIED"), eg("cidr:10.0.0.0/8", pTCP, 80, "POLICY_DENIED")}},
		{name: "ports as ranges and ICMP types", doc: cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - toPorts: [{ports: [{port: "80", endPort: 90, protocol: TCP}]}]
  - icmps: [{fields: [{type: 8}, {family: IPv6, type: EchoRequest}]}]
`), ingress: true,
			want: map[string]string{"in host ANY": "allow", "in any TCP/80-87": "allow", "in any TCP/88-89": "allow",
				"in any TCP/90": "allow", "in any ICMP/8": "allow", "in any ICMPv6/128": "allow"},
			probes: []probe{in("x/b", pTCP, 79, "POLICY_DENIED"), in("x/b", pTCP, 80, "allow"), in("x/b", pTCP, 90, "allow"),
				in("x/b", pTCP, 91, "POLICY_DENIED"), in("x/b", pICMP, 8, "allow"), in("x/b", pICMP, 0, "POLICY_DENIED"),
				in("x/b", protoICMPv6, 128, "allow"), in("x/b", protoICMPv6, 8, "POLICY_DENIED")}},
		{name: "ANY protocol", doc: cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: db}}]
    toPorts: [{ports: [{port: "53", protocol: ANY}]}]
`), ingress: true,
			want:   map[string]string{"in host ANY": "allow", "in x/b TCP/53": "allow", "in x/b UDP/53": "allow", "in x/b SCTP/53": "allow"},
			probes: []probe{in("x/b", pUDP, 53, "allow"), in("x/b", protoSCTP, 53, "allow"), in("x/b", pICMP, 53, "POLICY_DENIED")}},
		{name: "KNP", cidrs: []string{"10.0.0.0/8", "10.1.0.0/16", "11.0.0.0/8"}, doc: knp(`
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress, Egress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: db}}}]
    ports: [{port: 80}]
  egress:
  - to: [{ipBlock: {cidr: 10.0.0.0/8}}]
`), ingress: true, egress: true,
			want: map[string]string{"in host ANY": "allow", "in x/b TCP/80": "allow",
				"eg cidr:10.0.0.0/8 ANY": "allow", "eg cidr:10.1.0.0/16 ANY": "allow"},
			probes: []probe{in("y/b", pTCP, 80, "POLICY_DENIED"), eg("cidr:11.0.0.0/8", pTCP, 80, "POLICY_DENIED"),
				eg("world", pTCP, 80, "POLICY_DENIED")}},

		// Named ports.
		{name: "named port on ingress resolves on the subject", doc: cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: db}}]
    toPorts: [{ports: [{port: http, protocol: TCP}, {port: "9090", protocol: TCP}]}]
`), own: []NamedPort{{"http", 8080, pTCP}, {"dns", 53, pUDP}}, peerPorts: httpPorts, ingress: true,
			want:   map[string]string{"in host ANY": "allow", "in x/b TCP/8080": "allow", "in x/b TCP/9090": "allow"},
			probes: []probe{in("x/b", pTCP, 8080, "allow"), in("x/b", pTCP, 8081, "POLICY_DENIED")}},
		{name: "named port without protocol takes the pod's", doc: cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress: [{toPorts: [{ports: [{port: dns}]}]}]
`), own: []NamedPort{{"http", 8080, pTCP}, {"dns", 53, pUDP}}, ingress: true,
			want: map[string]string{"in host ANY": "allow", "in any UDP/53": "allow"}},
		{name: "named port of another protocol contributes nothing", doc: cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress: [{toPorts: [{ports: [{port: dns, protocol: TCP}]}]}]
`), own: []NamedPort{{"dns", 53, pUDP}}, ingress: true,
			want:   map[string]string{"in host ANY": "allow"},
			probes: []probe{in("x/b", pUDP, 53, "POLICY_DENIED"), in("x/b", pTCP, 53, "POLICY_DENIED")}},
		{name: "named port the subject does not define contributes nothing", doc: cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress: [{toPorts: [{ports: [{port: metrics, protocol: TCP}]}]}]
`), own: []NamedPort{{"http", 8080, pTCP}}, peerPorts: map[string][]NamedPort{"x/b": {{"metrics", 9100, pTCP}}}, ingress: true,
			want: map[string]string{"in host ANY": "allow"}},
		{name: "named port on ingress ignores the peers' ports", doc: cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress: [{fromEndpoints: [{matchLabels: {app: db}}], toPorts: [{ports: [{port: http, protocol: TCP}]}]}]
`), peerPorts: httpPorts, ingress: true,
			want: map[string]string{"in host ANY": "allow"}},
		{name: "named port on egress resolves per peer identity", doc: cnp(`
  endpointSelector: {matchLabels: {app: web}}
  egress:
  - toEndpoints: [{matchLabels: {app: db}}, {matchLabels: {app: client}}]
    toPorts: [{ports: [{port: http, protocol: TCP}]}]
`), own: []NamedPort{{"http", 8080, pTCP}}, peerPorts: httpPorts, egress: true,
			want: map[string]string{"eg x/b TCP/8081": "allow", "eg x/c TCP/8082": "allow"},
			probes: []probe{eg("x/b", pTCP, 8081, "allow"), eg("x/b", pTCP, 8082, "POLICY_DENIED"),
				eg("x/c", pTCP, 8082, "allow"), eg("y/b", pTCP, 8083, "POLICY_DENIED"), eg("x/b", pTCP, 8080, "POLICY_DENIED")}},
		{name: "named port on egress to any peer resolves per owning identity", doc: cnp(`
  endpointSelector: {matchLabels: {app: web}}
  egress: [{toPorts: [{ports: [{port: http, protocol: TCP}]}]}]
`), peerPorts: httpPorts, egress: true,
			want: map[string]string{"eg x/b TCP/8081": "allow", "eg x/c TCP/8082": "allow", "eg y/b TCP/8083": "allow"},
			probes: []probe{eg("x/b", pTCP, 8081, "allow"), eg("x/b", pTCP, 8082, "POLICY_DENIED"),
				eg("y/b", pTCP, 8083, "allow"), eg("world", pTCP, 8081, "POLICY_DENIED")}},
		{name: "named port on egress to entity all resolves per owning identity", doc: cnp(`
  endpointSelector: {matchLabels: {app: web}}
  egress: [{toEntities: [all], toPorts: [{ports: [{port: http}]}]}]
`), peerPorts: httpPorts, egress: true,
			want: map[string]string{"eg x/b TCP/8081": "allow", "eg x/c TCP/8082": "allow", "eg y/b TCP/8083": "allow"}},
		{name: "one name, one number, two identities: two entries", doc: cnp(`
  endpointSelector: {matchLabels: {app: web}}
  egress: [{toPorts: [{ports: [{port: http, protocol: TCP}]}]}]
`), peerPorts: map[string][]NamedPort{"x/b": {{"http", 8080, pTCP}}, "x/c": {{"http", 8080, pTCP}}}, egress: true,
			want: map[string]string{"eg x/b TCP/8080": "allow", "eg x/c TCP/8080": "allow"}},
		{name: "named port on egress without PeerPorts contributes nothing", doc: cnp(`
  endpointSelector: {matchLabels: {app: web}}
  egress:
  - toPorts: [{ports: [{port: http, protocol: TCP}]}]
  - toEndpoints: [{matchLabels: {app: db}}]
    toPorts: [{ports: [{port: http, protocol: TCP}, {port: "80", protocol: TCP}]}]
`), noPeers: true, own: []NamedPort{{"http", 8080, pTCP}}, egress: true,
			want: map[string]string{"eg x/b TCP/80": "allow"}},
		{name: "named port deny on egress", doc: cnp(`
  endpointSelector: {matchLabels: {app: web}}
  egress: [{toEndpoints: [{matchLabels: {app: db}}]}]
  egressDeny: [{toPorts: [{ports: [{port: http, protocol: TCP}]}]}]
`), peerPorts: httpPorts, egress: true,
			want:   map[string]string{"eg x/b ANY": "allow", "eg x/b TCP/8081": "deny", "eg x/c TCP/8082": "deny", "eg y/b TCP/8083": "deny"},
			probes: []probe{eg("x/b", pTCP, 8081, "POLICY_DENY"), eg("x/b", pTCP, 8082, "allow")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t)
			e.standardPods()
			for _, c := range tt.cidrs {
				e.cidr(c)
			}
			if tt.doc != "" {
				e.apply(tt.doc)
			}
			var pp PeerPorts
			if !tt.noPeers {
				fp := fakePeerPorts{}
				for name, ports := range tt.peerPorts {
					fp[e.id(name)] = ports
				}
				pp = fp
			}
			ep := e.resolve("x/a", tt.own, pp)
			if ep.Ingress.Enforced != tt.ingress || ep.Egress.Enforced != tt.egress {
				t.Errorf("enforced: ingress %v egress %v, want %v %v", ep.Ingress.Enforced, ep.Egress.Enforced, tt.ingress, tt.egress)
			}
			if len(ep.Ingress.Selecting) > 0 != tt.ingress || len(ep.Egress.Selecting) > 0 != tt.egress {
				t.Errorf("selecting rules: ingress %d egress %d", len(ep.Ingress.Selecting), len(ep.Egress.Selecting))
			}
			if got := e.summary(ep.MapState()); diffSummary(got, tt.want) != "" {
				t.Errorf("MapState differs:\n%s", diffSummary(got, tt.want))
			}
			for _, p := range tt.probes {
				d := ep.Lookup(p.dir, e.id(p.peer), p.proto, p.port)
				if got := verdictOf(d); got != p.want {
					t.Errorf("%s from/to %s %s/%d: %s (key %s), want %s", p.dir, p.peer, ProtoName(p.proto), p.port, got,
						e.keyString(d.Key), p.want)
				}
			}
		})
	}
}

// TestResolveOrigins checks the rules behind entries: synthetic origins,
// rule IDs the repository resolves, and the rule ID of a deny entry.
func TestResolveOrigins(t *testing.T) {
	e := newTestEnv(t)
	e.standardPods()
	e.apply(cnp(`
  endpointSelector: {matchLabels: {app: web}}
  enableDefaultDeny: {egress: false}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
  - fromEndpoints: [{matchLabels: {app: db}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
  ingressDeny:
  - fromEndpoints: [{matchLabels: {app: db}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
  egressDeny: [{toEntities: [world]}]
`))
	ep := e.resolve("x/a", nil, nil)
	byName := map[string]MapValue{}
	for k, v := range ep.MapState() {
		byName[e.keyString(k)] = v
	}
	check := func(key string, wantDeny bool, wantPaths ...string) MapValue {
		t.Helper()
		v, ok := byName[key]
		if !ok {
			t.Fatalf("no entry %s", key)
		}
		if v.Deny() != wantDeny {
			t.Errorf("%s: deny = %v, want %v", key, v.Deny(), wantDeny)
		}
		var paths []string
		for _, o := range v.Origins {
			paths = append(paths, o.Path)
		}
		if !equalSets(paths, wantPaths) {
			t.Errorf("%s: origins %v, want %v", key, paths, wantPaths)
		}
		if int(v.Entry.Prefixlen) == 0 {
			t.Errorf("%s: entry prefix length not set", key)
		}
		return v
	}
	host := check("in host ANY", false, OriginAllowLocalhost.Path)
	if host.Origins[0] != OriginAllowLocalhost || host.Entry.RuleID != 0 {
		t.Errorf("allow-localhost entry: origin %v rule ID %d", host.Origins[0], host.Entry.RuleID)
	}
	all := check("eg any ANY", false, OriginNoDefaultDeny.Path)
	if all.Origins[0] != OriginNoDefaultDeny {
		t.Errorf("allow-all entry: origin %v", all.Origins[0])
	}
	client := check("in x/c ANY", false, "spec.ingress[0]")
	if o, ok := e.repo.Origin(client.Entry.RuleID); !ok || o.Path != "spec.ingress[0]" || o.Policy != "CiliumNetworkPolicy x/p" {
		t.Errorf("Origin(%d) = %v, %v; want spec.ingress[0]", client.Entry.RuleID, o, ok)
	}
	check("eg world ANY", true, "spec.egressDeny[0]")
	// A deny merged with an allow of the same key is reported (RuleID,
	// drop events, traces) as the deny rule, not the allow it overrides.
	denied := check("in x/b TCP/80", true, "spec.ingressDeny[0]")
	if o, ok := e.repo.Origin(denied.Entry.RuleID); !ok || o.Path != "spec.ingressDeny[0]" {
		path := "<none>"
		if ok {
			path = o.Path
		}
		t.Errorf("deny entry in x/b TCP/80 has rule ID %d of %s, want the rule ID of spec.ingressDeny[0]", denied.Entry.RuleID, path)
	}
	d := ep.Lookup(maps.Ingress, e.id("x/b"), pTCP, 80)
	if d.Allowed || d.DropReason != "POLICY_DENY" || !d.Value.Deny() || d.Key.Identity != uint32(e.id("x/b")) {
		t.Errorf("lookup x/b TCP/80 = %+v", d)
	}
}

// TestMapStateOf checks that MapStateOf is MapState limited to some
// identities.
func TestMapStateOf(t *testing.T) {
	e := newTestEnv(t)
	e.standardPods()
	e.apply(cnp(`
  endpointSelector: {matchLabels: {app: web}}
  ingress: [{fromEndpoints: [{}]}]
  ingressDeny: [{fromEndpoints: [{matchLabels: {app: db}}], toPorts: [{ports: [{port: "22", protocol: TCP}]}]}]
  egress: [{toEndpoints: [{matchLabels: {app: db}}]}, {toPorts: [{ports: [{port: "53", protocol: UDP}]}]}]
`))
	ep := e.resolve("x/a", nil, nil)
	all := ep.MapState()
	ids := []identity.NumericIdentity{e.id("x/b"), 0}
	got := ep.MapStateOf(ids)
	want := map[string]string{}
	for k, v := range e.summary(all) {
		if strings.Contains(k, " x/b ") || strings.Contains(k, " any ") {
			want[k] = v
		}
	}
	if d := diffSummary(e.summary(got), want); d != "" {
		t.Errorf("MapStateOf(x/b, any) differs:\n%s", d)
	}
	if len(want) != 4 { // in x/b ANY, in x/b TCP/22 deny, eg x/b ANY, eg any UDP/53
		t.Errorf("unexpected MapState %v", e.summary(all))
	}
}
