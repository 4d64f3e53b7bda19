package walker

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/ciliaproject/cilia/datapath/maps"
	dptestrun "github.com/ciliaproject/cilia/datapath/testrun"
	"github.com/ciliaproject/cilia/sim/topology"
)

// maxHops bounds a walk: a packet still moving after this many hops is in
// a loop.
const maxHops = 64

// ErrNoEntry is returned by EntryFor when nothing in the cluster would
// see a packet.
var ErrNoEntry = errors.New("no entry point")

// Node is what the walker needs of one simulated node: its devices, its
// datapath harness (node maps, events, endpoint programs) and the
// programs of its uplink and VXLAN device.
type Node struct {
	Name    string
	Topo    *topology.Node
	Harness *dptestrun.Harness
	// FromNetdev and ToNetdev are host.c's programs (node uplink).
	FromNetdev, ToNetdev *ebpf.Program
	// FromOverlay runs overlay.c's from_overlay behind the tunnel shim,
	// which hands it the tunnel key from skb->cb (nil in native routing
	// mode: no VXLAN device).
	FromOverlay *ebpf.Program
}

// Cluster is the simulated cluster the walker moves packets through.
type Cluster struct {
	Topology *topology.Topology
	Nodes    []*Node
}

// Walker walks packets through a Cluster. It is not safe for concurrent
// use.
type Walker struct {
	c       *Cluster
	nodes   map[string]*Node
	handles map[string]*netlink.Handle // by netns name
	mu      sync.Mutex
	routes  map[routeKey]route
	ipID    uint16
}

type routeKey struct {
	netns string
	dst   netip.Addr
}

// route is the part of a kernel route the walker uses.
type route struct {
	local   bool // the destination is an address of this netns
	ifindex int
	gateway netip.Addr // invalid: directly connected
	none    bool       // no route (unreachable)
}

// New returns a walker over c. Close releases its netlink handles.
func New(c *Cluster) (*Walker, error) {
	w := &Walker{c: c, nodes: map[string]*Node{}, handles: map[string]*netlink.Handle{}, routes: map[routeKey]route{}}
	for _, n := range c.Nodes {
		w.nodes[n.Name] = n
	}
	return w, nil
}

// Close releases the walker's netlink handles.
func (w *Walker) Close() error {
	for _, h := range w.handles {
		h.Close()
	}
	w.handles = map[string]*netlink.Handle{}
	return nil
}

// InvalidateRoutes forgets cached route lookups; call it after the
// topology changed (a pod came or went).
func (w *Walker) InvalidateRoutes() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.routes = map[routeKey]route{}
}

// handle returns a netlink handle bound to the named netns.
func (w *Walker) handle(name string) (*netlink.Handle, error) {
	if h, ok := w.handles[name]; ok {
		return h, nil
	}
	ns, err := netns.GetFromName(name)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", name, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("open netlink in %s: %w", name, err)
	}
	w.handles[name] = h
	return h, nil
}

// lookupRoute asks the kernel of netns name how it routes dst.
func (w *Walker) lookupRoute(name string, dst netip.Addr) (route, error) {
	k := routeKey{name, dst}
	w.mu.Lock()
	r, ok := w.routes[k]
	w.mu.Unlock()
	if ok {
		return r, nil
	}
	h, err := w.handle(name)
	if err != nil {
		return r, err
	}
	rs, err := h.RouteGet(dst.AsSlice())
	switch {
	case errors.Is(err, unix.ENETUNREACH) || errors.Is(err, unix.EHOSTUNREACH) || (err == nil && len(rs) == 0):
		r = route{none: true}
	case err != nil:
		return r, fmt.Errorf("route %s in %s: %w", dst, name, err)
	default:
		switch rs[0].Type {
		case unix.RTN_LOCAL:
			r = route{local: true, ifindex: rs[0].LinkIndex}
		case unix.RTN_UNICAST:
			r = route{ifindex: rs[0].LinkIndex}
			if gw, ok := netip.AddrFromSlice(rs[0].Gw); ok && !gw.IsUnspecified() {
				r.gateway = gw.Unmap()
			}
		default:
			r = route{none: true}
		}
	}
	w.mu.Lock()
	w.routes[k] = r
	w.mu.Unlock()
	return r, nil
}

