// Package topology builds a scenario's cluster out of network namespaces,
// for the simulator: a fabric netns with a bridge and a router, one netns
// per node with an uplink veth on the bridge (and a VXLAN device in tunnel
// mode), one netns per pod with a veth to its node, and one netns per
// external host with a veth to the fabric router.
//
// Everything is L3-routed and deterministic: addresses are /32 and /128,
// every neighbour on a point-to-point or fabric link is a PERMANENT entry,
// the bridge has static FDB entries for the node uplinks, DAD and router
// solicitations are off, and every MAC address is derived from the
// device's role and index (see the mac* constants), so a build is the
// same every time and captures are reproducible.
//
// Names: a run has a prefix "cilia-<pid>-<n>" (NewPrefix); its netns are
// "<prefix>-f" (fabric), "<prefix>-n<i>" (nodes), "<prefix>-p<i>" (pods)
// and "<prefix>-x<i>" (externals), named netns under /var/run/netns.
// Close removes them; Clean removes those of runs that were killed before
// they could.
package topology

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
)

// Mode is how nodes reach each other's pods.
type Mode string

const (
	// Tunnel gives every node a VXLAN device (cilia_vxlan, collect_md,
	// port 8472); the BPF programs encapsulate pod-to-pod traffic between
	// nodes.
	Tunnel Mode = "tunnel"
	// Native routes pod addresses between nodes on the fabric, without a
	// VXLAN device.
	Native Mode = "native"
)

// Addresses and names the topology uses; they are the same in every run.
var (
	// GatewayV4 is the fabric router's IPv4 address, on its bridge.
	GatewayV4 = netip.MustParseAddr("100.64.0.1")
	// GatewayV6 is the fabric router's IPv6 address, on its bridge.
	GatewayV6 = netip.MustParseAddr("fd00:fab::1")
	// PodGatewayV4 is the IPv4 next hop of every pod's default route; a
	// PERMANENT neighbour entry maps it to the host veth's MAC.
	PodGatewayV4 = netip.MustParseAddr("169.254.1.1")
	// PodGatewayV6 is the IPv6 next hop of every pod's default route; a
	// PERMANENT neighbour entry maps it to the host veth's MAC.
	PodGatewayV6 = netip.MustParseAddr("fe80::1")
)

// Device names.
const (
	// BridgeName is the fabric bridge.
	BridgeName = "br0"
	// Eth0Name is the uplink of nodes, and the only veth of pods and externals.
	Eth0Name = "eth0"
	// VXLANName is the VXLAN device of nodes in Tunnel mode.
	VXLANName = "cilia_vxlan"
	// VXLANPort is the UDP port of the VXLAN device.
	VXLANPort = 8472
)

// MAC addresses are 02:<kind>:<index, 4 bytes big-endian>: locally
// administered, unicast, and the same in every run. The index is the
// node's, pod's or external's (0 for the bridge).
const (
	macBridge     byte = 0x01 // br0 in the fabric netns
	macFabricNode byte = 0x02 // n<i>: the bridge port of node i
	macNodeUplink byte = 0x03 // eth0 of node i
	macNodeVXLAN  byte = 0x04 // cilia_vxlan of node i
	macHostVeth   byte = 0x05 // lxc…: the node side of pod i
	macPodEth0    byte = 0x06 // eth0 of pod i
	macFabricExt  byte = 0x07 // x<i>: the fabric side of external i
	macExtEth0    byte = 0x08 // eth0 of external i
)

// mac returns the MAC address of a device of kind with index idx.
func mac(kind byte, idx int) net.HardwareAddr {
	return net.HardwareAddr{0x02, kind, byte(idx >> 24), byte(idx >> 16), byte(idx >> 8), byte(idx)}
}

// Sentinel errors.
var (
	// ErrInvalidSpec is wrapped by the errors of Build and AddPod for a
	// spec that cannot be built (duplicate names or addresses, wrong
	// address families, unknown nodes).
	ErrInvalidSpec = errors.New("invalid topology spec")
	// ErrNotFound is wrapped by DeletePod for an unknown pod.
	ErrNotFound = errors.New("not found")
	// ErrClosed is returned by AddPod and DeletePod after Close.
	ErrClosed = errors.New("topology closed")
)

