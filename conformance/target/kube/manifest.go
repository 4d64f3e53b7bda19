package kube

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/ciliaproject/cilia/conformance/scenario"
)

// Labels the target puts on everything it creates.
const (
	// RunLabel holds the run ID: Close deletes everything carrying it.
	RunLabel = "cilia.dev/run"
	// ScenarioLabel holds the scenario's name (cut to 63 characters), for
	// people looking at the cluster.
	ScenarioLabel = "cilia.dev/scenario"
	// ScenarioNamespaceAnnotation holds the scenario's name of a namespace.
	ScenarioNamespaceAnnotation = "cilia.dev/scenario-namespace"
	// ContainerName is the probe container of every pod.
	ContainerName = "probe"
	// ProbeBinary is the path of cilia-probe in the probe image.
	ProbeBinary = "/cilia-probe"
)

// Names maps the scenario's names to the cluster's: every namespace gets
// the run's prefix, so that runs never collide (with each other or with
// what the cluster already has, such as "default").
type Names struct {
	// RunID is the run's ID, a short lowercase alphanumeric string.
	RunID string
	// Scenario is the scenario's name.
	Scenario string
}

// Namespace returns the cluster namespace of scenario namespace ns:
// "cilia-<run>-<ns>", shortened with a hash when it would exceed 63
// characters.
func (n Names) Namespace(ns string) string {
	full := "cilia-" + n.RunID + "-" + ns
	if len(full) <= 63 {
		return full
	}
	sum := sha256.Sum256([]byte(ns))
	h := hex.EncodeToString(sum[:4])
	keep := 63 - len("cilia-"+n.RunID+"-") - len(h) - 1
	return strings.TrimRight("cilia-"+n.RunID+"-"+ns[:keep], "-") + "-" + h
}

// labels returns what the target adds to every object's labels.
func (n Names) labels() map[string]string {
	s := n.Scenario
	if len(s) > 63 {
		s = strings.TrimRight(s[:63], "-.")
	}
	return map[string]string{RunLabel: n.RunID, ScenarioLabel: s}
}

// withRun returns labels plus the run's labels.
func (n Names) withRun(labels map[string]string) map[string]string {
	out := make(map[string]string, len(labels)+2)
	for k, v := range labels {
		out[k] = v
	}
	for k, v := range n.labels() {
		out[k] = v
	}
	return out
}

// NamespaceObject returns the cluster namespace of a scenario namespace:
// its labels (Kubernetes sets kubernetes.io/metadata.name itself, to the
// cluster's name; policies selecting on it are rewritten, see
// RewritePolicy) and the run's.
func (n Names) NamespaceObject(ns scenario.Namespace) *corev1.Namespace {
	labels := map[string]string{}
	for k, v := range ns.Labels {
		if k != corev1.LabelMetadataName {
			labels[k] = v
		}
	}
	return &corev1.Namespace{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        n.Namespace(ns.Name),
			Labels:      n.withRun(labels),
			Annotations: map[string]string{ScenarioNamespaceAnnotation: ns.Name},
		},
	}
}

// NamespaceLabels returns the labels a namespace gets for scenario labels
// (what a setLabels step writes).
func (n Names) NamespaceLabels(labels map[string]string) map[string]string {
	return n.NamespaceObject(scenario.Namespace{Labels: labels}).Labels
}

// PodSpec is what a pod needs beyond the scenario: the image, the node it
// is pinned to and the ports it serves.
type PodSpec struct {
	Image string
	// Node is the cluster node ("" leaves it to the scheduler).
	Node string
	// Serve are the ports cilia-probe serves (Listen).
	Serve []Listen
}

// Listen is a port cilia-probe serves.
type Listen struct {
	Protocol scenario.Protocol
	Port     uint16
}

// String returns the --listen form: "tcp:80".
func (l Listen) String() string {
	return strings.ToLower(string(l.Protocol)) + ":" + strconv.Itoa(int(l.Port))
}

// ListenArg returns the --listen argument of ls.
func ListenArg(ls []Listen) string {
	s := make([]string, len(ls))
	for i, l := range ls {
		s[i] = l.String()
	}
	return strings.Join(s, ",")
}

