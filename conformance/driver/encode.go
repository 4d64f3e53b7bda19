package driver

import (
	"encoding/json"
	"fmt"
	"net/netip"

	"github.com/cilium/cilium/api/v1/flow"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/ciliaproject/cilia/conformance/features"
	"github.com/ciliaproject/cilia/conformance/scenario"
	"github.com/ciliaproject/cilia/conformance/target"
)

// ScenarioJSON is the JSON form of a loaded scenario.
type ScenarioJSON struct {
	Metadata MetadataJSON `json:"metadata"`
	Cluster  ClusterJSON  `json:"cluster"`
	// Policies are the objects applied at setup, as JSON objects
	// (apiVersion, kind, metadata, spec, ...), verbatim from the file.
	Policies []map[string]any `json:"policies"`
	Steps    []StepJSON       `json:"steps"`
}

// MetadataJSON is a scenario's metadata.
type MetadataJSON struct {
	Name        string   `json:"name"`
	Description string   `json:"description,omitempty"`
	Features    []string `json:"features"`
	Source      string   `json:"source,omitempty"`
}

// ClusterJSON is what exists before the first step.
type ClusterJSON struct {
	Nodes      []NodeJSON      `json:"nodes"`
	Namespaces []NamespaceJSON `json:"namespaces"`
	Pods       []PodJSON       `json:"pods"`
	Externals  []ExternalJSON  `json:"externals"`
	Services   []ServiceJSON   `json:"services"`
}

// NodeJSON is a node.
type NodeJSON struct {
	Name string     `json:"name"`
	IPv4 netip.Addr `json:"ipv4,omitzero"`
	IPv6 netip.Addr `json:"ipv6,omitzero"`
}

// NamespaceJSON is a namespace; Labels include kubernetes.io/metadata.name.
type NamespaceJSON struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels"`
}

// PodJSON is a pod.
type PodJSON struct {
	Namespace string            `json:"namespace"`
	Name      string            `json:"name"`
	Labels    map[string]string `json:"labels"`
	Node      string            `json:"node"`
	IPv4      netip.Addr        `json:"ipv4,omitzero"`
	IPv6      netip.Addr        `json:"ipv6,omitzero"`
	Ports     []PortJSON        `json:"ports"`
}

// PortJSON is a port a pod or an external serves.
type PortJSON struct {
	Name     string `json:"name,omitempty"`
	Port     uint16 `json:"port"`
	Protocol string `json:"protocol"`
}

// ExternalJSON is a host outside the cluster.
type ExternalJSON struct {
	Name  string     `json:"name"`
	IPv4  netip.Addr `json:"ipv4,omitzero"`
	IPv6  netip.Addr `json:"ipv6,omitzero"`
	Ports []PortJSON `json:"ports"`
}

// ServiceJSON is a Service.
type ServiceJSON struct {
	Namespace             string            `json:"namespace"`
	Name                  string            `json:"name"`
	Type                  string            `json:"type"`
	ClusterIP             netip.Addr        `json:"clusterIP,omitzero"`
	ClusterIPv6           netip.Addr        `json:"clusterIPv6,omitzero"`
	ExternalIPs           []netip.Addr      `json:"externalIPs"`
	LoadBalancerIPs       []netip.Addr      `json:"loadBalancerIPs"`
	Selector              map[string]string `json:"selector"`
	Ports                 []ServicePortJSON `json:"ports"`
	SessionAffinity       string            `json:"sessionAffinity"`
	AffinityTimeout       int               `json:"affinityTimeoutSeconds,omitempty"`
	ExternalTrafficPolicy string            `json:"externalTrafficPolicy"`
	Annotations           map[string]string `json:"annotations"`
}

// ServicePortJSON is a port of a Service.
type ServicePortJSON struct {
	Name       string `json:"name,omitempty"`
	Port       uint16 `json:"port"`
	TargetPort string `json:"targetPort"`
	Protocol   string `json:"protocol"`
	NodePort   uint16 `json:"nodePort,omitempty"`
}

// StepJSON is a step: its mutations, and (in setup's scenario only) its
// probes. A driver applies the mutations in this order: addNamespaces,
// deletePods, addPods, setLabels, delete, apply.
type StepJSON struct {
	Index         int               `json:"index"`
	AddNamespaces []NamespaceJSON   `json:"addNamespaces"`
	DeletePods    []string          `json:"deletePods"`
	AddPods       []PodJSON         `json:"addPods"`
	SetLabels     []LabelChangeJSON `json:"setLabels"`
	Delete        []ObjectRefJSON   `json:"delete"`
	Apply         []map[string]any  `json:"apply"`
	Probes        []ProbeJSON       `json:"probes,omitempty"`
}

