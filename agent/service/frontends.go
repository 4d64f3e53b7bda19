package service

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/ciliaproject/cilia/datapath/maps"
)

// FrontendKind says where a frontend address comes from.
type FrontendKind string

// Frontend kinds.
const (
	KindClusterIP      FrontendKind = "ClusterIP"
	KindNodePort       FrontendKind = "NodePort"
	KindExternalIP     FrontendKind = "ExternalIP"
	KindLoadBalancerIP FrontendKind = "LoadBalancerIP"
)

// Frontend is one address:port/protocol of a service with all its
// backends.
type Frontend struct {
	Service string // namespace/name
	Port    string // the service port's name
	Kind    FrontendKind
	Addr    netip.AddrPort
	Proto   uint8
	// Flags are the LB_F_* flags of the internal scope entry
	// (ScopeFlags gives each scope's).
	Flags uint8
	// External says the frontend also has an external scope entry
	// (NodePort, externalIP, LoadBalancer IP).
	External bool
	// Backends are all backends: the active ones, then the terminating
	// ones, each group ordered by pod key and address.
	Backends []Backend
}

// Backend is a pod serving a frontend.
type Backend struct {
	Pod         string // namespace/name
	Node        string
	Addr        netip.AddrPort
	Proto       uint8
	Terminating bool
}

// key is the backend's identity: one backend id per address, port and
// protocol.
func (b Backend) key() backendKey { return backendKey{b.Addr, b.Proto} }

type backendKey struct {
	addr  netip.AddrPort
	proto uint8
}

type frontendKey struct {
	addr  netip.AddrPort
	proto uint8
}

func (f *Frontend) key() frontendKey { return frontendKey{f.Addr, f.Proto} }

// ScopeFlags returns the LB_F_* flags of the frontend's entry in scope
// (maps.LBScopeInternal or maps.LBScopeExternal). The external entry of a
// service with externalTrafficPolicy Local carries LB_F_LOCAL and no
// LB_F_MAGLEV: its backends are the node's own, which the frontend's one
// Maglev table (built from all backends, shared by both scopes through the
// rev_nat_id) does not describe, so it selects randomly among them.
func (f *Frontend) ScopeFlags(scope uint8, local bool) uint8 {
	if scope != maps.LBScopeExternal || !local {
		return f.Flags
	}
	return (f.Flags | maps.LBFlagLocal) &^ maps.LBFlagMaglev
}

// ScopeBackends returns the backends of the frontend's entry in scope on
// node: all of them, or with local (externalTrafficPolicy Local) in the
// external scope only those on node.
func (f *Frontend) ScopeBackends(scope uint8, local bool, node string) []Backend {
	if scope != maps.LBScopeExternal || !local {
		return f.Backends
	}
	var out []Backend
	for _, b := range f.Backends {
		if b.Node == node {
			out = append(out, b)
		}
	}
	return out
}

// Usable returns the backends new connections may use: the active ones, or
// the terminating ones when there is no active one.
func Usable(bs []Backend) []Backend {
	n := ActiveCount(bs)
	if n > 0 {
		return bs[:n]
	}
	return bs
}

// ActiveCount returns how many of bs (active first) are active.
func ActiveCount(bs []Backend) int {
	n := 0
	for n < len(bs) && !bs[n].Terminating {
		n++
	}
	return n
}

// Frontends expands a service into its frontends against the cluster's
// pods and nodes (in the given order): each cluster IP, each node address
// (NodePort and LoadBalancer services with a node port), each externalIP
// and each LoadBalancer IP, times each port. A frontend's backends are
// the pods of the service's namespace that its selector matches, with an
// address of the frontend's family and the target port (a named target
// port resolves per pod, to the pod's port of that name and protocol; a
// pod without one is no backend).
func Frontends(s *Service, pods []*Pod, nodes []Node) []Frontend {
	var base uint8
	if s.SessionAffinity {
		base |= maps.LBFlagAffinity
	}
	if s.Algorithm == Maglev {
		base |= maps.LBFlagMaglev
	}
	var out []Frontend
	add := func(kind FrontendKind, addr netip.Addr, port uint16, p Port) {
		if !addr.IsValid() || port == 0 {
			return
		}
		addr = addr.Unmap()
		f := Frontend{Service: s.Key(), Port: p.Name, Kind: kind, Addr: netip.AddrPortFrom(addr, port),
			Proto: p.Proto, Flags: base}
		if kind != KindClusterIP {
			f.External = true
			f.Flags |= maps.LBFlagExternal
			if s.Mode == DSR {
				f.Flags |= maps.LBFlagDSR
			}
		}
		if kind == KindNodePort {
			f.Flags |= maps.LBFlagNodePort
		}
		f.Backends = backendsOf(s, p, addr.Is4(), pods)
		out = append(out, f)
	}
	for _, p := range s.Ports {
		for _, a := range s.ClusterIPs {
			add(KindClusterIP, a, p.Port, p)
		}
		if (s.Type == NodePort || s.Type == LoadBalancer) && p.NodePort != 0 {
			for _, n := range nodes {
				add(KindNodePort, n.IPv4, p.NodePort, p)
				add(KindNodePort, n.IPv6, p.NodePort, p)
			}
		}
		for _, a := range s.ExternalIPs {
			add(KindExternalIP, a, p.Port, p)
		}
		if s.Type == LoadBalancer {
			for _, a := range s.LoadBalancerIPs {
				add(KindLoadBalancerIP, a, p.Port, p)
			}
		}
	}
	return out
}

// Selects reports whether s's selector selects pod p.
func (s *Service) Selects(p *Pod) bool {
	if p.Namespace != s.Namespace || len(s.Selector) == 0 {
		return false
	}
	for k, v := range s.Selector {
		if got, ok := p.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// backendsOf resolves port p of s on the pods of one family: active
// first, then terminating, each ordered by pod key and address.
func backendsOf(s *Service, p Port, v4 bool, pods []*Pod) []Backend {
	var out []Backend
	for _, pod := range pods {
		if !s.Selects(pod) {
			continue
		}
		addr := pod.IPv6
		if v4 {
			addr = pod.IPv4
		}
		if !addr.IsValid() {
			continue
		}
		port, ok := targetPort(p, pod)
		if !ok {
			continue
		}
		out = append(out, Backend{Pod: pod.Key(), Node: pod.Node, Addr: netip.AddrPortFrom(addr.Unmap(), port),
			Proto: p.Proto, Terminating: pod.Terminating})
	}
	slices.SortFunc(out, func(a, b Backend) int {
		if a.Terminating != b.Terminating {
			if a.Terminating {
				return 1
			}
			return -1
		}
		return cmp.Or(cmp.Compare(a.Pod, b.Pod), a.Addr.Compare(b.Addr))
	})
	return out
}

// targetPort returns the backend port of service port p on pod.
func targetPort(p Port, pod *Pod) (uint16, bool) {
	switch {
	case p.TargetPort != 0:
		return p.TargetPort, true
	case p.TargetPortName != "":
		for _, np := range pod.Ports {
			if np.Name == p.TargetPortName && np.Proto == p.Proto {
				return np.Port, true
			}
		}
		return 0, false
	}
	return p.Port, true
}
