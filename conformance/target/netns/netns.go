// Package netns is the conformance target of real traffic: the reference
// agent's programs are attached with tcx to the real devices of a
// simulated cluster (sim/cluster with Attach: veths of the pods, node
// uplinks, VXLAN devices), and every probe is a real exchange over
// sockets (sim/traffic) from the client's network namespace to small
// servers in the server's: a TCP connect, a UDP request and its response,
// an SCTP INIT and its INIT-ACK, an ICMP echo.
package netns

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/cilium/cilium/api/v1/flow"

	ciliaflow "github.com/ciliaproject/cilia/agent/flow"
	"github.com/ciliaproject/cilia/conformance/features"
	"github.com/ciliaproject/cilia/conformance/scenario"
	"github.com/ciliaproject/cilia/conformance/target"
	"github.com/ciliaproject/cilia/datapath/events"
	"github.com/ciliaproject/cilia/datapath/maps"
	"github.com/ciliaproject/cilia/sim/cluster"
	"github.com/ciliaproject/cilia/sim/topology"
	"github.com/ciliaproject/cilia/sim/traffic"
)

// Name is the target's name.
const Name = "netns"

// DefaultTimeout bounds a probe whose packets are dropped: the client
// gives up after it (unless the datapath reported the drop first).
const DefaultTimeout = 2 * time.Second

func init() {
	target.Register(Name, func(o target.Options) (target.Target, error) {
		mode, err := topology.ParseMode(o.Arg)
		if err != nil {
			return nil, fmt.Errorf("target netns: %w", err)
		}
		return NewWithMode(mode), nil
	})
}

// Target is the netns target.
type Target struct {
	mode    topology.Mode
	timeout time.Duration
	c       *cluster.Cluster
	servers map[serverKey]*traffic.Server
}

// serverKey names one server: a network namespace, a protocol and port.
type serverKey struct {
	netns string
	port  traffic.Port
}

// New returns an unconfigured target (tunnel mode).
func New() *Target {
	return &Target{mode: topology.Tunnel, timeout: DefaultTimeout, servers: map[serverKey]*traffic.Server{}}
}

// NewWithMode returns a target whose cluster routes between nodes in mode.
func NewWithMode(mode topology.Mode) *Target {
	t := New()
	t.mode = mode
	return t
}

// Name implements target.Target.
func (t *Target) Name() string { return Name }

// Features implements target.Target: the policy and loadbalancing
// profiles and drop reasons (read from the datapath's events while the
// probe runs).
func (t *Target) Features() features.Set {
	policy, _ := features.ProfileFeatures("policy")
	lb, _ := features.ProfileFeatures("loadbalancing")
	return features.NewSet(append(append(policy, lb...), features.DropReasons)...)
}

// Setup implements target.Target.
func (t *Target) Setup(ctx context.Context, sc *scenario.Scenario) error {
	c, err := cluster.New(ctx, sc, cluster.Options{Mode: t.mode, Attach: true})
	if err != nil {
		return err
	}
	t.c = c
	return nil
}

// Step implements target.Target. Servers of pods that go away stop with
// their namespace; a pod added again gets new ones on its first probe.
func (t *Target) Step(ctx context.Context, st scenario.Step) error {
	if t.c == nil {
		return errors.New("step: no cluster (Setup failed)")
	}
	for _, key := range st.DeletePods {
		if p := t.c.Topology.Pods[key]; p != nil {
			t.stopServers(p.Netns)
		}
	}
	return t.c.Step(st)
}

// Cluster returns the cluster (nil before Setup).
func (t *Target) Cluster() *cluster.Cluster { return t.c }

// Close implements target.Target.
func (t *Target) Close() error {
	var errs []error
	for k, s := range t.servers {
		errs = append(errs, s.Close())
		delete(t.servers, k)
	}
	if t.c != nil {
		errs = append(errs, t.c.Close())
		t.c = nil
	}
	return errors.Join(errs...)
}

func (t *Target) stopServers(netnsName string) {
	for k, s := range t.servers {
		if k.netns == netnsName {
			s.Close()
			delete(t.servers, k)
		}
	}
}

// endpoint is one side of a probe in the cluster.
type endpoint struct {
	name  string
	netns string
	addrs []netip.Addr
	addr  netip.Addr
}