// PodObject returns the pod of scenario pod p: the scenario's labels and
// the run's, the probe container serving spec.Serve and declaring p's
// ports (named ports resolve against them), pinned to spec.Node.
func (n Names) PodObject(p scenario.Pod, spec PodSpec) *corev1.Pod {
	var ports []corev1.ContainerPort
	for _, pt := range p.Ports {
		ports = append(ports, corev1.ContainerPort{Name: pt.Name, ContainerPort: int32(pt.Port), Protocol: corev1.Protocol(pt.Protocol)})
	}
	zero := int64(0)
	no := false
	var startup *corev1.Probe
	if len(spec.Serve) > 0 {
		// Ready once the servers answer (on loopback, which no policy
		// governs), so that no probe races the server's start. A startup
		// probe stops once it succeeds: no exec every second afterwards.
		startup = &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{ProbeBinary, "ready", "--listen", ListenArg(spec.Serve)}}},
			PeriodSeconds: 1, TimeoutSeconds: 5, FailureThreshold: 120,
		}
	}
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      p.Name,
			Namespace: n.Namespace(p.Namespace),
			Labels:    n.withRun(p.Labels),
		},
		Spec: corev1.PodSpec{
			NodeName:                      spec.Node,
			TerminationGracePeriodSeconds: &zero,
			AutomountServiceAccountToken:  &no,
			EnableServiceLinks:            &no,
			// Pinned pods may land on a control-plane node.
			Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			Containers: []corev1.Container{{
				Name:            ContainerName,
				Image:           spec.Image,
				ImagePullPolicy: corev1.PullIfNotPresent,
				Command:         []string{ProbeBinary},
				Args:            []string{"serve", "--name", p.Key(), "--listen", ListenArg(spec.Serve)},
				Ports:           ports,
				StartupProbe:    startup,
			}},
		},
	}
}

// nodesNamespace is the scenario-side name of the namespace of the node
// clients: no scenario namespace can start with "-", so the cluster's
// "cilia-<run>--nodes" collides with none.
const nodesNamespace = "-nodes"

// NodePodObject returns the client of a scenario node: a pod in the
// node's network namespace (hostNetwork) on cluster node clusterNode,
// running cilia-probe serving nothing, to exec probes in.
func (n Names) NodePodObject(name, clusterNode, image string) *corev1.Pod {
	p := n.PodObject(scenario.Pod{Namespace: nodesNamespace, Name: name}, PodSpec{Image: image, Node: clusterNode})
	p.Spec.HostNetwork = true
	p.Spec.Containers[0].Args = []string{"serve", "--name", "node:" + clusterNode, "--listen", ""}
	return p
}

// ServiceObject returns the Service of scenario service s. The cluster
// assigns its cluster IPs (the scenario's are mapped); every type becomes
// ClusterIP (node ports and load balancers are not driven yet).
func (n Names) ServiceObject(s scenario.Service) *corev1.Service {
	var ports []corev1.ServicePort
	for _, p := range s.Ports {
		tp := intstr.FromString(p.TargetPort)
		if v, err := strconv.Atoi(p.TargetPort); err == nil {
			tp = intstr.FromInt32(int32(v))
		}
		if p.TargetPort == "" {
			tp = intstr.FromInt32(int32(p.Port))
		}
		ports = append(ports, corev1.ServicePort{Name: p.Name, Port: int32(p.Port), TargetPort: tp, Protocol: corev1.Protocol(p.Protocol)})
	}
	policy := corev1.IPFamilyPolicySingleStack
	if s.ClusterIP.IsValid() == s.ClusterIPv6.IsValid() {
		policy = corev1.IPFamilyPolicyPreferDualStack
	}
	svc := &corev1.Service{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        s.Name,
			Namespace:   n.Namespace(s.Namespace),
			Labels:      n.labels(),
			Annotations: s.Annotations,
		},
		Spec: corev1.ServiceSpec{
			Type:           corev1.ServiceTypeClusterIP,
			Selector:       s.Selector,
			Ports:          ports,
			IPFamilyPolicy: &policy,
		},
	}
	if policy == corev1.IPFamilyPolicySingleStack && s.ClusterIPv6.IsValid() {
		svc.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol}
	}
	if s.SessionAffinity == "ClientIP" {
		t := int32(s.AffinityTimeout)
		svc.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
		svc.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: &t}}
	}
	return svc
}