// LabelChangeJSON replaces the labels of a pod or a namespace.
type LabelChangeJSON struct {
	Pod       string            `json:"pod,omitempty"`
	Namespace string            `json:"namespace,omitempty"`
	Labels    map[string]string `json:"labels"`
}

// ObjectRefJSON names an object to delete.
type ObjectRefJSON struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

// ProbeJSON is a probe.
type ProbeJSON struct {
	ID       string     `json:"id"`
	Step     int        `json:"step"`
	From     PeerJSON   `json:"from"`
	To       PeerJSON   `json:"to"`
	Port     uint16     `json:"port"`
	PortName string     `json:"portName,omitempty"`
	Protocol string     `json:"protocol"`
	Family   string     `json:"family"`
	HTTP     *HTTPJSON  `json:"http,omitempty"`
	Kafka    *KafkaJSON `json:"kafka,omitempty"`
	// Name, Repeat and SourcePort are the probe's load-balancing fields:
	// a driver uses SourcePort (0: its choice) and is called Repeat times.
	Name       string     `json:"name,omitempty"`
	Repeat     int        `json:"repeat,omitempty"`
	SourcePort uint16     `json:"sourcePort,omitempty"`
	Features   []string   `json:"features,omitempty"`
	Expect     ExpectJSON `json:"expect"`
	Line       int        `json:"line,omitempty"`
	Path       string     `json:"path,omitempty"`
}

// PeerJSON is a probe's from or to.
type PeerJSON struct {
	// Kind is pod | external | node | service | ip.
	Kind string `json:"kind"`
	// Name is "namespace/name" for pods and services, the name of an
	// external or a node; absent for kind ip.
	Name string     `json:"name,omitempty"`
	Addr netip.Addr `json:"addr,omitzero"`
}

// HTTPJSON is an L7 HTTP request.
type HTTPJSON struct {
	Method  string            `json:"method"`
	Path    string            `json:"path"`
	Headers map[string]string `json:"headers,omitempty"`
}

// KafkaJSON is an L7 Kafka request.
type KafkaJSON struct {
	APIKey   string `json:"apiKey"`
	Topic    string `json:"topic,omitempty"`
	ClientID string `json:"clientID,omitempty"`
}

// ExpectJSON is what the scenario expects of a probe: for diagnostics
// only, a driver must not use it to decide what it observes.
type ExpectJSON struct {
	Verdict    string   `json:"verdict"`
	DropReason string   `json:"dropReason,omitempty"`
	HTTPStatus int      `json:"httpStatus,omitempty"`
	BackendIn  []string `json:"backendIn,omitempty"`
	SourceSeen string   `json:"sourceSeen,omitempty"`
	// The load-balancing expectations, checked by the suite across
	// observations.
	SameBackend      bool     `json:"sameBackend,omitempty"`
	DistinctBackends int      `json:"distinctBackends,omitempty"`
	SameBackendAs    string   `json:"sameBackendAs,omitempty"`
	ReplyNotVia      []string `json:"replyNotVia,omitempty"`
}

// ObservationJSON is the outcome of a probe.
type ObservationJSON struct {
	// Verdict is "allowed" or "denied" (required).
	Verdict    string `json:"verdict"`
	DropReason string `json:"dropReason,omitempty"`
	HTTPStatus int    `json:"httpStatus,omitempty"`
	Backend    string `json:"backend,omitempty"`
	// SourceSeen is an IP address, or absent.
	SourceSeen string `json:"sourceSeen,omitempty"`
	// ReplyVia names the nodes whose datapath handled a reply packet;
	// absent when the driver cannot tell.
	ReplyVia []string `json:"replyVia,omitempty"`
	// Flows are Hubble flow.Flow objects as protojson with proto field
	// names prints them (`hubble observe -o jsonpb` without the
	// GetFlowsResponse wrapper).
	Flows []json.RawMessage `json:"flows,omitempty"`
}

