package testrun

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/ciliaproject/cilia/conformance/scenario"
	"github.com/ciliaproject/cilia/conformance/target"
	dptestrun "github.com/ciliaproject/cilia/datapath/testrun"
	"github.com/ciliaproject/cilia/sim/walker"
)

// side is one end of a probe: its address, where its packets enter the
// cluster, where a packet addressed to it ends up, and the MACs a frame it
// sends carries.
type side struct {
	name           string
	addr           netip.Addr
	entry          walker.Entry
	at             string // walker.Walk.At of a packet delivered to it
	outcome        walker.Outcome
	srcMAC, dstMAC net.HardwareAddr
}

// exchange is one packet of a probe's exchange.
type exchange struct {
	fromClient bool
	flags      dptestrun.TCPFlags
	name       string
}

// Probe implements target.Target: it walks the probe's exchange (TCP: SYN,
// SYN-ACK, ACK; UDP, SCTP and ICMP echo: request and reply) through the
// cluster and reports Allowed when every packet reached the other side,
// Denied with the drop reason of the first packet that did not.
//
// The server is whoever the first packet reaches: the addressed pod, node
// or external, or, for a service frontend, the backend the datapath chose.
// The server answers the packet as it received it (its source as the
// server saw it: the client, or the node that SNATed it), and the client
// must receive that answer from the address and port it connected to.
func (t *Target) Probe(ctx context.Context, p scenario.Probe) (target.Observation, error) {
	if t.c == nil {
		return target.Observation{}, fmt.Errorf("probe %s: no cluster (Setup failed)", p.ID)
	}
	client, err := t.side(p.From, p.Family)
	if err != nil {
		return target.Observation{}, fmt.Errorf("probe %s: from: %w", p.ID, err)
	}
	server, err := t.side(p.To, p.Family)
	if err != nil {
		return target.Observation{}, fmt.Errorf("probe %s: to: %w", p.ID, err)
	}
	proto, err := protoNumber(p.Protocol, p.Family)
	if err != nil {
		return target.Observation{}, fmt.Errorf("probe %s: %w", p.ID, err)
	}
	cport := p.SourcePort
	if cport == 0 {
		t.nextPort++
		if t.nextPort < 32768 {
			t.nextPort = 32768
		}
		cport = t.nextPort
	}
	steps := []exchange{{true, dptestrun.SYN, "SYN"}, {false, dptestrun.SYN | dptestrun.ACK, "SYN-ACK"}, {true, dptestrun.ACK, "ACK"}}
	if proto != dptestrun.ProtoTCP {
		steps = []exchange{{true, 0, "request"}, {false, 0, "reply"}}
	}
	var (
		obs      target.Observation
		walks    []*walker.Walk
		replyVia = map[string]bool{}
		// What the client sends and must hear back from, and what the
		// server received (set by the first packet).
		clientEnd = netip.AddrPortFrom(client.addr, cport)
		serverEnd = netip.AddrPortFrom(server.addr, p.Port)
		recv      *received
	)
	for _, s := range steps {
		var pkt []byte
		var entry walker.Entry
		if s.fromClient {
			pkt = craft(proto, clientEnd, serverEnd, s, false)
			copy(pkt[0:6], client.dstMAC)
			copy(pkt[6:12], client.srcMAC)
			entry = client.entry
		} else {
			// The server answers what it received.
			pkt = craft(proto, recv.local, recv.peer, s, true)
			copy(pkt[0:6], recv.side.dstMAC)
			copy(pkt[6:12], recv.side.srcMAC)
			entry = recv.side.entry
		}
		w, err := t.c.Walker.Walk(entry, pkt)
		if w != nil {
			walks = append(walks, w)
		}
		if err != nil {
			return obs, fmt.Errorf("probe %s: %s: %w", p.ID, s.name, err)
		}
		if !s.fromClient {
			for _, h := range w.Hops {
				if h.Hook.IsProgram() {
					replyVia[h.Node] = true
				}
			}
		}
		reached, err := t.reached(p, s, w, client, server, recv, clientEnd, serverEnd)
		if err != nil {
			return obs, fmt.Errorf("probe %s: %s: %w", p.ID, s.name, err)
		}
		if !reached {
			obs.Verdict = target.Denied
			if d := firstDrop(walks); d != nil {
				obs.DropReason = d.Reason.String()
			} else if w.Outcome != walker.Dropped {
				return obs, fmt.Errorf("probe %s: %s went to %s (%s), not to %s:\n%s", p.ID, s.name, w.At, w.Outcome, server.name, w)
			}
			obs.Flows = t.flowsOf(walks)
			return obs, nil
		}
		if recv == nil {
			recv, err = t.receiver(w)
			if err != nil {
				return obs, fmt.Errorf("probe %s: %s: %w", p.ID, s.name, err)
			}
			obs.SourceSeen = recv.peer.Addr()
			if pod, ok := strings.CutPrefix(w.At, "pod "); ok {
				obs.Backend = pod
			}
		}
	}
	if proto == dptestrun.ProtoTCP && p.SourcePort != 0 {
		// A fixed source port is probed again later: close the
		// connection (an RST, as the netns target's sockets do) so that
		// the next SYN from it opens a new one.
		rst := craft(proto, clientEnd, serverEnd, exchange{true, dptestrun.RST | dptestrun.ACK, "RST"}, false)
		copy(rst[0:6], client.dstMAC)
		copy(rst[6:12], client.srcMAC)
		w, err := t.c.Walker.Walk(client.entry, rst)
		if err != nil {
			return obs, fmt.Errorf("probe %s: RST: %w", p.ID, err)
		}
		walks = append(walks, w)
	}
	obs.Verdict = target.Allowed
	obs.ReplyVia = slices.Sorted(maps.Keys(replyVia))
	obs.Flows = t.flowsOf(walks)
	return obs, nil
}

