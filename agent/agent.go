// Package agent is cilia's reference agent control plane: it turns the
// cluster's state (nodes, namespaces, pods, policies) into identities
// (agent/identity), each node's ipcache (agent/ipcache) and every
// endpoint's policy map (agent/policy), and programs them into each
// node's datapath through the Datapath interface, and keeps the services'
// load-balancing maps in step with the pods that back them
// (agent/service). Updates are incremental: each change writes only the
// map entries whose content changed.
package agent

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"

	"github.com/ciliaproject/cilia/agent/identity"
	"github.com/ciliaproject/cilia/agent/ipcache"
	"github.com/ciliaproject/cilia/agent/labels"
	"github.com/ciliaproject/cilia/agent/policy"
	"github.com/ciliaproject/cilia/agent/policy/load"
	"github.com/ciliaproject/cilia/agent/service"
	"github.com/ciliaproject/cilia/datapath/maps"
)

// Datapath is one node's datapath as the agent programs it: the ipcache,
// the endpoints and the load-balancing maps.
type Datapath interface {
	service.Datapath
	// UpsertIPCache maps prefix to an identity and, in tunnel mode, the
	// tunnel endpoint of a pod on another node.
	UpsertIPCache(prefix netip.Prefix, e ipcache.Entry) error
	// DeleteIPCache removes prefix.
	DeleteIPCache(prefix netip.Prefix) error
	// AddEndpoint creates a local endpoint (loads its programs).
	AddEndpoint(spec EndpointSpec) (EndpointDatapath, error)
}

// EndpointSpec describes a local endpoint to create.
type EndpointSpec struct {
	ID       uint16
	Pod      string // namespace/name
	Identity identity.NumericIdentity
	IPv4     netip.Addr
	IPv6     netip.Addr
}

// EndpointDatapath is one endpoint's datapath state.
type EndpointDatapath interface {
	PutPolicy(k maps.PolicyKey, v maps.PolicyEntry) error
	DeletePolicy(k maps.PolicyKey) error
	SetEnforcement(ingress, egress bool) error
	BumpPolicyRevision() error
	// Close removes the endpoint from the datapath.
	Close() error
}

// ErrNotFound is returned for an unknown pod, namespace, node or policy.
var ErrNotFound = errors.New("not found")

// Pod is a pod as the agent sees it.
type Pod struct {
	Namespace string
	Name      string
	Node      string
	Labels    map[string]string
	IPv4      netip.Addr
	IPv6      netip.Addr
	Ports     []policy.NamedPort
}

// Key returns "namespace/name".
func (p *Pod) Key() string { return p.Namespace + "/" + p.Name }

// Node is a cluster node.
type Node struct {
	Name string
	IPv4 netip.Addr
	IPv6 netip.Addr
}

type podState struct {
	pod         *Pod
	id          *identity.Identity
	terminating bool
}

type endpointState struct {
	id      uint16
	pod     string
	dp      EndpointDatapath
	ident   identity.NumericIdentity
	policy  *policy.EndpointPolicy
	current map[identity.NumericIdentity]map[maps.PolicyKey]maps.PolicyEntry
	ingress bool
	egress  bool
}

type nodeState struct {
	node      Node
	dp        Datapath // nil for a node this agent does not program
	endpoints map[string]*endpointState
	nextEP    uint16
	ipcache   *ipcache.IPCache
}

// Agent is the control plane of a whole (simulated) cluster: one shared
// identity allocator and policy repository (the cluster-wide stores) and,
// per node, the endpoints and ipcache of that node's datapath. It is safe
// for concurrent use; operations are serialized.
type Agent struct {
	mu         sync.Mutex
	alloc      *identity.Allocator
	cache      *policy.SelectorCache
	repo       *policy.Repository
	namespaces map[string]map[string]string
	pods       map[string]*podState
	nodes      map[string]*nodeState
	nodeOrder  []string
	cidrs      map[netip.Prefix]*identity.Identity
	opts       Options
	svc        *service.Manager
	// svcErr is the error of an invalid Options.MaglevSize, returned by
	// AddNode and UpsertService.
	svcErr error
}