// EncodeScenario returns the JSON form of sc.
func EncodeScenario(sc *scenario.Scenario) (*ScenarioJSON, error) {
	out := &ScenarioJSON{
		Metadata: MetadataJSON{Name: sc.Metadata.Name, Description: sc.Metadata.Description,
			Features: featureNames(sc.Metadata.Features), Source: sc.Metadata.Source},
		Policies: []map[string]any{},
		Steps:    []StepJSON{},
	}
	c := &out.Cluster
	c.Nodes, c.Namespaces, c.Pods, c.Externals, c.Services = []NodeJSON{}, []NamespaceJSON{}, []PodJSON{}, []ExternalJSON{}, []ServiceJSON{}
	for _, n := range sc.Cluster.Nodes {
		c.Nodes = append(c.Nodes, NodeJSON{Name: n.Name, IPv4: n.IPv4, IPv6: n.IPv6})
	}
	for _, ns := range sc.Cluster.Namespaces {
		c.Namespaces = append(c.Namespaces, encodeNamespace(ns))
	}
	for _, p := range sc.Cluster.Pods {
		c.Pods = append(c.Pods, encodePod(p))
	}
	for _, e := range sc.Cluster.Externals {
		c.Externals = append(c.Externals, ExternalJSON{Name: e.Name, IPv4: e.IPv4, IPv6: e.IPv6, Ports: encodePorts(e.Ports)})
	}
	for _, s := range sc.Cluster.Services {
		c.Services = append(c.Services, encodeService(s))
	}
	var err error
	if out.Policies, err = encodeObjects(sc.Policies); err != nil {
		return nil, err
	}
	for _, st := range sc.Steps {
		sj, err := EncodeStep(st)
		if err != nil {
			return nil, err
		}
		for _, p := range st.Probes {
			sj.Probes = append(sj.Probes, EncodeProbe(p))
		}
		out.Steps = append(out.Steps, sj)
	}
	return out, nil
}

// EncodeStep returns the JSON form of a step's index and mutations,
// without its probes (the params of "step").
func EncodeStep(st scenario.Step) (StepJSON, error) {
	out := StepJSON{Index: st.Index, AddNamespaces: []NamespaceJSON{}, DeletePods: []string{}, AddPods: []PodJSON{},
		SetLabels: []LabelChangeJSON{}, Delete: []ObjectRefJSON{}}
	for _, ns := range st.AddNamespaces {
		out.AddNamespaces = append(out.AddNamespaces, encodeNamespace(ns))
	}
	out.DeletePods = append(out.DeletePods, st.DeletePods...)
	for _, p := range st.AddPods {
		out.AddPods = append(out.AddPods, encodePod(p))
	}
	for _, lc := range st.SetLabels {
		out.SetLabels = append(out.SetLabels, LabelChangeJSON{Pod: lc.Pod, Namespace: lc.Namespace, Labels: nonNil(lc.Labels)})
	}
	for _, r := range st.Delete {
		out.Delete = append(out.Delete, ObjectRefJSON{Kind: r.Kind, Namespace: r.Namespace, Name: r.Name})
	}
	var err error
	if out.Apply, err = encodeObjects(st.Apply); err != nil {
		return StepJSON{}, fmt.Errorf("step %d: %w", st.Index, err)
	}
	return out, nil
}

func encodeNamespace(ns scenario.Namespace) NamespaceJSON {
	return NamespaceJSON{Name: ns.Name, Labels: nonNil(ns.Labels)}
}

func encodePod(p scenario.Pod) PodJSON {
	return PodJSON{Namespace: p.Namespace, Name: p.Name, Labels: nonNil(p.Labels), Node: p.Node,
		IPv4: p.IPv4, IPv6: p.IPv6, Ports: encodePorts(p.Ports)}
}

func encodePorts(ps []scenario.Port) []PortJSON {
	out := []PortJSON{}
	for _, p := range ps {
		out = append(out, PortJSON{Name: p.Name, Port: p.Port, Protocol: string(p.Protocol)})
	}
	return out
}

