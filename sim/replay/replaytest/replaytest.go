// Package replaytest provides what tests of cilia replay need without a
// kernel: a fake Simulator with deterministic outcomes and writers for
// captures in every link type replay reads.
package replaytest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/cilium/cilium/api/v1/flow"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"google.golang.org/protobuf/types/known/timestamppb"

	ciliaflow "github.com/ciliaproject/cilia/agent/flow"
	"github.com/ciliaproject/cilia/datapath/dropreason"
	"github.com/ciliaproject/cilia/datapath/events"
	"github.com/ciliaproject/cilia/datapath/maps"
	"github.com/ciliaproject/cilia/sim/walker"
)

// Pod is a pod of the fake cluster.
type Pod struct {
	Name string // "ns/name"
	Node string
	IPs  []netip.Addr
	// Identity is its security identity.
	Identity uint32
}

// Rule ids the fake's events carry.
const (
	// DenyRule is the rule id of the drop of every packet to DeniedPort.
	DenyRule = 7
	// AllowRule is the rule id of the ingress trace event of a delivered
	// packet.
	AllowRule = 3
	// DeniedPort is the destination port the fake drops (POLICY_DENIED).
	DeniedPort = 23
)

// Rule descriptions of the fake.
const (
	DenyRuleText  = "x/deny-telnet (policy.yaml:12) ingress[0]"
	AllowRuleText = "x/allow (policy.yaml:3) ingress[0]"
)

// ErrNoEntry is what the fake's EntryFor returns for a packet no pod or
// node would see.
var ErrNoEntry = errors.New("no entry point")

// Sim is a fake replay.Simulator: packets to DeniedPort are dropped at
// the sender's from-container with POLICY_DENIED and rule DenyRule; packets
// to a pod are delivered (across a VXLAN hop when the nodes differ) with
// the destination MAC rewritten to DeliveredMAC; packets to an address no
// pod owns leave the cluster; ARP is delivered to the node's stack.
type Sim struct {
	pods map[netip.Addr]Pod
	mu   sync.Mutex
	// Entries are the entries of every Walk, in order.
	Entries []walker.Entry
}

// DeliveredMAC is the destination MAC of every packet the fake delivers.
var DeliveredMAC = net.HardwareAddr{0x0a, 0xde, 0x11, 0x1e, 0xed, 0x00}

// NewSim returns a fake cluster with pods.
func NewSim(pods ...Pod) *Sim {
	s := &Sim{pods: map[netip.Addr]Pod{}}
	for _, p := range pods {
		for _, a := range p.IPs {
			s.pods[a] = p
		}
	}
	return s
}

// DefaultSim is a fake with x/a and x/b on n1 and x/c on n2.
func DefaultSim() *Sim {
	return NewSim(
		Pod{Name: "x/a", Node: "n1", IPs: []netip.Addr{A, A6}, Identity: 1001},
		Pod{Name: "x/b", Node: "n1", IPs: []netip.Addr{B, B6}, Identity: 1002},
		Pod{Name: "x/c", Node: "n2", IPs: []netip.Addr{C}, Identity: 1003},
	)
}

// Addresses of DefaultSim's pods and of hosts outside the cluster.
var (
	A        = netip.MustParseAddr("10.0.1.1")
	B        = netip.MustParseAddr("10.0.1.2")
	C        = netip.MustParseAddr("10.0.2.1")
	A6       = netip.MustParseAddr("fd00::1:1")
	B6       = netip.MustParseAddr("fd00::1:2")
	External = netip.MustParseAddr("192.0.2.10")
	Internet = netip.MustParseAddr("8.8.8.8")
	Nowhere  = netip.MustParseAddr("203.0.113.5")
)

func addrs(frame []byte) (src, dst netip.Addr, dport uint16, arp bool) {
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	if a, ok := p.Layer(layers.LayerTypeARP).(*layers.ARP); ok {
		s, _ := netip.AddrFromSlice(a.SourceProtAddress)
		d, _ := netip.AddrFromSlice(a.DstProtAddress)
		return s, d, 0, true
	}
	switch ip := p.NetworkLayer().(type) {
	case *layers.IPv4:
		src, _ = netip.AddrFromSlice(ip.SrcIP.To4())
		dst, _ = netip.AddrFromSlice(ip.DstIP.To4())
	case *layers.IPv6:
		src, _ = netip.AddrFromSlice(ip.SrcIP)
		dst, _ = netip.AddrFromSlice(ip.DstIP)
	}
	switch l4 := p.TransportLayer().(type) {
	case *layers.TCP:
		dport = uint16(l4.DstPort)
	case *layers.UDP:
		dport = uint16(l4.DstPort)
	}
	return src, dst, dport, false
}