// received is what the server side of a probe saw of its first packet:
// who it is, and the packet's addresses as they arrived.
type received struct {
	side        side
	local, peer netip.AddrPort
}

// reached says whether packet s of the exchange got where it should: the
// client's packets to the server (the first one: to the addressed peer, or
// to any pod when a frontend stands in front of it; later ones: to the same
// receiver), the server's to the client, from the address and port the
// client sent to. A reply from another address is an error: the client
// would not take it for its connection's.
func (t *Target) reached(p scenario.Probe, s exchange, w *walker.Walk, client, server side, recv *received,
	clientEnd, serverEnd netip.AddrPort) (bool, error) {
	if !s.fromClient {
		if w.Outcome != client.outcome || w.At != client.at {
			return false, nil
		}
		src, _, err := frameEnds(w.Packet)
		if err != nil {
			return false, err
		}
		if src.Addr() != serverEnd.Addr() || (src.Port() != serverEnd.Port() && serverEnd.Port() != 0) {
			return false, fmt.Errorf("the client %s received the %s from %s, not from %s, where it sent to:\n%s",
				client.name, s.name, src, serverEnd, w)
		}
		return true, nil
	}
	if recv != nil {
		return w.Outcome == recv.side.outcome && w.At == recv.side.at, nil
	}
	if w.Outcome == server.outcome && w.At == server.at {
		return true, nil
	}
	// A frontend (a service, a node port, an external or load-balancer
	// IP) hands the connection to a backend pod.
	lb := p.To.Kind == scenario.PeerService || p.To.Kind == scenario.PeerNode || p.To.Kind == scenario.PeerIP
	return lb && w.Outcome == walker.Delivered && strings.HasPrefix(w.At, "pod "), nil
}

