package walker

import (
	"encoding/binary"
	"errors"
	"hash/fnv"
	"net"
	"net/netip"
)

// VXLANPort is the UDP port of the overlay (Linux's and Cilium's 8472).
const VXLANPort = 8472

// Header sizes of a VXLAN-over-IPv4 encapsulation.
const (
	ethLen      = 14
	ipv4Len     = 20
	udpLen      = 8
	vxlanLen    = 8
	vxlanOuter  = ethLen + ipv4Len + udpLen + vxlanLen
	etherTypeV4 = 0x0800
	etherTypeV6 = 0x86dd
)

var errShortFrame = errors.New("frame too short")

// frameInfo is what the walker reads from an Ethernet frame.
type frameInfo struct {
	family   int // 4, 6, or 0 for non-IP
	src, dst netip.Addr
	proto    uint8
	l4       int // offset of the L4 header, 0 when unknown
}

// parseFrame reads the addresses and protocol of an IPv4 or IPv6 frame.
func parseFrame(f []byte) frameInfo {
	if len(f) < ethLen {
		return frameInfo{}
	}
	switch binary.BigEndian.Uint16(f[12:14]) {
	case etherTypeV4:
		if len(f) < ethLen+ipv4Len {
			return frameInfo{}
		}
		ihl := int(f[ethLen]&0x0f) * 4
		return frameInfo{family: 4, src: netip.AddrFrom4([4]byte(f[26:30])), dst: netip.AddrFrom4([4]byte(f[30:34])),
			proto: f[ethLen+9], l4: ethLen + ihl}
	case etherTypeV6:
		if len(f) < ethLen+40 {
			return frameInfo{}
		}
		return frameInfo{family: 6, src: netip.AddrFrom16([16]byte(f[22:38])), dst: netip.AddrFrom16([16]byte(f[38:54])),
			proto: f[ethLen+6], l4: ethLen + 40}
	}
	return frameInfo{}
}

// VNI returns the VNI of a VXLAN-over-IPv4 frame and whether frame is
// one.
func VNI(frame []byte) (uint32, bool) { return vxlanVNI(frame) }

// vxlanVNI returns the VNI of a VXLAN-over-IPv4 frame (UDP to VXLANPort
// with the I flag set).
func vxlanVNI(f []byte) (uint32, bool) {
	fi := parseFrame(f)
	if fi.family != 4 || fi.proto != 17 || fi.l4+udpLen+vxlanLen > len(f) {
		return 0, false
	}
	if binary.BigEndian.Uint16(f[fi.l4+2:]) != VXLANPort {
		return 0, false
	}
	vx := f[fi.l4+udpLen:]
	if vx[0]&0x08 == 0 {
		return 0, false
	}
	return uint32(vx[4])<<16 | uint32(vx[5])<<8 | uint32(vx[6]), true
}

// setMACs writes the destination and source MAC of a frame in place.
func setMACs(f []byte, dst, src net.HardwareAddr) {
	if len(f) >= 12 && len(dst) == 6 && len(src) == 6 {
		copy(f[0:6], dst)
		copy(f[6:12], src)
	}
}

// decrementTTL lowers the IPv4 TTL (updating the header checksum) or the
// IPv6 hop limit of a routed frame in place, as the kernel's forwarding
// does. It reports false when the TTL would reach zero.
func decrementTTL(f []byte) bool {
	switch parseFrame(f).family {
	case 4:
		ttl := f[ethLen+8]
		if ttl <= 1 {
			return false
		}
		f[ethLen+8] = ttl - 1
		// RFC 1624 incremental update: the TTL is the high byte of its
		// 16-bit word, so the sum grows by 0x0100.
		sum := uint32(binary.BigEndian.Uint16(f[ethLen+10:])) + 0x0100
		sum = (sum & 0xffff) + (sum >> 16)
		binary.BigEndian.PutUint16(f[ethLen+10:], uint16(sum))
	case 6:
		if f[ethLen+7] <= 1 {
			return false
		}
		f[ethLen+7]--
	}
	return true
}

// encapVXLAN wraps inner in Ethernet/IPv4/UDP/VXLAN headers the way the
// kernel's VXLAN device does for a collect_md tunnel key: outer source is
// the node's address, the UDP source port a hash of the inner flow (so
// flows spread over ECMP paths), destination port VXLANPort, and the VNI
// carrying the source identity.
func encapVXLAN(inner []byte, src, dst netip.Addr, vni uint32, srcMAC, dstMAC net.HardwareAddr, id uint16) []byte {
	out := make([]byte, vxlanOuter+len(inner))
	copy(out[0:6], dstMAC)
	copy(out[6:12], srcMAC)
	binary.BigEndian.PutUint16(out[12:], etherTypeV4)
	ip := out[ethLen:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(ipv4Len+udpLen+vxlanLen+len(inner)))
	binary.BigEndian.PutUint16(ip[4:], id)
	binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF
	ip[8] = 64
	ip[9] = 17
	s4, d4 := src.As4(), dst.As4()
	copy(ip[12:16], s4[:])
	copy(ip[16:20], d4[:])
	binary.BigEndian.PutUint16(ip[10:], ipChecksum(ip[:ipv4Len]))
	udp := ip[ipv4Len:]
	binary.BigEndian.PutUint16(udp[0:], flowSourcePort(inner))
	binary.BigEndian.PutUint16(udp[2:], VXLANPort)
	binary.BigEndian.PutUint16(udp[4:], uint16(udpLen+vxlanLen+len(inner)))
	// UDP checksum 0: allowed over IPv4, and what the kernel sends with
	// BPF_F_ZERO_CSUM_TX.
	vx := udp[udpLen:]
	vx[0] = 0x08
	vx[4], vx[5], vx[6] = byte(vni>>16), byte(vni>>8), byte(vni)
	copy(out[vxlanOuter:], inner)
	return out
}

// decapVXLAN returns the inner frame of a VXLAN-over-IPv4 frame with the
// outer source and destination addresses.
func decapVXLAN(f []byte) (inner []byte, outerSrc, outerDst netip.Addr, err error) {
	fi := parseFrame(f)
	if _, ok := vxlanVNI(f); !ok {
		return nil, outerSrc, outerDst, errors.New("decapsulate: not a VXLAN frame")
	}
	off := fi.l4 + udpLen + vxlanLen
	if off+ethLen > len(f) {
		return nil, outerSrc, outerDst, errShortFrame
	}
	return append([]byte(nil), f[off:]...), fi.src, fi.dst, nil
}

// flowSourcePort hashes the inner frame's addresses and ports into the
// ephemeral range, like udp_flow_src_port.
func flowSourcePort(inner []byte) uint16 {
	h := fnv.New32a()
	fi := parseFrame(inner)
	h.Write(fi.src.AsSlice())
	h.Write(fi.dst.AsSlice())
	h.Write([]byte{fi.proto})
	if fi.l4 > 0 && fi.l4+4 <= len(inner) && (fi.proto == 6 || fi.proto == 17 || fi.proto == 132) {
		h.Write(inner[fi.l4 : fi.l4+4])
	}
	const lo, hi = 32768, 61000
	return uint16(lo + h.Sum32()%(hi-lo))
}

// ipChecksum is the Internet checksum of an IPv4 header whose checksum
// field is zero.
func ipChecksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum>>16 != 0 {
		sum = (sum & 0xffff) + (sum >> 16)
	}
	return ^uint16(sum)
}