// ToUnstructured converts a typed object for the dynamic client.
func ToUnstructured(obj runtime.Object) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, fmt.Errorf("convert %T: %w", obj, err)
	}
	u := &unstructured.Unstructured{Object: m}
	// The converter writes zero-valued status and creationTimestamp.
	unstructured.RemoveNestedField(u.Object, "status")
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	return u, nil
}

// AddrMap maps the scenario's addresses of pods and nodes to the cluster's
// (and back, for the source address a server saw).
type AddrMap struct {
	toCluster  map[netip.Addr]netip.Addr
	toScenario map[netip.Addr]netip.Addr
}

// NewAddrMap returns an empty map.
func NewAddrMap() *AddrMap {
	return &AddrMap{toCluster: map[netip.Addr]netip.Addr{}, toScenario: map[netip.Addr]netip.Addr{}}
}

// Add records that scenario address s is cluster address c. An invalid
// address on either side records nothing.
func (m *AddrMap) Add(s, c netip.Addr) {
	if !s.IsValid() || !c.IsValid() {
		return
	}
	m.toCluster[s.Unmap()] = c.Unmap()
	m.toScenario[c.Unmap()] = s.Unmap()
}

// Cluster returns the cluster address of scenario address s.
func (m *AddrMap) Cluster(s netip.Addr) (netip.Addr, bool) {
	c, ok := m.toCluster[s.Unmap()]
	return c, ok
}

// Scenario returns the scenario address of cluster address c, or c itself
// when it is none of the scenario's.
func (m *AddrMap) Scenario(c netip.Addr) netip.Addr {
	if s, ok := m.toScenario[c.Unmap()]; ok {
		return s
	}
	return c
}

// Policy kinds.
const (
	KindNetworkPolicy = "NetworkPolicy"
	KindCNP           = "CiliumNetworkPolicy"
	KindCCNP          = "CiliumClusterwideNetworkPolicy"
)

// RewritePolicy returns the cluster's object for a scenario policy:
//   - its namespace is mapped (Names.Namespace), and it carries the run's
//     labels;
//   - namespace names in selectors are mapped: matchLabels and
//     matchExpressions on kubernetes.io/metadata.name (KNP
//     namespaceSelector; Cilium's io.cilium.k8s.namespace.labels.…) and on
//     io.kubernetes.pod.namespace (Cilium's namespace of an endpoint, with
//     or without a k8s:/any: source prefix), and toServices namespaces;
//   - host CIDRs (a /32 or /128, or a bare address) that are a pod's or
//     node's scenario address become its cluster address (addrs); other
//     CIDRs are kept;
//   - a CiliumClusterwideNetworkPolicy's endpointSelector also requires
//     the run label, so it never selects another run's (or the cluster's
//     own) pods.
func (n Names) RewritePolicy(obj scenario.Object, addrs *AddrMap) (*unstructured.Unstructured, error) {
	var m map[string]any
	if obj.Node == nil {
		return nil, fmt.Errorf("rewrite %s %s: no object", obj.Kind, obj.Name)
	}
	if err := obj.Node.Decode(&m); err != nil {
		return nil, fmt.Errorf("rewrite %s %s: %w", obj.Kind, obj.Name, err)
	}
	u := &unstructured.Unstructured{Object: normalize(m).(map[string]any)}
	meta := map[string]any{"name": obj.Name}
	labels := map[string]any{}
	if old, ok := u.Object["metadata"].(map[string]any); ok {
		if l, ok := old["labels"].(map[string]any); ok {
			labels = l
		}
		if a, ok := old["annotations"].(map[string]any); ok {
			meta["annotations"] = a
		}
	}
	for k, v := range n.labels() {
		labels[k] = v
	}
	meta["labels"] = labels
	if obj.Kind != KindCCNP {
		meta["namespace"] = n.Namespace(obj.Namespace)
	}
	u.Object["metadata"] = meta
	u.Object["apiVersion"], u.Object["kind"] = obj.APIVersion, obj.Kind
	for k, v := range u.Object {
		if k != "metadata" && k != "apiVersion" && k != "kind" {
			u.Object[k] = n.rewrite(v, addrs)
		}
	}
	if obj.Kind == KindCCNP {
		var specs []any
		if spec, ok := u.Object["spec"]; ok {
			specs = append(specs, spec)
		}
		if more, ok := u.Object["specs"].([]any); ok {
			specs = append(specs, more...)
		}
		for _, s := range specs {
			if spec, ok := s.(map[string]any); ok {
				if err := n.confineCCNP(spec); err != nil {
					return nil, fmt.Errorf("rewrite %s %s: %w", obj.Kind, obj.Name, err)
				}
			}
		}
	}
	return u, nil
}