// ParseEntry parses an entry as Entry.String renders it: "pod:ns/name",
// "node:NAME" (the node's uplink), "host:NAME" (the node's own stack) or
// "fabric" (from an external host, through the fabric router).
func (w *Walker) ParseEntry(s string) (Entry, error) {
	kind, name, _ := strings.Cut(s, ":")
	switch kind {
	case "pod":
		p := w.c.Topology.Pods[name]
		if p == nil {
			return Entry{}, fmt.Errorf("parse entry %q: no pod %s", s, name)
		}
		return Entry{Node: p.Node, Hook: FromContainer, Pod: name}, nil
	case "node", "host":
		if w.nodes[name] == nil {
			return Entry{}, fmt.Errorf("parse entry %q: no node %s", s, name)
		}
		if kind == "host" {
			return Entry{Node: name, Hook: Stack}, nil
		}
		return Entry{Node: name, Hook: FromNetdev}, nil
	case "fabric":
		return Entry{Hook: Fabric}, nil
	}
	return Entry{}, fmt.Errorf("parse entry %q: want pod:NS/NAME, node:NAME, host:NAME or fabric", s)
}

// EntryFor picks where frame enters the cluster: the from_container of
// the pod that owns its source address; the stack of the node that owns
// it; for anything else, the uplink of the node that owns the (outer)
// destination or hosts the destination pod, else the fabric router.
func (w *Walker) EntryFor(frame []byte) (Entry, error) {
	fi := parseFrame(frame)
	if fi.family == 0 {
		return Entry{}, fmt.Errorf("%w: not an IPv4 or IPv6 frame", ErrNoEntry)
	}
	t := w.c.Topology
	if kind, name, ok := t.Owner(fi.src); ok {
		switch kind {
		case "pod":
			return Entry{Node: t.Pods[name].Node, Hook: FromContainer, Pod: name}, nil
		case "node":
			return Entry{Node: name, Hook: Stack}, nil
		}
	}
	if kind, name, ok := t.Owner(fi.dst); ok {
		switch kind {
		case "pod":
			return Entry{Node: t.Pods[name].Node, Hook: FromNetdev}, nil
		case "node":
			return Entry{Node: name, Hook: FromNetdev}, nil
		}
	}
	return Entry{}, fmt.Errorf("%w: neither %s nor %s belongs to a pod or node of the cluster", ErrNoEntry, fi.src, fi.dst)
}

// position is where the walk is: a hook on a node (or the fabric), with
// what the kernel carries along with the packet.
type position struct {
	node *Node
	hook Hook
	pod  *topology.Pod // FromContainer, ToContainer
	mark uint32
	// forwarded is false for a packet the node's own stack originates
	// (no TTL decrement at its first route).
	forwarded bool
	// cb is skb->cb for the next program run (the tunnel shim's key),
	// or, at Encap, the tunnel key the trace named.
	cb [5]uint32
}

// Walk moves frame from entry until it is delivered, dropped or leaves
// the cluster. The frame is not modified.
func (w *Walker) Walk(entry Entry, frame []byte) (*Walk, error) {
	walk := &Walk{Entry: entry}
	pkt := append([]byte(nil), frame...)
	pos := position{hook: entry.Hook, forwarded: true}
	if entry.Hook != Fabric {
		pos.node = w.nodes[entry.Node]
		if pos.node == nil {
			return nil, fmt.Errorf("walk: no node %q", entry.Node)
		}
	}
	switch entry.Hook {
	case FromContainer, ToContainer:
		pos.pod = w.c.Topology.Pods[entry.Pod]
		if pos.pod == nil {
			return nil, fmt.Errorf("walk: no pod %q", entry.Pod)
		}
	case Stack:
		pos.forwarded = false
	case FromNetdev, Fabric:
	default:
		return nil, fmt.Errorf("walk: cannot enter at %s", entry.Hook)
	}
	for range maxHops {
		next, done, err := w.step(walk, pos, &pkt)
		if err != nil {
			return walk, fmt.Errorf("walk %s: %w", entry, err)
		}
		if done {
			return walk, nil
		}
		pos = next
	}
	return walk, fmt.Errorf("walk %s: still moving after %d hops (a loop?): %s", entry, maxHops, walk)
}

