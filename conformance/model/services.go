package model

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/ciliaproject/cilia/conformance/scenario"
)

// ErrNotModelled is returned (wrapped) by Model.Probe for a probe the model
// does not evaluate (a node client of a service, a cluster IP from outside
// the cluster, ICMP to a service address, an L7 request). The model target
// reports it as unsupported, so the suite skips the probe instead of failing
// it.
var ErrNotModelled = errors.New("not modelled")

// DropNoService: the service frontend has no backend the connection may
// use (Cilium 158, DROP_NO_SERVICE).
const DropNoService = "NO_SERVICE"

// Service annotations the model reads (Cilium's names).
const (
	// annotationForwardingMode is snat (default) or dsr.
	annotationForwardingMode = "service.cilium.io/forwarding-mode"
	// annotationLBAlgorithm is random (default) or maglev. The model picks
	// backends the same way for both (see chooseBackend).
	annotationLBAlgorithm = "service.cilium.io/lb-algorithm"
)

// frontendKind is what kind of address a service frontend listens on.
type frontendKind string

const (
	// feClusterIP is a cluster IP at a service port: in-cluster clients
	// only.
	feClusterIP frontendKind = "ClusterIP"
	// feNodePort is a node's address at a node port.
	feNodePort frontendKind = "NodePort"
	// feExternalIP is one of the service's externalIPs at a service port.
	feExternalIP frontendKind = "externalIP"
	// feLoadBalancerIP is one of the service's loadBalancerIPs at a
	// service port.
	feLoadBalancerIP frontendKind = "LoadBalancer IP"
)

// frontend is one address:port/protocol a service is reachable at.
type frontend struct {
	svc  scenario.Service
	port scenario.ServicePort
	kind frontendKind
	addr netip.Addr
	// dport is the destination port of the frontend: the service port, or
	// the node port for feNodePort.
	dport    uint16
	protocol scenario.Protocol
	// node is the node whose address a feNodePort frontend is.
	node string
}

// String names a frontend for explanations: "service default/web
// 10.96.0.10:80/TCP (ClusterIP)".
func (f frontend) String() string {
	return fmt.Sprintf("service %s %s/%s (%s)", f.svc.Key(), netip.AddrPortFrom(f.addr, f.dport), f.protocol, f.kind)
}

// reachableFromOutside reports whether traffic from outside the cluster
// may use the frontend: node ports, external IPs and load-balancer IPs do
// (Cilium's EXTERNAL scope), cluster IPs do not.
// https://kubernetes.io/docs/concepts/services-networking/service/#publishing-services-service-types
func (f frontend) reachableFromOutside() bool { return f.kind != feClusterIP }

// dsr reports whether external traffic to the frontend is forwarded in
// direct server return mode (annotation service.cilium.io/forwarding-mode:
// dsr): the backend sees the client and replies straight to it.
// https://docs.cilium.io/en/stable/network/kubernetes/kubeproxy-free/#direct-server-return-dsr
func (f frontend) dsr() bool {
	return strings.EqualFold(f.svc.Annotations[annotationForwardingMode], "dsr")
}

// localOnly reports whether external traffic may only reach backends on
// the node it enters (externalTrafficPolicy: Local).
// https://kubernetes.io/docs/reference/networking/virtual-ips/#external-traffic-policy
func (f frontend) localOnly() bool { return f.svc.ExternalTrafficPolicy == "Local" }

// affinity reports whether the service pins clients to a backend by their
// address (sessionAffinity: ClientIP). The scenario has no clock, so the
// timeout never expires within a scenario.
// https://kubernetes.io/docs/reference/networking/virtual-ips/#session-affinity
func (f frontend) affinity() bool { return f.svc.SessionAffinity == "ClientIP" }

// algorithm names how the datapath picks a backend for the frontend, for
// explanations: session affinity, Maglev or random (chooseBackend stands
// in for all of them).
func (f frontend) algorithm() string {
	switch {
	case f.affinity():
		return "sessionAffinity ClientIP"
	case strings.EqualFold(f.svc.Annotations[annotationLBAlgorithm], "maglev"):
		return "maglev"
	}
	return "random"
}