// EntryFor implements replay.Simulator.
func (s *Sim) EntryFor(frame []byte) (walker.Entry, error) {
	src, dst, _, _ := addrs(frame)
	if p, ok := s.pods[src]; ok {
		return walker.Entry{Node: p.Node, Hook: walker.FromContainer, Pod: p.Name}, nil
	}
	if p, ok := s.pods[dst]; ok {
		return walker.Entry{Node: p.Node, Hook: walker.FromNetdev}, nil
	}
	return walker.Entry{}, fmt.Errorf("%w: neither %s nor %s is in the cluster", ErrNoEntry, src, dst)
}

// ParseEntry implements replay.Simulator.
func (s *Sim) ParseEntry(v string) (walker.Entry, error) {
	kind, name, _ := strings.Cut(v, ":")
	switch kind {
	case "pod":
		for _, p := range s.pods {
			if p.Name == name {
				return walker.Entry{Node: p.Node, Hook: walker.FromContainer, Pod: p.Name}, nil
			}
		}
		return walker.Entry{}, fmt.Errorf("no pod %q", name)
	case "node", "host":
		if name != "n1" && name != "n2" {
			return walker.Entry{}, fmt.Errorf("no node %q", name)
		}
		if kind == "host" {
			return walker.Entry{Node: name, Hook: walker.Stack}, nil
		}
		return walker.Entry{Node: name, Hook: walker.FromNetdev}, nil
	}
	return walker.Entry{}, fmt.Errorf("%q is not pod:ns/name, node:NAME or host:NAME", v)
}

func (s *Sim) ident(a netip.Addr) uint32 {
	if p, ok := s.pods[a]; ok {
		return p.Identity
	}
	return 2 // world
}

func device(h walker.Hook) (dev, prog string) {
	switch h {
	case walker.FromContainer:
		return "lxc0", "from_container"
	case walker.ToContainer:
		return "lxc1", "to_container"
	case walker.FromNetdev:
		return "eth0", "from_netdev"
	case walker.FromOverlay:
		return "cilia_vxlan", "from_overlay"
	}
	return "", ""
}

// Walk implements replay.Simulator.
func (s *Sim) Walk(entry walker.Entry, frame []byte) (*walker.Walk, error) {
	s.mu.Lock()
	s.Entries = append(s.Entries, entry)
	s.mu.Unlock()
	src, dst, dport, arp := addrs(frame)
	w := &walker.Walk{Entry: entry}
	ev := func(t events.Type, obs events.ObservationPoint, rule uint32) events.Event {
		e := events.Event{Type: t, ObservationPoint: obs, Verdict: events.VerdictForwarded, RuleID: rule,
			SrcIdentity: s.ident(src), DstIdentity: s.ident(dst), Direction: maps.Ingress, Data: frame, OrigLen: uint32(len(frame))}
		if t == events.TypeDrop {
			e.Verdict, e.Reason = events.VerdictDropped, dropreason.PolicyDenied
		}
		return e
	}
	hop := func(node string, h walker.Hook, code int, evs ...events.Event) {
		dev, prog := device(h)
		if !h.IsProgram() {
			code = -1
		}
		w.Hops = append(w.Hops, walker.Hop{Node: node, Hook: h, Device: dev, Program: prog, Code: code, Packet: frame, Events: evs})
	}
	if arp {
		hop(entry.Node, entry.Hook, 0)
		w.Outcome, w.At, w.Packet = walker.Delivered, "node "+entry.Node, frame
		return w, nil
	}
	if dport == DeniedPort {
		d := ev(events.TypeDrop, events.ObsUnknown, DenyRule)
		hop(entry.Node, entry.Hook, 2, d)
		w.Outcome, w.At, w.Drop, w.DropNode = walker.Dropped, entry.Node+" "+string(entry.Hook), &d, entry.Node
		return w, nil
	}
	to, ok := s.pods[dst]
	if !ok {
		hop(entry.Node, entry.Hook, 0, ev(events.TypeTrace, events.ObsToStack, 0))
		hop(entry.Node, walker.Stack, 0)
		hop("", walker.Fabric, 0)
		w.Outcome, w.At, w.Packet = walker.LeftCluster, "external "+dst.String(), frame
		return w, nil
	}
	if entry.Hook == walker.FromContainer {
		hop(entry.Node, entry.Hook, 0, ev(events.TypeTrace, events.ObsFromEndpoint, 0))
	} else {
		hop(entry.Node, entry.Hook, 0)
	}
	if entry.Node != to.Node {
		hop(entry.Node, walker.Stack, 0)
		hop(entry.Node, walker.Encap, 0)
		hop("", walker.Fabric, 0)
		hop(to.Node, walker.Decap, 0)
		hop(to.Node, walker.FromOverlay, 0, ev(events.TypeTrace, events.ObsToEndpoint, 0))
	}
	hop(to.Node, walker.ToContainer, 0, ev(events.TypeTrace, events.ObsToEndpoint, AllowRule))
	out := append([]byte(nil), frame...)
	copy(out[0:6], DeliveredMAC)
	w.Outcome, w.At, w.Packet = walker.Delivered, "pod "+to.Name, out
	return w, nil
}

