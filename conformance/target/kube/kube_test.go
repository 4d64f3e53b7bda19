package kube

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	dynfake "k8s.io/client-go/dynamic/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/ciliaproject/cilia/conformance/features"
	"github.com/ciliaproject/cilia/conformance/scenario"
	"github.com/ciliaproject/cilia/conformance/target"
	"github.com/ciliaproject/cilia/sim/traffic"
)

// unitScenario exercises namespaces with labels, pinned pods with named
// ports, a service with a named target port, a KNP selecting namespaces by
// name and a pod by address, and a step that relabels, re-adds a pod and
// swaps policies.
const unitScenario = `
apiVersion: conformance.cilia.dev/v1alpha1
kind: Scenario
metadata: {name: kube-unit, features: [policy-knp, policy-l3]}
cluster:
  nodes: [{name: node-1}, {name: node-2}]
  namespaces: [{name: x, labels: {ns: x}}, {name: y}]
  pods:
    - {name: x/a, labels: {pod: a}, node: node-2, ports: [{name: http, port: 80}, {name: dns, port: 53, protocol: UDP}]}
    - {name: y/b, labels: {pod: b}}
  services:
    - {name: x/web, selector: {pod: a}, ports: [{port: 8080, targetPort: http}]}
policies:
  - apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: from-y, namespace: x}
    spec:
      podSelector: {matchLabels: {pod: a}}
      ingress:
        - from:
            - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: "y"}}
            - namespaceSelector:
                matchExpressions: [{key: kubernetes.io/metadata.name, operator: In, values: ["y", z]}]
            - ipBlock: {cidr: 10.244.1.10/32}
            - ipBlock: {cidr: 10.0.0.0/8, except: [10.244.2.10/32]}
probes:
  - {from: y/b, to: x/a, port: http, expect: allow}
  - {from: y/b, to: x/a, port: dns, expect: allow}
  - {from: y/b, to: service:x/web, port: 8080, expect: {verdict: allow, backendIn: [x/a], sourceSeen: client}}
  - {from: y/b, to: x/a, port: 81, expect: deny}
  - {from: y/b, to: x/a, protocol: ICMP, expect: allow}
  - {from: y/b, to: "ip:10.244.2.10", port: 82, expect: allow}
  - {from: y/b, to: x/a, port: http, http: {method: POST, path: /v1, headers: {X-B: "2", X-A: "1"}}, expect: allow}
steps:
  - setLabels: [{pod: y/b, labels: {pod: c}}, {namespace: "y", labels: {team: t}}]
    deletePods: [x/a]
    addPods: [{name: x/a, labels: {pod: a}, node: node-1, ports: [{name: http, port: 80}]}]
    delete: [{kind: NetworkPolicy, name: x/from-y}]
    apply:
      - apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: deny-all, namespace: x}
        spec: {podSelector: {}, policyTypes: [Ingress]}
    probes:
      - {from: y/b, to: x/a, port: http, expect: deny}
`

