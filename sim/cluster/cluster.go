// Package cluster builds a scenario's cluster for the simulator: a netns
// topology (sim/topology), one datapath per node (the node maps, host.c on
// the uplink, overlay.c on the VXLAN device, lxc.c per pod), and the
// reference agent programming them. Packets move through it with the
// walker (BPF_PROG_TEST_RUN), or, with Options.Attach, as real traffic
// through programs attached with tcx.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/cilium/cilium/api/v1/flow"

	"github.com/ciliaproject/cilia/agent"
	ciliaflow "github.com/ciliaproject/cilia/agent/flow"
	"github.com/ciliaproject/cilia/agent/ipcache"
	"github.com/ciliaproject/cilia/agent/service"
	"github.com/ciliaproject/cilia/conformance/scenario"
	"github.com/ciliaproject/cilia/conformance/scenarioagent"
	"github.com/ciliaproject/cilia/datapath"
	"github.com/ciliaproject/cilia/datapath/maps"
	dptestrun "github.com/ciliaproject/cilia/datapath/testrun"
	"github.com/ciliaproject/cilia/sim/topology"
	"github.com/ciliaproject/cilia/sim/walker"
)

// Options configure a cluster.
type Options struct {
	// Mode is how nodes reach each other's pods; "" is topology.Tunnel.
	Mode topology.Mode
	// Attach attaches every program to its real device with tcx, so real
	// traffic in the namespaces goes through the datapath (the netns
	// target). Without it the programs are only test-run by the walker.
	Attach bool
	// TraceLevel is the programs' trace level; the walker needs
	// datapath.TraceEveryPacket (the zero value).
	TraceLevel uint8
}

// Cluster is a scenario's cluster, built and programmed.
type Cluster struct {
	Scenario *scenario.Scenario
	Agent    *agent.Agent
	Topology *topology.Topology
	Walker   *walker.Walker
	opts     Options
	state    *scenario.State
	nodes    map[string]*node
	order    []string
}

// node is one scenario node's datapath.
type node struct {
	// Datapath is the node's load-balancing maps (service.Datapath of
	// agent.Datapath): its harness's node maps.
	service.Datapath
	name    string
	topo    *topology.Node
	harness *dptestrun.Harness
	host    *datapath.Host
	overlay *datapath.Overlay
	shim    *datapath.TunnelShim
	// pods in use by an endpoint; a pod whose endpoint is closed is
	// removed from the topology at the end of the mutation (an endpoint
	// reloaded for a relabel keeps its pod and veth).
	inUse map[string]bool
	c     *Cluster
}

// New builds sc's cluster in its initial state.
func New(ctx context.Context, sc *scenario.Scenario, opts Options) (c *Cluster, err error) {
	if opts.Mode == "" {
		opts.Mode = topology.Tunnel
	}
	c = &Cluster{Scenario: sc, opts: opts, state: sc.InitialState(), nodes: map[string]*node{}}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	spec := topology.Spec{Mode: opts.Mode}
	for _, n := range sc.Cluster.Nodes {
		spec.Nodes = append(spec.Nodes, topology.NodeSpec{Name: n.Name, IPv4: n.IPv4, IPv6: n.IPv6})
	}
	for _, e := range sc.Cluster.Externals {
		spec.Externals = append(spec.Externals, topology.ExternalSpec{Name: e.Name, IPv4: e.IPv4, IPv6: e.IPv6})
	}
	for _, svc := range sc.Cluster.Services {
		spec.FrontendAddrs = append(spec.FrontendAddrs, svc.ExternalIPs...)
		spec.FrontendAddrs = append(spec.FrontendAddrs, svc.LoadBalancerIPs...)
	}
	if c.Topology, err = topology.Build(ctx, spec); err != nil {
		return c, fmt.Errorf("build cluster of %s: %w", sc.Metadata.Name, err)
	}
	wc := &walker.Cluster{Topology: c.Topology}
	for _, tn := range c.Topology.Nodes {
		n, err := c.newNode(tn)
		if err != nil {
			return c, fmt.Errorf("build cluster of %s: %w", sc.Metadata.Name, err)
		}
		wn := &walker.Node{Name: n.name, Topo: tn, Harness: n.harness, FromNetdev: n.host.FromNetdev, ToNetdev: n.host.ToNetdev}
		if n.shim != nil {
			wn.FromOverlay = n.shim.Program
		}
		wc.Nodes = append(wc.Nodes, wn)
	}
	if c.Walker, err = walker.New(wc); err != nil {
		return c, err
	}
	c.Agent = agent.NewWithOptions(agent.Options{Tunnel: opts.Mode == topology.Tunnel})
	err = scenarioagent.Setup(c.Agent, sc, func(sn scenario.Node) (agent.Datapath, error) {
		n := c.nodes[sn.Name]
		if n == nil {
			return nil, fmt.Errorf("no node %s in the topology", sn.Name)
		}
		return n, nil
	})
	if err != nil {
		return c, err
	}
	return c, c.reap()
}