// receiver resolves who received a walk's packet and the packet's ends as
// it arrived.
func (t *Target) receiver(w *walker.Walk) (*received, error) {
	src, dst, err := frameEnds(w.Packet)
	if err != nil {
		return nil, err
	}
	r := &received{local: dst, peer: src}
	switch {
	case strings.HasPrefix(w.At, "pod "):
		r.side, err = t.side(scenario.Peer{Kind: scenario.PeerPod, Name: strings.TrimPrefix(w.At, "pod ")}, familyOf(dst.Addr()))
	case strings.HasPrefix(w.At, "node "):
		r.side, err = t.side(scenario.Peer{Kind: scenario.PeerNode, Name: strings.TrimPrefix(w.At, "node ")}, familyOf(dst.Addr()))
	case strings.HasPrefix(w.At, "external "):
		r.side, err = t.side(scenario.Peer{Kind: scenario.PeerExternal, Name: strings.TrimPrefix(w.At, "external ")}, familyOf(dst.Addr()))
	default:
		r.side, err = t.side(scenario.Peer{Kind: scenario.PeerIP, Addr: dst.Addr()}, familyOf(dst.Addr()))
	}
	if err != nil {
		return nil, fmt.Errorf("the packet reached %s: %w", w.At, err)
	}
	return r, nil
}

func familyOf(a netip.Addr) scenario.Family {
	if a.Unmap().Is4() {
		return scenario.IPv4
	}
	return scenario.IPv6
}

// frameEnds returns the source and destination address and port of a
// frame (ICMP echo: the identifier as the port of the requester's end).
func frameEnds(frame []byte) (src, dst netip.AddrPort, err error) {
	pkt := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.NoCopy)
	var sa, da netip.Addr
	switch ip := pkt.NetworkLayer().(type) {
	case *layers.IPv4:
		sa, _ = netip.AddrFromSlice(ip.SrcIP.To4())
		da, _ = netip.AddrFromSlice(ip.DstIP.To4())
	case *layers.IPv6:
		sa, _ = netip.AddrFromSlice(ip.SrcIP)
		da, _ = netip.AddrFromSlice(ip.DstIP)
	default:
		return src, dst, fmt.Errorf("the delivered frame is not IP")
	}
	var sp, dp uint16
	switch l4 := pkt.TransportLayer().(type) {
	case *layers.TCP:
		sp, dp = uint16(l4.SrcPort), uint16(l4.DstPort)
	case *layers.UDP:
		sp, dp = uint16(l4.SrcPort), uint16(l4.DstPort)
	case *layers.SCTP:
		sp, dp = uint16(l4.SrcPort), uint16(l4.DstPort)
	default:
		if ic := pkt.Layer(layers.LayerTypeICMPv4); ic != nil {
			e := ic.(*layers.ICMPv4)
			if e.TypeCode.Type() == layers.ICMPv4TypeEchoRequest {
				sp = e.Id
			} else {
				dp = e.Id
			}
		} else if ic := pkt.Layer(layers.LayerTypeICMPv6Echo); ic != nil {
			e := ic.(*layers.ICMPv6Echo)
			if t := pkt.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6); t.TypeCode.Type() == layers.ICMPv6TypeEchoRequest {
				sp = e.Identifier
			} else {
				dp = e.Identifier
			}
		}
	}
	return netip.AddrPortFrom(sa, sp), netip.AddrPortFrom(da, dp), nil
}