// confineCCNP adds the run label to a clusterwide rule's endpointSelector.
// A host policy (nodeSelector) would govern the cluster's own nodes, which
// no run may do: it is unsupported.
func (n Names) confineCCNP(spec map[string]any) error {
	if _, ok := spec["nodeSelector"]; ok {
		return fmt.Errorf("a nodeSelector (host policy) would apply to the cluster's nodes: %w", ErrUnsupported)
	}
	sel, ok := spec["endpointSelector"].(map[string]any)
	if !ok {
		return nil
	}
	ml, _ := sel["matchLabels"].(map[string]any)
	if ml == nil {
		ml = map[string]any{}
	}
	ml[RunLabel] = n.RunID
	sel["matchLabels"] = ml
	return nil
}

// normalize turns yaml's map[string]interface{} trees into JSON-compatible
// ones (ints as int64, as the unstructured helpers expect).
func normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = normalize(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = normalize(e)
		}
		return x
	case int:
		return int64(x)
	case uint64:
		return int64(x)
	case float32:
		return float64(x)
	}
	return v
}

// isNamespaceKey reports whether a selector key names a namespace.
func isNamespaceKey(k string) bool {
	for _, p := range []string{"k8s:", "any:"} {
		k = strings.TrimPrefix(k, p)
	}
	return k == "io.kubernetes.pod.namespace" || strings.HasSuffix(k, corev1.LabelMetadataName)
}

// cidrKeys are the fields holding CIDRs (KNP ipBlock, Cilium's CIDR rules).
var cidrKeys = map[string]bool{"cidr": true, "except": true, "toCIDR": true, "fromCIDR": true}

// rewrite maps namespace names and host CIDRs in a policy's tree.
func (n Names) rewrite(v any, addrs *AddrMap) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			switch {
			case k == "matchLabels":
				if ml, ok := e.(map[string]any); ok {
					for lk, lv := range ml {
						if s, ok := lv.(string); ok && isNamespaceKey(lk) {
							ml[lk] = n.Namespace(s)
						}
					}
				}
			case k == "matchExpressions":
				if list, ok := e.([]any); ok {
					for _, item := range list {
						expr, ok := item.(map[string]any)
						if !ok {
							continue
						}
						if key, _ := expr["key"].(string); isNamespaceKey(key) {
							if vals, ok := expr["values"].([]any); ok {
								for i, s := range vals {
									if s, ok := s.(string); ok {
										vals[i] = n.Namespace(s)
									}
								}
							}
						}
					}
				}
			case k == "k8sService" || k == "k8sServiceSelector":
				if svc, ok := e.(map[string]any); ok {
					if ns, ok := svc["namespace"].(string); ok {
						svc["namespace"] = n.Namespace(ns)
					}
					if sel, ok := svc["selector"]; ok {
						svc["selector"] = n.rewrite(sel, addrs)
					}
				}
			case cidrKeys[k]:
				x[k] = mapCIDRs(e, addrs)
			default:
				x[k] = n.rewrite(e, addrs)
			}
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = n.rewrite(e, addrs)
		}
		return x
	}
	return v
}

// mapCIDRs maps a CIDR string, or a list of them, through addrs.
func mapCIDRs(v any, addrs *AddrMap) any {
	switch x := v.(type) {
	case string:
		return mapCIDR(x, addrs)
	case []any:
		for i, e := range x {
			if s, ok := e.(string); ok {
				x[i] = mapCIDR(s, addrs)
			}
		}
		return x
	}
	return v
}

