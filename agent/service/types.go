// Package service is the agent's service load-balancing control plane:
// Kubernetes-style Services and the pods that back them become frontends
// (address, port, protocol, scope) with their backends, cluster-wide
// backend ids and rev_nat_ids, and Maglev lookup tables, programmed into
// every node's load-balancing maps (bpf/lib/lb.h) make-before-break
// through the Datapath interface.
//
// The semantics are Kubernetes': a ClusterIP frontend per cluster IP and
// port (internal scope only); NodePort frontends on every node's
// addresses, externalIPs and LoadBalancer IPs (internal and external
// scope); externalTrafficPolicy Local restricts the external scope to the
// node's own backends; terminating pods are used only when no active
// backend remains. docs/load-balancing.md describes the design.
package service

import (
	"net/netip"

	"github.com/ciliaproject/cilia/datapath/maps"
)

// Datapath is one node's load-balancing maps as the agent programs them.
type Datapath interface {
	PutLBBackend(id uint32, b maps.LBBackend) error
	DeleteLBBackend(id uint32) error
	PutLBService(k maps.LBKey, v maps.LBService) error
	DeleteLBService(k maps.LBKey) error
	PutLBRevNat(id uint32, v maps.LBRevNat) error
	DeleteLBRevNat(id uint32) error
	// PutLBMaglev writes a frontend's whole table (len == the node's M).
	PutLBMaglev(id uint32, table []uint32) error
	DeleteLBMaglev(id uint32) error
}

// TableReader is a Datapath whose maps can be read back (for the CLI and
// tests).
type TableReader interface {
	// LBTables returns a snapshot of the node's load-balancing maps.
	LBTables() (Tables, error)
}

// Tables is a snapshot of one node's load-balancing maps.
type Tables struct {
	Services map[maps.LBKey]maps.LBService
	Backends map[uint32]maps.LBBackend
	RevNat   map[uint32]maps.LBRevNat
	// Maglev holds each table's first M entries.
	Maglev map[uint32][]uint32
}

// Type is a Service type.
type Type string

// Service types.
const (
	ClusterIP    Type = "ClusterIP"
	NodePort     Type = "NodePort"
	LoadBalancer Type = "LoadBalancer"
)

// Algorithm is a backend selection algorithm (annotation
// service.cilium.io/lb-algorithm).
type Algorithm string

// Algorithms.
const (
	Random Algorithm = "random"
	Maglev Algorithm = "maglev"
)

// ForwardingMode says how external traffic reaches a backend on another
// node (annotation service.cilium.io/forwarding-mode).
type ForwardingMode string

// Forwarding modes.
const (
	SNAT ForwardingMode = "snat"
	DSR  ForwardingMode = "dsr"
)

// Protocol numbers of service ports.
const (
	ProtoTCP  uint8 = 6
	ProtoUDP  uint8 = 17
	ProtoSCTP uint8 = 132
)

// DefaultAffinityTimeout is Kubernetes' default sessionAffinity timeout
// (seconds).
const DefaultAffinityTimeout = 10800

// Port is one port of a Service.
type Port struct {
	Name string
	Port uint16
	// TargetPort is the backends' port number. When it is 0,
	// TargetPortName names a pod port (resolved per pod, with the port's
	// protocol); when both are unset the backends' port is Port.
	TargetPort     uint16
	TargetPortName string
	Proto          uint8 // ProtoTCP, ProtoUDP or ProtoSCTP
	// NodePort is the node port of a NodePort or LoadBalancer service (0:
	// none).
	NodePort uint16
}

// Service is a Service as the agent sees it.
type Service struct {
	Namespace string
	Name      string
	Type      Type // "" is ClusterIP
	// ClusterIPs are the cluster IPs, at most one per family.
	ClusterIPs      []netip.Addr
	ExternalIPs     []netip.Addr
	LoadBalancerIPs []netip.Addr // Type LoadBalancer only
	Ports           []Port
	// Selector selects the backend pods in Namespace by their labels; an
	// empty selector selects none (Kubernetes: endpoints are managed by
	// hand).
	Selector map[string]string
	// SessionAffinity is sessionAffinity ClientIP, AffinityTimeout its
	// timeout in seconds (0: DefaultAffinityTimeout).
	SessionAffinity bool
	AffinityTimeout uint32
	// ExternalTrafficPolicyLocal is externalTrafficPolicy Local.
	ExternalTrafficPolicyLocal bool
	Algorithm                  Algorithm      // "" is Random
	Mode                       ForwardingMode // "" is SNAT
}

// Key returns "namespace/name".
func (s *Service) Key() string { return s.Namespace + "/" + s.Name }

// NamedPort is a port a pod names.
type NamedPort struct {
	Name  string
	Port  uint16
	Proto uint8
}

// Pod is the backend view of a pod.
type Pod struct {
	Namespace string
	Name      string
	Node      string
	Labels    map[string]string
	IPv4      netip.Addr
	IPv6      netip.Addr
	Ports     []NamedPort
	// Terminating pods stay backends, used only when a frontend has no
	// active backend.
	Terminating bool
}

// Key returns "namespace/name".
func (p *Pod) Key() string { return p.Namespace + "/" + p.Name }

// Node is a cluster node: its addresses are NodePort frontends.
type Node struct {
	Name string
	IPv4 netip.Addr
	IPv6 netip.Addr
}