// resolve finds the network namespace and address of a probe peer.
func (t *Target) resolve(peer scenario.Peer, fam scenario.Family) (endpoint, error) {
	pick := func(v4, v6 netip.Addr) netip.Addr {
		if fam == scenario.IPv6 {
			return v6
		}
		return v4
	}
	topo := t.c.Topology
	var e endpoint
	switch peer.Kind {
	case scenario.PeerPod:
		p := topo.Pods[peer.Name]
		if p == nil {
			return e, fmt.Errorf("no pod %s in the cluster", peer.Name)
		}
		e = endpoint{name: peer.Name, netns: p.Netns, addrs: valid(p.IPv4, p.IPv6), addr: pick(p.IPv4, p.IPv6)}
	case scenario.PeerNode:
		n := topo.Node(peer.Name)
		if n == nil {
			return e, fmt.Errorf("no node %s", peer.Name)
		}
		e = endpoint{name: "node:" + peer.Name, netns: n.Netns, addrs: valid(n.IPv4, n.IPv6), addr: pick(n.IPv4, n.IPv6)}
	case scenario.PeerExternal:
		for _, x := range topo.Externals {
			if x.Name == peer.Name {
				e = endpoint{name: peer.Name, netns: x.Netns, addrs: valid(x.IPv4, x.IPv6), addr: pick(x.IPv4, x.IPv6)}
			}
		}
		if e.netns == "" {
			return e, fmt.Errorf("no external %s", peer.Name)
		}
	case scenario.PeerIP:
		e = endpoint{name: peer.Addr.String(), addr: peer.Addr}
	case scenario.PeerService:
		svc, ok := t.c.State().Service(peer.Name)
		if !ok {
			return e, fmt.Errorf("no service %s", peer.Name)
		}
		e = endpoint{name: "service:" + peer.Name, addr: pick(svc.ClusterIP, svc.ClusterIPv6)}
	default:
		return e, fmt.Errorf("%s peers are not supported by the netns target", peer.Kind)
	}
	if !e.addr.IsValid() {
		return e, fmt.Errorf("%s has no %s address", e.name, fam)
	}
	return e, nil
}

func valid(as ...netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, a := range as {
		if a.IsValid() {
			out = append(out, a)
		}
	}
	return out
}

// ensureServer starts a server for port in the server's namespace.
func (t *Target) ensureServer(e endpoint, port traffic.Port) error {
	if port.Proto == traffic.Proto(scenario.ICMP) || e.netns == "" {
		return nil
	}
	k := serverKey{e.netns, port}
	if _, ok := t.servers[k]; ok {
		return nil
	}
	s, err := traffic.Serve(topology.NetnsPath(e.netns), e.name, e.addrs, []traffic.Port{port})
	if err != nil {
		return fmt.Errorf("serve %s %d/%s: %w", e.name, port.Port, port.Proto, err)
	}
	t.servers[k] = s
	return nil
}

// Probe implements target.Target: it runs the exchange with real sockets
// and watches the nodes' events meanwhile; a drop of the probe's packets
// ends the wait early (the client would only time out later).
func (t *Target) Probe(ctx context.Context, p scenario.Probe) (target.Observation, error) {
	var obs target.Observation
	if t.c == nil {
		return obs, fmt.Errorf("probe %s: no cluster (Setup failed)", p.ID)
	}
	client, err := t.resolve(p.From, p.Family)
	if err != nil {
		return obs, fmt.Errorf("probe %s: from: %w", p.ID, err)
	}
	if client.netns == "" {
		return obs, fmt.Errorf("probe %s: the client %s has no network namespace", p.ID, client.name)
	}
	server, err := t.resolve(p.To, p.Family)
	if err != nil {
		return obs, fmt.Errorf("probe %s: to: %w", p.ID, err)
	}
	proto := traffic.Proto(p.Protocol)
	if proto == "" {
		proto = traffic.TCP
	}
	if err := t.ensureServer(server, traffic.Port{Proto: proto, Port: p.Port}); err != nil {
		return obs, fmt.Errorf("probe %s: %w", p.ID, err)
	}
	if err := t.ensureBackendServers(p, server.addr, proto); err != nil {
		return obs, fmt.Errorf("probe %s: %w", p.ID, err)
	}
	// Events from before the probe are not the probe's.
	if _, err := t.drain(); err != nil {
		return obs, err
	}
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan traffic.Result, 1)
	go func() {
		done <- traffic.ProbeFromPort(pctx, topology.NetnsPath(client.netns), proto, client.addr, p.SourcePort,
			netip.AddrPortFrom(server.addr, p.Port), t.timeout)
	}()
	var evs []nodeEvent
	var res traffic.Result
	var drop *events.Event
	// collect reads the events so far and looks for a drop of the probe's
	// packets; the first one cancels the probe.
	collect := func() error {
		more, err := t.drain()
		if err != nil {
			return err
		}
		evs = append(evs, more...)
		if drop == nil {
			if drop = matchingDrop(more, client.addr); drop != nil {
				cancel()
			}
		}
		return nil
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		select {
		case res = <-done:
			break wait
		case <-tick.C:
			if err := collect(); err != nil {
				return obs, err
			}
		}
	}
	if err := collect(); err != nil {
		return obs, err
	}
	obs.Flows = t.flowsOf(evs)
	obs.ReplyVia = replyNodes(evs, client.addr)
	switch {
	case drop != nil:
		// The datapath dropped a packet of the exchange (the probe was
		// cancelled then, rather than left to time out).
		obs.Verdict, obs.DropReason = target.Denied, drop.Reason.String()
	case res.Outcome == traffic.Allowed:
		obs.Verdict = target.Allowed
		obs.Backend, obs.SourceSeen = res.Backend, res.SourceSeen
		if proto == traffic.ICMP && p.To.Kind == scenario.PeerPod {
			// The pod's kernel answers the echo (no server reports a
			// name or the source it saw): the reply came from the
			// pod's address, and nothing translates addresses yet.
			obs.Backend = p.To.Name
		}
		if t.c.Topology.Pods[obs.Backend] == nil {
			obs.Backend = "" // a node or an external answered
		}
	case res.Outcome == traffic.Error:
		return obs, fmt.Errorf("probe %s: %s", p.ID, res.Detail)
	default:
		// Timeout, refusal or unreachable with no drop event: denied,
		// reason unknown.
		obs.Verdict = target.Denied
	}
	return obs, nil
}