// Flows implements replay.Simulator the way sim/cluster does: one flow per
// event, named after the pods, stamped with ts and the hop's node.
func (s *Sim) Flows(w *walker.Walk, ts time.Time) []*flow.Flow {
	var out []*flow.Flow
	for _, h := range w.Hops {
		for _, e := range h.Events {
			f := ciliaflow.FromEvent(e, s.name)
			f.Time = timestamppb.New(ts)
			f.NodeName = h.Node
			out = append(out, f)
		}
	}
	return out
}

func (s *Sim) name(a netip.Addr) (string, string, bool) {
	p, ok := s.pods[a]
	if !ok {
		return "", "", false
	}
	ns, name, _ := strings.Cut(p.Name, "/")
	return ns, name, true
}

// Rule implements replay.Simulator.
func (s *Sim) Rule(id uint32) string {
	switch id {
	case DenyRule:
		return DenyRuleText
	case AllowRule:
		return AllowRuleText
	}
	return ""
}

// Record is one packet of a capture: when it was seen and its bytes (an
// Ethernet frame; the writers convert).
type Record struct {
	Time  time.Time
	Frame []byte
}

// Link types the writers produce.
const (
	Ethernet  = 1
	Raw       = 101
	LinuxSLL  = 113
	IPv4      = 228
	IPv6      = 229
	LinuxSLL2 = 276
)

// Frame serializes an Ethernet frame from src:sport to dst:dport over
// proto "tcp" (a SYN), "udp" or "icmp" (an echo request), with payload.
func Frame(src, dst netip.Addr, proto string, sport, dport uint16, payload int) []byte {
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{0x0a, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{0x0a, 0, 0, 0, 0, 2}}
	var ls []gopacket.SerializableLayer
	var nl gopacket.NetworkLayer
	var next layers.IPProtocol
	switch proto {
	case "tcp":
		next = layers.IPProtocolTCP
	case "udp":
		next = layers.IPProtocolUDP
	default:
		next = layers.IPProtocolICMPv4
		if src.Is6() {
			next = layers.IPProtocolICMPv6
		}
	}
	if src.Is4() {
		eth.EthernetType = layers.EthernetTypeIPv4
		ip := &layers.IPv4{Version: 4, TTL: 64, SrcIP: src.AsSlice(), DstIP: dst.AsSlice(), Protocol: next}
		ls, nl = append(ls, eth, ip), ip
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip := &layers.IPv6{Version: 6, HopLimit: 64, SrcIP: src.AsSlice(), DstIP: dst.AsSlice(), NextHeader: next}
		ls, nl = append(ls, eth, ip), ip
	}
	switch proto {
	case "tcp":
		t := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), SYN: true, Seq: 1, Window: 65535}
		t.SetNetworkLayerForChecksum(nl)
		ls = append(ls, t)
	case "udp":
		u := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
		u.SetNetworkLayerForChecksum(nl)
		ls = append(ls, u)
	default:
		if src.Is4() {
			ls = append(ls, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 1, Seq: 1})
		} else {
			i := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(128, 0)}
			i.SetNetworkLayerForChecksum(nl)
			ls = append(ls, i, &layers.ICMPv6Echo{Identifier: 1, SeqNumber: 1})
		}
	}
	ls = append(ls, gopacket.Payload(make([]byte, payload)))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		panic(fmt.Sprintf("serialize frame: %v", err))
	}
	return buf.Bytes()
}

// LLDP returns an LLDP frame (not IP: replay skips it).
func LLDP() []byte {
	f := make([]byte, 60)
	copy(f, []byte{0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e, 0x0a, 0, 0, 0, 0, 9, 0x88, 0xcc})
	return f
}

// ARP returns an ARP request from src for dst.
func ARP(src, dst netip.Addr) []byte {
	buf := gopacket.NewSerializeBuffer()
	mac := net.HardwareAddr{0x0a, 0, 0, 0, 0, 1}
	err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{},
		&layers.Ethernet{SrcMAC: mac, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP},
		&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: layers.ARPRequest, SourceHwAddress: mac, SourceProtAddress: src.AsSlice(),
			DstHwAddress: make([]byte, 6), DstProtAddress: dst.AsSlice()})
	if err != nil {
		panic(fmt.Sprintf("serialize ARP: %v", err))
	}
	return buf.Bytes()
}

