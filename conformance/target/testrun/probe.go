package testrun

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/ciliaproject/cilia/conformance/scenario"
	"github.com/ciliaproject/cilia/conformance/target"
	"github.com/ciliaproject/cilia/datapath/events"
	dptestrun "github.com/ciliaproject/cilia/datapath/testrun"
)

// side is one end of a probe: an address, the node whose datapath it
// meets, and its endpoint when it is a pod.
type side struct {
	name string
	addr netip.Addr
	node *node
	ep   *dptestrun.Endpoint
}

// exchange is one packet of a probe's exchange.
type exchange struct {
	fromClient bool
	flags      dptestrun.TCPFlags
	name       string
}

// Probe implements target.Target: it runs the probe's exchange (TCP: SYN,
// SYN-ACK, ACK; UDP, SCTP and ICMP echo: request and reply) through the
// datapath and reports Allowed when every packet was delivered, Denied with
// the drop reason of the first packet that was not.
func (t *Target) Probe(ctx context.Context, p scenario.Probe) (target.Observation, error) {
	client, err := t.side(p.From, p.Family)
	if err != nil {
		return target.Observation{}, fmt.Errorf("probe %s: from: %w", p.ID, err)
	}
	server, err := t.side(p.To, p.Family)
	if err != nil {
		return target.Observation{}, fmt.Errorf("probe %s: to: %w", p.ID, err)
	}
	if client.ep == nil && server.ep == nil {
		return target.Observation{}, fmt.Errorf("probe %s: neither %s nor %s is a pod", p.ID, client.name, server.name)
	}
	proto, err := protoNumber(p.Protocol, p.Family)
	if err != nil {
		return target.Observation{}, fmt.Errorf("probe %s: %w", p.ID, err)
	}
	t.nextPort++
	if t.nextPort < 32768 {
		t.nextPort = 32768
	}
	cport := t.nextPort
	steps := []exchange{{true, dptestrun.SYN, "SYN"}, {false, dptestrun.SYN | dptestrun.ACK, "SYN-ACK"}, {true, dptestrun.ACK, "ACK"}}
	if proto != dptestrun.ProtoTCP {
		steps = []exchange{{true, 0, "request"}, {false, 0, "reply"}}
	}
	var obs target.Observation
	var evs []events.Event
	for i, s := range steps {
		pkt := craft(proto, client.addr, server.addr, cport, p.Port, s)
		from, to := client, server
		if !s.fromClient {
			from, to = server, client
		}
		delivered, out, pevs, drop, err := t.walk(from, to, pkt)
		evs = append(evs, pevs...)
		if err != nil {
			return obs, fmt.Errorf("probe %s: %s: %w", p.ID, s.name, err)
		}
		if i == 0 && delivered {
			obs.SourceSeen, _ = dptestrun.FrameAddrs(out)
		}
		if !delivered {
			obs.Verdict = target.Denied
			if drop != nil {
				obs.DropReason = drop.Reason.String()
			}
			obs.Flows = t.flowsOf(evs)
			return obs, nil
		}
	}
	obs.Verdict = target.Allowed
	if server.ep != nil && p.To.Kind == scenario.PeerPod {
		obs.Backend = p.To.Name
	}
	obs.Flows = t.flowsOf(evs)
	return obs, nil
}

// walk moves one packet from one side to the other: through the sender's
// from_container when it is a pod, then (on the receiver's node) through
// the receiver's to_container when it is a pod.
func (t *Target) walk(from, to side, pkt []byte) (delivered bool, out []byte, evs []events.Event, drop *events.Event, err error) {
	collect := func(p dptestrun.Path) {
		evs = append(evs, p.Events()...)
		if d, ok := p.Drop(); ok && drop == nil {
			drop = &d
		}
	}
	if from.ep != nil {
		p, err := from.node.harness.Send(from.ep, pkt)
		if err != nil {
			return false, nil, evs, drop, err
		}
		collect(p)
		if !p.Delivered {
			return false, nil, evs, drop, nil
		}
		local := to.ep != nil && to.node == from.node
		if to.ep == nil || local {
			return true, p.Packet, evs, drop, nil
		}
		pkt = p.Packet
	}
	p, err := to.node.harness.Receive(to.ep, pkt)
	if err != nil {
		return false, nil, evs, drop, err
	}
	collect(p)
	return p.Delivered, p.Packet, evs, drop, nil
}

// side resolves a probe peer for family fam.
func (t *Target) side(peer scenario.Peer, fam scenario.Family) (side, error) {
	pick := func(v4, v6 netip.Addr) netip.Addr {
		if fam == scenario.IPv6 {
			return v6
		}
		return v4
	}
	var s side
	switch peer.Kind {
	case scenario.PeerPod:
		p, ok := t.state.Pod(peer.Name)
		if !ok {
			return s, fmt.Errorf("no pod %s", peer.Name)
		}
		n := t.nodes[p.Node]
		if n == nil {
			return s, fmt.Errorf("pod %s: no node %s", peer.Name, p.Node)
		}
		s = side{name: peer.Name, addr: pick(p.IPv4, p.IPv6), node: n}
		if s.ep = n.harness.EndpointByAddr(s.addr); s.ep == nil {
			return s, fmt.Errorf("pod %s has no endpoint for %s", peer.Name, s.addr)
		}
	case scenario.PeerExternal:
		e, ok := t.state.External(peer.Name)
		if !ok {
			return s, fmt.Errorf("no external %s", peer.Name)
		}
		s = side{name: peer.Name, addr: pick(e.IPv4, e.IPv6)}
	case scenario.PeerNode:
		n, ok := t.nodes[peer.Name]
		if !ok {
			return s, fmt.Errorf("no node %s", peer.Name)
		}
		s = side{name: "node:" + peer.Name, addr: pick(n.spec.IPv4, n.spec.IPv6), node: n}
	case scenario.PeerIP:
		s = side{name: peer.Addr.String(), addr: peer.Addr}
	case scenario.PeerService:
		return s, fmt.Errorf("services are not supported by the testrun target yet")
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

// craft builds the packet of exchange step s between client and server.
func craft(proto uint8, client, server netip.Addr, cport, sport uint16, s exchange) []byte {
	src, dst := netip.AddrPortFrom(client, cport), netip.AddrPortFrom(server, sport)
	if !s.fromClient {
		src, dst = dst, src
	}
	switch proto {
	case dptestrun.ProtoTCP:
		return dptestrun.TCP(src, dst, s.flags, nil)
	case dptestrun.ProtoUDP:
		return dptestrun.UDP(src, dst, []byte("cilia-probe"))
	case dptestrun.ProtoSCTP:
		return dptestrun.SCTP(src, dst)
	default:
		return dptestrun.ICMPEcho(src.Addr(), dst.Addr(), cport, 1, !s.fromClient)
	}
}