// Options configure an agent.
type Options struct {
	// Tunnel says the nodes reach each other's pods through the VXLAN
	// overlay: a pod's ipcache entry on every other node carries its
	// node's IPv4 address as tunnel endpoint. Without it (native
	// routing) no entry has one.
	Tunnel bool
	// MaglevSize is the Maglev table size M of every node (0:
	// service.DefaultMaglevSize; else a prime <= maps.LBMaglevMax): it
	// must equal the nodes' datapath setting.
	MaglevSize int
}

// New returns an agent with no nodes, in native routing mode.
func New() *Agent { return NewWithOptions(Options{}) }

// NewWithOptions returns an agent with no nodes configured by opts.
func NewWithOptions(opts Options) *Agent {
	a := &Agent{
		opts:  opts,
		alloc: identity.NewAllocator(), cache: policy.NewSelectorCache(),
		namespaces: map[string]map[string]string{}, pods: map[string]*podState{},
		nodes: map[string]*nodeState{}, cidrs: map[netip.Prefix]*identity.Identity{},
	}
	a.repo = policy.NewRepository(a.cache)
	a.alloc.Observe(a.cache)
	a.svc, a.svcErr = service.NewManager(service.Options{MaglevSize: opts.MaglevSize})
	if a.svcErr != nil {
		a.svc, _ = service.NewManager(service.Options{})
	}
	return a
}

// Repository returns the policy repository.
func (a *Agent) Repository() *policy.Repository { return a.repo }

// Allocator returns the identity allocator.
func (a *Agent) Allocator() *identity.Allocator { return a.alloc }

// AddNode adds a node; dp programs it (nil: a node whose datapath this
// agent does not program, known for its addresses only). Its addresses
// become NodePort frontends on every node, and its load-balancing maps get
// every service.
func (a *Agent) AddNode(n Node, dp Datapath) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.svcErr != nil {
		return fmt.Errorf("add node %s: %w", n.Name, a.svcErr)
	}
	if _, dup := a.nodes[n.Name]; dup {
		return fmt.Errorf("add node %s: already exists", n.Name)
	}
	ns := &nodeState{node: n, dp: dp, endpoints: map[string]*endpointState{}, nextEP: 1,
		ipcache: ipcache.New()}
	a.nodes[n.Name] = ns
	a.nodeOrder = append(a.nodeOrder, n.Name)
	if err := a.syncIPCacheAll(); err != nil {
		return err
	}
	var sdp service.Datapath
	if dp != nil {
		sdp = dp
	}
	return a.svc.AddNode(service.Node{Name: n.Name, IPv4: n.IPv4, IPv6: n.IPv6}, sdp)
}

// SetNamespace creates a namespace or replaces its labels (the pods in it
// change identity when their labels change).
func (a *Agent) SetNamespace(name string, nsLabels map[string]string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.namespaces[name] = copyMap(nsLabels)
	for _, key := range a.sortedPods() {
		if ps := a.pods[key]; ps.pod.Namespace == name {
			if err := a.relabel(ps); err != nil {
				return err
			}
		}
	}
	return nil
}

// AddPod adds a pod: its identity, its ipcache entries on every node and,
// on its node, its endpoint with its resolved policy; then, its endpoint
// ready, it becomes a backend of the services that select it.
func (a *Agent) AddPod(p Pod) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, dup := a.pods[p.Key()]; dup {
		return fmt.Errorf("add pod %s: already exists", p.Key())
	}
	ns, ok := a.nodes[p.Node]
	if !ok {
		return fmt.Errorf("add pod %s: node %q: %w", p.Key(), p.Node, ErrNotFound)
	}
	pod := p
	pod.Labels = copyMap(p.Labels)
	id, added, err := a.alloc.Allocate(a.podLabels(&pod))
	if err != nil {
		return fmt.Errorf("add pod %s: %w", p.Key(), err)
	}
	ps := &podState{pod: &pod, id: id}
	a.pods[p.Key()] = ps
	if err := a.identitiesChanged(added, id, nil); err != nil {
		return err
	}
	if err := a.syncIPCacheAll(); err != nil {
		return err
	}
	if ns.dp != nil {
		ep := &endpointState{id: ns.nextEP, pod: p.Key()}
		ns.nextEP++
		ns.endpoints[p.Key()] = ep
		if err := a.createEndpoint(ns, ep, ps); err != nil {
			return err
		}
	}
	return a.svc.UpsertPod(a.servicePod(ps))
}

