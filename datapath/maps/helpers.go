package maps

import (
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"syscall"
)

// ErrMapFull is returned (wrapped) when a map refuses an update because it
// holds max_entries already.
var ErrMapFull = errors.New("map full")

// WrapUpdateError turns the kernel's "map full" errors (E2BIG, ENOSPC,
// ENOMEM from an LPM trie at capacity) into ErrMapFull.
func WrapUpdateError(what string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, syscall.E2BIG) || errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("update %s: %w: %w", what, ErrMapFull, err)
	}
	return fmt.Errorf("update %s: %w", what, err)
}

// HostToNet16 converts a host-order value to the uint16 whose in-memory
// bytes are in network order (for *Net fields).
func HostToNet16(v uint16) uint16 {
	return bits.ReverseBytes16(v)
}

// NetToHost16 is the inverse of HostToNet16.
func NetToHost16(v uint16) uint16 {
	return bits.ReverseBytes16(v)
}

// AddrBytes returns the family and 16-byte map form of addr: IPv4 in the
// first four bytes, the rest zero.
func AddrBytes(addr netip.Addr) (uint8, [16]byte) {
	var b [16]byte
	addr = addr.Unmap()
	if addr.Is4() {
		a4 := addr.As4()
		copy(b[:], a4[:])
		return FamilyIPv4, b
	}
	return FamilyIPv6, addr.As16()
}

// AddrFromBytes is the inverse of AddrBytes.
func AddrFromBytes(family uint8, b [16]byte) netip.Addr {
	if family == FamilyIPv4 {
		return netip.AddrFrom4([4]byte{b[0], b[1], b[2], b[3]})
	}
	return netip.AddrFrom16(b)
}

// NewIPCacheKey returns the ipcache key of prefix.
func NewIPCacheKey(prefix netip.Prefix) IPCacheKey {
	prefix = prefix.Masked()
	fam, b := AddrBytes(prefix.Addr())
	return IPCacheKey{Prefixlen: 32 + uint32(prefix.Bits()), Family: fam, Addr: b}
}

// Prefix returns the prefix an ipcache key stands for.
func (k IPCacheKey) Prefix() netip.Prefix {
	return netip.PrefixFrom(AddrFromBytes(k.Family, k.Addr), int(k.Prefixlen)-32)
}

// NewAddrKey returns the exact-address key of addr.
func NewAddrKey(addr netip.Addr) AddrKey {
	fam, b := AddrBytes(addr)
	return AddrKey{Family: fam, Addr: b}
}

// PolicyPrefixBit returns the EndpointPolicyState.PrefixLengths bit of a
// policy key prefix length (40..64).
func PolicyPrefixBit(prefixlen uint32) uint32 {
	return 1 << (prefixlen - PolicyPrefixL3)
}

// NewTuple returns the tuple of a flow from src to dst (ports in host
// order) for protocol proto, with conntrack direction dir (0 for none).
func NewTuple(src, dst netip.AddrPort, proto uint8, dir Direction) Tuple {
	fam, s := AddrBytes(src.Addr())
	_, d := AddrBytes(dst.Addr())
	return Tuple{
		SAddr: s, DAddr: d,
		SPortNet: HostToNet16(src.Port()), DPortNet: HostToNet16(dst.Port()),
		NextHdr: proto, Family: fam, Dir: uint8(dir),
	}
}

// CTKey returns the conntrack map key of t: a Tuple4 for IPv4 (in the
// IPv4 map), t itself for IPv6.
func (t Tuple) CTKey() any {
	if t.Family != FamilyIPv4 {
		return &t
	}
	return &Tuple4{
		SAddr: [4]byte(t.SAddr[:4]), DAddr: [4]byte(t.DAddr[:4]),
		SPortNet: t.SPortNet, DPortNet: t.DPortNet, NextHdr: t.NextHdr, Dir: t.Dir,
	}
}

// Tuple returns the family-independent form of an IPv4 conntrack key.
func (k Tuple4) Tuple() Tuple {
	t := Tuple{SPortNet: k.SPortNet, DPortNet: k.DPortNet, NextHdr: k.NextHdr, Family: FamilyIPv4, Dir: k.Dir}
	copy(t.SAddr[:], k.SAddr[:])
	copy(t.DAddr[:], k.DAddr[:])
	return t
}

// Source returns the source address and port (host order) of t.
func (t Tuple) Source() netip.AddrPort {
	return netip.AddrPortFrom(AddrFromBytes(t.Family, t.SAddr), NetToHost16(t.SPortNet))
}

// Destination returns the destination address and port (host order) of t.
func (t Tuple) Destination() netip.AddrPort {
	return netip.AddrPortFrom(AddrFromBytes(t.Family, t.DAddr), NetToHost16(t.DPortNet))
}

// String formats t as "src -> dst proto dir".
func (t Tuple) String() string {
	return fmt.Sprintf("%s -> %s proto %d dir %d", t.Source(), t.Destination(), t.NextHdr, t.Dir)
}

// PortRange is an inclusive range of destination ports in host order. The
// zero value and {0, 65535} both mean "any port"; for ICMP the "port" is the
// ICMP type.
type PortRange struct {
	Lo, Hi uint16
}

// Any reports whether r covers every port.
func (r PortRange) Any() bool {
	return (r.Lo == 0 && r.Hi == 0) || (r.Lo == 0 && r.Hi == 0xffff)
}

// PolicyKeys returns the LPM keys that together cover (identity, dir,
// proto, ports): one key for any protocol (proto 0; ports must be any),
// one for any port, or the minimal set of aligned prefix blocks covering a
// port range. identity 0 means any identity.
func PolicyKeys(identity uint32, dir Direction, proto uint8, ports PortRange) ([]PolicyKey, error) {
	egress := uint8(0)
	if dir == Egress {
		egress = 1
	}
	base := PolicyKey{Identity: identity, Egress: egress, Protocol: proto}
	if proto == 0 {
		if !ports.Any() {
			return nil, fmt.Errorf("build policy keys: ports %d-%d need a protocol", ports.Lo, ports.Hi)
		}
		base.Prefixlen = PolicyPrefixL3
		return []PolicyKey{base}, nil
	}
	if ports.Any() {
		base.Prefixlen = PolicyPrefixProto
		return []PolicyKey{base}, nil
	}
	lo, hi := uint32(ports.Lo), uint32(ports.Hi)
	if hi == 0 {
		hi = lo
	}
	if lo > hi {
		return nil, fmt.Errorf("build policy keys: port range %d-%d is reversed", lo, hi)
	}
	var keys []PolicyKey
	for lo <= hi {
		// The largest aligned block starting at lo that fits in [lo, hi].
		size := uint32(1)
		for size < 0x10000 && lo%(size*2) == 0 && lo+size*2-1 <= hi {
			size *= 2
		}
		k := base
		k.Prefixlen = PolicyPrefixFull - uint32(bits.TrailingZeros32(size))
		k.DPortNet = HostToNet16(uint16(lo))
		keys = append(keys, k)
		lo += size
	}
	return keys, nil
}

// MetricsIndex returns the cilia_metrics index of (reason, dir).
func MetricsIndex(reason uint8, dir Direction) uint32 {
	return uint32(reason)<<2 | uint32(dir&3)
}
