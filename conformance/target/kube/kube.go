// Package kube is the conformance target of real clusters: it drives any
// Kubernetes cluster from a kubeconfig (kind in CI, or a cluster running
// another CNI) through the API, and probes with real traffic between pods
// running the probe image (cmd/cilia-probe, `make probe-image`).
//
// Selecting it: `-target kube` (kubeconfig from $KUBECONFIG, else
// ~/.kube/config) or `-target kube:/path/to/kubeconfig`. The rest comes
// from the environment (see ConfigFromEnv): CILIA_KUBE_IMAGE,
// CILIA_KUBE_SETTLE, CILIA_KUBE_POD_TIMEOUT, CILIA_KUBE_PROBE_TIMEOUT,
// CILIA_KUBE_NODES, CILIA_KUBE_FEATURES, CILIA_KUBE_RUN_ID.
//
// Setup creates, for each scenario namespace, a namespace
// "cilia-<run>-<ns>" with the scenario's labels; a pod per scenario pod,
// with its labels, its declared ports as containerPorts (so named ports
// resolve), pinned to a node (the scenario's nodes map in order onto the
// cluster's schedulable nodes, sorted by name, wrapping around when the
// cluster has fewer), running `cilia-probe serve` on every port a probe of
// the scenario sends to it; the services (ClusterIP, cluster-assigned
// IPs); and the policies: NetworkPolicy always, CiliumNetworkPolicy and
// CiliumClusterwideNetworkPolicy when their CRDs exist (a scenario using
// one on a cluster without it fails Setup with ErrUnsupported). Policies
// are rewritten for the cluster (RewritePolicy: namespace names, host
// CIDRs, clusterwide policies confined to the run). Everything carries the
// label cilia.dev/run=<run>: Close deletes the run's namespaces (and with
// them everything in them) and clusterwide policies, whatever happened
// before.
//
// Settling: the API has no "policy programmed" signal that holds for
// every CNI, so after a step that changes policies, labels or pods the
// target waits a fixed time (Settle, 2s by default); pods are waited for
// until Ready (with their IPs), deleted pods until gone, and services
// until their EndpointSlices list every backend as ready.
//
// A probe is `cilia-probe probe` exec'd in the client pod (client-go
// remotecommand, WebSocket with a fallback to SPDY): its JSON line gives
// the outcome (allowed → Allowed; refused, timeout, unreachable → Denied),
// the HTTP status, the server's name (Backend) and the source it saw
// (SourceSeen, mapped back to the scenario's addresses). A node: client is
// a hostNetwork pod on the node it maps to (in "cilia-<run>--nodes").
// Peers a cluster cannot have (externals, node: servers, ip: peers that
// are no pod's or service's address, Kafka requests) make the probe fail
// with ErrUnsupported.
//
// Features: the target declares what it can drive (DefaultFeatures: the
// policy profile, l7-http, lb-clusterip; ipv6 only when the cluster's
// nodes have IPv6), or CILIA_KUBE_FEATURES. What the cluster's CNI
// supports is for the run to say with -features (FEATURES=), like Gateway
// API's --supported-features. Drop reasons and flows are not observable:
// drop-reasons and flows are never declared.
package kube

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ciliaproject/cilia/conformance/features"
	"github.com/ciliaproject/cilia/conformance/scenario"
	"github.com/ciliaproject/cilia/conformance/target"
	"github.com/ciliaproject/cilia/sim/traffic"
)

// Name is the target's name.
const Name = "kube"

// ErrUnsupported marks what this cluster (or the kube target) cannot do:
// a policy kind whose CRD is missing, a peer the cluster cannot have. The
// suite skips the specs it affects as unsupported (target.ErrUnsupported).
var ErrUnsupported = fmt.Errorf("%w: on this cluster", target.ErrUnsupported)

// Defaults of Config.
const (
	DefaultImage        = "cilia-probe:dev"
	DefaultSettle       = 2 * time.Second
	DefaultPodTimeout   = 3 * time.Minute
	DefaultProbeTimeout = 2 * time.Second
)

// Resources the target uses.
var (
	gvrNamespace     = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	gvrPod           = schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	gvrService       = schema.GroupVersionResource{Version: "v1", Resource: "services"}
	gvrNode          = schema.GroupVersionResource{Version: "v1", Resource: "nodes"}
	gvrEndpointSlice = schema.GroupVersionResource{Group: "discovery.k8s.io", Version: "v1", Resource: "endpointslices"}
	gvrKNP           = schema.GroupVersionResource{Group: "networking.k8s.io", Version: "v1", Resource: "networkpolicies"}
	gvrCNP           = schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumnetworkpolicies"}
	gvrCCNP          = schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumclusterwidenetworkpolicies"}
)

// policyGVR returns the resource of a policy kind.
func policyGVR(kind string) (schema.GroupVersionResource, bool) {
	switch kind {
	case KindNetworkPolicy:
		return gvrKNP, true
	case KindCNP:
		return gvrCNP, true
	case KindCCNP:
		return gvrCCNP, true
	}
	return schema.GroupVersionResource{}, false
}