// hasFamily reports whether the service has a cluster IP of family fam:
// its node ports exist in the families of its cluster IPs only (a
// single-stack IPv4 service has no IPv6 node port), as Kubernetes'
// ipFamilies say.
// https://kubernetes.io/docs/concepts/services-networking/dual-stack/#services
func hasFamily(svc scenario.Service, fam scenario.Family) bool {
	if fam == scenario.IPv6 {
		return svc.ClusterIPv6.IsValid()
	}
	return svc.ClusterIP.IsValid()
}

// servicePort returns the port of svc with number port and protocol proto.
func servicePort(svc scenario.Service, port uint16, proto scenario.Protocol) (scenario.ServicePort, bool) {
	for _, sp := range svc.Ports {
		if sp.Port == port && sp.Protocol == proto {
			return sp, true
		}
	}
	return scenario.ServicePort{}, false
}

// nodePortFrontend finds the service whose node port is port/proto, as a
// frontend on node n's address addr.
func nodePortFrontend(st *scenario.State, n scenario.Node, addr netip.Addr, fam scenario.Family, port uint16, proto scenario.Protocol) (frontend, bool) {
	for _, svc := range st.Services {
		if !hasFamily(svc, fam) {
			continue
		}
		for _, sp := range svc.Ports {
			if sp.NodePort != 0 && sp.NodePort == port && sp.Protocol == proto {
				return frontend{svc: svc, port: sp, kind: feNodePort, addr: addr, dport: port, protocol: proto, node: n.Name}, true
			}
		}
	}
	return frontend{}, false
}

// findFrontend reports whether a probe's destination is a service
// frontend, and which:
//   - service:ns/name is its cluster IP of the probe's family at the
//     probe's port;
//   - node:<name> at a node port is that node's NodePort frontend;
//   - ip:<addr> is a cluster IP, an external IP or a load-balancer IP at
//     one of the service's ports, or a node's address at a node port.
//
// A destination that is no frontend (a pod, an external, a node at
// another port) gives ok false. An address that belongs to a service (a
// cluster IP or load-balancer IP) at a port it does not expose, and ICMP
// to a service address, are errors wrapping ErrNotModelled: what the
// datapath does with them is not specified.
func findFrontend(st *scenario.State, p scenario.Probe) (frontend, bool, error) {
	proto := p.Protocol
	if proto == "" {
		proto = scenario.TCP
	}
	notModelled := func(what string) error {
		return fmt.Errorf("%s: %s: %w", p.To, what, ErrNotModelled)
	}
	switch p.To.Kind {
	case scenario.PeerService:
		svc, ok := st.Service(p.To.Name)
		if !ok {
			return frontend{}, false, fmt.Errorf("%s does not exist at this step", p.To)
		}
		addr, ok := st.Addr(p.To, p.Family)
		if !ok {
			return frontend{}, false, fmt.Errorf("%s has no %s cluster IP", p.To, p.Family)
		}
		if proto == scenario.ICMP {
			return frontend{}, false, notModelled("ICMP to a service address")
		}
		sp, ok := servicePort(svc, p.Port, proto)
		if !ok {
			return frontend{}, false, notModelled(fmt.Sprintf("the service has no port %d/%s", p.Port, proto))
		}
		return frontend{svc: svc, port: sp, kind: feClusterIP, addr: addr, dport: p.Port, protocol: proto}, true, nil
	case scenario.PeerNode:
		n, ok := st.Node(p.To.Name)
		if !ok {
			return frontend{}, false, nil // resolveEndpoint reports it
		}
		addr, ok := st.Addr(p.To, p.Family)
		if !ok || proto == scenario.ICMP {
			return frontend{}, false, nil
		}
		f, ok := nodePortFrontend(st, n, addr, p.Family, p.Port, proto)
		return f, ok, nil
	case scenario.PeerIP:
		addr := p.To.Addr
		for _, svc := range st.Services {
			kind := frontendKind("")
			switch {
			case svc.ClusterIP == addr || svc.ClusterIPv6 == addr:
				kind = feClusterIP
			case slices.Contains(svc.ExternalIPs, addr):
				kind = feExternalIP
			case slices.Contains(svc.LoadBalancerIPs, addr):
				kind = feLoadBalancerIP
			default:
				continue
			}
			if proto == scenario.ICMP {
				if kind == feExternalIP {
					continue // an external IP may be anybody's address
				}
				return frontend{}, false, notModelled("ICMP to a service address")
			}
			if sp, ok := servicePort(svc, p.Port, proto); ok {
				return frontend{svc: svc, port: sp, kind: kind, addr: addr, dport: p.Port, protocol: proto}, true, nil
			}
			if kind != feExternalIP {
				return frontend{}, false, notModelled(fmt.Sprintf("the address of service %s at a port it does not expose", svc.Key()))
			}
		}
		if proto == scenario.ICMP {
			return frontend{}, false, nil
		}
		for _, n := range st.Nodes {
			if n.IPv4 == addr || n.IPv6 == addr {
				f, ok := nodePortFrontend(st, n, addr, p.Family, p.Port, proto)
				return f, ok, nil
			}
		}
	}
	return frontend{}, false, nil
}

