// Package scenario loads and validates conformance scenario files
// (apiVersion conformance.cilia.dev/v1alpha1, DESIGN.md §1,
// docs/scenario-format.md): the cluster, the policies, and the probes with
// their expectations, matrices expanded and named ports resolved.
//
// It imports nothing from agent/, datapath/ or sim/: the model (the
// independent oracle) reads scenarios through it too.
package scenario

import (
	"net/netip"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/ciliaproject/cilia/conformance/features"
)

// APIVersion is the only apiVersion scenario files may have.
const APIVersion = "conformance.cilia.dev/v1alpha1"

// Scenario is one loaded, validated scenario file with defaults applied.
type Scenario struct {
	// File is the path it was loaded from ("" when loaded from bytes
	// without a name).
	File     string
	Metadata Metadata
	Cluster  Cluster
	// Policies are the objects applied before the first step.
	Policies []Object
	// Steps in order. The top-level probes and matrix form step 0 (with no
	// mutations); each entry of `steps:` follows. Every step has at least
	// one probe.
	Steps []Step

	// initial is the state Setup builds; states[i] is the state the
	// probes of Steps[i] see (see StateAt).
	initial *State
	states  []*State
	// nameLine and nameColumn locate metadata.name, for duplicate names.
	nameLine, nameColumn int
}

// Metadata names and describes a scenario.
type Metadata struct {
	Name        string
	Description string
	Features    []features.Feature
	Source      string
}

// Cluster is what exists before the first step.
type Cluster struct {
	// Nodes defaults to one node "node-1".
	Nodes      []Node
	Namespaces []Namespace
	Pods       []Pod
	Externals  []External
	Services   []Service
}

// Node is a cluster node.
type Node struct {
	Name string
	IPv4 netip.Addr // optional
	IPv6 netip.Addr // optional
	Line int
}

// Namespace is a Kubernetes namespace. Labels include the implied
// kubernetes.io/metadata.name=<name>.
type Namespace struct {
	Name   string
	Labels map[string]string
	Line   int
}

// Pod is a pod. Its namespace is declared (or implied by a pod in it: a
// namespace used by a pod but not listed is added with no labels).
type Pod struct {
	Namespace string
	Name      string
	Labels    map[string]string
	// Node defaults to the first node.
	Node  string
	IPv4  netip.Addr // optional: a target may assign its own
	IPv6  netip.Addr // optional
	Ports []Port
	// Terminating is set by a step's terminatePods: the pod still runs and
	// serves, and services use it only when they have no other backend.
	Terminating bool
	Line        int
}

// Key returns "namespace/name".
func (p Pod) Key() string { return p.Namespace + "/" + p.Name }

// Port is a port a pod or external serves.
type Port struct {
	Name     string // optional
	Port     uint16
	Protocol Protocol
}

// External is a host outside the cluster ("world").
type External struct {
	Name  string
	IPv4  netip.Addr
	IPv6  netip.Addr
	Ports []Port
	Line  int
}

// Service is a Kubernetes Service in compact form.
type Service struct {
	Namespace             string
	Name                  string
	Type                  string // ClusterIP (default) | NodePort | LoadBalancer
	ClusterIP             netip.Addr
	ClusterIPv6           netip.Addr
	ExternalIPs           []netip.Addr
	LoadBalancerIPs       []netip.Addr
	Selector              map[string]string
	Ports                 []ServicePort
	SessionAffinity       string // None (default) | ClientIP
	AffinityTimeout       int    // seconds, default 10800
	ExternalTrafficPolicy string // Cluster (default) | Local
	Annotations           map[string]string
	Line                  int
}

// Key returns "namespace/name".
func (s Service) Key() string { return s.Namespace + "/" + s.Name }

// ServicePort is one port of a Service.
type ServicePort struct {
	Name       string
	Port       uint16
	TargetPort string // number or a pod port name; defaults to Port
	Protocol   Protocol
	NodePort   uint16
}

// Object is a Kubernetes object as written in the scenario (a policy,
// verbatim). It keeps its YAML node so that a consumer that parses it
// reports errors with the scenario file's lines.
type Object struct {
	APIVersion string
	Kind       string
	Namespace  string // "" for cluster-scoped objects
	Name       string
	// Node is the object's YAML mapping node (line numbers are the file's).
	Node *yaml.Node
	File string
	Line int
}

// ObjectRef names an object to delete.
type ObjectRef struct {
	Kind      string
	Namespace string
	Name      string
}

// Step is a set of mutations followed by probes. A target applies the
// mutations in this order: AddNamespaces, DeletePods, AddPods, SetLabels,
// Delete, Apply (docs/scenario-format.md, "Steps"); Scenario.StateAt
// gives the result.
type Step struct {
	// Index is the position in Scenario.Steps. Step 0 holds the top-level
	// probes and matrix when the file has any (with no mutations);
	// otherwise it is the first entry of steps.
	Index     int
	Apply     []Object
	Delete    []ObjectRef
	SetLabels []LabelChange
	AddPods   []Pod
	// DeletePods are "namespace/name" keys.
	DeletePods []string
	// TerminatePods are "namespace/name" keys of pods that start
	// terminating: they keep running and serving, and a service uses them
	// only when it has no other backend (Kubernetes' terminating
	// endpoints).
	TerminatePods []string
	// AddNamespaces are the namespaces this step's addPods and apply use
	// that did not exist before (implied, with only the name label). A
	// target creates them first.
	AddNamespaces []Namespace
	// Probes with matrices expanded, in file order (explicit probes first,
	// then matrix cells).
	Probes []Probe
	Line   int
}

