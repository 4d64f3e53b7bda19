package topology

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TunnelPodMTU is the MTU of pod veths in Tunnel mode: the uplink's 1500
// minus the VXLAN overhead (50 bytes), as Cilium does, so encapsulated
// pod packets fit the fabric.
const TunnelPodMTU = 1450

// newSpace makes and records a netns of the topology.
func (t *Topology) newSpace(name string, router bool) (*space, error) {
	sp, err := newSpace(name, router)
	if err != nil {
		return nil, err
	}
	t.spaces = append(t.spaces, sp)
	t.byName[name] = sp
	return sp, nil
}

// forgetSpace removes a netns of the topology and its record.
func (t *Topology) forgetSpace(sp *space) error {
	for i, s := range t.spaces {
		if s == sp {
			t.spaces = append(t.spaces[:i], t.spaces[i+1:]...)
			break
		}
	}
	delete(t.byName, sp.name)
	return sp.remove()
}

// fabric returns the fabric's netns.
func (t *Topology) fabric() *space { return t.byName[t.Fabric.Netns] }

// buildFabric makes the fabric netns with its bridge and gateways.
func (t *Topology) buildFabric() error {
	sp, err := t.newSpace(t.Prefix+"-f", true)
	if err != nil {
		return err
	}
	// No multicast snooping: the fabric carries unicast only, and a
	// snooping bridge joins the snoopers' groups and reports them.
	snooping := false
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{
		Name: BridgeName, HardwareAddr: mac(macBridge, 0), Flags: net.FlagUp, TxQLen: -1,
	}, MulticastSnooping: &snooping}
	if err := sp.h.LinkAdd(br); err != nil {
		return fmt.Errorf("add %s in %s: %w", BridgeName, sp.name, err)
	}
	link, err := linkOf(sp, BridgeName)
	if err != nil {
		return err
	}
	t.Fabric = &Fabric{Netns: sp.name, Bridge: link, GatewayV4: GatewayV4, GatewayV6: GatewayV6}
	return addAddrs(sp, link, GatewayV4, GatewayV6)
}

// buildNode makes node i's netns, uplink (on the fabric bridge), VXLAN
// device, and the fabric's routes to the node.
func (t *Topology) buildNode(i int, s NodeSpec) error {
	sp, err := t.newSpace(fmt.Sprintf("%s-n%d", t.Prefix, i), true)
	if err != nil {
		return err
	}
	fab := t.fabric()
	port, uplink, err := addVeth(fab, fmt.Sprintf("n%d", i), mac(macFabricNode, i), t.Fabric.Bridge.Ifindex, sp, Eth0Name, mac(macNodeUplink, i), 0)
	if err != nil {
		return err
	}
	n := &Node{Name: s.Name, Netns: sp.name, IPv4: s.IPv4, IPv6: s.IPv6, Uplink: uplink}
	t.Nodes = append(t.Nodes, n)
	if err := addAddrs(sp, uplink, s.IPv4, s.IPv6); err != nil {
		return err
	}
	// A static FDB entry: the bridge never floods frames for a node.
	fdb := &netlink.Neigh{LinkIndex: port.Ifindex, Family: unix.AF_BRIDGE, Flags: netlink.NTF_MASTER,
		State: netlink.NUD_NOARP, HardwareAddr: uplink.MAC}
	if err := fab.h.NeighSet(fdb); err != nil {
		return fmt.Errorf("add fdb entry %s dev %s in %s: %w", uplink.MAC, port.Name, fab.name, err)
	}
	for _, a := range []netip.Addr{s.IPv4, s.IPv6} {
		if !a.IsValid() {
			continue
		}
		if err := routeDev(fab, t.Fabric.Bridge, a); err != nil {
			return err
		}
		if err := permanentNeigh(fab, t.Fabric.Bridge, a, uplink.MAC); err != nil {
			return err
		}
	}
	if t.Mode == Tunnel {
		vx := &netlink.Vxlan{
			LinkAttrs: netlink.LinkAttrs{Name: VXLANName, HardwareAddr: mac(macNodeVXLAN, i), Flags: net.FlagUp, TxQLen: -1},
			FlowBased: true,
			Port:      VXLANPort,
		}
		if err := sp.h.LinkAdd(vx); err != nil {
			return fmt.Errorf("add %s in %s: %w", VXLANName, sp.name, err)
		}
		if n.Tunnel, err = linkOf(sp, VXLANName); err != nil {
			return err
		}
	}
	return nil
}

