package testrun

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/ciliaproject/cilia/datapath/events"
)

// Path is the walk of one packet through the node: the program runs it
// went through, in order.
type Path struct {
	Hops []Result
	// Delivered is true when the packet reached its destination: into the
	// destination endpoint (its to_container passed it) or out of the node
	// towards a host that is not an endpoint here.
	Delivered bool
	// Packet is the packet as delivered (after every rewrite).
	Packet []byte
}

// Dropped reports whether a hop dropped the packet.
func (p Path) Dropped() bool {
	return len(p.Hops) > 0 && p.Hops[len(p.Hops)-1].Dropped()
}

// Drop returns the drop event of the path, if a hop dropped the packet.
func (p Path) Drop() (events.Event, bool) {
	for _, h := range p.Hops {
		if e, ok := h.Drop(); ok {
			return e, true
		}
	}
	return events.Event{}, false
}

// Events returns the events of every hop in order.
func (p Path) Events() []events.Event {
	var out []events.Event
	for _, h := range p.Hops {
		out = append(out, h.Events...)
	}
	return out
}

// String summarises the path for test failures.
func (p Path) String() string {
	var parts []string
	for _, h := range p.Hops {
		parts = append(parts, h.String())
	}
	return fmt.Sprintf("delivered=%v [%s]", p.Delivered, strings.Join(parts, "; "))
}

// Send walks pkt sent by endpoint from: its from_container, then, when the
// packet is redirected to a local endpoint (or routed to an address of
// one), that endpoint's to_container. A packet passed to the stack for an
// address that is not an endpoint here leaves the node (Delivered).
func (h *Harness) Send(from *Endpoint, pkt []byte) (Path, error) {
	var p Path
	r, err := from.FromContainer(pkt)
	if err != nil {
		return p, err
	}
	p.Hops = append(p.Hops, r)
	var next *Endpoint
	switch r.Code {
	case ActShot:
		return p, nil
	case ActRedirect:
		// The trace names the target; with traces off (trace_level) the
		// target is the endpoint the rewritten packet is addressed to.
		if t, ok := r.Trace(); ok {
			if next = h.EndpointByIfindex(t.Ifindex); next == nil {
				return p, fmt.Errorf("send: redirect to ifindex %d, which is no endpoint", t.Ifindex)
			}
		} else if next = h.EndpointByAddr(dstAddr(r.Packet)); next == nil {
			return p, fmt.Errorf("send: redirect to %s, which is no endpoint", dstAddr(r.Packet))
		}
	case ActOK:
		if r.Mark != 0 { // handed to the proxy: the walk stops here
			p.Packet = r.Packet
			return p, nil
		}
		next = h.EndpointByAddr(dstAddr(r.Packet))
		if next == nil {
			p.Delivered, p.Packet = true, r.Packet
			return p, nil
		}
	default:
		return p, fmt.Errorf("send: unexpected tc return code %d", r.Code)
	}
	return h.deliverTo(p, next, r.Packet)
}

// Receive walks pkt arriving from outside the node to endpoint to: its
// to_container only.
func (h *Harness) Receive(to *Endpoint, pkt []byte) (Path, error) {
	return h.deliverTo(Path{}, to, pkt)
}

func (h *Harness) deliverTo(p Path, to *Endpoint, pkt []byte) (Path, error) {
	r, err := to.ToContainer(pkt)
	if err != nil {
		return p, err
	}
	p.Hops = append(p.Hops, r)
	if r.Code == ActOK && r.Mark == 0 {
		p.Delivered, p.Packet = true, r.Packet
	}
	return p, nil
}

// FrameAddrs returns the source and destination IP of an Ethernet frame
// (zero values when it is no IPv4 or IPv6 frame, or too short).
func FrameAddrs(frame []byte) (src, dst netip.Addr) {
	if len(frame) < 14 {
		return
	}
	switch {
	case frame[12] == 0x08 && frame[13] == 0x00 && len(frame) >= 34:
		return netip.AddrFrom4([4]byte(frame[26:30])), netip.AddrFrom4([4]byte(frame[30:34]))
	case frame[12] == 0x86 && frame[13] == 0xdd && len(frame) >= 54:
		return netip.AddrFrom16([16]byte(frame[22:38])), netip.AddrFrom16([16]byte(frame[38:54]))
	}
	return
}

