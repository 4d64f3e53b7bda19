package scenario

import (
	"maps"
	"net/netip"
	"sort"

	"github.com/ciliaproject/cilia/conformance/features"
)

// NamespaceNameLabel is the label every namespace carries with its own
// name, as Kubernetes sets it.
const NamespaceNameLabel = "kubernetes.io/metadata.name"

// State is the cluster at one point of a scenario: what exists, with
// which labels and addresses, and which policies are in effect. Slices
// keep a deterministic order: declaration order, with objects added by
// steps appended (a replaced policy keeps its place).
type State struct {
	// Step is the index of the step whose probes see this state, -1 for
	// the state Setup builds (before any step's mutations).
	Step       int
	Nodes      []Node
	Namespaces []Namespace
	Pods       []Pod
	Externals  []External
	Services   []Service
	Policies   []Object
}

// InitialState returns the cluster as Target.Setup builds it: the
// cluster section with defaults applied and the top-level policies.
func (s *Scenario) InitialState() *State {
	if s.initial == nil {
		return nil
	}
	return s.initial.clone()
}

// StateAt returns the cluster as the probes of Steps[step] see it: the
// initial state with the mutations of steps 0..step applied. It returns
// nil when step is out of range.
func (s *Scenario) StateAt(step int) *State {
	if step < 0 || step >= len(s.states) {
		return nil
	}
	return s.states[step].clone()
}

// Features returns the features the scenario's metadata declares.
func (s *Scenario) Features() []features.Feature {
	return append([]features.Feature(nil), s.Metadata.Features...)
}

// RequiredFeatures returns the features the scenario needs to run in
// full: its metadata features and those of every probe, sorted.
func (s *Scenario) RequiredFeatures() []features.Feature {
	set := features.NewSet(s.Metadata.Features...)
	for _, st := range s.Steps {
		for _, p := range st.Probes {
			for _, f := range p.Features {
				set[f] = struct{}{}
			}
		}
	}
	return set.Sorted()
}

// Probes returns every probe of every step, in order.
func (s *Scenario) Probes() []Probe {
	var out []Probe
	for _, st := range s.Steps {
		out = append(out, st.Probes...)
	}
	return out
}

// Pod returns the pod with key "namespace/name".
func (st *State) Pod(key string) (Pod, bool) {
	for _, p := range st.Pods {
		if p.Key() == key {
			return p, true
		}
	}
	return Pod{}, false
}

// PodsInNamespace returns the pods of namespace ns, in order.
func (st *State) PodsInNamespace(ns string) []Pod {
	var out []Pod
	for _, p := range st.Pods {
		if p.Namespace == ns {
			out = append(out, p)
		}
	}
	return out
}

// Namespace returns the namespace called name.
func (st *State) Namespace(name string) (Namespace, bool) {
	for _, n := range st.Namespaces {
		if n.Name == name {
			return n, true
		}
	}
	return Namespace{}, false
}

// Node returns the node called name.
func (st *State) Node(name string) (Node, bool) {
	for _, n := range st.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return Node{}, false
}

// External returns the external called name.
func (st *State) External(name string) (External, bool) {
	for _, x := range st.Externals {
		if x.Name == name {
			return x, true
		}
	}
	return External{}, false
}

// Service returns the service with key "namespace/name".
func (st *State) Service(key string) (Service, bool) {
	for _, s := range st.Services {
		if s.Key() == key {
			return s, true
		}
	}
	return Service{}, false
}

// Policy returns the policy with the given kind, namespace ("" for a
// cluster-scoped kind) and name.
func (st *State) Policy(kind, namespace, name string) (Object, bool) {
	for _, o := range st.Policies {
		if o.Kind == kind && o.Namespace == namespace && o.Name == name {
			return o, true
		}
	}
	return Object{}, false
}