// routeNode adds node n's routes to the other nodes (and their pods,
// though Build adds pods later) and its default routes via the fabric.
func (t *Topology) routeNode(n *Node) error {
	sp := t.byName[n.Netns]
	for _, o := range t.Nodes {
		if o == n {
			continue
		}
		for _, a := range []netip.Addr{o.IPv4, o.IPv6} {
			if !a.IsValid() {
				continue
			}
			if err := routeDev(sp, n.Uplink, a); err != nil {
				return err
			}
			if err := permanentNeigh(sp, n.Uplink, a, o.Uplink.MAC); err != nil {
				return err
			}
		}
	}
	for _, gw := range []netip.Addr{t.Fabric.GatewayV4, t.Fabric.GatewayV6} {
		if err := permanentNeigh(sp, n.Uplink, gw, t.Fabric.Bridge.MAC); err != nil {
			return err
		}
		if err := routeDefault(sp, n.Uplink, gw, true); err != nil {
			return err
		}
	}
	return nil
}

// routeFrontends routes each address in the fabric via the first node
// with an address of its family.
func (t *Topology) routeFrontends(addrs []netip.Addr) error {
	for _, a := range addrs {
		var gw netip.Addr
		for _, n := range t.Nodes {
			if g := n.IPv4; a.Is4() && g.IsValid() {
				gw = g
			} else if g := n.IPv6; a.Is6() && g.IsValid() {
				gw = g
			}
			if gw.IsValid() {
				break
			}
		}
		if !gw.IsValid() {
			return fmt.Errorf("route frontend %s: no node has an address of its family", a)
		}
		if err := routeVia(t.fabric(), t.Fabric.Bridge, a, gw); err != nil {
			return fmt.Errorf("route frontend %s: %w", a, err)
		}
	}
	return nil
}

// buildExternal makes external i's netns, its veth to the fabric, and the
// routes both ways.
func (t *Topology) buildExternal(i int, s ExternalSpec) error {
	sp, err := t.newSpace(fmt.Sprintf("%s-x%d", t.Prefix, i), false)
	if err != nil {
		return err
	}
	fab := t.fabric()
	port, eth0, err := addVeth(fab, fmt.Sprintf("x%d", i), mac(macFabricExt, i), 0, sp, Eth0Name, mac(macExtEth0, i), 0)
	if err != nil {
		return err
	}
	t.Externals = append(t.Externals, &External{Name: s.Name, Netns: sp.name, IPv4: s.IPv4, IPv6: s.IPv6, Eth0: eth0})
	if err := addAddrs(sp, eth0, s.IPv4, s.IPv6); err != nil {
		return err
	}
	for _, a := range []netip.Addr{s.IPv4, s.IPv6} {
		if !a.IsValid() {
			continue
		}
		if err := routeDev(fab, port, a); err != nil {
			return err
		}
		if err := permanentNeigh(fab, port, a, eth0.MAC); err != nil {
			return err
		}
	}
	for _, gw := range []netip.Addr{t.Fabric.GatewayV4, t.Fabric.GatewayV6} {
		if err := permanentNeigh(sp, eth0, gw, port.MAC); err != nil {
			return err
		}
		if err := routeDefault(sp, eth0, gw, true); err != nil {
			return err
		}
	}
	return nil
}