func init() {
	target.Register(Name, func(o target.Options) (target.Target, error) {
		cfg, err := ConfigFromEnv(o.Arg)
		if err != nil {
			return nil, fmt.Errorf("target kube: %w", err)
		}
		return New(cfg)
	})
}

// Config configures the target.
type Config struct {
	// Kubeconfig is the kubeconfig file; empty: $KUBECONFIG, else
	// ~/.kube/config.
	Kubeconfig string
	// Image is the probe image (cilia-probe).
	Image string
	// Settle is how long to wait after a change of policies, labels or
	// pods before probing.
	Settle time.Duration
	// PodTimeout bounds the waits for pods to be Ready (or gone) and for
	// services' endpoints.
	PodTimeout time.Duration
	// ProbeTimeout is cilia-probe's --timeout: how long a probe waits for
	// an answer (a dropped packet shows as a timeout after it).
	ProbeTimeout time.Duration
	// Nodes are the cluster nodes the scenario's nodes map onto, in
	// order; empty: the schedulable nodes, sorted by name.
	Nodes []string
	// Features are what the target declares; nil: DefaultFeatures.
	Features features.Set
	// RunID labels everything the target creates; empty: random.
	RunID string
}

// DefaultFeatures are the features the target can drive: the policy
// profile, HTTP requests and ClusterIP services. Whether the cluster's
// CNI supports them is the run's -features (FEATURES=) to declare, as
// Gateway API's --supported-features.
func DefaultFeatures() features.Set {
	fs, _ := features.ProfileFeatures("policy")
	return features.NewSet(append(fs, features.L7HTTP, features.LBClusterIP)...)
}

// ConfigFromEnv returns the configuration of target selector argument arg
// (the kubeconfig path, may be empty) and the environment:
//
//	CILIA_KUBE_IMAGE          probe image (default cilia-probe:dev)
//	CILIA_KUBE_SETTLE         wait after a change (default 2s)
//	CILIA_KUBE_POD_TIMEOUT    wait for pods and endpoints (default 3m)
//	CILIA_KUBE_PROBE_TIMEOUT  a probe's answer timeout (default 2s)
//	CILIA_KUBE_NODES          cluster nodes to use, comma-separated
//	CILIA_KUBE_FEATURES       features/profiles the target declares
//	CILIA_KUBE_RUN_ID         run ID (default random)
func ConfigFromEnv(arg string) (Config, error) {
	cfg := Config{Kubeconfig: arg, Image: DefaultImage, Settle: DefaultSettle, PodTimeout: DefaultPodTimeout,
		ProbeTimeout: DefaultProbeTimeout, RunID: os.Getenv("CILIA_KUBE_RUN_ID")}
	if v := os.Getenv("CILIA_KUBE_IMAGE"); v != "" {
		cfg.Image = v
	}
	for _, d := range []struct {
		env string
		dst *time.Duration
	}{{"CILIA_KUBE_SETTLE", &cfg.Settle}, {"CILIA_KUBE_POD_TIMEOUT", &cfg.PodTimeout}, {"CILIA_KUBE_PROBE_TIMEOUT", &cfg.ProbeTimeout}} {
		if v := os.Getenv(d.env); v != "" {
			t, err := time.ParseDuration(v)
			if err != nil || t < 0 {
				return cfg, fmt.Errorf("read config: %s=%q: want a duration", d.env, v)
			}
			*d.dst = t
		}
	}
	if v := os.Getenv("CILIA_KUBE_NODES"); v != "" {
		for _, n := range strings.Split(v, ",") {
			if n = strings.TrimSpace(n); n != "" {
				cfg.Nodes = append(cfg.Nodes, n)
			}
		}
	}
	if v := os.Getenv("CILIA_KUBE_FEATURES"); v != "" {
		fs, err := features.Parse(v)
		if err != nil {
			return cfg, fmt.Errorf("read config: CILIA_KUBE_FEATURES: %w", err)
		}
		cfg.Features = fs
	}
	return cfg, nil
}

// Executor runs a command in a pod's container and returns its output.
type Executor interface {
	Exec(ctx context.Context, namespace, pod, container string, cmd []string) (stdout, stderr []byte, err error)
}

// Target is the kube target.
type Target struct {
	cfg   Config
	dyn   dynamic.Interface
	exec  Executor
	names Names
	sc    *scenario.Scenario
	// created: something may exist in the cluster (Close deletes).
	created bool
	// nodes maps scenario node names to cluster node names.
	nodes map[string]string
	addrs *AddrMap
	// pods holds the cluster addresses of the scenario's pods.
	pods map[string]podAddrs
	// services holds the cluster IPs of the scenario's services.
	services map[string]podAddrs
	serve    map[string][]Listen
	// nodeClients maps scenario nodes to the name of their client pod
	// (NodePodObject) in the nodes namespace.
	nodeClients map[string]string
	// sleep waits (replaced in tests).
	sleep func(context.Context, time.Duration) error
}