// entryNode is the node through which traffic from outside the cluster
// reaches a frontend: for a node port, the node whose address it is; for
// an external IP or load-balancer IP that is a node's address, that node;
// otherwise the FIRST node of the scenario (nodes[0]). The model defines
// it so (the scenario has no routers): the targets route external IPs and
// load-balancer IPs to the first node, which then load-balances them as
// its own (and applies externalTrafficPolicy Local with its own pods).
func entryNode(st *scenario.State, f frontend) scenario.Node {
	if f.kind == feNodePort {
		n, _ := st.Node(f.node)
		return n
	}
	for _, n := range st.Nodes {
		if n.IPv4 == f.addr || n.IPv6 == f.addr {
			return n
		}
	}
	return st.Nodes[0]
}

// backend is a pod serving a frontend, at its target port.
type backend struct {
	pod  scenario.Pod
	addr netip.Addr
	port uint16
}

// targetPort resolves a service port's targetPort on a pod: a number is
// that number on every pod; a name is the pod's port of that name and of
// the service port's protocol (a pod without one is no backend of the
// port). An empty targetPort is the service port.
// https://kubernetes.io/docs/concepts/services-networking/service/#field-spec-ports
// ("targetPort ... can also be a string, the name of a port in the
// backend Pods"; "the port number assigned to that name can be different
// in each backend Pod")
func targetPort(sp scenario.ServicePort, pod scenario.Pod) (uint16, bool) {
	if sp.TargetPort == "" {
		return sp.Port, true
	}
	if n, err := strconv.ParseUint(sp.TargetPort, 10, 16); err == nil {
		return uint16(n), n != 0
	}
	for _, pp := range pod.Ports {
		if pp.Name == sp.TargetPort && pp.Protocol == sp.Protocol {
			return pp.Port, true
		}
	}
	return 0, false
}

// serviceBackends lists the backends of a frontend in the probe's family,
// in the state's pod order: the pods of the service's namespace whose
// labels contain its (non-empty) selector, that have an address of the
// family and a port for the targetPort. Terminating pods come back
// separately.
// https://kubernetes.io/docs/concepts/services-networking/service/#services-in-kubernetes
// https://kubernetes.io/docs/concepts/services-networking/endpoint-slices/#conditions
func serviceBackends(st *scenario.State, f frontend, fam scenario.Family) (active, terminating []backend) {
	for _, pod := range st.Backends(f.svc) {
		addr := pod.IPv4
		if fam == scenario.IPv6 {
			addr = pod.IPv6
		}
		if !addr.IsValid() {
			continue
		}
		port, ok := targetPort(f.port, pod)
		if !ok {
			continue
		}
		b := backend{pod: pod, addr: addr, port: port}
		if pod.Terminating {
			terminating = append(terminating, b)
		} else {
			active = append(active, b)
		}
	}
	return active, terminating
}