// Addr returns the address a peer has in family f: a pod's, node's or
// external's address, a service's cluster IP, or the address of an ip:
// peer. ok is false when the peer does not exist here or has no address
// of that family.
func (st *State) Addr(p Peer, f Family) (netip.Addr, bool) {
	var v4, v6 netip.Addr
	switch p.Kind {
	case PeerPod:
		pod, ok := st.Pod(p.Name)
		if !ok {
			return netip.Addr{}, false
		}
		v4, v6 = pod.IPv4, pod.IPv6
	case PeerNode:
		n, ok := st.Node(p.Name)
		if !ok {
			return netip.Addr{}, false
		}
		v4, v6 = n.IPv4, n.IPv6
	case PeerExternal:
		x, ok := st.External(p.Name)
		if !ok {
			return netip.Addr{}, false
		}
		v4, v6 = x.IPv4, x.IPv6
	case PeerService:
		s, ok := st.Service(p.Name)
		if !ok {
			return netip.Addr{}, false
		}
		v4, v6 = s.ClusterIP, s.ClusterIPv6
	case PeerIP:
		if p.Addr.IsValid() && familyOf(p.Addr) == f {
			return p.Addr, true
		}
		return netip.Addr{}, false
	}
	a := v4
	if f == IPv6 {
		a = v6
	}
	return a, a.IsValid()
}

// Owner returns what holds address a here: a peer of kind pod, node,
// external or service (by cluster IP or load-balancer IP). ok is false
// for an address nobody holds.
func (st *State) Owner(a netip.Addr) (Peer, bool) {
	for _, p := range st.Pods {
		if p.IPv4 == a || p.IPv6 == a {
			return Peer{Kind: PeerPod, Name: p.Key()}, true
		}
	}
	for _, n := range st.Nodes {
		if n.IPv4 == a || n.IPv6 == a {
			return Peer{Kind: PeerNode, Name: n.Name}, true
		}
	}
	for _, x := range st.Externals {
		if x.IPv4 == a || x.IPv6 == a {
			return Peer{Kind: PeerExternal, Name: x.Name}, true
		}
	}
	for _, s := range st.Services {
		if s.ClusterIP == a || s.ClusterIPv6 == a || contains(s.LoadBalancerIPs, a) {
			return Peer{Kind: PeerService, Name: s.Key()}, true
		}
	}
	return Peer{}, false
}

// SelectPods returns the pods whose labels contain every pair of
// selector, in order (a nil or empty selector selects every pod of the
// namespace). ns "" means every namespace. This is plain equality
// matching as a Service selector does, not policy semantics.
func (st *State) SelectPods(ns string, selector map[string]string) []Pod {
	var out []Pod
	for _, p := range st.Pods {
		if ns != "" && p.Namespace != ns {
			continue
		}
		if matchesAll(p.Labels, selector) {
			out = append(out, p)
		}
	}
	return out
}

// Backends returns the pods a service selects here: the pods of its
// namespace whose labels contain every pair of its selector. A service
// without a selector has none, as in Kubernetes.
func (st *State) Backends(svc Service) []Pod {
	if len(svc.Selector) == 0 {
		return nil
	}
	return st.SelectPods(svc.Namespace, svc.Selector)
}

// matchesAll reports whether labels contains every pair of sel.
func matchesAll(labels, sel map[string]string) bool {
	for k, v := range sel {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// clone returns a deep copy of st (policy YAML nodes are shared: treat
// them as read-only).
func (st *State) clone() *State {
	out := &State{Step: st.Step}
	out.Nodes = append([]Node(nil), st.Nodes...)
	for _, n := range st.Namespaces {
		n.Labels = maps.Clone(n.Labels)
		out.Namespaces = append(out.Namespaces, n)
	}
	for _, p := range st.Pods {
		out.Pods = append(out.Pods, p.clone())
	}
	for _, x := range st.Externals {
		x.Ports = append([]Port(nil), x.Ports...)
		out.Externals = append(out.Externals, x)
	}
	for _, s := range st.Services {
		out.Services = append(out.Services, s.clone())
	}
	out.Policies = append([]Object(nil), st.Policies...)
	return out
}

// clone returns a deep copy of p.
func (p Pod) clone() Pod {
	p.Labels = maps.Clone(p.Labels)
	p.Ports = append([]Port(nil), p.Ports...)
	return p
}

// clone returns a deep copy of s.
func (s Service) clone() Service {
	s.ExternalIPs = append([]netip.Addr(nil), s.ExternalIPs...)
	s.LoadBalancerIPs = append([]netip.Addr(nil), s.LoadBalancerIPs...)
	s.Selector = maps.Clone(s.Selector)
	s.Ports = append([]ServicePort(nil), s.Ports...)
	s.Annotations = maps.Clone(s.Annotations)
	return s
}

// sortedLabels formats labels as k=v pairs in key order.
func sortedLabels(m map[string]string) []string {
	keys := sortedKeys(m)
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k + "=" + m[k]
	}
	sort.Strings(out)
	return out
}