// DeletePod removes a pod from the services' backends first, then its
// endpoint and its ipcache entries, and releases its identity.
func (a *Agent) DeletePod(key string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	ps, ok := a.pods[key]
	if !ok {
		return fmt.Errorf("delete pod %s: %w", key, ErrNotFound)
	}
	if err := a.svc.DeletePod(key); err != nil {
		return fmt.Errorf("delete pod %s: %w", key, err)
	}
	delete(a.pods, key)
	if ns := a.nodes[ps.pod.Node]; ns != nil {
		if ep, ok := ns.endpoints[key]; ok {
			delete(ns.endpoints, key)
			if err := ep.dp.Close(); err != nil {
				return fmt.Errorf("delete pod %s: remove endpoint: %w", key, err)
			}
		}
	}
	if err := a.syncIPCacheAll(); err != nil {
		return err
	}
	removed := a.alloc.Release(ps.id.ID)
	if err := a.identitiesChanged(false, nil, removedID(removed, ps.id)); err != nil {
		return err
	}
	return nil
}

// SetPodLabels replaces a pod's labels (and with them the services it
// backs).
func (a *Agent) SetPodLabels(key string, podLabels map[string]string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	ps, ok := a.pods[key]
	if !ok {
		return fmt.Errorf("set labels of pod %s: %w", key, ErrNotFound)
	}
	ps.pod.Labels = copyMap(podLabels)
	if err := a.relabel(ps); err != nil {
		return err
	}
	return a.svc.UpsertPod(a.servicePod(ps))
}

// SetPodTerminating marks a pod terminating (or not): it keeps running and
// serving, and the services it backs use it only when they have no active
// backend.
func (a *Agent) SetPodTerminating(key string, terminating bool) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	ps, ok := a.pods[key]
	if !ok {
		return fmt.Errorf("set pod %s terminating: %w", key, ErrNotFound)
	}
	ps.terminating = terminating
	return a.svc.SetPodTerminating(key, terminating)
}

// UpsertService creates or replaces a service: its frontends on every
// node's load-balancing maps, with the pods its selector matches as
// backends.
func (a *Agent) UpsertService(s service.Service) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.svcErr != nil {
		return fmt.Errorf("upsert service %s: %w", s.Key(), a.svcErr)
	}
	return a.svc.UpsertService(s)
}

// DeleteService removes a service from every node's load-balancing maps.
func (a *Agent) DeleteService(namespace, name string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	err := a.svc.DeleteService(namespace, name)
	if errors.Is(err, service.ErrNotFound) {
		return fmt.Errorf("delete service %s/%s: %w", namespace, name, ErrNotFound)
	}
	return err
}

// ServiceFrontends returns a service's frontends with their backends, as
// the agent wants them programmed.
func (a *Agent) ServiceFrontends(namespace, name string) ([]service.Frontend, error) {
	fs, err := a.svc.Frontends(namespace, name)
	if errors.Is(err, service.ErrNotFound) {
		return nil, fmt.Errorf("frontends of service %s/%s: %w", namespace, name, ErrNotFound)
	}
	return fs, err
}

// DescribeServices reads a node's load-balancing maps back (its datapath
// must implement service.TableReader, as MemoryDatapath does) and
// describes its frontends, backends and Maglev shares.
func (a *Agent) DescribeServices(node string) ([]service.FrontendStatus, error) {
	a.mu.Lock()
	ns, ok := a.nodes[node]
	a.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("describe services of node %q: %w", node, ErrNotFound)
	}
	r, ok := ns.dp.(service.TableReader)
	if !ok {
		return nil, fmt.Errorf("describe services of node %s: its datapath cannot be read back", node)
	}
	t, err := r.LBTables()
	if err != nil {
		return nil, fmt.Errorf("describe services of node %s: %w", node, err)
	}
	return a.svc.Describe(t), nil
}

// MaglevSize returns the Maglev table size M the agent builds tables of.
func (a *Agent) MaglevSize() int { return a.svc.MaglevSize() }

// servicePod is the backend view of a pod.
func (a *Agent) servicePod(ps *podState) service.Pod {
	p := ps.pod
	ports := make([]service.NamedPort, len(p.Ports))
	for i, np := range p.Ports {
		ports[i] = service.NamedPort{Name: np.Name, Port: np.Port, Proto: np.Proto}
	}
	return service.Pod{Namespace: p.Namespace, Name: p.Name, Node: p.Node, Labels: copyMap(p.Labels),
		IPv4: p.IPv4, IPv6: p.IPv6, Ports: ports, Terminating: ps.terminating}
}