// podAddrs are an object's cluster addresses by family.
type podAddrs struct{ v4, v6 netip.Addr }

func (a podAddrs) of(f scenario.Family) netip.Addr {
	if f == scenario.IPv6 {
		return a.v6
	}
	return a.v4
}

// New returns a target for the cluster of cfg's kubeconfig. It reads the
// kubeconfig but does not contact the cluster.
func New(cfg Config) (*Target, error) {
	rc, err := restConfig(cfg.Kubeconfig)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("new dynamic client: %w", err)
	}
	return NewWithClients(cfg, dyn, &restExecutor{cfg: rc}), nil
}

// NewWithClients returns a target using the given clients (tests use
// fakes).
func NewWithClients(cfg Config, dyn dynamic.Interface, exec Executor) *Target {
	if cfg.Image == "" {
		cfg.Image = DefaultImage
	}
	if cfg.ProbeTimeout == 0 {
		cfg.ProbeTimeout = DefaultProbeTimeout
	}
	if cfg.PodTimeout == 0 {
		cfg.PodTimeout = DefaultPodTimeout
	}
	if cfg.RunID == "" {
		cfg.RunID = newRunID()
	}
	return &Target{cfg: cfg, dyn: dyn, exec: exec, sleep: sleepCtx, addrs: NewAddrMap(),
		pods: map[string]podAddrs{}, services: map[string]podAddrs{}, nodes: map[string]string{}, nodeClients: map[string]string{}}
}

// restConfig loads a kubeconfig: path, else the default rules ($KUBECONFIG,
// ~/.kube/config).
func restConfig(path string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if path != "" {
		rules.ExplicitPath = path
	} else if os.Getenv("KUBECONFIG") == "" {
		if home, err := os.UserHomeDir(); err == nil {
			if _, err := os.Stat(filepath.Join(home, ".kube", "config")); err != nil {
				return nil, fmt.Errorf("load kubeconfig: no kube:PATH, no $KUBECONFIG and no %s", filepath.Join(home, ".kube", "config"))
			}
		}
	}
	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, nil).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig: %w", err)
	}
	rc.QPS, rc.Burst = 50, 100
	return rc, nil
}

// newRunID returns 6 random lowercase letters and digits.
func newRunID() string {
	const chars = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = chars[int(b[i])%len(chars)]
	}
	return string(b)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Name implements target.Target.
func (t *Target) Name() string { return Name }

// RunID returns the ID everything the target creates is labelled with.
func (t *Target) RunID() string { return t.cfg.RunID }

// Features implements target.Target: Config.Features when set, else
// DefaultFeatures, without ipv6 when the cluster's nodes have no IPv6
// (neither an IPv6 pod CIDR nor an IPv6 internal address; an unreachable
// cluster keeps it, and fails at Setup).
func (t *Target) Features() features.Set {
	if t.cfg.Features != nil {
		return t.cfg.Features
	}
	fs := DefaultFeatures()
	if t.dyn == nil {
		return fs
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if v6, err := t.clusterHasIPv6(ctx); err == nil && !v6 {
		delete(fs, features.IPv6)
	}
	return fs
}

// clusterHasIPv6 reports whether some node has an IPv6 pod CIDR or
// internal address.
func (t *Target) clusterHasIPv6(ctx context.Context) (bool, error) {
	list, err := t.dyn.Resource(gvrNode).List(ctx, metav1.ListOptions{})
	if err != nil {
		return false, fmt.Errorf("list nodes: %w", err)
	}
	for _, u := range list.Items {
		var n corev1.Node
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &n); err != nil {
			return false, fmt.Errorf("read node %s: %w", u.GetName(), err)
		}
		for _, c := range n.Spec.PodCIDRs {
			if p, err := netip.ParsePrefix(c); err == nil && p.Addr().Is6() {
				return true, nil
			}
		}
		for _, a := range n.Status.Addresses {
			if ip, err := netip.ParseAddr(a.Address); err == nil && a.Type == corev1.NodeInternalIP && ip.Is6() {
				return true, nil
			}
		}
	}
	return false, nil
}

// Setup implements target.Target.
func (t *Target) Setup(ctx context.Context, sc *scenario.Scenario) error {
	t.sc = sc
	t.names = Names{RunID: t.cfg.RunID, Scenario: sc.Metadata.Name}
	if err := t.checkPolicyKinds(ctx, sc); err != nil {
		return err
	}
	state := sc.InitialState()
	if err := t.mapNodes(ctx, state.Nodes); err != nil {
		return err
	}
	t.serve = ServePorts(sc)
	t.created = true
	for _, ns := range state.Namespaces {
		if err := t.createNamespace(ctx, ns); err != nil {
			return err
		}
	}
	if err := t.addPods(ctx, state.Pods); err != nil {
		return err
	}
	if err := t.addNodeClients(ctx, sc); err != nil {
		return err
	}
	for _, svc := range state.Services {
		if err := t.createService(ctx, svc); err != nil {
			return err
		}
	}
	if err := t.waitEndpoints(ctx, state); err != nil {
		return err
	}
	for _, p := range state.Policies {
		if err := t.applyPolicy(ctx, p); err != nil {
			return err
		}
	}
	if len(state.Policies) > 0 {
		return t.sleep(ctx, t.cfg.Settle)
	}
	return nil
}