// LabelChange replaces the labels of a pod or a namespace (exactly one of
// Pod and Namespace is set). Labels is the complete new set; a namespace
// keeps its implied kubernetes.io/metadata.name.
type LabelChange struct {
	Pod       string
	Namespace string
	Labels    map[string]string
}

// Protocol is an L4 protocol name: TCP, UDP, SCTP or ICMP.
type Protocol string

// Protocols.
const (
	TCP  Protocol = "TCP"
	UDP  Protocol = "UDP"
	SCTP Protocol = "SCTP"
	ICMP Protocol = "ICMP"
)

// Family is an address family: ipv4 or ipv6.
type Family string

// Families.
const (
	IPv4 Family = "ipv4"
	IPv6 Family = "ipv6"
)

// PeerKind says what a probe endpoint is.
type PeerKind string

// Peer kinds.
const (
	PeerPod      PeerKind = "pod"
	PeerExternal PeerKind = "external"
	PeerNode     PeerKind = "node"
	PeerService  PeerKind = "service"
	PeerIP       PeerKind = "ip"
)

// Peer is the parsed form of a probe's from or to.
type Peer struct {
	Kind PeerKind
	// Name is "namespace/name" for pods and services, the external's or
	// node's name; empty for PeerIP.
	Name string
	Addr netip.Addr // PeerIP only
}

// Probe is one connection attempt and what it must observe.
type Probe struct {
	// Name is the optional name other probes' sameBackendAs refers to,
	// unique within the scenario.
	Name string
	// ID is unique within the scenario and stable: used in spec names and
	// reports, e.g. "step 1: default/xwing -> default/deathstar 80/TCP"
	// (docs/scenario-format.md, "Probe IDs").
	ID string
	// Step is the index of the step the probe belongs to.
	Step     int
	From, To Peer
	// Port is the destination port, resolved when given as a name (0 for
	// ICMP, which probes with an echo request).
	Port uint16
	// PortName is the name the probe used, "" when it gave a number.
	PortName string
	Protocol Protocol
	Family   Family
	HTTP     *HTTPRequest
	Kafka    *KafkaRequest
	// Repeat is how many connections the probe makes (at least 1), each
	// from a fresh client source port; the expectation holds for every
	// one, and sameBackend / distinctBackends relate them.
	Repeat int
	// SourcePort fixes the client's source port (0: the target picks one),
	// so that the same connection 5-tuple can be probed again later.
	SourcePort uint16
	Expect     Expectation
	// Features the probe needs beyond the scenario's (e.g. ipv6 for an
	// IPv6 probe); the spec's labels are the union.
	Features []features.Feature
	Line     int
	// Path is the field path the probe comes from: "probes[2]",
	// "steps[1].matrix[0]", or the matrix's "except[n]" that set its
	// expectation.
	Path string
}

// HTTPRequest is an L7 HTTP request to send.
type HTTPRequest struct {
	Method  string
	Path    string
	Headers map[string]string
}

// KafkaRequest is an L7 Kafka request to send.
type KafkaRequest struct {
	APIKey   string
	Topic    string
	ClientID string
}

// Verdict is allow or deny.
type Verdict string

// Verdicts.
const (
	Allow Verdict = "allow"
	Deny  Verdict = "deny"
)

// Expectation is what a probe must observe. Zero-valued optional fields are
// not checked.
type Expectation struct {
	Verdict    Verdict
	DropReason string // catalogue name, e.g. POLICY_DENIED
	HTTPStatus int
	BackendIn  []string // pod keys
	SourceSeen string   // client | node | <ip>
	// SameBackend: every repetition of the probe is served by one backend.
	SameBackend bool
	// DistinctBackends: the repetitions are served by at least this many
	// different backends (0: not checked).
	DistinctBackends int
	// SameBackendAs names an earlier probe: this one is served by the
	// backend that served it.
	SameBackendAs string
	// ReplyNotVia are nodes whose datapath must not handle the reply.
	ReplyNotVia []string
}

// String formats a peer as a scenario file writes it: "ns/name",
// "service:ns/name", "node:name", "ip:addr", or an external's name.
func (p Peer) String() string {
	switch p.Kind {
	case PeerService:
		return "service:" + p.Name
	case PeerNode:
		return "node:" + p.Name
	case PeerIP:
		return "ip:" + p.Addr.String()
	}
	return p.Name
}

// String formats an expectation: the verdict, then the optional fields
// that are set, e.g. "deny dropReason=POLICY_DENIED".
func (e Expectation) String() string {
	s := string(e.Verdict)
	if e.DropReason != "" {
		s += " dropReason=" + e.DropReason
	}
	if e.HTTPStatus != 0 {
		s += " httpStatus=" + strconv.Itoa(e.HTTPStatus)
	}
	if len(e.BackendIn) > 0 {
		s += " backendIn=[" + strings.Join(e.BackendIn, ",") + "]"
	}
	if e.SourceSeen != "" {
		s += " sourceSeen=" + e.SourceSeen
	}
	if e.SameBackend {
		s += " sameBackend"
	}
	if e.DistinctBackends != 0 {
		s += " distinctBackends=" + strconv.Itoa(e.DistinctBackends)
	}
	if e.SameBackendAs != "" {
		s += " sameBackendAs=" + e.SameBackendAs
	}
	if len(e.ReplyNotVia) > 0 {
		s += " replyNotVia=[" + strings.Join(e.ReplyNotVia, ",") + "]"
	}
	return s
}