// side resolves a probe peer for family fam.
func (t *Target) side(peer scenario.Peer, fam scenario.Family) (side, error) {
	pick := func(v4, v6 netip.Addr) netip.Addr {
		if fam == scenario.IPv6 {
			return v6
		}
		return v4
	}
	state, topo := t.c.State(), t.c.Topology
	var s side
	switch peer.Kind {
	case scenario.PeerPod:
		p, ok := state.Pod(peer.Name)
		if !ok {
			return s, fmt.Errorf("no pod %s", peer.Name)
		}
		tp := topo.Pods[peer.Name]
		if tp == nil {
			return s, fmt.Errorf("pod %s is not in the simulated cluster", peer.Name)
		}
		s = side{name: peer.Name, addr: pick(p.IPv4, p.IPv6), at: "pod " + peer.Name, outcome: walker.Delivered,
			entry:  walker.Entry{Node: tp.Node, Hook: walker.FromContainer, Pod: peer.Name},
			srcMAC: tp.Eth0.MAC, dstMAC: tp.HostVeth.MAC}
	case scenario.PeerExternal:
		e, ok := state.External(peer.Name)
		if !ok {
			return s, fmt.Errorf("no external %s", peer.Name)
		}
		s = side{name: peer.Name, addr: pick(e.IPv4, e.IPv6), at: "external " + peer.Name, outcome: walker.LeftCluster,
			entry: walker.Entry{Hook: walker.Fabric}}
		for _, te := range topo.Externals {
			if te.Name == peer.Name {
				s.srcMAC, s.dstMAC = te.Eth0.MAC, topo.Fabric.Bridge.MAC
			}
		}
	case scenario.PeerNode:
		n := topo.Node(peer.Name)
		if n == nil {
			return s, fmt.Errorf("no node %s", peer.Name)
		}
		s = side{name: "node:" + peer.Name, addr: pick(n.IPv4, n.IPv6), at: "node " + peer.Name, outcome: walker.Delivered,
			entry: walker.Entry{Node: peer.Name, Hook: walker.Stack}, srcMAC: n.Uplink.MAC, dstMAC: n.Uplink.MAC}
	case scenario.PeerIP:
		s = side{name: peer.Addr.String(), addr: peer.Addr, at: "outside " + peer.Addr.String(), outcome: walker.LeftCluster,
			entry: walker.Entry{Hook: walker.Fabric}, srcMAC: topo.Fabric.Bridge.MAC, dstMAC: topo.Fabric.Bridge.MAC}
	case scenario.PeerService:
		svc, ok := state.Service(peer.Name)
		if !ok {
			return s, fmt.Errorf("no service %s", peer.Name)
		}
		// Never an entry (a probe cannot start at a service); a packet
		// to the frontend ends at a backend pod (reached).
		s = side{name: "service:" + peer.Name, addr: pick(svc.ClusterIP, svc.ClusterIPv6), at: "a backend of " + peer.Name,
			outcome: walker.Delivered}
	default:
		return s, fmt.Errorf("unknown peer kind %q", peer.Kind)
	}
	if !s.addr.IsValid() {
		return s, fmt.Errorf("%s has no %s address", s.name, fam)
	}
	return s, nil
}

func protoNumber(p scenario.Protocol, fam scenario.Family) (uint8, error) {
	switch p {
	case scenario.TCP, "":
		return dptestrun.ProtoTCP, nil
	case scenario.UDP:
		return dptestrun.ProtoUDP, nil
	case scenario.SCTP:
		return dptestrun.ProtoSCTP, nil
	case scenario.ICMP:
		if fam == scenario.IPv6 {
			return dptestrun.ProtoICMPv6, nil
		}
		return dptestrun.ProtoICMP, nil
	}
	return 0, fmt.Errorf("unsupported protocol %q", p)
}

// craft builds the packet of exchange step s from src to dst; reply says
// the server sends it (an ICMP echo reply then).
func craft(proto uint8, src, dst netip.AddrPort, s exchange, reply bool) []byte {
	switch proto {
	case dptestrun.ProtoTCP:
		return dptestrun.TCP(src, dst, s.flags, nil)
	case dptestrun.ProtoUDP:
		return dptestrun.UDP(src, dst, []byte("cilia-probe"))
	case dptestrun.ProtoSCTP:
		return dptestrun.SCTP(src, dst)
	default:
		id := src.Port()
		if reply {
			id = dst.Port()
		}
		return dptestrun.ICMPEcho(src.Addr(), dst.Addr(), id, 1, reply)
	}
}