// Convert returns an Ethernet frame's record in link type lt: the frame
// itself, a Linux cooked v1 or v2 header (with the source MAC as the
// link-layer address) and the payload, or the bare IP packet.
func Convert(lt int, frame []byte) []byte {
	et := binary.BigEndian.Uint16(frame[12:])
	payload := frame[14:]
	switch lt {
	case LinuxSLL:
		h := make([]byte, 16, 16+len(payload))
		binary.BigEndian.PutUint16(h[0:], 4) // outgoing
		binary.BigEndian.PutUint16(h[2:], 1) // ARPHRD_ETHER
		binary.BigEndian.PutUint16(h[4:], 6)
		copy(h[6:], frame[6:12])
		binary.BigEndian.PutUint16(h[14:], et)
		return append(h, payload...)
	case LinuxSLL2:
		h := make([]byte, 20, 20+len(payload))
		binary.BigEndian.PutUint16(h[0:], et)
		binary.BigEndian.PutUint32(h[4:], 7) // ifindex
		binary.BigEndian.PutUint16(h[8:], 1) // ARPHRD_ETHER
		h[10] = 4                            // outgoing
		h[11] = 6
		copy(h[12:], frame[6:12])
		return append(h, payload...)
	case Raw, IPv4, IPv6:
		return append([]byte(nil), payload...)
	}
	return frame
}

// Pcap returns a pcap file (little endian, microsecond timestamps; big
// endian and nanoseconds when asked) of recs converted to link type lt.
func Pcap(lt int, recs []Record, bigEndian, nanos bool) []byte {
	var bo binary.AppendByteOrder = binary.LittleEndian
	if bigEndian {
		bo = binary.BigEndian
	}
	magic := uint32(0xa1b2c3d4)
	if nanos {
		magic = 0xa1b23c4d
	}
	out := bo.AppendUint32(nil, magic)
	out = bo.AppendUint16(out, 2)
	out = bo.AppendUint16(out, 4)
	out = bo.AppendUint32(out, 0)
	out = bo.AppendUint32(out, 0)
	out = bo.AppendUint32(out, 262144)
	out = bo.AppendUint32(out, uint32(lt))
	for _, r := range recs {
		data := Convert(lt, r.Frame)
		frac := uint32(r.Time.Nanosecond() / 1000)
		if nanos {
			frac = uint32(r.Time.Nanosecond())
		}
		out = bo.AppendUint32(out, uint32(r.Time.Unix()))
		out = bo.AppendUint32(out, frac)
		out = bo.AppendUint32(out, uint32(len(data)))
		out = bo.AppendUint32(out, uint32(len(data)))
		out = append(out, data...)
	}
	return out
}

// Pcapng returns a little-endian pcapng file with one interface of link
// type lt (microsecond timestamps, the default) holding recs, with an
// interface statistics-like unknown block before the first packet to show
// skipped blocks are fine.
func Pcapng(lt int, recs []Record) []byte {
	le := binary.LittleEndian
	block := func(out []byte, typ uint32, body []byte) []byte {
		for len(body)%4 != 0 {
			body = append(body, 0)
		}
		n := uint32(12 + len(body))
		out = le.AppendUint32(out, typ)
		out = le.AppendUint32(out, n)
		out = append(out, body...)
		return le.AppendUint32(out, n)
	}
	shb := le.AppendUint32(nil, 0x1a2b3c4d)
	shb = le.AppendUint16(shb, 1)
	shb = le.AppendUint16(shb, 0)
	shb = le.AppendUint64(shb, ^uint64(0))
	out := block(nil, 0x0a0d0d0a, shb)
	idb := le.AppendUint16(nil, uint16(lt))
	idb = le.AppendUint16(idb, 0)
	idb = le.AppendUint32(idb, 262144)
	out = block(out, 1, idb)
	out = block(out, 0x0bad, []byte("custom block"))
	for _, r := range recs {
		data := Convert(lt, r.Frame)
		ts := uint64(r.Time.UnixMicro())
		epb := le.AppendUint32(nil, 0)
		epb = le.AppendUint32(epb, uint32(ts>>32))
		epb = le.AppendUint32(epb, uint32(ts))
		epb = le.AppendUint32(epb, uint32(len(data)))
		epb = le.AppendUint32(epb, uint32(len(data)))
		epb = append(epb, data...)
		out = block(out, 6, epb)
	}
	return out
}