// checkPolicyKinds fails with ErrUnsupported when the scenario uses a
// Cilium policy kind whose CRD the cluster lacks.
func (t *Target) checkPolicyKinds(ctx context.Context, sc *scenario.Scenario) error {
	kinds := PolicyKinds(sc)
	var names []string
	for k := range kinds {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, kind := range names {
		gvr, ok := policyGVR(kind)
		if !ok {
			return fmt.Errorf("setup: policy kind %s: %w", kind, ErrUnsupported)
		}
		if kind == KindNetworkPolicy {
			continue
		}
		_, err := t.dyn.Resource(gvr).List(ctx, metav1.ListOptions{Limit: 1})
		switch {
		case apierrors.IsNotFound(err):
			return fmt.Errorf("setup: the cluster has no %s CRD (%s): %w", kind, gvr.GroupResource(), ErrUnsupported)
		case err != nil:
			return fmt.Errorf("setup: check the %s CRD: %w", kind, err)
		}
	}
	return nil
}

// mapNodes maps the scenario's nodes onto the cluster's, in order, and
// records their addresses.
func (t *Target) mapNodes(ctx context.Context, scNodes []scenario.Node) error {
	list, err := t.dyn.Resource(gvrNode).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("setup: list nodes: %w", err)
	}
	var all, schedulable []corev1.Node
	for _, u := range list.Items {
		var n corev1.Node
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &n); err != nil {
			return fmt.Errorf("setup: read node %s: %w", u.GetName(), err)
		}
		all = append(all, n)
		if isSchedulable(n) {
			schedulable = append(schedulable, n)
		}
	}
	use := schedulable
	if len(t.cfg.Nodes) > 0 {
		use = nil
		for _, name := range t.cfg.Nodes {
			found := false
			for _, n := range all {
				if n.Name == name {
					use, found = append(use, n), true
				}
			}
			if !found {
				return fmt.Errorf("setup: CILIA_KUBE_NODES: no node %q in the cluster", name)
			}
		}
	}
	if len(use) == 0 {
		use = all
	}
	if len(use) == 0 {
		return errors.New("setup: the cluster has no nodes")
	}
	if len(t.cfg.Nodes) == 0 {
		sort.Slice(use, func(i, j int) bool { return use[i].Name < use[j].Name })
	}
	for i, sn := range scNodes {
		n := use[i%len(use)]
		t.nodes[sn.Name] = n.Name
		for _, a := range n.Status.Addresses {
			if a.Type != corev1.NodeInternalIP {
				continue
			}
			ip, err := netip.ParseAddr(a.Address)
			if err != nil {
				continue
			}
			if ip.Is4() {
				t.addrs.Add(sn.IPv4, ip)
			} else {
				t.addrs.Add(sn.IPv6, ip)
			}
		}
	}
	return nil
}

// isSchedulable reports whether pods without tolerations would go to n.
func isSchedulable(n corev1.Node) bool {
	if n.Spec.Unschedulable {
		return false
	}
	for _, taint := range n.Spec.Taints {
		if taint.Effect == corev1.TaintEffectNoSchedule || taint.Effect == corev1.TaintEffectNoExecute {
			return false
		}
	}
	return true
}

// create creates obj.
func (t *Target) create(ctx context.Context, gvr schema.GroupVersionResource, obj runtime.Object) error {
	u, err := ToUnstructured(obj)
	if err != nil {
		return err
	}
	var ri dynamic.ResourceInterface = t.dyn.Resource(gvr)
	if ns := u.GetNamespace(); ns != "" {
		ri = t.dyn.Resource(gvr).Namespace(ns)
	}
	if _, err := ri.Create(ctx, u, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create %s %s: %w", gvr.Resource, key(u), err)
	}
	return nil
}

func key(u *unstructured.Unstructured) string {
	if ns := u.GetNamespace(); ns != "" {
		return ns + "/" + u.GetName()
	}
	return u.GetName()
}

func (t *Target) createNamespace(ctx context.Context, ns scenario.Namespace) error {
	return t.create(ctx, gvrNamespace, t.names.NamespaceObject(ns))
}

func (t *Target) createService(ctx context.Context, svc scenario.Service) error {
	if err := t.create(ctx, gvrService, t.names.ServiceObject(svc)); err != nil {
		return err
	}
	u, err := t.dyn.Resource(gvrService).Namespace(t.names.Namespace(svc.Namespace)).Get(ctx, svc.Name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get service %s: %w", svc.Key(), err)
	}
	ips, _, _ := unstructured.NestedStringSlice(u.Object, "spec", "clusterIPs")
	var a podAddrs
	for _, s := range ips {
		if ip, err := netip.ParseAddr(s); err == nil {
			if ip.Is4() {
				a.v4 = ip
			} else {
				a.v6 = ip
			}
		}
	}
	t.services[svc.Key()] = a
	t.addrs.Add(svc.ClusterIP, a.v4)
	t.addrs.Add(svc.ClusterIPv6, a.v6)
	return nil
}