// NodeSpec is a node to build. Either address may be invalid (the zero
// netip.Addr), not both.
type NodeSpec struct {
	Name       string
	IPv4, IPv6 netip.Addr
}

// PodSpec is a pod to build. Key is "namespace/name"; Node is the node it
// runs on ("" is the first node). Its node must have an address of every
// family the pod has.
type PodSpec struct {
	Key        string
	Node       string
	IPv4, IPv6 netip.Addr
}

// ExternalSpec is a host outside the cluster, routed by the fabric.
type ExternalSpec struct {
	Name       string
	IPv4, IPv6 netip.Addr
}

// Spec is a cluster to build.
type Spec struct {
	// Prefix names the netns of the run; "" is NewPrefix(). Clean only
	// knows prefixes of NewPrefix's form.
	Prefix string
	// Mode is Tunnel or Native; "" is Tunnel.
	Mode      Mode
	Nodes     []NodeSpec
	Pods      []PodSpec
	Externals []ExternalSpec
	// FrontendAddrs are addresses that belong to no host and that the
	// fabric routes to the first node (of the address's family): the
	// externalIPs and LoadBalancer IPs of services, which the nodes'
	// load balancer answers for.
	FrontendAddrs []netip.Addr
}

// Link is a network device. Ifindex is its index in the netns it lives in.
type Link struct {
	Name    string
	Ifindex int
	MAC     net.HardwareAddr
}

// Node is a built node: its netns, addresses (on Uplink, as /32 and
// /128), uplink eth0 (a veth on the fabric bridge) and, in Tunnel mode,
// its VXLAN device (zero in Native mode).
type Node struct {
	Name, Netns string
	IPv4, IPv6  netip.Addr
	Uplink      Link
	Tunnel      Link
}

// Pod is a built pod: its netns with Eth0, and the host side of its veth
// (HostVeth, "lxc<hash>") in its node's netns.
type Pod struct {
	Key, Node, Netns string
	IPv4, IPv6       netip.Addr
	Eth0             Link
	HostVeth         Link
}

// External is a built external host: its netns with Eth0, a veth whose
// other end is routed by the fabric netns.
type External struct {
	Name, Netns string
	IPv4, IPv6  netip.Addr
	Eth0        Link
}

// Fabric is the network between nodes and externals: a netns with a
// bridge for the node uplinks, routing between nodes, pods (via their
// nodes) and externals.
type Fabric struct {
	Netns                string
	Bridge               Link
	GatewayV4, GatewayV6 netip.Addr
}

// Topology is a built cluster. Its methods are safe for concurrent use;
// the exported fields must not be read while AddPod or DeletePod runs.
type Topology struct {
	Prefix    string
	Mode      Mode
	Fabric    *Fabric
	Nodes     []*Node
	Pods      map[string]*Pod
	Externals []*External

	mu      sync.Mutex
	closed  bool
	nextPod int
	spaces  []*space          // every netns made, in order
	byName  map[string]*space // netns name → space
}

// Build builds the cluster s describes. On error, everything made so far
// is removed. The topology must be closed with Close.
func Build(ctx context.Context, s Spec) (_ *Topology, err error) {
	if s.Mode == "" {
		s.Mode = Tunnel
	}
	if err := validate(s); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("build topology: %w", err)
	}
	if s.Prefix == "" {
		s.Prefix = NewPrefix()
	}
	t := &Topology{Prefix: s.Prefix, Mode: s.Mode, Pods: map[string]*Pod{}, byName: map[string]*space{}}
	defer func() {
		if err != nil {
			err = errors.Join(err, t.Close())
		}
	}()
	if err := t.buildFabric(); err != nil {
		return nil, err
	}
	for i, ns := range s.Nodes {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("build topology: %w", err)
		}
		if err := t.buildNode(i, ns); err != nil {
			return nil, err
		}
	}
	for _, n := range t.Nodes {
		if err := t.routeNode(n); err != nil {
			return nil, err
		}
	}
	if err := t.routeFrontends(s.FrontendAddrs); err != nil {
		return nil, err
	}
	if len(t.Nodes) > 0 {
		// The bridge has a carrier once a port has; like the first end
		// of a veth, it sends only once linkwatch has seen that.
		if err := waitOperUp(t.fabric(), t.Fabric.Bridge); err != nil {
			return nil, err
		}
	}
	for i, es := range s.Externals {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("build topology: %w", err)
		}
		if err := t.buildExternal(i, es); err != nil {
			return nil, err
		}
	}
	for _, ps := range s.Pods {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("build topology: %w", err)
		}
		if _, err := t.addPod(ps); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// AddPod adds a pod to a built topology, with the routes to it on every