// addPod makes a pod (validated): its netns, its veth to its node, its
// routes, and the routes to it on its node, the other nodes and the
// fabric. On error, what it made is removed.
func (t *Topology) addPod(s PodSpec) (_ *Pod, err error) {
	if s.Node == "" {
		s.Node = t.Nodes[0].Name
	}
	n := t.Node(s.Node)
	if n == nil {
		return nil, fmt.Errorf("%w: pod %s: unknown node %q", ErrInvalidSpec, s.Key, s.Node)
	}
	idx := t.nextPod
	t.nextPod++
	sp, err := t.newSpace(fmt.Sprintf("%s-p%d", t.Prefix, idx), false)
	if err != nil {
		return nil, err
	}
	p := &Pod{Key: s.Key, Node: n.Name, Netns: sp.name, IPv4: s.IPv4, IPv6: s.IPv6}
	defer func() {
		if err != nil {
			err = errors.Join(err, t.deletePod(p))
		}
	}()
	t.Pods[s.Key] = p
	node := t.byName[n.Netns]
	name, err := t.hostVethName(node, s.Key)
	if err != nil {
		return nil, err
	}
	mtu := 0
	if t.Mode == Tunnel {
		mtu = TunnelPodMTU
	}
	if p.HostVeth, p.Eth0, err = addVeth(node, name, mac(macHostVeth, idx), 0, sp, Eth0Name, mac(macPodEth0, idx), mtu); err != nil {
		return nil, err
	}
	if err := addAddrs(sp, p.Eth0, s.IPv4, s.IPv6); err != nil {
		return nil, err
	}
	// In the pod: the gateways are the host veth, by PERMANENT entries.
	for _, gw := range []netip.Addr{PodGatewayV4, PodGatewayV6} {
		if err := permanentNeigh(sp, p.Eth0, gw, p.HostVeth.MAC); err != nil {
			return nil, err
		}
	}
	if err := routeDev(sp, p.Eth0, PodGatewayV4); err != nil {
		return nil, err
	}
	for _, gw := range []netip.Addr{PodGatewayV4, PodGatewayV6} {
		if err := routeDefault(sp, p.Eth0, gw, false); err != nil {
			return nil, err
		}
	}
	fab := t.fabric()
	for _, a := range []netip.Addr{s.IPv4, s.IPv6} {
		if !a.IsValid() {
			continue
		}
		// On its node: the pod's address on the host veth.
		if err := routeDev(node, p.HostVeth, a); err != nil {
			return nil, err
		}
		if err := permanentNeigh(node, p.HostVeth, a, p.Eth0.MAC); err != nil {
			return nil, err
		}
		via := n.IPv4
		if a.Is6() {
			via = n.IPv6
		}
		// On the other nodes and the fabric: via the pod's node.
		for _, o := range t.Nodes {
			if o == n {
				continue
			}
			if err := routeVia(t.byName[o.Netns], o.Uplink, a, via); err != nil {
				return nil, err
			}
		}
		if err := routeVia(fab, t.Fabric.Bridge, a, via); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// deletePod removes pod p, as far as it was made.
func (t *Topology) deletePod(p *Pod) error {
	var errs []error
	n := t.Node(p.Node)
	if n != nil && p.HostVeth.Ifindex != 0 {
		node := t.byName[n.Netns]
		// Deleting the host veth deletes the pod's eth0, the node's
		// routes and neighbours of the pod, now rather than when the
		// kernel gets round to destroying the netns.
		if err := node.h.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Index: p.HostVeth.Ifindex}}); err != nil && !isGone(err) {
			errs = append(errs, fmt.Errorf("delete %s in %s: %w", p.HostVeth.Name, node.name, err))
		}
	}
	if n != nil {
		for _, a := range []netip.Addr{p.IPv4, p.IPv6} {
			if !a.IsValid() {
				continue
			}
			for _, o := range t.Nodes {
				if o != n {
					errs = append(errs, routeDel(t.byName[o.Netns], o.Uplink, a))
				}
			}
			errs = append(errs, routeDel(t.fabric(), t.Fabric.Bridge, a))
		}
	}
	if sp, ok := t.byName[p.Netns]; ok {
		errs = append(errs, t.forgetSpace(sp))
	}
	if t.Pods[p.Key] == p {
		delete(t.Pods, p.Key)
	}
	return errors.Join(errs...)
}

