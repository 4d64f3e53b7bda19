package testrun

import (
	"context"
	"fmt"
	"net"
	"net/netip"

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
	var walks []*walker.Walk
	for i, s := range steps {
		from, to := client, server
		if !s.fromClient {
			from, to = server, client
		}
		pkt := craft(proto, client.addr, server.addr, cport, p.Port, s)
		copy(pkt[0:6], from.dstMAC)
		copy(pkt[6:12], from.srcMAC)
		w, err := t.c.Walker.Walk(from.entry, pkt)
		if w != nil {
			walks = append(walks, w)
		}
		if err != nil {
			return obs, fmt.Errorf("probe %s: %s: %w", p.ID, s.name, err)
		}
		reached := w.Outcome == to.outcome && w.At == to.at
		if i == 0 && reached {
			obs.SourceSeen, _ = dptestrun.FrameAddrs(w.Packet)
		}
		if !reached {
			obs.Verdict = target.Denied
			if d := firstDrop(walks); d != nil {
				obs.DropReason = d.Reason.String()
			} else if w.Outcome != walker.Dropped {
				return obs, fmt.Errorf("probe %s: %s went to %s (%s), not to %s:\n%s", p.ID, s.name, w.At, w.Outcome, to.name, w)
			}
			obs.Flows = t.flowsOf(walks)
			return obs, nil
		}
	}
	obs.Verdict = target.Allowed
	if p.To.Kind == scenario.PeerPod {
		obs.Backend = p.To.Name
	}
	obs.Flows = t.flowsOf(walks)
	return obs, nil
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