func parse(t *testing.T, src string) *scenario.Scenario {
	t.Helper()
	sc, err := scenario.Parse("unit.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

func TestNamespaceNames(t *testing.T) {
	t.Parallel()
	n := Names{RunID: "abc123"}
	long := strings.Repeat("n", 63)
	cases := []struct{ in, want string }{
		{"default", "cilia-abc123-default"},
		{"x", "cilia-abc123-x"},
	}
	for _, c := range cases {
		if got := n.Namespace(c.in); got != c.want {
			t.Errorf("Namespace(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	a, b := n.Namespace(long), n.Namespace(long[:62]+"m")
	if len(a) > 63 || len(b) > 63 || a == b || !strings.HasPrefix(a, "cilia-abc123-") {
		t.Errorf("long names: %q (%d), %q (%d): want distinct, prefixed, at most 63", a, len(a), b, len(b))
	}
	if n.Namespace(long) != a {
		t.Errorf("Namespace is not deterministic")
	}
}

func TestPodObject(t *testing.T) {
	t.Parallel()
	sc := parse(t, unitScenario)
	n := Names{RunID: "r1", Scenario: sc.Metadata.Name}
	serve := ServePorts(sc)
	st := sc.InitialState()
	pod, _ := st.Pod("x/a")
	got := n.PodObject(pod, PodSpec{Image: "img:1", Node: "kind-worker", Serve: serve["x/a"]})
	if got.Namespace != "cilia-r1-x" || got.Name != "a" || got.Spec.NodeName != "kind-worker" {
		t.Errorf("pod %s/%s on %q, want cilia-r1-x/a on kind-worker", got.Namespace, got.Name, got.Spec.NodeName)
	}
	wantLabels := map[string]string{"pod": "a", RunLabel: "r1", ScenarioLabel: "kube-unit"}
	if !reflect.DeepEqual(got.Labels, wantLabels) {
		t.Errorf("labels %v, want %v", got.Labels, wantLabels)
	}
	c := got.Spec.Containers[0]
	// 80/TCP (declared, probed, and the service's target), 53/UDP
	// (declared), 81 and 82 (probed; 82 through ip:).
	wantArgs := []string{"serve", "--name", "x/a", "--listen", "udp:53,tcp:80,tcp:81,tcp:82"}
	if c.Image != "img:1" || !reflect.DeepEqual(c.Command, []string{ProbeBinary}) || !reflect.DeepEqual(c.Args, wantArgs) {
		t.Errorf("container %s %v %v, want img:1 %v", c.Image, c.Command, c.Args, wantArgs)
	}
	wantPorts := []corev1.ContainerPort{{Name: "http", ContainerPort: 80, Protocol: corev1.ProtocolTCP}, {Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP}}
	if !reflect.DeepEqual(c.Ports, wantPorts) {
		t.Errorf("ports %v, want %v", c.Ports, wantPorts)
	}
	if rp := c.StartupProbe; rp == nil || rp.Exec == nil ||
		!reflect.DeepEqual(rp.Exec.Command, []string{ProbeBinary, "ready", "--listen", "udp:53,tcp:80,tcp:81,tcp:82"}) {
		t.Errorf("startup probe %+v, want cilia-probe ready on the served ports", rp)
	}
	if got.Spec.TerminationGracePeriodSeconds == nil || *got.Spec.TerminationGracePeriodSeconds != 0 {
		t.Errorf("termination grace period not 0")
	}
	u, err := ToUnstructured(got)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := u.Object["status"]; ok {
		t.Errorf("unstructured pod has a status")
	}
	// A pod nothing probes serves nothing but still runs.
	b, _ := st.Pod("y/b")
	bc := n.PodObject(b, PodSpec{Serve: serve["y/b"]}).Spec.Containers[0]
	if args := bc.Args; args[len(args)-1] != "" || bc.StartupProbe != nil {
		t.Errorf("y/b listens on %q (startup probe %v), want nothing", args[len(args)-1], bc.StartupProbe)
	}
}

func TestNamespaceAndServiceObjects(t *testing.T) {
	t.Parallel()
	sc := parse(t, unitScenario)
	n := Names{RunID: "r1", Scenario: "kube-unit"}
	st := sc.InitialState()
	x, _ := st.Namespace("x")
	ns := n.NamespaceObject(x)
	want := map[string]string{"ns": "x", RunLabel: "r1", ScenarioLabel: "kube-unit"}
	if ns.Name != "cilia-r1-x" || !reflect.DeepEqual(ns.Labels, want) || ns.Annotations[ScenarioNamespaceAnnotation] != "x" {
		t.Errorf("namespace %s %v %v, want cilia-r1-x %v", ns.Name, ns.Labels, ns.Annotations, want)
	}
	web, _ := st.Service("x/web")
	svc := n.ServiceObject(web)
	if svc.Namespace != "cilia-r1-x" || svc.Spec.Type != corev1.ServiceTypeClusterIP || svc.Spec.ClusterIP != "" {
		t.Errorf("service %s type %s clusterIP %q", svc.Namespace, svc.Spec.Type, svc.Spec.ClusterIP)
	}
	if p := svc.Spec.Ports[0]; p.Port != 8080 || p.TargetPort != intstr.FromString("http") || p.Protocol != corev1.ProtocolTCP {
		t.Errorf("service port %+v, want 8080 -> http", p)
	}
	if *svc.Spec.IPFamilyPolicy != corev1.IPFamilyPolicyPreferDualStack {
		t.Errorf("family policy %s, want PreferDualStack (the scenario's service is dual-stack)", *svc.Spec.IPFamilyPolicy)
	}
	if !reflect.DeepEqual(svc.Spec.Selector, map[string]string{"pod": "a"}) {
		t.Errorf("selector %v", svc.Spec.Selector)
	}
	numeric := n.ServiceObject(scenario.Service{Namespace: "x", Name: "n", ClusterIP: netip.MustParseAddr("10.96.0.1"),
		Ports: []scenario.ServicePort{{Port: 53, TargetPort: "5353", Protocol: scenario.UDP}}})
	if p := numeric.Spec.Ports[0]; p.TargetPort != intstr.FromInt32(5353) || *numeric.Spec.IPFamilyPolicy != corev1.IPFamilyPolicySingleStack {
		t.Errorf("numeric target port %+v, policy %s", p, *numeric.Spec.IPFamilyPolicy)
	}
}

func TestRewriteKNP(t *testing.T) {
	t.Parallel()
	sc := parse(t, unitScenario)
	n := Names{RunID: "r1", Scenario: "kube-unit"}
	addrs := NewAddrMap()
	addrs.Add(netip.MustParseAddr("10.244.1.10"), netip.MustParseAddr("10.1.0.7"))
	u, err := n.RewritePolicy(sc.Policies[0], addrs)
	if err != nil {
		t.Fatal(err)
	}
	if u.GetNamespace() != "cilia-r1-x" || u.GetName() != "from-y" || u.GetLabels()[RunLabel] != "r1" || u.GetKind() != "NetworkPolicy" {
		t.Errorf("metadata: %s/%s labels %v kind %s", u.GetNamespace(), u.GetName(), u.GetLabels(), u.GetKind())
	}
	from, _, _ := unstructured.NestedSlice(u.Object, "spec", "ingress")
	peers := from[0].(map[string]any)["from"].([]any)
	ml := peers[0].(map[string]any)["namespaceSelector"].(map[string]any)["matchLabels"].(map[string]any)
	if ml[corev1.LabelMetadataName] != "cilia-r1-y" {
		t.Errorf("matchLabels %v, want the mapped namespace", ml)
	}
	expr := peers[1].(map[string]any)["namespaceSelector"].(map[string]any)["matchExpressions"].([]any)[0].(map[string]any)
	if !reflect.DeepEqual(expr["values"], []any{"cilia-r1-y", "cilia-r1-z"}) {
		t.Errorf("matchExpressions values %v", expr["values"])
	}
	if cidr := peers[2].(map[string]any)["ipBlock"].(map[string]any)["cidr"]; cidr != "10.1.0.7/32" {
		t.Errorf("host cidr %v, want the pod's cluster address 10.1.0.7/32", cidr)
	}
	block := peers[3].(map[string]any)["ipBlock"].(map[string]any)
	if block["cidr"] != "10.0.0.0/8" || !reflect.DeepEqual(block["except"], []any{"10.244.2.10/32"}) {
		t.Errorf("ipBlock %v: a wide CIDR and an unknown host are kept", block)
	}
	// The pod selector's labels are the pods' own: unchanged.
	if sel, _, _ := unstructured.NestedStringMap(u.Object, "spec", "podSelector", "matchLabels"); !reflect.DeepEqual(sel, map[string]string{"pod": "a"}) {
		t.Errorf("podSelector %v", sel)
	}
	// The scenario's object is not modified.
	again, _ := n.RewritePolicy(sc.Policies[0], nil)
	if c, _, _ := unstructured.NestedString(again.Object, "metadata", "namespace"); c != "cilia-r1-x" {
		t.Errorf("second rewrite: namespace %q", c)
	}
}

const ciliumScenario = `
apiVersion: conformance.cilia.dev/v1alpha1
kind: Scenario
metadata: {name: kube-cilium, features: [policy-l3, policy-clusterwide]}
cluster:
  pods:
    - {name: x/a, labels: {pod: a}}
    - {name: y/b, labels: {pod: b}}
policies:
  - apiVersion: cilium.io/v2
    kind: CiliumClusterwideNetworkPolicy
    metadata: {name: ccnp}
    spec:
      endpointSelector: {}
      ingress: [{fromEntities: [cluster]}]
  - apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: cnp, namespace: x}
    spec:
      endpointSelector: {matchLabels: {pod: a}}
      ingress:
        - fromEndpoints:
            - matchLabels: {k8s:io.kubernetes.pod.namespace: "y", pod: b}
            - matchLabels: {io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name: "y"}
      egress:
        - toServices: [{k8sService: {serviceName: web, namespace: "y"}}]
        - toCIDRSet: [{cidr: 10.244.1.11/32}]
probes:
  - {from: y/b, to: x/a, port: 80, expect: allow}
`

func TestRewriteCilium(t *testing.T) {
	t.Parallel()
	sc := parse(t, ciliumScenario)
	n := Names{RunID: "r2", Scenario: "kube-cilium"}
	addrs := NewAddrMap()
	addrs.Add(netip.MustParseAddr("10.244.1.11"), netip.MustParseAddr("10.1.0.9"))
	cnp, err := n.RewritePolicy(sc.Policies[1], addrs)
	if err != nil {
		t.Fatal(err)
	}
	if cnp.GetNamespace() != "cilia-r2-x" || cnp.GetAPIVersion() != "cilium.io/v2" {
		t.Errorf("cnp %s %s", cnp.GetNamespace(), cnp.GetAPIVersion())
	}
	ing, _, _ := unstructured.NestedSlice(cnp.Object, "spec", "ingress")
	eps := ing[0].(map[string]any)["fromEndpoints"].([]any)
	if got := eps[0].(map[string]any)["matchLabels"]; !reflect.DeepEqual(got, map[string]any{"k8s:io.kubernetes.pod.namespace": "cilia-r2-y", "pod": "b"}) {
		t.Errorf("fromEndpoints[0] %v", got)
	}
	if got := eps[1].(map[string]any)["matchLabels"]; !reflect.DeepEqual(got, map[string]any{"io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name": "cilia-r2-y"}) {
		t.Errorf("fromEndpoints[1] %v", got)
	}
	eg, _, _ := unstructured.NestedSlice(cnp.Object, "spec", "egress")
	svc := eg[0].(map[string]any)["toServices"].([]any)[0].(map[string]any)["k8sService"].(map[string]any)
	if svc["namespace"] != "cilia-r2-y" || svc["serviceName"] != "web" {
		t.Errorf("toServices %v", svc)
	}
	if c := eg[1].(map[string]any)["toCIDRSet"].([]any)[0].(map[string]any)["cidr"]; c != "10.1.0.9/32" {
		t.Errorf("toCIDRSet cidr %v", c)
	}
	ccnp, err := n.RewritePolicy(sc.Policies[0], addrs)
	if err != nil {
		t.Fatal(err)
	}
	if ccnp.GetNamespace() != "" || ccnp.GetLabels()[RunLabel] != "r2" {
		t.Errorf("ccnp namespace %q labels %v", ccnp.GetNamespace(), ccnp.GetLabels())
	}
	if sel, _, _ := unstructured.NestedStringMap(ccnp.Object, "spec", "endpointSelector", "matchLabels"); !reflect.DeepEqual(sel, map[string]string{RunLabel: "r2"}) {
		t.Errorf("ccnp endpointSelector %v: want it confined to the run", sel)
	}
	host := parse(t, strings.Replace(ciliumScenario, "endpointSelector: {}", "nodeSelector: {}", 1))
	if _, err := n.RewritePolicy(host.Policies[0], addrs); !errors.Is(err, ErrUnsupported) {
		t.Errorf("host policy: %v, want ErrUnsupported", err)
	}
}

func TestAddrMap(t *testing.T) {
	t.Parallel()
	m := NewAddrMap()
	s, c := netip.MustParseAddr("10.244.1.10"), netip.MustParseAddr("10.1.0.7")
	m.Add(s, c)
	m.Add(netip.MustParseAddr("fd00::1"), netip.Addr{})
	if got, ok := m.Cluster(s); !ok || got != c {
		t.Errorf("Cluster(%s) = %s, %v", s, got, ok)
	}
	if got := m.Scenario(c); got != s {
		t.Errorf("Scenario(%s) = %s", c, got)
	}
	other := netip.MustParseAddr("172.18.0.2")
	if got := m.Scenario(other); got != other {
		t.Errorf("Scenario(%s) = %s, want itself", other, got)
	}
	if _, ok := m.Cluster(netip.MustParseAddr("fd00::1")); ok {
		t.Errorf("an invalid cluster address was recorded")
	}
}

func TestExecURL(t *testing.T) {
	t.Parallel()
	base, _ := url.Parse("https://127.0.0.1:6443/prefix")
	u := ExecURL(base, "cilia-r1-x", "a", "probe", []string{"/cilia-probe", "probe", "--to", "[fd00::1]:80"})
	if u.Path != "/prefix/api/v1/namespaces/cilia-r1-x/pods/a/exec" {
		t.Errorf("path %s", u.Path)
	}
	q := u.Query()
	if !reflect.DeepEqual(q["command"], []string{"/cilia-probe", "probe", "--to", "[fd00::1]:80"}) || q.Get("container") != "probe" ||
		q.Get("stdout") != "true" || q.Get("stderr") != "true" || q.Get("stdin") != "" {
		t.Errorf("query %v", q)
	}
}

func TestConfigFromEnv(t *testing.T) {
	t.Setenv("CILIA_KUBE_IMAGE", "reg/probe:1")
	t.Setenv("CILIA_KUBE_SETTLE", "500ms")
	t.Setenv("CILIA_KUBE_NODES", "w1, w2")
	t.Setenv("CILIA_KUBE_FEATURES", "policy-knp,l7")
	t.Setenv("CILIA_KUBE_POD_TIMEOUT", "")
	cfg, err := ConfigFromEnv("/k/config")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Kubeconfig != "/k/config" || cfg.Image != "reg/probe:1" || cfg.Settle != 500*time.Millisecond ||
		cfg.PodTimeout != DefaultPodTimeout || !reflect.DeepEqual(cfg.Nodes, []string{"w1", "w2"}) {
		t.Errorf("config %+v", cfg)
	}
	if want := features.NewSet(features.PolicyKNP, features.L7HTTP, features.L7Kafka); !reflect.DeepEqual(cfg.Features, want) {
		t.Errorf("features %v, want %v", cfg.Features.Sorted(), want.Sorted())
	}
	t.Setenv("CILIA_KUBE_SETTLE", "soon")
	if _, err := ConfigFromEnv(""); err == nil {
		t.Errorf("a bad duration was accepted")
	}
	t.Setenv("CILIA_KUBE_SETTLE", "")
	t.Setenv("CILIA_KUBE_FEATURES", "policy-nope")
	if _, err := ConfigFromEnv(""); err == nil {
		t.Errorf("an unknown feature was accepted")
	}
}

func TestDefaultFeatures(t *testing.T) {
	t.Parallel()
	fs := NewWithClients(Config{}, nil, nil).Features()
	for _, f := range []features.Feature{features.PolicyKNP, features.PolicyClusterwide, features.IPv6, features.L7HTTP, features.LBClusterIP} {
		if !fs.Has(f) {
			t.Errorf("missing %s", f)
		}
	}
	for _, f := range []features.Feature{features.DropReasons, features.Flows, features.L7Kafka, features.LBNodePort} {
		if fs.Has(f) {
			t.Errorf("declares %s, which it cannot observe or drive", f)
		}
	}
}

// fakeCluster is a fake API server (client-go's fake dynamic client) that
// makes pods Ready with addresses, gives services cluster IPs and lists
// ready endpoints, and an Executor answering probes like cilia-probe in a
// cluster that allows everything except port 81.
type fakeCluster struct {
	dyn *dynfake.FakeDynamicClient
	mu  sync.Mutex
	// next is the last host number given out.
	next int
	// podIPs maps a pod's cluster address to its "ns/name" (cluster
	// names).
	podIPs map[netip.Addr]string
	// podByName maps "ns/name" to the address.
	podByName map[string]netip.Addr
	execs     [][]string
	// neverReady leaves pods pending, their image not pullable.
	neverReady bool
}

var listKinds = map[schema.GroupVersionResource]string{
	gvrNamespace:     "NamespaceList",
	gvrPod:           "PodList",
	gvrService:       "ServiceList",
	gvrNode:          "NodeList",
	gvrEndpointSlice: "EndpointSliceList",
	gvrKNP:           "NetworkPolicyList",
	gvrCNP:           "CiliumNetworkPolicyList",
	gvrCCNP:          "CiliumClusterwideNetworkPolicyList",
}

func node(t *testing.T, name, ip string, taint bool) runtime.Object {
	n := &corev1.Node{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Node"}, ObjectMeta: metav1.ObjectMeta{Name: name},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}}}
	if taint {
		n.Spec.Taints = []corev1.Taint{{Key: "node-role.kubernetes.io/control-plane", Effect: corev1.TaintEffectNoSchedule}}
	}
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(n) // with the status
	if err != nil {
		t.Fatal(err)
	}
	return &unstructured.Unstructured{Object: m}
}

// newFakeCluster returns a cluster of a tainted control plane and two
// workers; cilium says whether the Cilium CRDs exist.
func newFakeCluster(t *testing.T, cilium bool) *fakeCluster {
	f := &fakeCluster{podIPs: map[netip.Addr]string{}, podByName: map[string]netip.Addr{}}
	f.dyn = dynfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), listKinds,
		node(t, "kind-control-plane", "172.18.0.2", true), node(t, "kind-worker2", "172.18.0.4", false), node(t, "kind-worker", "172.18.0.3", false))
	f.dyn.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		u := a.(k8stesting.CreateAction).GetObject().(*unstructured.Unstructured)
		f.mu.Lock()
		f.next++
		ip := netip.AddrFrom4([4]byte{10, 1, 0, byte(f.next)})
		if host, _, _ := unstructured.NestedBool(u.Object, "spec", "hostNetwork"); host {
			// A host-network pod has its node's address.
			node, _, _ := unstructured.NestedString(u.Object, "spec", "nodeName")
			ip = map[string]netip.Addr{"kind-worker": netip.MustParseAddr("172.18.0.3"), "kind-worker2": netip.MustParseAddr("172.18.0.4")}[node]
		}
		f.podIPs[ip] = u.GetNamespace() + "/" + u.GetName()
		f.podByName[u.GetNamespace()+"/"+u.GetName()] = ip
		f.mu.Unlock()
		if f.neverReady {
			u.Object["status"] = map[string]any{"phase": "Pending", "containerStatuses": []any{map[string]any{
				"name": "probe", "state": map[string]any{"waiting": map[string]any{"reason": "ErrImageNeverPull", "message": "not present"}}}}}
			return false, nil, nil
		}
		u.Object["status"] = map[string]any{
			"phase":      "Running",
			"podIPs":     []any{map[string]any{"ip": ip.String()}},
			"conditions": []any{map[string]any{"type": "Ready", "status": "True"}},
		}
		return false, nil, nil
	})
	f.dyn.PrependReactor("create", "services", func(a k8stesting.Action) (bool, runtime.Object, error) {
		u := a.(k8stesting.CreateAction).GetObject().(*unstructured.Unstructured)
		_ = unstructured.SetNestedStringSlice(u.Object, []string{"10.96.7.7"}, "spec", "clusterIPs")
		return false, nil, nil
	})
	f.dyn.PrependReactor("list", "endpointslices", func(a k8stesting.Action) (bool, runtime.Object, error) {
		ep := map[string]any{"addresses": []any{"10.1.0.1"}, "conditions": map[string]any{"ready": true}}
		return true, &unstructured.UnstructuredList{Object: map[string]any{"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSliceList"},
			Items: []unstructured.Unstructured{{Object: map[string]any{"addressType": "IPv4", "endpoints": []any{ep},
				"metadata": map[string]any{"name": "web-1", "labels": map[string]any{"kubernetes.io/service-name": "web"}}}}}}, nil
	})
	if !cilium {
		for _, res := range []string{"ciliumnetworkpolicies", "ciliumclusterwidenetworkpolicies"} {
			f.dyn.PrependReactor("*", res, func(a k8stesting.Action) (bool, runtime.Object, error) {
				return true, nil, apierrors.NewNotFound(schema.GroupResource{Group: "cilium.io", Resource: a.GetResource().Resource}, "")
			})
		}
	}
	return f
}

// Exec implements Executor: the probe reaches the pod or service (whose
// one backend is the pod serving it) unless the port is 81.
func (f *fakeCluster) Exec(_ context.Context, namespace, pod, container string, cmd []string) ([]byte, []byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.execs = append(f.execs, cmd)
	if container != ContainerName || len(cmd) < 2 || cmd[0] != ProbeBinary || cmd[1] != "probe" {
		return nil, []byte("bad command"), fmt.Errorf("command terminated with exit code 2")
	}
	var to string
	for i, a := range cmd {
		if a == "--to" {
			to = cmd[i+1]
		}
	}
	src, ok := f.podByName[namespace+"/"+pod]
	if !ok {
		return nil, nil, fmt.Errorf("pods %q not found", pod)
	}
	ap, err := netip.ParseAddrPort(to)
	if err != nil {
		ap = netip.AddrPortFrom(netip.MustParseAddr(to), 0)
	}
	res := traffic.Result{Outcome: traffic.Allowed, SourceSeen: src}
	switch server, ok := f.podIPs[ap.Addr()]; {
	case ap.Port() == 81:
		res = traffic.Result{Outcome: traffic.Timeout, Detail: "read hello: i/o timeout", Elapsed: 2 * time.Second}
	case ap.Port() == 0: // ICMP: the kernel answers
		res.SourceSeen = netip.Addr{}
	case ok:
		// The server names itself with the scenario's name.
		res.Backend = strings.TrimPrefix(server, "cilia-fake01-")
	case ap.Addr() == netip.MustParseAddr("10.96.7.7"):
		res.Backend = "x/a"
	default:
		res = traffic.Result{Outcome: traffic.Timeout}
	}
	if strings.Contains(strings.Join(cmd, " "), "--proto http") {
		res.HTTPStatus = 200
	}
	return []byte(fmt.Sprintf(`{"outcome":%q,"backend":%q,"sourceSeen":%q,"httpStatus":%d,"elapsedMs":1}`+"\n",
		res.Outcome, res.Backend, addrString(res.SourceSeen), res.HTTPStatus)), nil, nil
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// left returns what is left of a run in the fake cluster: namespaces and
// clusterwide policies with its label.
func (f *fakeCluster) left(t *testing.T, run string) []string {
	t.Helper()
	var out []string
	for _, gvr := range []schema.GroupVersionResource{gvrNamespace, gvrCCNP} {
		list, err := f.dyn.Resource(gvr).List(context.Background(), metav1.ListOptions{LabelSelector: RunLabel + "=" + run})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range list.Items {
			out = append(out, gvr.Resource+"/"+u.GetName())
		}
	}
	return out
}

func newFakeTarget(f *fakeCluster) *Target {
	tg := NewWithClients(Config{RunID: "fake01", Settle: time.Hour, PodTimeout: 5 * time.Second}, f.dyn, f)
	// No long waits in unit tests (a settle of an hour would show).
	tg.sleep = func(ctx context.Context, d time.Duration) error { return sleepCtx(ctx, min(d, 10*time.Millisecond)) }
	return tg
}

// TestFakeClusterRun drives Setup, a step, probes and Close against the
// fake cluster and checks what the API received and what Close leaves.
func TestFakeClusterRun(t *testing.T) {
	t.Parallel()
	f := newFakeCluster(t, false)
	tg := newFakeTarget(f)
	sc := parse(t, unitScenario)
	ctx := context.Background()
	if err := tg.Setup(ctx, sc); err != nil {
		t.Fatalf("setup: %v", err)
	}
	t.Cleanup(func() { tg.Close() })

	// Namespaces, pods (pinned: node-1 -> kind-worker, node-2 -> kind-worker2,
	// the control plane is tainted), the policy.
	get := func(gvr schema.GroupVersionResource, ns, name string) *unstructured.Unstructured {
		t.Helper()
		u, err := tg.resource(gvr, ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("get %s %s/%s: %v", gvr.Resource, ns, name, err)
		}
		return u
	}
	y := get(gvrNamespace, "", "cilia-fake01-y")
	if y.GetLabels()[RunLabel] != "fake01" {
		t.Errorf("namespace y labels %v", y.GetLabels())
	}
	for _, c := range []struct{ ns, name, node string }{{"cilia-fake01-x", "a", "kind-worker2"}, {"cilia-fake01-y", "b", "kind-worker"}} {
		if n, _, _ := unstructured.NestedString(get(gvrPod, c.ns, c.name).Object, "spec", "nodeName"); n != c.node {
			t.Errorf("pod %s/%s on %q, want %s", c.ns, c.name, n, c.node)
		}
	}
	knp := get(gvrKNP, "cilia-fake01-x", "from-y")
	from, _, _ := unstructured.NestedSlice(knp.Object, "spec", "ingress")
	cidr := from[0].(map[string]any)["from"].([]any)[2].(map[string]any)["ipBlock"].(map[string]any)["cidr"]
	if want := f.podByName["cilia-fake01-y/b"].String() + "/32"; cidr != want {
		t.Errorf("ipBlock of y/b's scenario address: %v, want %s", cidr, want)
	}

	wantObs := []target.Observation{
		{Verdict: target.Allowed, Backend: "x/a", SourceSeen: netip.MustParseAddr("10.244.1.10")},
		{Verdict: target.Allowed, Backend: "x/a", SourceSeen: netip.MustParseAddr("10.244.1.10")},
		{Verdict: target.Allowed, Backend: "x/a", SourceSeen: netip.MustParseAddr("10.244.1.10")},
		{Verdict: target.Denied},
		{Verdict: target.Allowed, Backend: "x/a"},
		{Verdict: target.Allowed, Backend: "x/a", SourceSeen: netip.MustParseAddr("10.244.1.10")},
		{Verdict: target.Allowed, Backend: "x/a", SourceSeen: netip.MustParseAddr("10.244.1.10"), HTTPStatus: 200},
	}
	for i, p := range sc.Steps[0].Probes {
		obs, err := tg.Probe(ctx, p)
		if err != nil {
			t.Fatalf("%s: %v", p.ID, err)
		}
		if !reflect.DeepEqual(obs, wantObs[i]) {
			t.Errorf("%s: got %+v, want %+v", p.ID, obs, wantObs[i])
		}
	}
	a := f.podByName["cilia-fake01-x/a"]
	wantCmds := [][]string{
		{ProbeBinary, "probe", "--timeout", "2s", "--proto", "tcp", "--to", a.String() + ":80"},
		{ProbeBinary, "probe", "--timeout", "2s", "--proto", "udp", "--to", a.String() + ":53"},
		{ProbeBinary, "probe", "--timeout", "2s", "--proto", "tcp", "--to", "10.96.7.7:8080"},
		{ProbeBinary, "probe", "--timeout", "2s", "--proto", "tcp", "--to", a.String() + ":81"},
		{ProbeBinary, "probe", "--timeout", "2s", "--proto", "icmp", "--to", a.String()},
		{ProbeBinary, "probe", "--timeout", "2s", "--proto", "tcp", "--to", a.String() + ":82"},
		{ProbeBinary, "probe", "--timeout", "2s", "--proto", "http", "--to", a.String() + ":80", "--method", "POST", "--path", "/v1", "--header", "X-A=1", "--header", "X-B=2"},
	}
	if !reflect.DeepEqual(f.execs, wantCmds) {
		t.Errorf("commands:\n got %q\nwant %q", f.execs, wantCmds)
	}

	// The step: relabel, re-add x/a on node-1, swap the policies.
	if err := tg.Step(ctx, sc.Steps[1]); err != nil {
		t.Fatalf("step: %v", err)
	}
	b := get(gvrPod, "cilia-fake01-y", "b")
	if want := map[string]string{"pod": "c", RunLabel: "fake01", ScenarioLabel: "kube-unit"}; !reflect.DeepEqual(b.GetLabels(), want) {
		t.Errorf("y/b labels %v, want %v", b.GetLabels(), want)
	}
	if want := map[string]string{"team": "t", RunLabel: "fake01", ScenarioLabel: "kube-unit", corev1.LabelMetadataName: "cilia-fake01-y"}; !reflect.DeepEqual(get(gvrNamespace, "", "cilia-fake01-y").GetLabels(), want) {
		t.Errorf("namespace y labels %v, want %v", get(gvrNamespace, "", "cilia-fake01-y").GetLabels(), want)
	}
	if n, _, _ := unstructured.NestedString(get(gvrPod, "cilia-fake01-x", "a").Object, "spec", "nodeName"); n != "kind-worker" {
		t.Errorf("re-added x/a on %q, want kind-worker", n)
	}
	if f.podByName["cilia-fake01-x/a"] == a {
		t.Errorf("re-added x/a kept its old address")
	}
	if _, err := tg.resource(gvrKNP, "cilia-fake01-x").Get(ctx, "from-y", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("deleted policy still there: %v", err)
	}
	get(gvrKNP, "cilia-fake01-x", "deny-all")
	obs, err := tg.Probe(ctx, sc.Steps[1].Probes[0])
	if err != nil || obs.Verdict != target.Allowed || obs.Backend != "x/a" {
		t.Errorf("probe after the step: %+v, %v", obs, err)
	}
	if last := f.execs[len(f.execs)-1]; last[len(last)-1] != f.podByName["cilia-fake01-x/a"].String()+":80" {
		t.Errorf("probe after the step went to %s, not the new x/a", last[len(last)-1])
	}

	if left := f.left(t, "fake01"); len(left) != 2 {
		t.Errorf("before Close: %v, want the two namespaces", left)
	}
	if err := tg.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if left := f.left(t, "fake01"); len(left) != 0 {
		t.Errorf("left after Close: %v", left)
	}
}

// TestCloseAfterFailedSetup fails Setup half-way (the API refuses the
// policy) and checks that Close still removes everything the run made,
// clusterwide policies included, and nothing of another run.
func TestCloseAfterFailedSetup(t *testing.T) {
	t.Parallel()
	f := newFakeCluster(t, true)
	other, err := ToUnstructured(&corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: "cilia-other-x", Labels: map[string]string{RunLabel: "other"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.dyn.Resource(gvrNamespace).Create(context.Background(), other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	refused := errors.New("admission webhook refused it")
	f.dyn.PrependReactor("create", "ciliumnetworkpolicies", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, refused
	})
	tg := newFakeTarget(f)
	sc := parse(t, ciliumScenario)
	// The clusterwide policy comes first: it exists when the namespaced
	// one fails.
	err = tg.Setup(context.Background(), sc)
	if !errors.Is(err, refused) {
		t.Fatalf("setup: %v, want the refusal", err)
	}
	if left := f.left(t, "fake01"); len(left) != 3 {
		t.Fatalf("after the failed setup: %v, want two namespaces and the clusterwide policy", left)
	}
	if err := tg.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if left := f.left(t, "fake01"); len(left) != 0 {
		t.Errorf("left after Close: %v", left)
	}
	if left := f.left(t, "other"); len(left) != 1 {
		t.Errorf("another run's namespace: %v, want it kept", left)
	}
}

// TestCiliumCRDsMissing checks that a scenario with Cilium policies is
// unsupported on a cluster without their CRDs, and creates nothing.
func TestCiliumCRDsMissing(t *testing.T) {
	t.Parallel()
	f := newFakeCluster(t, false)
	tg := newFakeTarget(f)
	err := tg.Setup(context.Background(), parse(t, ciliumScenario))
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "CiliumClusterwideNetworkPolicy") {
		t.Fatalf("setup: %v, want ErrUnsupported naming the missing CRD", err)
	}
	if left := f.left(t, "fake01"); len(left) != 0 {
		t.Errorf("created %v before finding the CRD missing", left)
	}
	if err := tg.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
}

// TestUnsupportedPeers checks the probes a cluster cannot run.
func TestUnsupportedPeers(t *testing.T) {
	t.Parallel()
	const src = `
apiVersion: conformance.cilia.dev/v1alpha1
kind: Scenario
metadata: {name: kube-peers, features: [policy-l3]}
cluster:
  nodes: [{name: node-1}]
  pods: [{name: x/a}, {name: x/b}]
  externals: [{name: internet, ipv4: 203.0.113.7}]
probes:
  - {from: internet, to: x/a, port: 80, expect: allow}
  - {from: x/a, to: internet, port: 80, expect: allow}
  - {from: x/a, to: "node:node-1", port: 80, expect: allow}
  - {from: x/a, to: "ip:198.51.100.1", port: 80, expect: allow}
  - {from: x/a, to: x/b, port: 80, family: ipv6, expect: allow}
  - {from: x/a, to: x/b, port: 9092, kafka: {apiKey: produce}, expect: allow}
`
	f := newFakeCluster(t, false)
	tg := newFakeTarget(f)
	sc := parse(t, src)
	if err := tg.Setup(context.Background(), sc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tg.Close() })
	for _, p := range sc.Steps[0].Probes {
		if _, err := tg.Probe(context.Background(), p); !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: %v, want ErrUnsupported", p.ID, err)
		}
	}
	if len(f.execs) != 0 {
		t.Errorf("ran %q for unsupported probes", f.execs)
	}
}

// TestObservation checks how cilia-probe's outcomes become verdicts.
func TestObservation(t *testing.T) {
	t.Parallel()
	tg := NewWithClients(Config{}, nil, nil)
	tg.addrs.Add(netip.MustParseAddr("10.244.1.10"), netip.MustParseAddr("10.1.0.5"))
	tcp := scenario.Probe{ID: "p", From: scenario.Peer{Kind: scenario.PeerPod, Name: "x/a"}, To: scenario.Peer{Kind: scenario.PeerPod, Name: "x/b"}, Protocol: scenario.TCP}
	icmp := tcp
	icmp.Protocol = scenario.ICMP
	cases := []struct {
		name    string
		p       scenario.Probe
		line    string
		want    target.Observation
		wantErr bool
	}{
		{"allowed", tcp, `{"outcome":"allowed","backend":"x/b","sourceSeen":"10.1.0.5","elapsedMs":1}`,
			target.Observation{Verdict: target.Allowed, Backend: "x/b", SourceSeen: netip.MustParseAddr("10.244.1.10")}, false},
		{"snat to an unknown address", tcp, `{"outcome":"allowed","backend":"x/b","sourceSeen":"172.18.0.3","elapsedMs":1}`,
			target.Observation{Verdict: target.Allowed, Backend: "x/b", SourceSeen: netip.MustParseAddr("172.18.0.3")}, false},
		{"timeout", tcp, `{"outcome":"timeout","elapsedMs":2000,"detail":"i/o timeout"}`, target.Observation{Verdict: target.Denied}, false},
		{"refused", tcp, `{"outcome":"refused","elapsedMs":1}`, target.Observation{Verdict: target.Denied}, false},
		{"unreachable", tcp, `{"outcome":"unreachable","elapsedMs":1}`, target.Observation{Verdict: target.Denied}, false},
		{"http 403", tcp, `{"outcome":"refused","httpStatus":403,"elapsedMs":1}`, target.Observation{Verdict: target.Denied, HTTPStatus: 403}, false},
		{"icmp echo", icmp, `{"outcome":"allowed","elapsedMs":1}`, target.Observation{Verdict: target.Allowed, Backend: "x/b"}, false},
		{"error", tcp, `{"outcome":"error","elapsedMs":0,"detail":"open raw socket: operation not permitted"}`, target.Observation{}, true},
	}
	for _, c := range cases {
		r, err := traffic.ParseResultJSON([]byte(c.line))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		obs, err := tg.observation(c.p, r)
		if (err != nil) != c.wantErr {
			t.Errorf("%s: error %v, want error %v", c.name, err, c.wantErr)
			continue
		}
		if err == nil && !reflect.DeepEqual(obs, c.want) {
			t.Errorf("%s: got %+v, want %+v", c.name, obs, c.want)
		}
	}
}

// TestNodeClient checks that a node: client is a host-network pod on the
// node it maps to, and that the source its server sees maps back to the
// scenario node's address.
func TestNodeClient(t *testing.T) {
	t.Parallel()
	const src = `
apiVersion: conformance.cilia.dev/v1alpha1
kind: Scenario
metadata: {name: kube-node, features: [policy-knp]}
cluster:
  nodes: [{name: node-1}, {name: node-2}, {name: node-3}]
  pods: [{name: x/a, node: node-2}]
probes:
  - {from: "node:node-1", to: x/a, port: 80, expect: {verdict: allow, sourceSeen: client}}
  - {from: "node:node-3", to: x/a, port: 80, expect: {verdict: allow, sourceSeen: client}}
`
	f := newFakeCluster(t, false)
	tg := newFakeTarget(f)
	sc := parse(t, src)
	if err := tg.Setup(context.Background(), sc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tg.Close() })
	// node-1 and node-3 both map to kind-worker (two workers, wrapped
	// around): one client pod.
	pods, err := f.dyn.Resource(gvrPod).Namespace("cilia-fake01--nodes").List(context.Background(), metav1.ListOptions{})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("node client pods: %v, %v; want one", pods, err)
	}
	pod := pods.Items[0]
	host, _, _ := unstructured.NestedBool(pod.Object, "spec", "hostNetwork")
	node, _, _ := unstructured.NestedString(pod.Object, "spec", "nodeName")
	if !host || node != "kind-worker" || pod.GetLabels()[RunLabel] != "fake01" {
		t.Errorf("node client: hostNetwork %v on %q labels %v", host, node, pod.GetLabels())
	}
	for i, want := range []string{"192.168.0.11", "192.168.0.13"} {
		p := sc.Steps[0].Probes[i]
		obs, err := tg.Probe(context.Background(), p)
		if err != nil {
			t.Fatalf("%s: %v", p.ID, err)
		}
		if obs.Verdict != target.Allowed || obs.SourceSeen != netip.MustParseAddr(want) || obs.Backend != "x/a" {
			t.Errorf("%s: %+v, want allowed from %s (the scenario node's address)", p.ID, obs, want)
		}
	}
	if got := f.execs[0]; !reflect.DeepEqual(got[:6], []string{ProbeBinary, "probe", "--timeout", "2s", "--from", "172.18.0.3"}) {
		t.Errorf("node client command %q: want it bound to the node's address", got)
	}
	if err := tg.Close(); err != nil {
		t.Fatal(err)
	}
	if left := f.left(t, "fake01"); len(left) != 0 {
		t.Errorf("left after Close: %v", left)
	}
}