// relabel moves a pod to the identity of its current labels:
// make-before-break (the new identity is in every policy and the ipcache
// before the old one is released).
func (a *Agent) relabel(ps *podState) error {
	ls := a.podLabels(ps.pod)
	if ls.String() == ps.id.Labels.String() {
		return nil
	}
	id, added, err := a.alloc.Allocate(ls)
	if err != nil {
		return fmt.Errorf("relabel pod %s: %w", ps.pod.Key(), err)
	}
	old := ps.id
	ps.id = id
	if err := a.identitiesChanged(added, id, nil); err != nil {
		return err
	}
	if err := a.syncIPCacheAll(); err != nil {
		return err
	}
	if ns := a.nodes[ps.pod.Node]; ns != nil {
		if ep, ok := ns.endpoints[ps.pod.Key()]; ok {
			// The endpoint's own identity is part of its program: reload.
			if err := ep.dp.Close(); err != nil {
				return fmt.Errorf("relabel pod %s: %w", ps.pod.Key(), err)
			}
			if err := a.createEndpoint(ns, ep, ps); err != nil {
				return err
			}
		}
	}
	removed := a.alloc.Release(old.ID)
	return a.identitiesChanged(false, nil, removedID(removed, old))
}

func removedID(removed bool, id *identity.Identity) *identity.Identity {
	if removed {
		return id
	}
	return nil
}

// ApplyPolicy creates or replaces a policy. Only endpoints selected by the
// old or the new version are re-resolved.
func (a *Agent) ApplyPolicy(p *load.Policy) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	old, added, err := a.repo.Upsert(p)
	if err != nil {
		return err
	}
	if err := a.syncCIDRs(); err != nil {
		return err
	}
	return a.regenerateSelected(append(old, added...))
}

// DeletePolicy removes a policy.
func (a *Agent) DeletePolicy(ref policy.PolicyRef) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	old, ok := a.repo.Delete(ref)
	if !ok {
		return fmt.Errorf("delete policy %s: %w", ref, ErrNotFound)
	}
	if err := a.regenerateSelected(old); err != nil {
		return err
	}
	return a.syncCIDRs()
}

// podLabels returns the security labels of a pod: its own and its
// namespace's, plus, when it names ports, the label
// cilia:named-ports=<its name/port/protocol map>. Named ports of egress
// rules resolve on the destination pod, and the datapath tells
// destinations apart by identity only: pods with the same labels that
// name their ports differently must not share an identity.
func (a *Agent) podLabels(p *Pod) labels.Labels {
	ls := labels.ForPod(p.Namespace, p.Labels, a.namespaces[p.Namespace])
	if len(p.Ports) > 0 {
		ls.Add(labels.Label{Source: labels.SourceCilia, Key: labels.NamedPortsKey, Value: namedPortsValue(p.Ports)})
	}
	return ls
}