// newNode loads a node's datapath: its maps, the uplink's and VXLAN
// device's programs (attached when the cluster attaches).
func (c *Cluster) newNode(tn *topology.Node) (*node, error) {
	cfg := datapath.NodeConfig{IPv4: tn.IPv4, IPv6: tn.IPv6, UplinkIfindex: uint32(tn.Uplink.Ifindex),
		TunnelIfindex: uint32(tn.Tunnel.Ifindex)}
	h, err := dptestrun.New(dptestrun.Options{Node: datapath.NodeOptions{Config: cfg},
		Settings: datapath.Settings{TraceLevel: c.opts.TraceLevel}})
	if err != nil {
		return nil, fmt.Errorf("create datapath of node %s: %w", tn.Name, err)
	}
	n := &node{Datapath: h.Node, name: tn.Name, topo: tn, harness: h, inUse: map[string]bool{}, c: c}
	c.nodes[tn.Name] = n
	c.order = append(c.order, tn.Name)
	if n.host, err = h.LoadHost(); err != nil {
		return nil, fmt.Errorf("node %s: %w", tn.Name, err)
	}
	if tn.Tunnel.Ifindex != 0 {
		if n.overlay, err = h.LoadOverlay(); err != nil {
			return nil, fmt.Errorf("node %s: %w", tn.Name, err)
		}
		if n.shim, err = h.LoadTunnelShim(n.overlay); err != nil {
			return nil, fmt.Errorf("node %s: %w", tn.Name, err)
		}
	}
	if c.opts.Attach {
		err := topology.Do(tn.Netns, func() error {
			if err := n.host.Attach(tn.Uplink.Ifindex, ""); err != nil {
				return err
			}
			if n.overlay != nil {
				return n.overlay.Attach(tn.Tunnel.Ifindex, "")
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", tn.Name, err)
		}
	}
	return n, nil
}

// Step applies a step's mutations.
func (c *Cluster) Step(st scenario.Step) error {
	c.state = c.Scenario.StateAt(st.Index)
	if err := scenarioagent.Step(c.Agent, st); err != nil {
		return err
	}
	return c.reap()
}

// State returns the cluster as of the last step.
func (c *Cluster) State() *scenario.State { return c.state }

// reap removes the topology pods no endpoint uses any more.
func (c *Cluster) reap() error {
	var errs []error
	for _, name := range c.order {
		n := c.nodes[name]
		for key, used := range n.inUse {
			if used {
				continue
			}
			delete(n.inUse, key)
			if err := c.Topology.DeletePod(key); err != nil {
				errs = append(errs, err)
			}
			c.Walker.InvalidateRoutes()
		}
	}
	return errors.Join(errs...)
}

// forgetPod removes a pod whose endpoint is gone from the topology.
func (c *Cluster) forgetPod(p *topology.Pod) error {
	if old := c.nodes[p.Node]; old != nil {
		if old.inUse[p.Key] {
			return fmt.Errorf("pod %s on %s still has an endpoint", p.Key, p.Node)
		}
		delete(old.inUse, p.Key)
	}
	c.Walker.InvalidateRoutes()
	return c.Topology.DeletePod(p.Key)
}

// Close removes everything the cluster made.
func (c *Cluster) Close() error {
	var errs []error
	if c.Walker != nil {
		errs = append(errs, c.Walker.Close())
	}
	for _, name := range c.order {
		// The harness closes the host and overlay programs it loaded.
		errs = append(errs, c.nodes[name].harness.Close())
	}
	c.nodes, c.order = map[string]*node{}, nil
	if c.Topology != nil {
		errs = append(errs, c.Topology.Close())
	}
	return errors.Join(errs...)
}

// Node names in the order of the scenario.
func (c *Cluster) Nodes() []string { return append([]string(nil), c.order...) }

// Harness returns the datapath harness of node name (nil if unknown).
func (c *Cluster) Harness(name string) *dptestrun.Harness {
	if n := c.nodes[name]; n != nil {
		return n.harness
	}
	return nil
}

// PodNamer names the pod that owns an address in the current state.
func (c *Cluster) PodNamer(a netip.Addr) (namespace, name string, ok bool) {
	if owner, found := c.state.Owner(a); found && owner.Kind == scenario.PeerPod {
		ns, n, _ := strings.Cut(owner.Name, "/")
		return ns, n, true
	}
	return "", "", false
}

// Flows converts the events of a walk to Hubble flows, one per event,
// named after the scenario's pods and the node that emitted it.
func (c *Cluster) Flows(w *walker.Walk) []*flow.Flow {
	var out []*flow.Flow
	for _, h := range w.Hops {
		for _, e := range h.Events {
			f := ciliaflow.FromEvent(e, c.PodNamer)
			f.NodeName = h.Node
			out = append(out, f)
		}
	}
	return out
}

// UpsertIPCache implements agent.Datapath.
func (n *node) UpsertIPCache(p netip.Prefix, e ipcache.Entry) error {
	me := maps.IPCacheEntry{Identity: uint32(e.Identity)}
	if e.TunnelEndpoint.IsValid() {
		me.TunnelFamily = 4
		if e.TunnelEndpoint.Is6() {
			me.TunnelFamily = 6
		}
		me.TunnelEndpoint = maps.NewAddrKey(e.TunnelEndpoint).Addr
	}
	return n.harness.Node.SetIPCache(p, me)
}

// DeleteIPCache implements agent.Datapath.
func (n *node) DeleteIPCache(p netip.Prefix) error { return n.harness.DeleteIdentity(p) }

// AddEndpoint implements agent.Datapath: the pod's netns and veth (kept
// when the endpoint is only reloaded), and its programs.
func (n *node) AddEndpoint(spec agent.EndpointSpec) (agent.EndpointDatapath, error) {
	pod := n.c.Topology.Pods[spec.Pod]
	if pod != nil && (pod.Node != n.name || pod.IPv4 != spec.IPv4 || pod.IPv6 != spec.IPv6) {
		// A new pod under the name of one that was deleted (on another
		// node, or with other addresses): the old one's namespace goes
		// now, not at the end of the mutation.
		if err := n.c.forgetPod(pod); err != nil {
			return nil, fmt.Errorf("add pod %s: %w", spec.Pod, err)
		}
		pod = nil
	}
	if pod == nil {
		var err error
		pod, err = n.c.Topology.AddPod(topology.PodSpec{Key: spec.Pod, Node: n.name, IPv4: spec.IPv4, IPv6: spec.IPv6})
		if err != nil {
			return nil, fmt.Errorf("add pod %s: %w", spec.Pod, err)
		}
		n.c.Walker.InvalidateRoutes()
	}
	ep, err := n.harness.AddEndpoint(dptestrun.EndpointSpec{ID: spec.ID, Identity: uint32(spec.Identity),
		IPv4: spec.IPv4, IPv6: spec.IPv6, Ifindex: uint32(pod.HostVeth.Ifindex), MAC: pod.Eth0.MAC, NodeMAC: pod.HostVeth.MAC})
	if err != nil {
		return nil, err
	}
	if n.c.opts.Attach {
		err := topology.Do(n.topo.Netns, func() error { return ep.Attach(pod.HostVeth.Ifindex, "") })
		if err != nil {
			n.harness.RemoveEndpoint(ep)
			return nil, fmt.Errorf("attach endpoint of %s: %w", spec.Pod, err)
		}
	}
	n.inUse[spec.Pod] = true
	return &endpoint{Endpoint: ep, n: n, pod: spec.Pod}, nil
}

// endpoint adapts a harness endpoint to agent.EndpointDatapath.
type endpoint struct {
	*dptestrun.Endpoint
	n   *node
	pod string
}

// Close implements agent.EndpointDatapath: the programs go; the pod's
// netns goes at the end of the mutation unless an endpoint is made for it
// again.
func (e *endpoint) Close() error {
	e.n.inUse[e.pod] = false
	return e.n.harness.RemoveEndpoint(e.Endpoint)
}