// step performs one hop at pos on *pkt and says where the packet goes.
func (w *Walker) step(walk *Walk, pos position, pkt *[]byte) (position, bool, error) {
	if pos.hook.IsProgram() {
		return w.runHook(walk, pos, pkt)
	}
	switch pos.hook {
	case Stack:
		return w.routeAtNode(walk, pos, pkt)
	case Encap:
		return w.encap(walk, pos, pkt)
	case Decap:
		return w.decap(walk, pos, pkt)
	case Fabric:
		return w.fabric(walk, pos, pkt)
	}
	return pos, false, fmt.Errorf("unknown hook %s", pos.hook)
}

// program returns the program, its name and device for a program hook.
func (w *Walker) program(pos position) (*ebpf.Program, string, string, error) {
	n := pos.node
	switch pos.hook {
	case FromContainer, ToContainer:
		ep := n.Harness.EndpointByIfindex(uint32(pos.pod.HostVeth.Ifindex))
		if ep == nil {
			return nil, "", "", fmt.Errorf("pod %s has no endpoint on %s", pos.pod.Key, n.Name)
		}
		if pos.hook == FromContainer {
			return ep.Endpoint.FromContainer, "from_container", pos.pod.HostVeth.Name, nil
		}
		return ep.Endpoint.ToContainer, "to_container", pos.pod.HostVeth.Name, nil
	case FromNetdev:
		return n.FromNetdev, "from_netdev", n.Topo.Uplink.Name, nil
	case ToNetdev:
		return n.ToNetdev, "to_netdev", n.Topo.Uplink.Name, nil
	case FromOverlay:
		if n.FromOverlay == nil {
			return nil, "", "", fmt.Errorf("node %s has no overlay (native routing)", n.Name)
		}
		return n.FromOverlay, "from_overlay", n.Topo.Tunnel.Name, nil
	}
	return nil, "", "", fmt.Errorf("hook %s runs no program", pos.hook)
}

// runHook runs the program of a program hook and follows its verdict.
func (w *Walker) runHook(walk *Walk, pos position, pkt *[]byte) (position, bool, error) {
	prog, name, dev, err := w.program(pos)
	if err != nil {
		return pos, false, err
	}
	in := *pkt
	r, err := pos.node.Harness.Run(name, prog, in, dptestrun.RunContext{Mark: pos.mark, CB: pos.cb})
	if err != nil {
		return pos, false, err
	}
	walk.Hops = append(walk.Hops, Hop{Node: pos.node.Name, Hook: pos.hook, Device: dev, Program: name,
		Code: r.Code, Packet: in, Events: r.Events})
	*pkt = r.Packet
	n := pos.node
	switch r.Code {
	case dptestrun.ActShot:
		walk.Outcome, walk.DropNode = Dropped, n.Name
		walk.At = fmt.Sprintf("%s %s on %s", name, dev, n.Name)
		if d, ok := r.Drop(); ok {
			walk.Drop = &d
		}
		return pos, true, nil
	case dptestrun.ActRedirect:
		return w.redirect(walk, pos, r, pkt)
	case dptestrun.ActOK:
	default:
		return pos, false, fmt.Errorf("%s on %s returned tc code %d", name, n.Name, r.Code)
	}
	if r.Mark&maps.MarkMagicHostMask == maps.MarkMagicToProxy && (pos.hook == FromContainer || pos.hook == ToContainer) {
		walk.Outcome, walk.At, walk.Packet = ToProxy, "proxy on "+n.Name, r.Packet
		return pos, true, nil
	}
	switch pos.hook {
	case ToContainer:
		walk.Outcome, walk.At, walk.Packet = Delivered, "pod "+pos.pod.Key, r.Packet
		return pos, true, nil
	case ToNetdev:
		return position{hook: Fabric, node: n, forwarded: true}, false, nil
	case FromNetdev:
		if _, ok := vxlanVNI(r.Packet); ok && n.Topo.Tunnel.Ifindex != 0 && w.ownsAddr(n, parseFrame(r.Packet).dst) {
			return position{node: n, hook: Decap, forwarded: true}, false, nil
		}
	}
	// TC_ACT_OK elsewhere hands the packet to the node's stack.
	return position{node: n, hook: Stack, mark: r.Mark, forwarded: pos.forwarded}, false, nil
}