// node and in the fabric.
func (t *Topology) AddPod(s PodSpec) (*Pod, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, ErrClosed
	}
	if err := t.checkPod(s); err != nil {
		return nil, err
	}
	return t.addPod(s)
}

// DeletePod removes a pod: its netns, its host veth, and the routes to it.
func (t *Topology) DeletePod(key string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	p, ok := t.Pods[key]
	if !ok {
		return fmt.Errorf("delete pod %s: %w", key, ErrNotFound)
	}
	return t.deletePod(p)
}

// Node returns the node called name, or nil.
func (t *Topology) Node(name string) *Node {
	for _, n := range t.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Owner returns what holds address a: kind "node", "pod", "external" or
// "fabric" (the gateways), and the node's name, the pod's key, the
// external's name or "fabric".
func (t *Topology) Owner(a netip.Addr) (kind, name string, ok bool) {
	a = a.Unmap()
	if !a.IsValid() {
		return "", "", false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, n := range t.Nodes {
		if a == n.IPv4 || a == n.IPv6 {
			return "node", n.Name, true
		}
	}
	for _, p := range t.Pods {
		if a == p.IPv4 || a == p.IPv6 {
			return "pod", p.Key, true
		}
	}
	for _, e := range t.Externals {
		if a == e.IPv4 || a == e.IPv6 {
			return "external", e.Name, true
		}
	}
	if f := t.Fabric; f != nil && (a == f.GatewayV4 || a == f.GatewayV6) {
		return "fabric", "fabric", true
	}
	return "", "", false
}

// Close removes every netns and device the topology made. It is
// idempotent, and tolerates netns already removed (by Clean).
func (t *Topology) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	var errs []error
	for i := len(t.spaces) - 1; i >= 0; i-- {
		errs = append(errs, t.spaces[i].remove())
	}
	t.spaces, t.byName = nil, nil
	return errors.Join(errs...)
}

// validate checks a spec before anything is built.
func validate(s Spec) error {
	if s.Mode != Tunnel && s.Mode != Native {
		return fmt.Errorf("%w: mode %q: want %q or %q", ErrInvalidSpec, s.Mode, Tunnel, Native)
	}
	owners := map[netip.Addr]string{
		GatewayV4: "the fabric gateway", GatewayV6: "the fabric gateway",
		PodGatewayV4: "the pod gateway", PodGatewayV6: "the pod gateway",
	}
	claim := func(what string, v4, v6 netip.Addr) error {
		if !v4.IsValid() && !v6.IsValid() {
			return fmt.Errorf("%w: %s has no address", ErrInvalidSpec, what)
		}
		if v4.IsValid() && !v4.Is4() {
			return fmt.Errorf("%w: %s: IPv4 address %s is not IPv4", ErrInvalidSpec, what, v4)
		}
		if v6.IsValid() && (!v6.Is6() || v6.Is4In6()) {
			return fmt.Errorf("%w: %s: IPv6 address %s is not IPv6", ErrInvalidSpec, what, v6)
		}
		for _, a := range []netip.Addr{v4, v6} {
			if !a.IsValid() {
				continue
			}
			if !a.IsGlobalUnicast() {
				return fmt.Errorf("%w: %s: %s is not a unicast address", ErrInvalidSpec, what, a)
			}
			if o, dup := owners[a]; dup {
				return fmt.Errorf("%w: %s: address %s is already %s's", ErrInvalidSpec, what, a, o)
			}
			owners[a] = what
		}
		return nil
	}
	nodes := map[string]NodeSpec{}
	for _, n := range s.Nodes {
		if n.Name == "" {
			return fmt.Errorf("%w: a node without a name", ErrInvalidSpec)
		}
		if _, dup := nodes[n.Name]; dup {
			return fmt.Errorf("%w: node %s twice", ErrInvalidSpec, n.Name)
		}
		nodes[n.Name] = n
		if err := claim("node "+n.Name, n.IPv4, n.IPv6); err != nil {
			return err
		}
	}
	exts := map[string]bool{}
	for _, e := range s.Externals {
		if e.Name == "" {
			return fmt.Errorf("%w: an external without a name", ErrInvalidSpec)
		}
		if exts[e.Name] {
			return fmt.Errorf("%w: external %s twice", ErrInvalidSpec, e.Name)
		}
		exts[e.Name] = true
		if err := claim("external "+e.Name, e.IPv4, e.IPv6); err != nil {
			return err
		}
	}
	pods := map[string]bool{}
	for _, p := range s.Pods {
		if p.Key == "" {
			return fmt.Errorf("%w: a pod without a key", ErrInvalidSpec)
		}
		if pods[p.Key] {
			return fmt.Errorf("%w: pod %s twice", ErrInvalidSpec, p.Key)
		}
		pods[p.Key] = true
		name := p.Node
		if name == "" {
			if len(s.Nodes) == 0 {
				return fmt.Errorf("%w: pod %s: no node to run on", ErrInvalidSpec, p.Key)
			}
			name = s.Nodes[0].Name
		}
		n, ok := nodes[name]
		if !ok {
			return fmt.Errorf("%w: pod %s: unknown node %q", ErrInvalidSpec, p.Key, name)
		}
		p.Node = name
		if err := podFamilies(p, n.IPv4, n.IPv6); err != nil {
			return err
		}
		if err := claim("pod "+p.Key, p.IPv4, p.IPv6); err != nil {
			return err
		}
	}
	return nil
}

// podFamilies fails unless the pod's node has an address of every family
// the pod has (the routes to the pod go via the node's address).
func podFamilies(p PodSpec, nodeV4, nodeV6 netip.Addr) error {
	if p.IPv4.IsValid() && !nodeV4.IsValid() {
		return fmt.Errorf("%w: pod %s has an IPv4 address, its node %s has none", ErrInvalidSpec, p.Key, p.Node)
	}
	if p.IPv6.IsValid() && !nodeV6.IsValid() {
		return fmt.Errorf("%w: pod %s has an IPv6 address, its node %s has none", ErrInvalidSpec, p.Key, p.Node)
	}
	return nil
}

// checkPod validates a pod added to a built topology.
func (t *Topology) checkPod(s PodSpec) error {
	if _, dup := t.Pods[s.Key]; dup {
		return fmt.Errorf("%w: pod %s exists", ErrInvalidSpec, s.Key)
	}
	spec := Spec{Mode: t.Mode}
	for _, n := range t.Nodes {
		spec.Nodes = append(spec.Nodes, NodeSpec{Name: n.Name, IPv4: n.IPv4, IPv6: n.IPv6})
	}
	for _, e := range t.Externals {
		spec.Externals = append(spec.Externals, ExternalSpec{Name: e.Name, IPv4: e.IPv4, IPv6: e.IPv6})
	}
	for _, p := range t.Pods {
		spec.Pods = append(spec.Pods, PodSpec{Key: p.Key, Node: p.Node, IPv4: p.IPv4, IPv6: p.IPv6})
	}
	spec.Pods = append(spec.Pods, s)
	return validate(spec)
}

// ParseMode parses a mode name: "tunnel", "native", or "" (Tunnel).
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case "", Tunnel:
		return Tunnel, nil
	case Native:
		return Native, nil
	}
	return "", fmt.Errorf("%w: unknown mode %q (want tunnel or native)", ErrInvalidSpec, s)
}