// eligibleBackends are the backends a new connection to the frontend may
// use: for traffic from outside through a service with
// externalTrafficPolicy Local, only those on the entry node (entry is ""
// for in-cluster clients, which use every backend whatever the policy);
// then the active ones, or the terminating ones when no active one is
// left.
// https://kubernetes.io/docs/reference/networking/virtual-ips/#external-traffic-policy
// https://kubernetes.io/docs/reference/networking/virtual-ips/#traffic-to-terminating-endpoints
func eligibleBackends(st *scenario.State, f frontend, fam scenario.Family, entry string) []backend {
	active, terminating := serviceBackends(st, f, fam)
	if entry != "" && f.localOnly() {
		active, terminating = onNode(active, entry), onNode(terminating, entry)
	}
	if len(active) > 0 {
		return active
	}
	return terminating
}

// onNode keeps the backends running on node.
func onNode(bs []backend, node string) []backend {
	var out []backend
	for _, b := range bs {
		if b.pod.Node == node {
			out = append(out, b)
		}
	}
	return out
}

// chooseBackend picks the backend of a new connection by rendezvous
// (highest random weight) hashing over the eligible backends: each backend
// scores hash(frontend, client address, client source port, backend) and
// the highest score wins. With sessionAffinity ClientIP the source port is
// left out, so one client address always gets one backend of the frontend.
//
// The datapath picks with Maglev or at random; the model stands in for
// both with one deterministic choice that has the properties the suite
// checks: connections from fresh source ports spread over the backends;
// a client with affinity keeps its backend; and removing a backend moves
// only the clients that were on it (every other backend's score is
// unchanged), which is Maglev's promise up to its small disruption.
// https://research.google/pubs/maglev-a-fast-and-reliable-software-network-load-balancer/
// https://docs.cilium.io/en/stable/network/kubernetes/kubeproxy-free/#maglev-consistent-hashing
func chooseBackend(bs []backend, f frontend, client netip.Addr, sport uint16, affinity bool) backend {
	best, bestScore := 0, uint64(0)
	for i, b := range bs {
		s := backendScore(f, client, sport, affinity, b)
		if i == 0 || s > bestScore {
			best, bestScore = i, s
		}
	}
	return bs[best]
}

// backendScore is one backend's rendezvous weight for a connection.
func backendScore(f frontend, client netip.Addr, sport uint16, affinity bool, b backend) uint64 {
	port := strconv.Itoa(int(sport))
	if affinity {
		port = "affinity"
	}
	key := strings.Join([]string{f.svc.Key(), f.addr.String(), strconv.Itoa(int(f.dport)), string(f.protocol),
		client.String(), port, b.pod.Key()}, "|")
	sum := sha256.Sum256([]byte(key))
	return binary.BigEndian.Uint64(sum[:8])
}