// redirect follows a TC_ACT_REDIRECT to the device the trace names.
func (w *Walker) redirect(walk *Walk, pos position, r dptestrun.Result, pkt *[]byte) (position, bool, error) {
	n := pos.node
	t, ok := r.Trace()
	if !ok {
		if d, dropped := r.Drop(); dropped {
			// The packet was dropped and the program sent something else
			// in its place (a rejection back to the client: TCP RST or
			// ICMP unreachable for a service without backends). The
			// packet's walk ends here.
			walk.Outcome, walk.DropNode, walk.Drop = Dropped, n.Name, &d
			walk.At = fmt.Sprintf("%s on %s (rejected)", pos.hook, n.Name)
			return pos, true, nil
		}
		return pos, false, errors.New("a redirect without a trace event: the walker needs trace_level 0 (every packet)")
	}
	if n.Topo.Tunnel.Ifindex != 0 && int(t.Ifindex) == n.Topo.Tunnel.Ifindex {
		p := position{node: n, hook: Encap, forwarded: true}
		p.cb[0], p.cb[1] = t.TunnelID, addrWord(t.TunnelEndpoint)
		return p, false, nil
	}
	if pod := w.podByHostVeth(n, int(t.Ifindex)); pod != nil {
		return position{node: n, hook: ToContainer, pod: pod, mark: r.Mark, forwarded: true}, false, nil
	}
	if int(t.Ifindex) == n.Topo.Uplink.Ifindex {
		// Out of the uplink with bpf_redirect_neigh (the load balancer
		// forwards a translated packet): the kernel resolves the next hop
		// of the destination in the node's table for the MACs, the
		// program has decremented the TTL; to_netdev runs, then the
		// fabric.
		return w.neighOut(walk, pos, r, pkt)
	}
	return pos, false, fmt.Errorf("redirect on %s to ifindex %d, which is neither a pod's veth, the uplink nor the VXLAN device", n.Name, t.Ifindex)
}

// neighOut is bpf_redirect_neigh to the uplink: the destination's route in
// the node's netns gives the next hop, whose MAC the frame gets.
func (w *Walker) neighOut(walk *Walk, pos position, r dptestrun.Result, pkt *[]byte) (position, bool, error) {
	n := pos.node
	fi := parseFrame(r.Packet)
	rt, err := w.lookupRoute(n.Topo.Netns, fi.dst)
	if err != nil {
		return pos, false, err
	}
	if rt.none || rt.local || rt.ifindex != n.Topo.Uplink.Ifindex {
		return pos, false, fmt.Errorf("node %s: redirect_neigh of %s out of the uplink, but the node does not route it there", n.Name, fi.dst)
	}
	nexthop, mac, err := w.nextHop(n, fi.dst, rt)
	if err != nil {
		return pos, false, err
	}
	out := append([]byte(nil), r.Packet...)
	setMACs(out, mac, n.Topo.Uplink.MAC)
	walk.Hops = append(walk.Hops, Hop{Node: n.Name, Hook: Stack, Device: n.Topo.Uplink.Name, Code: -1, Packet: r.Packet,
		Note: fmt.Sprintf("redirect_neigh: via %s dev %s", nexthop, n.Topo.Uplink.Name)})
	*pkt = out
	return position{node: n, hook: ToNetdev, mark: r.Mark, forwarded: true}, false, nil
}