// mapCIDR maps a host prefix of a scenario address to its cluster address.
func mapCIDR(s string, addrs *AddrMap) string {
	if addrs == nil {
		return s
	}
	if a, err := netip.ParseAddr(s); err == nil {
		if c, ok := addrs.Cluster(a); ok {
			return c.String()
		}
		return s
	}
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.IsSingleIP() {
		return s
	}
	if c, ok := addrs.Cluster(p.Addr()); ok {
		return netip.PrefixFrom(c, c.BitLen()).String()
	}
	return s
}

// ServePorts returns, per pod key, the ports its server must listen on:
// every port a probe of any step sends to it, directly, through an ip:
// peer naming its address, or through a service (the service port's
// target port, resolved on each pod of the service's namespace that could
// back it). Every pod serves at least its declared TCP, UDP and SCTP
// ports.
func ServePorts(sc *scenario.Scenario) map[string][]Listen {
	out := map[string]map[Listen]bool{}
	add := func(pod string, l Listen) {
		if l.Protocol == scenario.ICMP || l.Port == 0 {
			return
		}
		if out[pod] == nil {
			out[pod] = map[Listen]bool{}
		}
		out[pod][l] = true
	}
	addPod := func(p scenario.Pod) {
		for _, pt := range p.Ports {
			add(p.Key(), Listen{Protocol: pt.Protocol, Port: pt.Port})
		}
	}
	for _, p := range sc.Cluster.Pods {
		addPod(p)
	}
	for i, st := range sc.Steps {
		for _, p := range st.AddPods {
			addPod(p)
		}
		state := sc.StateAt(i)
		for _, pr := range st.Probes {
			proto := pr.Protocol
			if proto == "" {
				proto = scenario.TCP
			}
			switch pr.To.Kind {
			case scenario.PeerPod:
				add(pr.To.Name, Listen{Protocol: proto, Port: pr.Port})
			case scenario.PeerIP:
				if owner, ok := state.Owner(pr.To.Addr); ok && owner.Kind == scenario.PeerPod {
					add(owner.Name, Listen{Protocol: proto, Port: pr.Port})
				}
			case scenario.PeerService:
				svc, ok := state.Service(pr.To.Name)
				if !ok {
					continue
				}
				for _, sp := range svc.Ports {
					if sp.Port != pr.Port || sp.Protocol != proto {
						continue
					}
					for _, pod := range allPods(sc) {
						if pod.Namespace != svc.Namespace {
							continue
						}
						if port, ok := targetPort(pod, sp); ok {
							add(pod.Key(), Listen{Protocol: proto, Port: port})
						}
					}
				}
			}
		}
	}
	res := map[string][]Listen{}
	for pod, set := range out {
		var ls []Listen
		for l := range set {
			ls = append(ls, l)
		}
		sort.Slice(ls, func(i, j int) bool {
			if ls[i].Port != ls[j].Port {
				return ls[i].Port < ls[j].Port
			}
			return ls[i].Protocol < ls[j].Protocol
		})
		res[pod] = ls
	}
	return res
}

// allPods returns every pod the scenario ever has (a pod re-added by a
// step appears twice).
func allPods(sc *scenario.Scenario) []scenario.Pod {
	out := append([]scenario.Pod(nil), sc.Cluster.Pods...)
	for _, st := range sc.Steps {
		out = append(out, st.AddPods...)
	}
	return out
}

// targetPort resolves a service port's target port on pod p.
func targetPort(p scenario.Pod, sp scenario.ServicePort) (uint16, bool) {
	if sp.TargetPort == "" {
		return sp.Port, true
	}
	if v, err := strconv.ParseUint(sp.TargetPort, 10, 16); err == nil {
		return uint16(v), true
	}
	for _, pt := range p.Ports {
		if pt.Name == sp.TargetPort && pt.Protocol == sp.Protocol {
			return pt.Port, true
		}
	}
	return 0, false
}

// PolicyKinds returns the policy kinds a scenario uses, at setup or in a
// step.
func PolicyKinds(sc *scenario.Scenario) map[string]bool {
	kinds := map[string]bool{}
	for _, p := range sc.Policies {
		kinds[p.Kind] = true
	}
	for _, st := range sc.Steps {
		for _, p := range st.Apply {
			kinds[p.Kind] = true
		}
	}
	return kinds
}