// nodeEvent is an event and the node whose datapath emitted it.
type nodeEvent struct {
	node string
	ev   events.Event
}

// drain collects the events every node's datapath emitted since the last
// call.
func (t *Target) drain() ([]nodeEvent, error) {
	var out []nodeEvent
	for _, name := range t.c.Nodes() {
		evs, err := t.c.Harness(name).DrainEvents()
		if err != nil {
			return out, fmt.Errorf("read events of %s: %w", name, err)
		}
		for _, e := range evs {
			out = append(out, nodeEvent{name, e})
		}
	}
	return out, nil
}

// matchingDrop returns the first drop event of a packet from or to the
// client's address: a load balancer translates the address the client
// connects to, so the server's side of a dropped packet may be another.
func matchingDrop(evs []nodeEvent, client netip.Addr) *events.Event {
	for i := range evs {
		e := evs[i].ev
		if !e.IsDrop() {
			continue
		}
		f := ciliaflow.FromEvent(e, nil)
		if f.IP == nil {
			continue
		}
		if f.IP.Source == client.String() || f.IP.Destination == client.String() {
			return &e
		}
	}
	return nil
}

// replyNodes returns the nodes whose datapath handled a reply of the
// probe: a packet of a tracked connection in its reply direction, or a
// packet addressed to the client.
func replyNodes(evs []nodeEvent, client netip.Addr) []string {
	seen := map[string]bool{}
	for _, ne := range evs {
		f := ciliaflow.FromEvent(ne.ev, nil)
		if ne.ev.CTState == maps.CTReply || (f.IP != nil && f.IP.Destination == client.String()) {
			seen[ne.node] = true
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// flowsOf converts events to flows named after the scenario's pods.
func (t *Target) flowsOf(evs []nodeEvent) []*flow.Flow {
	out := make([]*flow.Flow, 0, len(evs))
	for _, e := range evs {
		out = append(out, ciliaflow.FromEvent(e.ev, t.c.PodNamer))
	}
	return out
}

// ensureBackendServers starts servers on every pod that may serve a
// connection to addr:port through a service frontend: the backends of
// each service with a matching frontend (cluster IP, external or
// load-balancer IP at the port, or any address at a node port), at the
// target port.
func (t *Target) ensureBackendServers(p scenario.Probe, addr netip.Addr, proto traffic.Proto) error {
	if proto == traffic.ICMP || p.To.Kind == scenario.PeerPod || p.To.Kind == scenario.PeerExternal {
		return nil
	}
	st := t.c.State()
	for _, svc := range st.Services {
		for _, sp := range svc.Ports {
			if traffic.Proto(sp.Protocol) != proto || !frontendMatches(svc, sp, addr, p.Port) {
				continue
			}
			for _, pod := range st.Backends(svc) {
				port, ok := targetPort(pod, sp)
				if !ok {
					continue
				}
				e, err := t.resolve(scenario.Peer{Kind: scenario.PeerPod, Name: pod.Key()}, p.Family)
				if err != nil {
					continue // no address in this family: not a backend
				}
				if err := t.ensureServer(e, traffic.Port{Proto: proto, Port: port}); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// frontendMatches reports whether addr:port is a frontend of service port
// sp (node ports match on any address: the caller probes a node or an
// address).
func frontendMatches(svc scenario.Service, sp scenario.ServicePort, addr netip.Addr, port uint16) bool {
	if sp.NodePort != 0 && sp.NodePort == port {
		return true
	}
	if sp.Port != port {
		return false
	}
	if addr == svc.ClusterIP || addr == svc.ClusterIPv6 {
		return true
	}
	return slices.Contains(svc.ExternalIPs, addr) || slices.Contains(svc.LoadBalancerIPs, addr)
}

// targetPort resolves a service port's target port on pod: a number, or
// the pod's port of that name and protocol.
func targetPort(pod scenario.Pod, sp scenario.ServicePort) (uint16, bool) {
	if sp.TargetPort == "" {
		return sp.Port, true
	}
	if n, err := strconv.ParseUint(sp.TargetPort, 10, 16); err == nil {
		return uint16(n), true
	}
	for _, pp := range pod.Ports {
		if pp.Name == sp.TargetPort && pp.Protocol == sp.Protocol {
			return pp.Port, true
		}
	}
	return 0, false
}