// hostVethName returns the name of a pod's host veth: "lxc" and 11 hex
// digits of the SHA-256 of its key (14 characters), salted in the
// unlikely case another device of the node has that name.
func (t *Topology) hostVethName(node *space, key string) (string, error) {
	for salt := 0; salt < 16; salt++ {
		in := key
		if salt > 0 {
			in = fmt.Sprintf("%s#%d", key, salt)
		}
		sum := sha256.Sum256([]byte(in))
		name := "lxc" + hex.EncodeToString(sum[:])[:11]
		if _, err := node.h.LinkByName(name); err != nil {
			var nf netlink.LinkNotFoundError
			if errors.As(err, &nf) {
				return name, nil
			}
			return "", fmt.Errorf("look up %s in %s: %w", name, node.name, err)
		}
	}
	return "", fmt.Errorf("name the host veth of pod %s: every candidate is taken", key)
}

// addVeth makes a veth pair: name in sp (enslaved to master if not 0)
// and peerName in peer, both up, with the given MACs, and MTU mtu if not
// 0. It returns both ends.
func addVeth(sp *space, name string, m net.HardwareAddr, master int, peer *space, peerName string, peerMAC net.HardwareAddr, mtu int) (Link, Link, error) {
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{
			Name: name, HardwareAddr: m, Flags: net.FlagUp, TxQLen: -1, MasterIndex: master, MTU: mtu,
		},
		PeerName:         peerName,
		PeerHardwareAddr: peerMAC,
		PeerNamespace:    netlink.NsFd(int(peer.ns)),
		PeerTxQLen:       -1,
	}
	if err := sp.h.LinkAdd(veth); err != nil {
		return Link{}, Link{}, fmt.Errorf("add veth %s in %s, peer %s in %s: %w", name, sp.name, peerName, peer.name, err)
	}
	here, err := linkOf(sp, name)
	if err != nil {
		return Link{}, Link{}, err
	}
	there, err := linkOf(peer, peerName)
	if err != nil {
		return Link{}, Link{}, err
	}
	pl, err := peer.h.LinkByIndex(there.Ifindex)
	if err != nil {
		return Link{}, Link{}, fmt.Errorf("find %s in %s: %w", peerName, peer.name, err)
	}
	if err := peer.h.LinkSetUp(pl); err != nil {
		return Link{}, Link{}, fmt.Errorf("set %s up in %s: %w", peerName, peer.name, err)
	}
	// The peer, up second, found the carrier on and started sending at
	// once; this end was up without a carrier, and the kernel activates
	// its queue when linkwatch handles the carrier change, shortly after.
	// Until then it drops what it sends.
	if err := waitOperUp(sp, here); err != nil {
		return Link{}, Link{}, err
	}
	return here, there, nil
}

// operUpTimeout bounds waitOperUp. The kernel handles the carrier changes
// of veths (whose peer has another ifindex) and bridges at once, on a
// workqueue; others are batched once a second.
const operUpTimeout = 3 * time.Second

// waitOperUp waits until l's operational state is up: linkwatch has
// handled its carrier change and activated its transmit queue.
func waitOperUp(sp *space, l Link) error {
	deadline := time.Now().Add(operUpTimeout)
	for sleep := 20 * time.Microsecond; ; sleep = min(2*sleep, 5*time.Millisecond) {
		kl, err := sp.h.LinkByIndex(l.Ifindex)
		if err != nil {
			return fmt.Errorf("find %s in %s: %w", l.Name, sp.name, err)
		}
		if kl.Attrs().OperState == netlink.OperUp {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("wait for %s in %s to be up: still %s after %v", l.Name, sp.name, kl.Attrs().OperState, operUpTimeout)
		}
		time.Sleep(sleep)
	}
}

// linkOf returns device name of sp.
func linkOf(sp *space, name string) (Link, error) {
	l, err := sp.h.LinkByName(name)
	if err != nil {
		return Link{}, fmt.Errorf("find %s in %s: %w", name, sp.name, err)
	}
	a := l.Attrs()
	return Link{Name: a.Name, Ifindex: a.Index, MAC: a.HardwareAddr}, nil
}

// host returns a as a /32 or /128.
func host(a netip.Addr) *net.IPNet {
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(a.BitLen(), a.BitLen())}
}

