package testrun

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// MACs used in crafted frames when the sender has none of its own.
var (
	DefaultSrcMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	DefaultDstMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
)

// TCPFlags is a set of TCP flags for crafted segments.
type TCPFlags uint8

// TCP flags.
const (
	FIN TCPFlags = 0x01
	SYN TCPFlags = 0x02
	RST TCPFlags = 0x04
	PSH TCPFlags = 0x08
	ACK TCPFlags = 0x10
)

var serializeOpts = gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}

// ipLayers returns the Ethernet and IP layers of a packet from src to dst
// carrying proto.
func ipLayers(src, dst netip.Addr, proto layers.IPProtocol) (*layers.Ethernet, gopacket.NetworkLayer, gopacket.SerializableLayer) {
	eth := &layers.Ethernet{SrcMAC: DefaultSrcMAC, DstMAC: DefaultDstMAC}
	if src.Unmap().Is4() {
		eth.EthernetType = layers.EthernetTypeIPv4
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: proto, SrcIP: src.Unmap().AsSlice(), DstIP: dst.Unmap().AsSlice(), Id: 1}
		return eth, ip, ip
	}
	eth.EthernetType = layers.EthernetTypeIPv6
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	return eth, ip, ip
}

// Serialize serializes layers into a frame, computing lengths and checksums.
func Serialize(ls ...gopacket.SerializableLayer) []byte {
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, serializeOpts, ls...); err != nil {
		panic(fmt.Sprintf("serialize packet: %v", err))
	}
	return append([]byte(nil), buf.Bytes()...)
}

// TCP returns an Ethernet frame with a TCP segment from src to dst.
func TCP(src, dst netip.AddrPort, flags TCPFlags, payload []byte) []byte {
	eth, nl, ip := ipLayers(src.Addr(), dst.Addr(), layers.IPProtocolTCP)
	tcp := &layers.TCP{
		SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()),
		Seq: 1000, Window: 65535,
		FIN: flags&FIN != 0, SYN: flags&SYN != 0, RST: flags&RST != 0, PSH: flags&PSH != 0, ACK: flags&ACK != 0,
	}
	if tcp.ACK {
		tcp.Ack = 1
	}
	tcp.SetNetworkLayerForChecksum(nl)
	return Serialize(eth, ip, tcp, gopacket.Payload(payload))
}

// UDP returns an Ethernet frame with a UDP datagram from src to dst.
func UDP(src, dst netip.AddrPort, payload []byte) []byte {
	eth, nl, ip := ipLayers(src.Addr(), dst.Addr(), layers.IPProtocolUDP)
	udp := &layers.UDP{SrcPort: layers.UDPPort(src.Port()), DstPort: layers.UDPPort(dst.Port())}
	udp.SetNetworkLayerForChecksum(nl)
	return Serialize(eth, ip, udp, gopacket.Payload(payload))
}

// SCTP returns an Ethernet frame with an SCTP packet (one DATA-less INIT
// chunk) from src to dst.
func SCTP(src, dst netip.AddrPort) []byte {
	eth, _, ip := ipLayers(src.Addr(), dst.Addr(), layers.IPProtocolSCTP)
	sctp := &layers.SCTP{SrcPort: layers.SCTPPort(src.Port()), DstPort: layers.SCTPPort(dst.Port()), VerificationTag: 0}
	init := &layers.SCTPInit{
		SCTPChunk:   layers.SCTPChunk{Type: layers.SCTPChunkTypeInit, Length: 20},
		InitiateTag: 1, AdvertisedReceiverWindowCredit: 65535, OutboundStreams: 1, InboundStreams: 1, InitialTSN: 1,
	}
	return Serialize(eth, ip, sctp, init)
}

// ICMPEcho returns an echo request (or reply) from src to dst; ICMPv6 for
// IPv6 addresses.
func ICMPEcho(src, dst netip.Addr, id, seq uint16, reply bool) []byte {
	if src.Unmap().Is4() {
		eth, _, ip := ipLayers(src, dst, layers.IPProtocolICMPv4)
		typ := uint8(layers.ICMPv4TypeEchoRequest)
		if reply {
			typ = layers.ICMPv4TypeEchoReply
		}
		icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, 0), Id: id, Seq: seq}
		return Serialize(eth, ip, icmp, gopacket.Payload([]byte("cilia-ping")))
	}
	eth, nl, ip := ipLayers(src, dst, layers.IPProtocolICMPv6)
	typ := uint8(layers.ICMPv6TypeEchoRequest)
	if reply {
		typ = layers.ICMPv6TypeEchoReply
	}
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}
	icmp.SetNetworkLayerForChecksum(nl)
	echo := &layers.ICMPv6Echo{Identifier: id, SeqNumber: seq}
	return Serialize(eth, ip, icmp, echo, gopacket.Payload([]byte("cilia-ping")))
}

// ICMPType returns an ICMP (or ICMPv6) message of the given type and code
// with an empty body, from src to dst.
func ICMPType(src, dst netip.Addr, typ, code uint8) []byte {
	if src.Unmap().Is4() {
		eth, _, ip := ipLayers(src, dst, layers.IPProtocolICMPv4)
		return Serialize(eth, ip, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code)})
	}
	eth, nl, ip := ipLayers(src, dst, layers.IPProtocolICMPv6)
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, code)}
	icmp.SetNetworkLayerForChecksum(nl)
	return Serialize(eth, ip, icmp, gopacket.Payload(make([]byte, 4)))
}

// ICMPError returns an ICMP error (destination unreachable, time exceeded…)
// from src to dst quoting frame, an Ethernet frame whose IP header and
// first 8 bytes of payload are copied into the error as RFC 792 asks.
func ICMPError(src, dst netip.Addr, typ, code uint8, frame []byte) []byte {
	quoted := quote(frame)
	if src.Unmap().Is4() {
		eth, _, ip := ipLayers(src, dst, layers.IPProtocolICMPv4)
		icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code)}
		return Serialize(eth, ip, icmp, gopacket.Payload(quoted))
	}
	eth, nl, ip := ipLayers(src, dst, layers.IPProtocolICMPv6)
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, code)}
	icmp.SetNetworkLayerForChecksum(nl)
	// ICMPv6 errors carry 4 bytes (unused / MTU / pointer) before the quote.
	return Serialize(eth, ip, icmp, gopacket.Payload(append(make([]byte, 4), quoted...)))
}

// quote returns the IP header and 8 bytes of L4 of an Ethernet frame.
func quote(frame []byte) []byte {
	ip := frame[14:]
	hdr := 40
	if ip[0]>>4 == 4 {
		hdr = int(ip[0]&0x0f) * 4
	}
	n := hdr + 8
	if n > len(ip) {
		n = len(ip)
	}
	return append([]byte(nil), ip[:n]...)
}