// addPods creates pods and waits until they are Ready.
func (t *Target) addPods(ctx context.Context, pods []scenario.Pod) error {
	for _, p := range pods {
		spec := PodSpec{Image: t.cfg.Image, Node: t.nodes[p.Node], Serve: t.serve[p.Key()]}
		if err := t.create(ctx, gvrPod, t.names.PodObject(p, spec)); err != nil {
			return err
		}
	}
	for _, p := range pods {
		if err := t.waitReady(ctx, p); err != nil {
			return err
		}
	}
	return nil
}

// addNodeClients creates a client pod in the host network of every
// cluster node a probe of the scenario sends from (a node: client).
func (t *Target) addNodeClients(ctx context.Context, sc *scenario.Scenario) error {
	var byCluster = map[string]string{}
	var pods []scenario.Pod
	for _, st := range sc.Steps {
		for _, p := range st.Probes {
			if p.From.Kind != scenario.PeerNode || t.nodeClients[p.From.Name] != "" {
				continue
			}
			cn, ok := t.nodes[p.From.Name]
			if !ok {
				return fmt.Errorf("setup: node %s: not mapped to a cluster node", p.From.Name)
			}
			name, ok := byCluster[cn]
			if !ok {
				name = fmt.Sprintf("node-%d", len(byCluster)+1)
				byCluster[cn] = name
				if len(byCluster) == 1 {
					if err := t.createNamespace(ctx, scenario.Namespace{Name: nodesNamespace}); err != nil {
						return err
					}
				}
				if err := t.create(ctx, gvrPod, t.names.NodePodObject(name, cn, t.cfg.Image)); err != nil {
					return err
				}
				pods = append(pods, scenario.Pod{Namespace: nodesNamespace, Name: name})
			}
			t.nodeClients[p.From.Name] = name
		}
	}
	for _, p := range pods {
		if err := t.waitReady(ctx, p); err != nil {
			return err
		}
	}
	return nil
}

// waitReady waits until pod p is Ready and records its addresses.
func (t *Target) waitReady(ctx context.Context, p scenario.Pod) error {
	ctx, cancel := context.WithTimeout(ctx, t.cfg.PodTimeout)
	defer cancel()
	ns := t.names.Namespace(p.Namespace)
	var last string
	for {
		u, err := t.dyn.Resource(gvrPod).Namespace(ns).Get(ctx, p.Name, metav1.GetOptions{})
		if err == nil {
			var pod corev1.Pod
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &pod); err != nil {
				return fmt.Errorf("read pod %s: %w", p.Key(), err)
			}
			a, ok, why := podReady(pod)
			if ok {
				t.pods[p.Key()] = a
				t.addrs.Add(p.IPv4, a.v4)
				t.addrs.Add(p.IPv6, a.v6)
				return nil
			}
			if hopeless(pod) {
				return fmt.Errorf("pod %s (%s/%s) cannot start: %s (is the probe image %s in the cluster? make probe-image, then kind load docker-image %s)",
					p.Key(), ns, p.Name, why, t.cfg.Image, t.cfg.Image)
			}
			last = why
		} else {
			last = err.Error()
		}
		if err := t.sleep(ctx, 250*time.Millisecond); err != nil {
			return fmt.Errorf("wait for pod %s (%s/%s) to be ready: %w (last: %s)", p.Key(), ns, p.Name, err, last)
		}
	}
}

// podReady returns the addresses of a Ready pod, or why it is not ready.
func podReady(pod corev1.Pod) (podAddrs, bool, string) {
	var a podAddrs
	for _, ip := range pod.Status.PodIPs {
		if addr, err := netip.ParseAddr(ip.IP); err == nil {
			if addr.Is4() {
				a.v4 = addr
			} else {
				a.v6 = addr
			}
		}
	}
	if pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded {
		return a, false, fmt.Sprintf("phase %s", pod.Status.Phase)
	}
	ready := false
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			ready = true
		}
	}
	if !ready {
		why := "phase " + string(pod.Status.Phase)
		for _, cs := range pod.Status.ContainerStatuses {
			if w := cs.State.Waiting; w != nil {
				why += fmt.Sprintf(", container %s waiting: %s %s", cs.Name, w.Reason, w.Message)
			}
		}
		return a, false, why
	}
	if !a.v4.IsValid() && !a.v6.IsValid() {
		return a, false, "ready but no pod IP"
	}
	return a, true, ""
}

// hopeless reports whether a pod is stuck in a state that waiting does
// not end: its image cannot be pulled, or its container keeps crashing.
func hopeless(pod corev1.Pod) bool {
	for _, cs := range pod.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil {
			switch w.Reason {
			case "ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName", "CrashLoopBackOff":
				return true
			}
		}
	}
	return pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded
}