// TestPodNeverReady checks that Setup gives up at once on a pod whose
// image cannot be pulled, naming the image, and that Close still cleans up.
func TestPodNeverReady(t *testing.T) {
	t.Parallel()
	f := newFakeCluster(t, false)
	f.neverReady = true
	tg := newFakeTarget(f)
	tg.cfg.PodTimeout = time.Hour
	start := time.Now()
	err := tg.Setup(context.Background(), parse(t, unitScenario))
	if err == nil || !strings.Contains(err.Error(), "ErrImageNeverPull") || !strings.Contains(err.Error(), "cilia-probe:dev") {
		t.Fatalf("setup: %v, want the pull error and the image", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("gave up after %v", d)
	}
	if err := tg.Close(); err != nil {
		t.Fatal(err)
	}
	if left := f.left(t, "fake01"); len(left) != 0 {
		t.Errorf("left after Close: %v", left)
	}
}

// TestFeaturesIPv6 checks that ipv6 is declared only for a cluster with
// IPv6.
func TestFeaturesIPv6(t *testing.T) {
	t.Parallel()
	f := newFakeCluster(t, false)
	if newFakeTarget(f).Features().Has(features.IPv6) {
		t.Errorf("ipv6 declared on an IPv4-only cluster")
	}
	n := &corev1.Node{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Node"}, ObjectMeta: metav1.ObjectMeta{Name: "dual"},
		Spec: corev1.NodeSpec{PodCIDRs: []string{"10.244.0.0/24", "fd00:10:244::/64"}}}
	u, err := ToUnstructured(n)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.dyn.Resource(gvrNode).Create(context.Background(), u, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	fs := newFakeTarget(f).Features()
	if !fs.Has(features.IPv6) || !fs.Has(features.PolicyKNP) {
		t.Errorf("dual-stack cluster: %v, want ipv6 and the policy profile", fs.Sorted())
	}
	// Explicit features win.
	tg := NewWithClients(Config{Features: features.NewSet(features.PolicyKNP)}, f.dyn, f)
	if got := tg.Features(); !reflect.DeepEqual(got, features.NewSet(features.PolicyKNP)) {
		t.Errorf("configured features: %v", got.Sorted())
	}
}