// dstAddr returns the destination IP of an Ethernet frame.
func dstAddr(frame []byte) netip.Addr {
	_, dst := FrameAddrs(frame)
	return dst
}

// Peer is one side of a connection: an endpoint of the harness, or a host
// outside the node (Endpoint nil).
type Peer struct {
	Endpoint *Endpoint
	Addr     netip.Addr
}

// PodV4 returns the peer for ep's IPv4 address.
func PodV4(ep *Endpoint) Peer { return Peer{Endpoint: ep, Addr: ep.Spec.IPv4} }

// PodV6 returns the peer for ep's IPv6 address.
func PodV6(ep *Endpoint) Peer { return Peer{Endpoint: ep, Addr: ep.Spec.IPv6} }

// External returns a peer outside the node.
func External(addr netip.Addr) Peer { return Peer{Addr: addr} }

// Protocol numbers for Conn.
const (
	ProtoICMP   uint8 = 1
	ProtoTCP    uint8 = 6
	ProtoUDP    uint8 = 17
	ProtoICMPv6 uint8 = 58
	ProtoSCTP   uint8 = 132
)

// Conn is a connection between a client and a server peer, for writing
// packet exchanges: Conn.Send crafts the next packet in either direction
// and walks it.
type Conn struct {
	h              *Harness
	Client, Server Peer
	Proto          uint8
	ClientPort     uint16 // for ICMP echo: the identifier
	ServerPort     uint16
}

// Conn returns a connection from client:cport to server:sport over proto.
func (h *Harness) Conn(client, server Peer, proto uint8, cport, sport uint16) *Conn {
	return &Conn{h: h, Client: client, Server: server, Proto: proto, ClientPort: cport, ServerPort: sport}
}

// Packet crafts the next packet of the connection: from the client when
// fromClient, else from the server. flags apply to TCP; for ICMP echo the
// client sends requests and the server replies.
func (c *Conn) Packet(fromClient bool, flags TCPFlags) []byte {
	src := netip.AddrPortFrom(c.Client.Addr, c.ClientPort)
	dst := netip.AddrPortFrom(c.Server.Addr, c.ServerPort)
	if !fromClient {
		src, dst = dst, src
	}
	switch c.Proto {
	case ProtoTCP:
		return TCP(src, dst, flags, nil)
	case ProtoUDP:
		return UDP(src, dst, []byte("cilia"))
	case ProtoSCTP:
		return SCTP(src, dst)
	case ProtoICMP, ProtoICMPv6:
		return ICMPEcho(src.Addr(), dst.Addr(), c.ClientPort, 1, !fromClient)
	}
	panic(fmt.Sprintf("conn: unsupported protocol %d", c.Proto))
}

// Walk walks pkt sent by the client (fromClient) or the server.
func (c *Conn) Walk(fromClient bool, pkt []byte) (Path, error) {
	from, to := c.Client, c.Server
	if !fromClient {
		from, to = to, from
	}
	if from.Endpoint != nil {
		return c.h.Send(from.Endpoint, pkt)
	}
	if to.Endpoint != nil {
		return c.h.Receive(to.Endpoint, pkt)
	}
	return Path{}, fmt.Errorf("walk: neither %s nor %s is an endpoint", from.Addr, to.Addr)
}

// Send crafts and walks the next packet (see Packet).
func (c *Conn) Send(fromClient bool, flags TCPFlags) (Path, error) {
	return c.Walk(fromClient, c.Packet(fromClient, flags))
}

// Handshake runs the opening exchange of the connection and fails on the
// first packet that is not delivered: SYN, SYN-ACK, ACK for TCP; a request
// and its reply otherwise.
func (c *Conn) Handshake() ([]Path, error) {
	steps := []struct {
		fromClient bool
		flags      TCPFlags
		name       string
	}{{true, SYN, "SYN"}, {false, SYN | ACK, "SYN-ACK"}, {true, ACK, "ACK"}}
	if c.Proto != ProtoTCP {
		steps = steps[:2]
		steps[0].name, steps[1].name = "request", "reply"
	}
	var paths []Path
	for _, s := range steps {
		p, err := c.Send(s.fromClient, s.flags)
		if err != nil {
			return paths, err
		}
		paths = append(paths, p)
		if !p.Delivered {
			return paths, fmt.Errorf("%s not delivered: %s", s.name, p)
		}
	}
	return paths, nil
}