// waitEndpoints waits until every service's EndpointSlices list each of
// its backends as ready (the cluster's own services plumbing is then in
// place; whether the datapath follows is the settle time's business).
func (t *Target) waitEndpoints(ctx context.Context, state *scenario.State) error {
	if len(state.Services) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, t.cfg.PodTimeout)
	defer cancel()
	for _, svc := range state.Services {
		// Kubernetes lists a backend only if it has the target port.
		want := 0
		for _, b := range state.Backends(svc) {
			for _, sp := range svc.Ports {
				if _, ok := targetPort(b, sp); ok {
					want++
					break
				}
			}
		}
		ns := t.names.Namespace(svc.Namespace)
		for {
			list, err := t.dyn.Resource(gvrEndpointSlice).Namespace(ns).List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=" + svc.Name})
			got := 0
			if err == nil {
				got = readyEndpoints(list)
			}
			if got >= want {
				break
			}
			if err := t.sleep(ctx, 250*time.Millisecond); err != nil {
				return fmt.Errorf("wait for the endpoints of service %s: %d of %d ready: %w", svc.Key(), got, want, err)
			}
		}
	}
	return nil
}

// readyEndpoints counts the ready endpoints of the largest address family
// in list.
func readyEndpoints(list *unstructured.UnstructuredList) int {
	byFamily := map[string]int{}
	for _, u := range list.Items {
		fam, _, _ := unstructured.NestedString(u.Object, "addressType")
		eps, _, _ := unstructured.NestedSlice(u.Object, "endpoints")
		for _, e := range eps {
			m, _ := e.(map[string]any)
			if ready, found, _ := unstructured.NestedBool(m, "conditions", "ready"); ready || !found {
				byFamily[fam]++
			}
		}
	}
	best := 0
	for _, n := range byFamily {
		best = max(best, n)
	}
	return best
}

// applyPolicy creates or replaces a policy.
func (t *Target) applyPolicy(ctx context.Context, p scenario.Object) error {
	gvr, ok := policyGVR(p.Kind)
	if !ok {
		return fmt.Errorf("apply %s %s: %w", p.Kind, p.Name, ErrUnsupported)
	}
	u, err := t.names.RewritePolicy(p, t.addrs)
	if err != nil {
		return err
	}
	ri := t.resource(gvr, u.GetNamespace())
	cur, err := ri.Get(ctx, u.GetName(), metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		if _, err := ri.Create(ctx, u, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create %s %s: %w", p.Kind, key(u), err)
		}
	case err != nil:
		return fmt.Errorf("get %s %s: %w", p.Kind, key(u), err)
	default:
		u.SetResourceVersion(cur.GetResourceVersion())
		if _, err := ri.Update(ctx, u, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("update %s %s: %w", p.Kind, key(u), err)
		}
	}
	return nil
}

func (t *Target) resource(gvr schema.GroupVersionResource, ns string) dynamic.ResourceInterface {
	if ns == "" {
		return t.dyn.Resource(gvr)
	}
	return t.dyn.Resource(gvr).Namespace(ns)
}

// Step implements target.Target: the mutations in the scenario's order
// (AddNamespaces, DeletePods, AddPods, SetLabels, Delete, Apply), then the
// settle time.
func (t *Target) Step(ctx context.Context, st scenario.Step) error {
	if t.sc == nil {
		return errors.New("step: no scenario (Setup failed)")
	}
	for _, ns := range st.AddNamespaces {
		if err := t.createNamespace(ctx, ns); err != nil {
			return err
		}
	}
	for _, k := range st.DeletePods {
		if err := t.deletePod(ctx, k); err != nil {
			return err
		}
	}
	if err := t.addPods(ctx, st.AddPods); err != nil {
		return err
	}
	for _, lc := range st.SetLabels {
		if err := t.setLabels(ctx, lc); err != nil {
			return err
		}
	}
	for _, ref := range st.Delete {
		gvr, ok := policyGVR(ref.Kind)
		if !ok {
			return fmt.Errorf("delete %s %s: %w", ref.Kind, ref.Name, ErrUnsupported)
		}
		ns := ""
		if ref.Kind != KindCCNP {
			ns = t.names.Namespace(ref.Namespace)
		}
		if err := t.resource(gvr, ns).Delete(ctx, ref.Name, metav1.DeleteOptions{}); err != nil {
			return fmt.Errorf("delete %s %s/%s: %w", ref.Kind, ns, ref.Name, err)
		}
	}
	for _, p := range st.Apply {
		if err := t.applyPolicy(ctx, p); err != nil {
			return err
		}
	}
	if state := t.sc.StateAt(st.Index); state != nil && len(st.AddPods)+len(st.SetLabels) > 0 {
		if err := t.waitEndpoints(ctx, state); err != nil {
			return err
		}
	}
	if len(st.DeletePods)+len(st.AddPods)+len(st.SetLabels)+len(st.Delete)+len(st.Apply) > 0 {
		return t.sleep(ctx, t.cfg.Settle)
	}
	return nil
}