func encodeService(s scenario.Service) ServiceJSON {
	out := ServiceJSON{Namespace: s.Namespace, Name: s.Name, Type: s.Type, ClusterIP: s.ClusterIP, ClusterIPv6: s.ClusterIPv6,
		ExternalIPs: append([]netip.Addr{}, s.ExternalIPs...), LoadBalancerIPs: append([]netip.Addr{}, s.LoadBalancerIPs...),
		Selector: nonNil(s.Selector), Ports: []ServicePortJSON{}, SessionAffinity: s.SessionAffinity,
		AffinityTimeout: s.AffinityTimeout, ExternalTrafficPolicy: s.ExternalTrafficPolicy, Annotations: nonNil(s.Annotations)}
	for _, p := range s.Ports {
		out.Ports = append(out.Ports, ServicePortJSON{Name: p.Name, Port: p.Port, TargetPort: p.TargetPort,
			Protocol: string(p.Protocol), NodePort: p.NodePort})
	}
	return out
}

// encodeObjects turns policy objects (YAML nodes) into JSON objects.
func encodeObjects(objs []scenario.Object) ([]map[string]any, error) {
	out := []map[string]any{}
	for _, o := range objs {
		var m map[string]any
		if o.Node == nil {
			return nil, fmt.Errorf("%s %s/%s: no object", o.Kind, o.Namespace, o.Name)
		}
		if err := o.Node.Decode(&m); err != nil {
			return nil, fmt.Errorf("%s %s/%s (%s:%d): %w", o.Kind, o.Namespace, o.Name, o.File, o.Line, err)
		}
		// Check now that it marshals: YAML allows what JSON does not
		// (non-string keys).
		if _, err := json.Marshal(m); err != nil {
			return nil, fmt.Errorf("%s %s/%s (%s:%d): not representable as JSON: %w", o.Kind, o.Namespace, o.Name, o.File, o.Line, err)
		}
		out = append(out, m)
	}
	return out, nil
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func featureNames(fs []features.Feature) []string {
	out := []string{}
	for _, f := range fs {
		out = append(out, string(f))
	}
	return out
}

// EncodeProbe returns the JSON form of p.
func EncodeProbe(p scenario.Probe) ProbeJSON {
	out := ProbeJSON{ID: p.ID, Step: p.Step, From: encodePeer(p.From), To: encodePeer(p.To), Port: p.Port, PortName: p.PortName,
		Protocol: string(p.Protocol), Family: string(p.Family), Line: p.Line, Path: p.Path,
		Expect: ExpectJSON{Verdict: string(p.Expect.Verdict), DropReason: p.Expect.DropReason, HTTPStatus: p.Expect.HTTPStatus,
			BackendIn: p.Expect.BackendIn, SourceSeen: p.Expect.SourceSeen,
			SameBackend: p.Expect.SameBackend, DistinctBackends: p.Expect.DistinctBackends,
			SameBackendAs: p.Expect.SameBackendAs, ReplyNotVia: p.Expect.ReplyNotVia},
		Name: p.Name, Repeat: p.Repeat, SourcePort: p.SourcePort}
	if len(p.Features) > 0 {
		out.Features = featureNames(p.Features)
	}
	if p.HTTP != nil {
		out.HTTP = &HTTPJSON{Method: p.HTTP.Method, Path: p.HTTP.Path, Headers: p.HTTP.Headers}
	}
	if p.Kafka != nil {
		out.Kafka = &KafkaJSON{APIKey: p.Kafka.APIKey, Topic: p.Kafka.Topic, ClientID: p.Kafka.ClientID}
	}
	return out
}

func encodePeer(p scenario.Peer) PeerJSON {
	return PeerJSON{Kind: string(p.Kind), Name: p.Name, Addr: p.Addr}
}

// DecodeProbe returns the probe pj encodes. It checks the fields a target
// needs: id, a known kind for from and to, protocol and family.
func DecodeProbe(pj ProbeJSON) (scenario.Probe, error) {
	p := scenario.Probe{ID: pj.ID, Step: pj.Step, Port: pj.Port, PortName: pj.PortName,
		Protocol: scenario.Protocol(pj.Protocol), Family: scenario.Family(pj.Family), Line: pj.Line, Path: pj.Path,
		Expect: scenario.Expectation{Verdict: scenario.Verdict(pj.Expect.Verdict), DropReason: pj.Expect.DropReason,
			HTTPStatus: pj.Expect.HTTPStatus, BackendIn: pj.Expect.BackendIn, SourceSeen: pj.Expect.SourceSeen,
			SameBackend: pj.Expect.SameBackend, DistinctBackends: pj.Expect.DistinctBackends,
			SameBackendAs: pj.Expect.SameBackendAs, ReplyNotVia: pj.Expect.ReplyNotVia},
		Name: pj.Name, Repeat: pj.Repeat, SourcePort: pj.SourcePort}
	if p.Repeat == 0 {
		p.Repeat = 1
	}
	if p.ID == "" {
		return p, fmt.Errorf("probe: missing id")
	}
	var err error
	if p.From, err = decodePeer(pj.From); err != nil {
		return p, fmt.Errorf("probe %q: from: %w", p.ID, err)
	}
	if p.To, err = decodePeer(pj.To); err != nil {
		return p, fmt.Errorf("probe %q: to: %w", p.ID, err)
	}
	switch p.Protocol {
	case scenario.TCP, scenario.UDP, scenario.SCTP, scenario.ICMP:
	default:
		return p, fmt.Errorf("probe %q: protocol %q is not TCP, UDP, SCTP or ICMP", p.ID, pj.Protocol)
	}
	switch p.Family {
	case scenario.IPv4, scenario.IPv6:
	default:
		return p, fmt.Errorf("probe %q: family %q is not ipv4 or ipv6", p.ID, pj.Family)
	}
	for _, f := range pj.Features {
		p.Features = append(p.Features, features.Feature(f))
	}
	if pj.HTTP != nil {
		p.HTTP = &scenario.HTTPRequest{Method: pj.HTTP.Method, Path: pj.HTTP.Path, Headers: pj.HTTP.Headers}
	}
	if pj.Kafka != nil {
		p.Kafka = &scenario.KafkaRequest{APIKey: pj.Kafka.APIKey, Topic: pj.Kafka.Topic, ClientID: pj.Kafka.ClientID}
	}
	return p, nil
}

func decodePeer(pj PeerJSON) (scenario.Peer, error) {
	p := scenario.Peer{Kind: scenario.PeerKind(pj.Kind), Name: pj.Name, Addr: pj.Addr}
	switch p.Kind {
	case scenario.PeerPod, scenario.PeerExternal, scenario.PeerNode, scenario.PeerService:
		if p.Name == "" {
			return p, fmt.Errorf("kind %s needs a name", p.Kind)
		}
	case scenario.PeerIP:
		if !p.Addr.IsValid() {
			return p, fmt.Errorf("kind ip needs an addr")
		}
	default:
		return p, fmt.Errorf("kind %q is not pod, external, node, service or ip", pj.Kind)
	}
	return p, nil
}

var flowJSON = protojson.MarshalOptions{UseProtoNames: true}

// EncodeObservation returns the JSON form of obs.
func EncodeObservation(obs target.Observation) (ObservationJSON, error) {
	out := ObservationJSON{Verdict: string(obs.Verdict), DropReason: obs.DropReason, HTTPStatus: obs.HTTPStatus, Backend: obs.Backend,
		ReplyVia: obs.ReplyVia}
	if obs.SourceSeen.IsValid() {
		out.SourceSeen = obs.SourceSeen.String()
	}
	for i, f := range obs.Flows {
		b, err := flowJSON.Marshal(f)
		if err != nil {
			return out, fmt.Errorf("flow %d: %w", i, err)
		}
		out.Flows = append(out.Flows, b)
	}
	return out, nil
}

// DecodeObservation returns the observation oj encodes; it checks the
// verdict, the source address and the flows.
func DecodeObservation(oj ObservationJSON) (target.Observation, error) {
	obs := target.Observation{Verdict: target.Verdict(oj.Verdict), DropReason: oj.DropReason, HTTPStatus: oj.HTTPStatus, Backend: oj.Backend,
		ReplyVia: oj.ReplyVia}
	switch obs.Verdict {
	case target.Allowed, target.Denied:
	case "":
		return obs, fmt.Errorf("observation has no verdict")
	default:
		return obs, fmt.Errorf("observation verdict %q is not %q or %q", oj.Verdict, target.Allowed, target.Denied)
	}
	if oj.SourceSeen != "" {
		a, err := netip.ParseAddr(oj.SourceSeen)
		if err != nil {
			return obs, fmt.Errorf("observation sourceSeen: %w", err)
		}
		obs.SourceSeen = a
	}
	for i, raw := range oj.Flows {
		f := &flow.Flow{}
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(raw, f); err != nil {
			return obs, fmt.Errorf("observation flows[%d]: %w", i, err)
		}
		obs.Flows = append(obs.Flows, f)
	}
	return obs, nil
}