// addrWord packs an IPv4 address into a uint32 in network byte order as
// it lies in memory (the walker's cb convention: only used to carry the
// tunnel endpoint from the trace to the encapsulation).
func addrWord(a netip.Addr) uint32 {
	if !a.Is4() {
		return 0
	}
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func wordAddr(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// podByHostVeth returns the pod on node n whose host-side veth is ifindex.
func (w *Walker) podByHostVeth(n *Node, ifindex int) *topology.Pod {
	for _, p := range w.c.Topology.Pods {
		if p.Node == n.Name && p.HostVeth.Ifindex == ifindex {
			return p
		}
	}
	return nil
}

// ownsAddr reports whether a is one of node n's own addresses.
func (w *Walker) ownsAddr(n *Node, a netip.Addr) bool {
	return a.IsValid() && (a == n.Topo.IPv4 || a == n.Topo.IPv6)
}

// routeAtNode is the node's IP stack: a route lookup in its netns.
func (w *Walker) routeAtNode(walk *Walk, pos position, pkt *[]byte) (position, bool, error) {
	n := pos.node
	fi := parseFrame(*pkt)
	hop := Hop{Node: n.Name, Hook: Stack, Code: -1, Packet: *pkt}
	if fi.family == 0 {
		hop.Note = "not IP: the node consumes it"
		walk.Hops = append(walk.Hops, hop)
		walk.Outcome, walk.At, walk.Packet = Delivered, "node "+n.Name, *pkt
		return pos, true, nil
	}
	rt, err := w.lookupRoute(n.Topo.Netns, fi.dst)
	if err != nil {
		return pos, false, err
	}
	switch {
	case rt.local:
		hop.Note = "local address: delivered to the node"
		walk.Hops = append(walk.Hops, hop)
		walk.Outcome, walk.At, walk.Packet = Delivered, "node "+n.Name, *pkt
		return pos, true, nil
	case rt.none:
		hop.Note = "no route to " + fi.dst.String()
		walk.Hops = append(walk.Hops, hop)
		walk.Outcome, walk.At, walk.DropNode = Dropped, "stack of "+n.Name+": no route", n.Name
		return pos, true, nil
	}
	out := append([]byte(nil), *pkt...)
	if pos.forwarded && !decrementTTL(out) {
		hop.Note = "TTL exceeded"
		walk.Hops = append(walk.Hops, hop)
		walk.Outcome, walk.At, walk.DropNode = Dropped, "stack of "+n.Name+": TTL exceeded", n.Name
		return pos, true, nil
	}
	if pod := w.podByHostVeth(n, rt.ifindex); pod != nil {
		setMACs(out, pod.Eth0.MAC, pod.HostVeth.MAC)
		hop.Device, hop.Note = pod.HostVeth.Name, "route: dev "+pod.HostVeth.Name
		walk.Hops = append(walk.Hops, hop)
		*pkt = out
		return position{node: n, hook: ToContainer, pod: pod, mark: pos.mark, forwarded: true}, false, nil
	}
	if rt.ifindex != n.Topo.Uplink.Ifindex {
		return pos, false, fmt.Errorf("node %s routes %s to ifindex %d, which the simulator does not know", n.Name, fi.dst, rt.ifindex)
	}
	nexthop, mac, err := w.nextHop(n, fi.dst, rt)
	if err != nil {
		return pos, false, err
	}
	setMACs(out, mac, n.Topo.Uplink.MAC)
	hop.Device, hop.Note = n.Topo.Uplink.Name, fmt.Sprintf("route: via %s dev %s", nexthop, n.Topo.Uplink.Name)
	walk.Hops = append(walk.Hops, hop)
	*pkt = out
	return position{node: n, hook: ToNetdev, forwarded: true}, false, nil
}

// nextHop returns where node n sends a packet to dst that its route rt
// sends out of the uplink: the gateway, or dst itself when directly
// connected, and the MAC that answers for it on the fabric.
func (w *Walker) nextHop(n *Node, dst netip.Addr, rt route) (netip.Addr, net.HardwareAddr, error) {
	nexthop := dst
	if rt.gateway.IsValid() {
		nexthop = rt.gateway
	}
	mac, err := w.fabricMAC(nexthop)
	if err != nil {
		return nexthop, nil, fmt.Errorf("node %s: %w", n.Name, err)
	}
	return nexthop, mac, nil
}

// fabricMAC returns the MAC that answers for nexthop on the fabric: a
// node's uplink, or the fabric router's bridge.
func (w *Walker) fabricMAC(nexthop netip.Addr) (net.HardwareAddr, error) {
	t := w.c.Topology
	if f := t.Fabric; f != nil && (nexthop == f.GatewayV4 || nexthop == f.GatewayV6) {
		return f.Bridge.MAC, nil
	}
	for _, n := range t.Nodes {
		if nexthop == n.IPv4 || nexthop == n.IPv6 {
			return n.Uplink.MAC, nil
		}
	}
	return nil, fmt.Errorf("no fabric neighbour answers for %s", nexthop)
}

// encap is the VXLAN device: it wraps the packet with the tunnel key the
// program set (carried in pos.cb from the trace event) and hands the outer
// packet to the node's stack, which routes it to the tunnel endpoint.
func (w *Walker) encap(walk *Walk, pos position, pkt *[]byte) (position, bool, error) {
	n := pos.node
	vni, tep := pos.cb[0], wordAddr(pos.cb[1])
	if !tep.IsValid() || tep.IsUnspecified() {
		return pos, false, fmt.Errorf("node %s: redirect to the VXLAN device without a tunnel endpoint in the trace", n.Name)
	}
	mac, err := w.fabricMAC(tep)
	if err != nil {
		return pos, false, fmt.Errorf("node %s: tunnel endpoint: %w", n.Name, err)
	}
	w.ipID++
	out := encapVXLAN(*pkt, n.Topo.IPv4, tep, vni, n.Topo.Uplink.MAC, mac, w.ipID)
	walk.Hops = append(walk.Hops, Hop{Node: n.Name, Hook: Encap, Device: n.Topo.Tunnel.Name, Code: -1, Packet: *pkt,
		Note: fmt.Sprintf("VXLAN to %s VNI %d", tep, vni)})
	*pkt = out
	// The outer packet is the node's own: no TTL decrement.
	return position{node: n, hook: Stack, forwarded: false}, false, nil
}

// decap is the kernel's VXLAN receive path: it strips the outer headers
// and hands the inner frame to from_overlay with the tunnel key (through
// the shim, in skb->cb).
func (w *Walker) decap(walk *Walk, pos position, pkt *[]byte) (position, bool, error) {
	n := pos.node
	vni, _ := vxlanVNI(*pkt)
	inner, src, dst, err := decapVXLAN(*pkt)
	if err != nil {
		return pos, false, fmt.Errorf("node %s: %w", n.Name, err)
	}
	walk.Hops = append(walk.Hops, Hop{Node: n.Name, Hook: Decap, Device: n.Topo.Tunnel.Name, Code: -1, Packet: *pkt,
		Note: fmt.Sprintf("VXLAN from %s VNI %d", src, vni)})
	*pkt = inner
	p := position{node: n, hook: FromOverlay, forwarded: true}
	p.cb[0], p.cb[1], p.cb[2] = vni, netWord(src), netWord(dst)
	return p, false, nil
}

// netWord is an IPv4 address as the 32-bit word skb->cb holds when the
// address is stored in network byte order (what the shim reads).
func netWord(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// fabric delivers a frame on the wire: from a node's uplink to the owner
// of its destination MAC (another node, or the fabric router), or from an
// external host to the fabric router. The router routes by its kernel's
// table to a node or an external.
func (w *Walker) fabric(walk *Walk, pos position, pkt *[]byte) (position, bool, error) {
	t := w.c.Topology
	dstMAC := net.HardwareAddr((*pkt)[0:6])
	if pos.node != nil {
		for _, n := range t.Nodes {
			if n.Name != pos.node.Name && macEqual(n.Uplink.MAC, dstMAC) {
				walk.Hops = append(walk.Hops, Hop{Hook: Fabric, Code: -1, Packet: *pkt,
					Note: fmt.Sprintf("%s -> %s", pos.node.Name, n.Name)})
				return position{node: w.nodes[n.Name], hook: FromNetdev, forwarded: true}, false, nil
			}
		}
		if t.Fabric == nil || !macEqual(t.Fabric.Bridge.MAC, dstMAC) {
			walk.Hops = append(walk.Hops, Hop{Hook: Fabric, Code: -1, Packet: *pkt, Note: "no one on the fabric has " + dstMAC.String()})
			walk.Outcome, walk.At = Dropped, "fabric: unknown destination MAC"
			return pos, true, nil
		}
	}
	// The fabric router.
	fi := parseFrame(*pkt)
	hop := Hop{Hook: Fabric, Code: -1, Packet: *pkt}
	if fi.family == 0 {
		return pos, false, errors.New("fabric router: not an IP frame")
	}
	rt, err := w.lookupRoute(t.Fabric.Netns, fi.dst)
	if err != nil {
		return pos, false, err
	}
	out := append([]byte(nil), *pkt...)
	if rt.none || !decrementTTL(out) {
		hop.Note = "fabric router: no route to " + fi.dst.String()
		walk.Hops = append(walk.Hops, hop)
		walk.Outcome, walk.At = LeftCluster, "outside "+fi.dst.String()
		walk.Packet = *pkt
		return pos, true, nil
	}
	if rt.local {
		hop.Note = "fabric router: local address"
		walk.Hops = append(walk.Hops, hop)
		walk.Outcome, walk.At, walk.Packet = Delivered, "fabric router", out
		return pos, true, nil
	}
	for _, e := range t.Externals {
		if e.IPv4 == fi.dst || e.IPv6 == fi.dst {
			setMACs(out, e.Eth0.MAC, t.Fabric.Bridge.MAC)
			hop.Note = "fabric router -> external " + e.Name
			walk.Hops = append(walk.Hops, hop)
			walk.Outcome, walk.At, walk.Packet = LeftCluster, "external "+e.Name, out
			return pos, true, nil
		}
	}
	nexthop := fi.dst
	if rt.gateway.IsValid() {
		nexthop = rt.gateway
	}
	for _, n := range t.Nodes {
		if nexthop == n.IPv4 || nexthop == n.IPv6 {
			setMACs(out, n.Uplink.MAC, t.Fabric.Bridge.MAC)
			hop.Note = fmt.Sprintf("fabric router: via %s (%s)", nexthop, n.Name)
			walk.Hops = append(walk.Hops, hop)
			*pkt = out
			return position{node: w.nodes[n.Name], hook: FromNetdev, forwarded: true}, false, nil
		}
	}
	hop.Note = "fabric router: " + fi.dst.String() + " is outside the cluster"
	walk.Hops = append(walk.Hops, hop)
	walk.Outcome, walk.At, walk.Packet = LeftCluster, "outside "+fi.dst.String(), out
	return pos, true, nil
}

func macEqual(a, b net.HardwareAddr) bool {
	return len(a) == 6 && len(b) == 6 && string(a) == string(b)
}