// deletePod deletes a pod at once and waits until it is gone (a step may
// add one of the same name).
func (t *Target) deletePod(ctx context.Context, podKey string) error {
	ns, name, _ := strings.Cut(podKey, "/")
	ri := t.dyn.Resource(gvrPod).Namespace(t.names.Namespace(ns))
	zero := int64(0)
	if err := ri.Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete pod %s: %w", podKey, err)
	}
	delete(t.pods, podKey)
	wctx, cancel := context.WithTimeout(ctx, t.cfg.PodTimeout)
	defer cancel()
	for {
		_, err := ri.Get(wctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err := t.sleep(wctx, 250*time.Millisecond); err != nil {
			return fmt.Errorf("wait for pod %s to go: %w", podKey, err)
		}
	}
}

// setLabels replaces the labels of a pod or namespace (the run's stay).
func (t *Target) setLabels(ctx context.Context, lc scenario.LabelChange) error {
	var ri dynamic.ResourceInterface
	var name string
	var labels map[string]string
	if lc.Pod != "" {
		ns, n, _ := strings.Cut(lc.Pod, "/")
		ri, name, labels = t.dyn.Resource(gvrPod).Namespace(t.names.Namespace(ns)), n, t.names.withRun(lc.Labels)
	} else {
		ri, name, labels = t.dyn.Resource(gvrNamespace), t.names.Namespace(lc.Namespace), t.names.NamespaceLabels(lc.Labels)
	}
	u, err := ri.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("set labels of %s: %w", name, err)
	}
	if lc.Namespace != "" {
		// Kubernetes keeps the name label; keep it in the update too.
		labels[corev1.LabelMetadataName] = name
	}
	u.SetLabels(labels)
	if _, err := ri.Update(ctx, u, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("set labels of %s: %w", name, err)
	}
	return nil
}

// Close implements target.Target: it deletes every namespace and
// clusterwide policy labelled with the run (namespaces take their pods,
// services and policies with them), whether Setup succeeded or not. It
// does not wait for the deletions to finish.
func (t *Target) Close() error {
	if !t.created {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sel := metav1.ListOptions{LabelSelector: RunLabel + "=" + t.cfg.RunID}
	var errs []error
	for _, gvr := range []schema.GroupVersionResource{gvrCCNP, gvrNamespace} {
		list, err := t.dyn.Resource(gvr).List(ctx, sel)
		if err != nil {
			if gvr == gvrCCNP && apierrors.IsNotFound(err) {
				continue // no CRD: nothing to delete
			}
			errs = append(errs, fmt.Errorf("close: list %s: %w", gvr.Resource, err))
			continue
		}
		for _, u := range list.Items {
			err := t.dyn.Resource(gvr).Delete(ctx, u.GetName(), metav1.DeleteOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("close: delete %s %s: %w", gvr.Resource, u.GetName(), err))
			}
		}
	}
	if len(errs) == 0 {
		t.created = false
	}
	return errors.Join(errs...)
}

// Probe implements target.Target.
func (t *Target) Probe(ctx context.Context, p scenario.Probe) (target.Observation, error) {
	var obs target.Observation
	if t.sc == nil {
		return obs, fmt.Errorf("probe %s: no scenario (Setup failed)", p.ID)
	}
	state := t.sc.StateAt(p.Step)
	if state == nil {
		return obs, fmt.Errorf("probe %s: no step %d", p.ID, p.Step)
	}
	args, err := t.probeArgs(p, state)
	if err != nil {
		return obs, fmt.Errorf("probe %s: %w", p.ID, err)
	}
	ns, pod, _ := strings.Cut(p.From.Name, "/")
	if p.From.Kind == scenario.PeerNode {
		ns, pod = nodesNamespace, t.nodeClients[p.From.Name]
	}
	ectx, cancel := context.WithTimeout(ctx, t.cfg.ProbeTimeout+30*time.Second)
	defer cancel()
	stdout, stderr, err := t.exec.Exec(ectx, t.names.Namespace(ns), pod, ContainerName, args)
	if err != nil {
		return obs, fmt.Errorf("probe %s: exec %q in %s: %w (stderr: %s)", p.ID, args, p.From.Name, err, strings.TrimSpace(string(stderr)))
	}
	res, err := traffic.ParseResultJSON(stdout)
	if err != nil {
		return obs, fmt.Errorf("probe %s: %w (stderr: %s)", p.ID, err, strings.TrimSpace(string(stderr)))
	}
	return t.observation(p, res)
}