// probeService answers a probe whose destination is a service frontend:
// which backend the connection reaches, whether policy lets it, what
// source address the backend sees and which nodes handle the replies.
//
//  1. The client: a pod (in-cluster traffic, every backend) or a host
//     outside the cluster (only node ports, external IPs and load-balancer
//     IPs; it enters at entryNode, where externalTrafficPolicy Local keeps
//     the backends of that node). Node clients are not modelled.
//  2. No eligible backend: deny, NO_SERVICE.
//  3. chooseBackend picks one.
//  4. Policy as for a direct connection to the backend pod at its target
//     port: the client pod's egress towards the backend; the backend's
//     ingress from the source it sees (sourceSeen). A pod reaching itself
//     (hairpin) is checked for egress only, with itself as the peer.
//  5. sourceSeen and the reply path (replyVia).
func (m *Model) probeService(p scenario.Probe, f frontend) (Answer, error) {
	from, err := resolveEndpoint(m.state, p.From, p.Family)
	if err != nil {
		return Answer{}, fmt.Errorf("probe %s: from: %w", p.ID, err)
	}
	why := []string{f.String()}
	// entry is the node external traffic enters at, "" for a pod client.
	var en scenario.Node
	entry := ""
	switch from.kind {
	case kindNode:
		return Answer{}, fmt.Errorf("probe %s: %s: a node as the client of a service (the datapath translates services for pods and for traffic entering from outside, not for a node's own connections): %w", p.ID, p.From, ErrNotModelled)
	case kindWorld:
		if !f.reachableFromOutside() {
			return Answer{}, fmt.Errorf("probe %s: a cluster IP from outside the cluster: %w", p.ID, ErrNotModelled)
		}
		en = entryNode(m.state, f)
		entry = en.Name
		why = append(why, "from outside, entering at "+entry)
	}
	bs := eligibleBackends(m.state, f, p.Family, entry)
	if len(bs) == 0 {
		w := "no backend"
		if entry != "" && f.localOnly() {
			w = "no backend on " + entry + " (externalTrafficPolicy Local)"
		}
		why = append(why, w)
		return Answer{Verdict: scenario.Deny, DropReason: DropNoService, Why: strings.Join(why, "; ")}, nil
	}
	b := chooseBackend(bs, f, from.addr, p.SourcePort, f.affinity())
	ns, _ := m.state.Namespace(b.pod.Namespace)
	to := endpoint{kind: kindPod, pod: b.pod, namespace: ns, addr: b.addr, name: b.pod.Key()}
	why = append(why, fmt.Sprintf("backend %s port %d (%s over %d eligible)", b.pod.Key(), b.port, f.algorithm(), len(bs)))

	hairpin := from.kind == kindPod && from.pod.Key() == b.pod.Key()
	// seen is the source the backend sees, as policy sees it.
	seen := from
	snat := false
	switch {
	case hairpin:
		seen = endpoint{kind: kindPod, pod: from.pod, namespace: from.namespace, addr: f.addr, name: from.name}
		why = append(why, "hairpin: source NAT to the frontend address, ingress policy skipped")
	case entry != "" && b.pod.Node != entry && !f.dsr():
		addr := en.IPv4
		if p.Family == scenario.IPv6 {
			addr = en.IPv6
		}
		seen = endpoint{kind: kindNode, node: en.Name, addr: addr, name: "node:" + en.Name}
		snat = true
		why = append(why, "backend on another node: source NAT to "+entry)
	case entry != "" && b.pod.Node != entry:
		why = append(why, "direct server return: the backend sees the client")
	}

	c := connection{from: from, to: to, protocol: f.protocol, port: b.port, family: p.Family}
	deny := func(reason string) (Answer, error) {
		return Answer{Verdict: scenario.Deny, DropReason: reason, Why: strings.Join(why, "; ")}, nil
	}
	if from.kind == kindPod {
		peer := to
		if hairpin {
			peer = from
		}
		ok, reason, w := m.verdictFor(egress, from, peer, c).decide(false)
		why = append(why, from.name+" "+w)
		if !ok {
			return deny(reason)
		}
	}
	if !hairpin {
		ci := connection{from: seen, to: to, protocol: f.protocol, port: b.port, family: p.Family}
		ok, reason, w := m.verdictFor(ingress, to, seen, ci).decide(allowLocalhost(to, seen))
		why = append(why, to.name+" "+w)
		if !ok {
			return deny(reason)
		}
	}

	// The reply path: the backend's node reverse-translates (or, for a
	// pod client, the client's node does at its to_container); a source
	// NATed connection's replies go back through the entry node; DSR
	// replies go from the backend's node straight to the client.
	via := []string{b.pod.Node}
	if from.kind == kindPod {
		via = append(via, from.pod.Node)
	}
	if snat {
		via = append(via, entry)
	}
	return Answer{
		Verdict:    scenario.Allow,
		SourceSeen: seen.addr,
		Backend:    b.pod.Key(),
		ReplyVia:   sortedNodes(via),
		Why:        strings.Join(why, "; "),
	}, nil
}

// sortedNodes returns the distinct node names of names ("" left out),
// sorted, never nil.
func sortedNodes(names []string) []string {
	out := []string{}
	for _, n := range names {
		if n != "" && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}