// namedPortsValue is the canonical form of a pod's named ports:
// "name/port/proto" sorted and joined by commas.
func namedPortsValue(ports []policy.NamedPort) string {
	parts := make([]string, len(ports))
	for i, np := range ports {
		parts[i] = fmt.Sprintf("%s/%d/%d", np.Name, np.Port, np.Proto)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// identitiesChanged updates every endpoint's policy for an identity that
// appeared (when added) or disappeared (removed non-nil).
func (a *Agent) identitiesChanged(added bool, id *identity.Identity, removed *identity.Identity) error {
	for _, ns := range a.sortedNodes() {
		for _, key := range sortedKeys(ns.endpoints) {
			ep := ns.endpoints[key]
			if ep.policy == nil {
				continue
			}
			var changed []identity.NumericIdentity
			if added && id != nil {
				changed = ep.policy.IdentitiesAdded([]identity.NumericIdentity{id.ID})
			}
			if removed != nil {
				ep.policy.IdentitiesRemoved([]identity.NumericIdentity{removed.ID})
				changed = append(changed, removed.ID) // its entries go from the map
			}
			if len(changed) > 0 {
				if err := a.syncEntries(ep, ep.policy.MapStateOf(changed), changed); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// createEndpoint loads a pod's endpoint and programs its policy.
func (a *Agent) createEndpoint(ns *nodeState, ep *endpointState, ps *podState) error {
	dp, err := ns.dp.AddEndpoint(EndpointSpec{ID: ep.id, Pod: ps.pod.Key(), Identity: ps.id.ID,
		IPv4: ps.pod.IPv4, IPv6: ps.pod.IPv6})
	if err != nil {
		return fmt.Errorf("create endpoint of pod %s: %w", ps.pod.Key(), err)
	}
	ep.dp, ep.ident = dp, ps.id.ID
	ep.current, ep.policy = nil, nil
	// A reused endpoint ID may carry an earlier endpoint's state: start
	// from no enforcement explicitly.
	if err := dp.SetEnforcement(false, false); err != nil {
		return fmt.Errorf("create endpoint of pod %s: %w", ps.pod.Key(), err)
	}
	ep.ingress, ep.egress = false, false
	return a.regenerate(ep)
}

// regenerate re-resolves an endpoint's policy and writes the difference.
func (a *Agent) regenerate(ep *endpointState) error {
	ps := a.pods[ep.pod]
	ep.policy = a.repo.Resolve(policy.Subject{Identity: ps.id, Ports: ps.pod.Ports}, peerPorts{a})
	state := ep.policy.MapState()
	ids := map[identity.NumericIdentity]struct{}{}
	for k := range state {
		ids[identity.NumericIdentity(k.Identity)] = struct{}{}
	}
	for n := range ep.current {
		ids[n] = struct{}{}
	}
	all := make([]identity.NumericIdentity, 0, len(ids))
	for n := range ids {
		all = append(all, n)
	}
	return a.syncEntries(ep, state, all)
}

// syncEntries makes the endpoint's entries of identities ids equal to
// desired (which holds entries of those identities only), then its
// enforcement flags, and bumps its policy revision when anything changed.
func (a *Agent) syncEntries(ep *endpointState, desired map[maps.PolicyKey]policy.MapValue, ids []identity.NumericIdentity) error {
	if ep.current == nil {
		ep.current = map[identity.NumericIdentity]map[maps.PolicyKey]maps.PolicyEntry{}
	}
	changed := false
	byID := map[identity.NumericIdentity]map[maps.PolicyKey]maps.PolicyEntry{}
	for k, v := range desired {
		n := identity.NumericIdentity(k.Identity)
		if byID[n] == nil {
			byID[n] = map[maps.PolicyKey]maps.PolicyEntry{}
		}
		byID[n][k] = v.Entry
	}
	for _, n := range ids {
		cur, want := ep.current[n], byID[n]
		for k := range cur {
			if _, keep := want[k]; !keep {
				if err := ep.dp.DeletePolicy(k); err != nil {
					return fmt.Errorf("sync policy of %s: %w", ep.pod, err)
				}
				changed = true
			}
		}
		for k, v := range want {
			if old, ok := cur[k]; ok && old == v {
				continue
			}
			if err := ep.dp.PutPolicy(k, v); err != nil {
				return fmt.Errorf("sync policy of %s: %w", ep.pod, err)
			}
			changed = true
		}
		if len(want) == 0 {
			delete(ep.current, n)
		} else {
			ep.current[n] = want
		}
	}
	in, eg := ep.policy.Ingress.Enforced, ep.policy.Egress.Enforced
	if in != ep.ingress || eg != ep.egress {
		if err := ep.dp.SetEnforcement(in, eg); err != nil {
			return fmt.Errorf("sync policy of %s: %w", ep.pod, err)
		}
		ep.ingress, ep.egress = in, eg
		changed = true
	}
	if changed {
		if err := ep.dp.BumpPolicyRevision(); err != nil {
			return fmt.Errorf("sync policy of %s: %w", ep.pod, err)
		}
	}
	return nil
}

// regenerateSelected re-resolves the endpoints any of rules selects.
func (a *Agent) regenerateSelected(rules []*policy.Rule) error {
	for _, ns := range a.sortedNodes() {
		for _, key := range sortedKeys(ns.endpoints) {
			ep := ns.endpoints[key]
			id, ok := a.cache.Identity(ep.ident)
			if !ok {
				continue
			}
			for _, r := range rules {
				if r.Subject.MatchesLabels(id.Labels) {
					if err := a.regenerate(ep); err != nil {
						return err
					}
					break
				}
			}
		}
	}
	return nil
}

// peerPorts answers named-port questions from the agent's pods
// (policy.PeerPorts).
type peerPorts struct{ a *Agent }

// PortsOf returns the named ports of the pods with identity n (they all
// name the same ports: the named ports are part of the identity).
func (pp peerPorts) PortsOf(n identity.NumericIdentity) []policy.NamedPort {
	for _, key := range pp.a.sortedPods() {
		if ps := pp.a.pods[key]; ps.id.ID == n {
			return ps.pod.Ports
		}
	}
	return nil
}

// PortOwners returns the named ports of every pod identity that names
// ports.
func (pp peerPorts) PortOwners() map[identity.NumericIdentity][]policy.NamedPort {
	out := map[identity.NumericIdentity][]policy.NamedPort{}
	for _, ps := range pp.a.pods {
		if len(ps.pod.Ports) > 0 {
			out[ps.id.ID] = ps.pod.Ports
		}
	}
	return out
}

// syncCIDRs allocates a CIDR identity for every prefix the policies name
// and releases those no longer named, keeping the ipcache in step.
func (a *Agent) syncCIDRs() error {
	want := map[netip.Prefix]struct{}{}
	for _, p := range a.repo.Prefixes() {
		want[p] = struct{}{}
		if _, ok := a.cidrs[p]; ok {
			continue
		}
		id, added, err := a.alloc.AllocateCIDR(p)
		if err != nil {
			return fmt.Errorf("allocate identity for %s: %w", p, err)
		}
		a.cidrs[p] = id
		if err := a.identitiesChanged(added, id, nil); err != nil {
			return err
		}
	}
	if err := a.syncIPCacheAll(); err != nil {
		return err
	}
	for p, id := range a.cidrs {
		if _, ok := want[p]; ok {
			continue
		}
		delete(a.cidrs, p)
		if err := a.syncIPCacheAll(); err != nil {
			return err
		}
		removed := a.alloc.Release(id.ID)
		if err := a.identitiesChanged(false, nil, removedID(removed, id)); err != nil {
			return err
		}
	}
	return nil
}

// desiredIPCache is the ipcache of node ns: every pod address, every node
// address (the node itself as host, others as remote-node) and every CIDR
// prefix the policies name. In tunnel mode a pod on another node carries
// that node's IPv4 address as tunnel endpoint.
func (a *Agent) desiredIPCache(ns *nodeState) map[netip.Prefix]ipcache.Entry {
	out := map[netip.Prefix]ipcache.Entry{}
	for p, id := range a.cidrs {
		out[p] = ipcache.Entry{Identity: id.ID}
	}
	for _, other := range a.nodes {
		id := identity.RemoteNode
		if other == ns {
			id = identity.Host
		}
		for _, addr := range []netip.Addr{other.node.IPv4, other.node.IPv6} {
			if addr.IsValid() {
				out[netip.PrefixFrom(addr, addr.BitLen())] = ipcache.Entry{Identity: id}
			}
		}
	}
	for _, ps := range a.pods {
		e := ipcache.Entry{Identity: ps.id.ID}
		if host := a.nodes[ps.pod.Node]; a.opts.Tunnel && host != nil && host != ns {
			e.TunnelEndpoint = host.node.IPv4
		}
		for _, addr := range []netip.Addr{ps.pod.IPv4, ps.pod.IPv6} {
			if addr.IsValid() {
				out[netip.PrefixFrom(addr, addr.BitLen())] = e
			}
		}
	}
	return out
}

// syncIPCacheAll brings every node's ipcache up to date, writing the
// differences to the nodes' datapaths (upserts first, deletes last: make
// before break).
func (a *Agent) syncIPCacheAll() error {
	for _, ns := range a.sortedNodes() {
		var w ipcache.Writer
		if ns.dp != nil {
			w = ns.dp
		}
		if _, err := ns.ipcache.Sync(a.desiredIPCache(ns), w); err != nil {
			return fmt.Errorf("sync ipcache of %s: %w", ns.node.Name, err)
		}
	}
	return nil
}

func (a *Agent) sortedNodes() []*nodeState {
	out := make([]*nodeState, 0, len(a.nodeOrder))
	for _, n := range a.nodeOrder {
		out = append(out, a.nodes[n])
	}
	return out
}

func (a *Agent) sortedPods() []string { return sortedKeys(a.pods) }

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func copyMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