// probeArgs returns the cilia-probe command of probe p.
func (t *Target) probeArgs(p scenario.Probe, state *scenario.State) ([]string, error) {
	switch p.From.Kind {
	case scenario.PeerPod:
		if _, ok := t.pods[p.From.Name]; !ok {
			return nil, fmt.Errorf("from %s: no such pod in the cluster", p.From)
		}
	case scenario.PeerNode:
		if t.nodeClients[p.From.Name] == "" {
			return nil, fmt.Errorf("from %s: no client pod on the node", p.From)
		}
	default:
		return nil, fmt.Errorf("from %s: %s clients cannot exist on a real cluster: %w", p.From, p.From.Kind, ErrUnsupported)
	}
	if p.Kafka != nil {
		return nil, fmt.Errorf("kafka requests: %w", ErrUnsupported)
	}
	var dst netip.Addr
	switch p.To.Kind {
	case scenario.PeerPod:
		a, ok := t.pods[p.To.Name]
		if !ok {
			return nil, fmt.Errorf("to %s: no such pod in the cluster", p.To)
		}
		dst = a.of(p.Family)
	case scenario.PeerService:
		a, ok := t.services[p.To.Name]
		if !ok {
			return nil, fmt.Errorf("to %s: no such service in the cluster", p.To)
		}
		dst = a.of(p.Family)
	case scenario.PeerIP:
		owner, ok := state.Owner(p.To.Addr)
		if !ok || (owner.Kind != scenario.PeerPod && owner.Kind != scenario.PeerService) {
			return nil, fmt.Errorf("to %s: the address is no pod's or service's: %w", p.To, ErrUnsupported)
		}
		c, ok := t.addrs.Cluster(p.To.Addr)
		if !ok {
			return nil, fmt.Errorf("to %s: %s has no cluster address", p.To, owner)
		}
		dst = c
	default:
		return nil, fmt.Errorf("to %s: %s peers cannot be reached on a real cluster: %w", p.To, p.To.Kind, ErrUnsupported)
	}
	if !dst.IsValid() {
		return nil, fmt.Errorf("to %s: the cluster gave it no %s address: %w", p.To, p.Family, ErrUnsupported)
	}
	proto := strings.ToLower(string(p.Protocol))
	if proto == "" {
		proto = "tcp"
	}
	args := []string{ProbeBinary, "probe", "--timeout", t.cfg.ProbeTimeout.String()}
	if p.From.Kind == scenario.PeerNode {
		// Send from the node's own address (not whatever address the
		// route to the pod prefers, such as a CNI gateway's).
		if a, ok := state.Addr(p.From, p.Family); ok {
			if c, ok := t.addrs.Cluster(a); ok {
				args = append(args, "--from", c.String())
			}
		}
	}
	if p.HTTP != nil {
		args = append(args, "--proto", "http", "--to", netip.AddrPortFrom(dst, p.Port).String())
		if p.HTTP.Method != "" {
			args = append(args, "--method", p.HTTP.Method)
		}
		if p.HTTP.Path != "" {
			args = append(args, "--path", p.HTTP.Path)
		}
		var hs []string
		for k, v := range p.HTTP.Headers {
			hs = append(hs, k+"="+v)
		}
		sort.Strings(hs)
		for _, h := range hs {
			args = append(args, "--header", h)
		}
		return args, nil
	}
	if p.Protocol == scenario.ICMP {
		return append(args, "--proto", "icmp", "--to", dst.String()), nil
	}
	return append(args, "--proto", proto, "--to", netip.AddrPortFrom(dst, p.Port).String()), nil
}

// observation turns cilia-probe's result into the suite's observation.
func (t *Target) observation(p scenario.Probe, r traffic.Result) (target.Observation, error) {
	obs := target.Observation{HTTPStatus: r.HTTPStatus}
	switch r.Outcome {
	case traffic.Allowed:
		obs.Verdict = target.Allowed
		obs.Backend = r.Backend
		if r.SourceSeen.IsValid() {
			obs.SourceSeen = t.addrs.Scenario(r.SourceSeen)
			if p.From.Kind == scenario.PeerNode {
				// Scenario nodes sharing a cluster node share its
				// address: the client's own is the one meant.
				if own, ok := t.nodeAddr(p.From.Name, r.SourceSeen); ok {
					obs.SourceSeen = own
				}
			}
		}
		if p.Protocol == scenario.ICMP && p.To.Kind == scenario.PeerPod {
			// The pod's kernel answers an echo: no server names itself.
			obs.Backend = p.To.Name
		}
	case traffic.Refused, traffic.Timeout, traffic.Unreachable:
		obs.Verdict = target.Denied
	default:
		return obs, fmt.Errorf("probe %s: cilia-probe: %s: %s", p.ID, r.Outcome, r.Detail)
	}
	return obs, nil
}

// nodeAddr returns scenario node name's address whose cluster address is
// c.
func (t *Target) nodeAddr(name string, c netip.Addr) (netip.Addr, bool) {
	st := t.sc.InitialState()
	n, ok := st.Node(name)
	if !ok {
		return netip.Addr{}, false
	}
	for _, a := range []netip.Addr{n.IPv4, n.IPv6} {
		if got, ok := t.addrs.Cluster(a); ok && got == c.Unmap() {
			return a, true
		}
	}
	return netip.Addr{}, false
}