// addAddrs adds the valid addresses among addrs to l, as /32 or /128
// (IPv6 without DAD).
func addAddrs(sp *space, l Link, addrs ...netip.Addr) error {
	for _, a := range addrs {
		if !a.IsValid() {
			continue
		}
		addr := &netlink.Addr{IPNet: host(a)}
		if a.Is6() {
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := sp.h.AddrAdd(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: l.Ifindex}}, addr); err != nil {
			return fmt.Errorf("add address %s to %s in %s: %w", a, l.Name, sp.name, err)
		}
	}
	for _, a := range addrs {
		if a.Is6() {
			if err := waitLocal(sp, l, a); err != nil {
				return err
			}
		}
	}
	return nil
}

// waitLocal waits until a, an IPv6 address on l, is local: IPv6 installs
// the local route of an address from a work item, once linkwatch has
// found the device ready, even without DAD. Until then, packets to the
// address are dropped as not ours.
func waitLocal(sp *space, l Link, a netip.Addr) error {
	deadline := time.Now().Add(operUpTimeout)
	for sleep := 20 * time.Microsecond; ; sleep = min(2*sleep, 5*time.Millisecond) {
		routes, err := sp.h.RouteGet(a.AsSlice())
		if err == nil && len(routes) > 0 && routes[0].Type == unix.RTN_LOCAL {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("wait for address %s on %s in %s to be local: not after %v (%v)", a, l.Name, sp.name, operUpTimeout, err)
		}
		time.Sleep(sleep)
	}
}

// permanentNeigh adds a PERMANENT neighbour entry a → m on l.
func permanentNeigh(sp *space, l Link, a netip.Addr, m net.HardwareAddr) error {
	n := &netlink.Neigh{LinkIndex: l.Ifindex, Family: family(a), State: netlink.NUD_PERMANENT, IP: a.AsSlice(), HardwareAddr: m}
	if err := sp.h.NeighSet(n); err != nil {
		return fmt.Errorf("add neighbour %s lladdr %s dev %s in %s: %w", a, m, l.Name, sp.name, err)
	}
	return nil
}

// routeDev adds a route a/32 (/128) dev l (scope link).
func routeDev(sp *space, l Link, a netip.Addr) error {
	r := &netlink.Route{LinkIndex: l.Ifindex, Dst: host(a), Family: family(a)}
	if a.Is4() {
		r.Scope = netlink.SCOPE_LINK
	}
	if err := sp.h.RouteAdd(r); err != nil {
		return fmt.Errorf("add route %s dev %s in %s: %w", a, l.Name, sp.name, err)
	}
	return nil
}

// routeVia adds a route a/32 (/128) via gw dev l onlink.
func routeVia(sp *space, l Link, a, gw netip.Addr) error {
	r := &netlink.Route{LinkIndex: l.Ifindex, Dst: host(a), Gw: gw.AsSlice(), Flags: int(netlink.FLAG_ONLINK), Family: family(a)}
	if err := sp.h.RouteAdd(r); err != nil {
		return fmt.Errorf("add route %s via %s dev %s in %s: %w", a, gw, l.Name, sp.name, err)
	}
	return nil
}

// routeDefault adds a default route via gw dev l, onlink if asked.
func routeDefault(sp *space, l Link, gw netip.Addr, onlink bool) error {
	dst := &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
	if gw.Is6() {
		dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
	}
	r := &netlink.Route{LinkIndex: l.Ifindex, Dst: dst, Gw: gw.AsSlice(), Family: family(gw)}
	if onlink {
		r.Flags = int(netlink.FLAG_ONLINK)
	}
	if err := sp.h.RouteAdd(r); err != nil {
		return fmt.Errorf("add default route via %s dev %s in %s: %w", gw, l.Name, sp.name, err)
	}
	return nil
}

// routeDel removes the route to a/32 (/128) dev l; a route already gone
// is not an error.
func routeDel(sp *space, l Link, a netip.Addr) error {
	if sp == nil {
		return nil
	}
	r := &netlink.Route{LinkIndex: l.Ifindex, Dst: host(a), Family: family(a)}
	if err := sp.h.RouteDel(r); err != nil && !isGone(err) {
		return fmt.Errorf("delete route %s dev %s in %s: %w", a, l.Name, sp.name, err)
	}
	return nil
}

// isGone reports whether err says the object does not exist.
func isGone(err error) bool {
	return errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV) || errors.Is(err, fs.ErrNotExist)
}

// family returns the netlink family of a.
func family(a netip.Addr) int {
	if a.Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}
