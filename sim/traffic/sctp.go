package traffic

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// SCTP over raw IP sockets: the kernel has no SCTP stack, so the client
// sends a real INIT chunk and the server answers with a real INIT-ACK (or
// an ABORT for a port nobody serves), both built here.

// ipprotoSCTP is SCTP's IP protocol number.
const ipprotoSCTP = 132

// SCTP chunk types and the parameter used.
const (
	chunkInit      = 1
	chunkInitAck   = 2
	chunkAbort     = 6
	paramCookie    = 7
	sctpHeaderLen  = 12
	initChunkLen   = 20 // type, flags, length, tag, a_rwnd, streams, TSN
	abortFlagTBit  = 1
	sctpClientPort = 32768
)

// errNotSCTP marks a packet that is not the SCTP packet looked for.
var errNotSCTP = errors.New("not a matching SCTP packet")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// sctpChecksum returns the CRC32c of packet p with its checksum field as zero.
func sctpChecksum(p []byte) uint32 {
	var zero [4]byte
	c := crc32.Update(0, castagnoli, p[:8])
	c = crc32.Update(c, castagnoli, zero[:])
	return crc32.Update(c, castagnoli, p[12:])
}

// sctpPacket is the part of an SCTP packet the probe and server use: the
// common header and the first chunk.
type sctpPacket struct {
	SrcPort, DstPort uint16
	VTag             uint32
	Chunk            uint8
	Flags            uint8
	InitTag          uint32 // INIT and INIT-ACK: the initiate tag
	Cookie           []byte // INIT-ACK: the state cookie
}

// marshalSCTP builds a packet with one chunk (INIT, INIT-ACK or ABORT).
func marshalSCTP(p sctpPacket) []byte {
	b := make([]byte, sctpHeaderLen, 64+len(p.Cookie))
	binary.BigEndian.PutUint16(b[0:], p.SrcPort)
	binary.BigEndian.PutUint16(b[2:], p.DstPort)
	binary.BigEndian.PutUint32(b[4:], p.VTag)
	chunk := []byte{p.Chunk, p.Flags, 0, 4}
	if p.Chunk == chunkInit || p.Chunk == chunkInitAck {
		chunk = binary.BigEndian.AppendUint32(chunk, p.InitTag)
		chunk = binary.BigEndian.AppendUint32(chunk, 65536)         // a_rwnd
		chunk = binary.BigEndian.AppendUint16(chunk, 10)            // outbound streams
		chunk = binary.BigEndian.AppendUint16(chunk, 10)            // inbound streams
		chunk = binary.BigEndian.AppendUint32(chunk, rand.Uint32()) // initial TSN
		if p.Chunk == chunkInitAck {
			chunk = binary.BigEndian.AppendUint16(chunk, paramCookie)
			chunk = binary.BigEndian.AppendUint16(chunk, uint16(4+len(p.Cookie)))
			chunk = append(chunk, p.Cookie...)
			for len(chunk)%4 != 0 {
				chunk = append(chunk, 0)
			}
		}
		binary.BigEndian.PutUint16(chunk[2:], uint16(len(chunk)))
	}
	b = append(b, chunk...)
	binary.LittleEndian.PutUint32(b[8:], sctpChecksum(b))
	return b
}

// parseSCTP parses the header and first chunk of packet b.
func parseSCTP(b []byte) (sctpPacket, error) {
	var p sctpPacket
	if len(b) < sctpHeaderLen+4 {
		return p, fmt.Errorf("parse sctp: %d bytes: %w", len(b), errNotSCTP)
	}
	if binary.LittleEndian.Uint32(b[8:]) != sctpChecksum(b) {
		return p, fmt.Errorf("parse sctp: bad checksum: %w", errNotSCTP)
	}
	p.SrcPort = binary.BigEndian.Uint16(b[0:])
	p.DstPort = binary.BigEndian.Uint16(b[2:])
	p.VTag = binary.BigEndian.Uint32(b[4:])
	c := b[sctpHeaderLen:]
	p.Chunk, p.Flags = c[0], c[1]
	clen := int(binary.BigEndian.Uint16(c[2:]))
	if clen < 4 || clen > len(c) {
		return p, fmt.Errorf("parse sctp: chunk length %d of %d: %w", clen, len(c), errNotSCTP)
	}
	c = c[:clen]
	if p.Chunk != chunkInit && p.Chunk != chunkInitAck {
		return p, nil
	}
	if clen < initChunkLen {
		return p, fmt.Errorf("parse sctp: init chunk length %d: %w", clen, errNotSCTP)
	}
	p.InitTag = binary.BigEndian.Uint32(c[4:])
	for params := c[initChunkLen:]; len(params) >= 4; {
		typ, plen := binary.BigEndian.Uint16(params), int(binary.BigEndian.Uint16(params[2:]))
		if plen < 4 || plen > len(params) {
			break
		}
		if typ == paramCookie {
			p.Cookie = params[4:plen]
		}
		params = params[min(len(params), (plen+3)&^3):]
	}
	return p, nil
}

// rawSCTP is a raw IP socket of protocol SCTP, pollable by the runtime.
type rawSCTP struct {
	f      *os.File
	rc     syscall.RawConn
	family int
	local  netip.Addr
	closed atomic.Bool
}

// openRawSCTP opens a raw SCTP socket in the current netns, bound to local
// and connected to remote when they are valid (then it only receives
// packets from remote to local, and hard ICMP errors about them).
func openRawSCTP(local, remote netip.Addr) (*rawSCTP, error) {
	family := unix.AF_INET
	if local.Is6() || remote.Is6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, ipprotoSCTP)
	if err != nil {
		return nil, fmt.Errorf("open raw sctp socket: %w", err)
	}
	if local.IsValid() {
		if err := unix.Bind(fd, sockaddr(local)); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("bind raw sctp socket to %s: %w", local, err)
		}
	}
	if err := setRecvErr(fd, family); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if remote.IsValid() {
		if err := unix.Connect(fd, sockaddr(remote)); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("connect raw sctp socket to %s: %w", remote, err)
		}
	}
	f := os.NewFile(uintptr(fd), "raw-sctp")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("raw sctp socket: %w", err)
	}
	return &rawSCTP{f: f, rc: rc, family: family, local: local}, nil
}

// Close closes the socket, ending a blocked read.
func (r *rawSCTP) Close() error {
	r.closed.Store(true)
	return r.f.Close()
}

// setRecvErr asks the kernel to report every ICMP error about the packets
// of socket fd (host and net unreachable too), not only the hard ones.
func setRecvErr(fd, family int) error {
	level, opt := unix.SOL_IP, unix.IP_RECVERR
	if family == unix.AF_INET6 {
		level, opt = unix.SOL_IPV6, unix.IPV6_RECVERR
	}
	if err := unix.SetsockoptInt(fd, level, opt, 1); err != nil {
		return fmt.Errorf("set recverr: %w", err)
	}
	return nil
}

// read returns the next SCTP packet (without an IPv4 header) and its source.
// Errors are the socket's (os.ErrDeadlineExceeded, ECONNREFUSED, ...).
func (r *rawSCTP) read(buf []byte) ([]byte, netip.Addr, error) {
	var (
		n    int
		from unix.Sockaddr
		rerr error
	)
	err := r.rc.Read(func(fd uintptr) bool {
		n, from, rerr = unix.Recvfrom(int(fd), buf, 0)
		return rerr != unix.EAGAIN
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		return nil, netip.Addr{}, err
	}
	b := buf[:n]
	var src netip.Addr
	switch sa := from.(type) {
	case *unix.SockaddrInet4:
		src = netip.AddrFrom4(sa.Addr)
	case *unix.SockaddrInet6:
		src = netip.AddrFrom16(sa.Addr)
	}
	if r.family == unix.AF_INET { // IPv4 raw sockets deliver the IP header
		if len(b) < 20 {
			return nil, src, fmt.Errorf("read raw sctp: %d bytes: %w", len(b), errNotSCTP)
		}
		ihl := int(b[0]&0x0f) * 4
		if ihl < 20 || ihl > len(b) {
			return nil, src, fmt.Errorf("read raw sctp: header length %d: %w", ihl, errNotSCTP)
		}
		b = b[ihl:]
	}
	return b, src, nil
}

// write sends packet p to dst.
func (r *rawSCTP) write(p []byte, dst netip.Addr) error {
	var werr error
	err := r.rc.Write(func(fd uintptr) bool {
		werr = unix.Sendto(int(fd), p, 0, sockaddr(dst))
		return werr != unix.EAGAIN
	})
	if err == nil {
		err = werr
	}
	return err
}

// sockaddr returns the socket address of a (port 0).
func sockaddr(a netip.Addr) unix.Sockaddr {
	if a.Is4() || a.Is4In6() {
		return &unix.SockaddrInet4{Addr: a.Unmap().As4()}
	}
	return &unix.SockaddrInet6{Addr: a.As16()}
}

// serveSCTP answers INITs arriving at r: an INIT-ACK carrying the hello in
// its state cookie for a port of ports, an ABORT for a port no server of
// this process serves in this netns. It returns when r is closed.
func (s *Server) serveSCTP(r *rawSCTP, ports []uint16) {
	buf := make([]byte, 65536)
	for {
		b, src, err := r.read(buf)
		if err != nil {
			if r.closed.Load() {
				return
			}
			continue
		}
		p, err := parseSCTP(b)
		if err != nil || p.Chunk != chunkInit || p.VTag != 0 || p.InitTag == 0 {
			continue
		}
		reply := sctpPacket{SrcPort: p.DstPort, DstPort: p.SrcPort, VTag: p.InitTag}
		switch {
		case containsPort(ports, p.DstPort):
			reply.Chunk = chunkInitAck
			reply.InitTag = rand.Uint32() | 1
			reply.Cookie = hello(s.name, src)
		case !servedSCTP(s.ns, netip.AddrPortFrom(r.local, p.DstPort)):
			reply.Chunk, reply.Flags = chunkAbort, abortFlagTBit
		default:
			continue // another server answers
		}
		_ = r.write(marshalSCTP(reply), src)
	}
}

// containsPort reports whether ports holds p.
func containsPort(ports []uint16, p uint16) bool {
	for _, q := range ports {
		if q == p {
			return true
		}
	}
	return false
}

// nsKey identifies a netns: the device and inode of its file.
type nsKey struct{ dev, ino uint64 }

// netnsKey returns the key of the netns at path ("" is the calling
// thread's).
func netnsKey(path string) (nsKey, error) {
	if path == "" {
		path = "/proc/thread-self/ns/net"
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nsKey{}, fmt.Errorf("stat netns %s: %w", path, err)
	}
	return nsKey{dev: st.Dev, ino: st.Ino}, nil
}

// ErrAddrInUse is returned by Serve for an SCTP port another server of
// this process already serves on the same address in the same netns.
var ErrAddrInUse = errors.New("sctp address already in use")

// sctpRegistry holds the SCTP addresses served by this process, per netns,
// so that a server only ABORTs INITs nobody answers.
var sctpRegistry = struct {
	sync.Mutex
	m map[nsKey]map[netip.AddrPort]bool
}{m: map[nsKey]map[netip.AddrPort]bool{}}

// registerSCTP records aps as served in ns, failing if one already is.
func registerSCTP(ns nsKey, aps []netip.AddrPort) error {
	sctpRegistry.Lock()
	defer sctpRegistry.Unlock()
	m := sctpRegistry.m[ns]
	for _, ap := range aps {
		if m[ap] {
			return fmt.Errorf("register sctp %s: %w", ap, ErrAddrInUse)
		}
	}
	if m == nil {
		m = map[netip.AddrPort]bool{}
		sctpRegistry.m[ns] = m
	}
	for _, ap := range aps {
		m[ap] = true
	}
	return nil
}

// unregisterSCTP forgets aps in ns.
func unregisterSCTP(ns nsKey, aps []netip.AddrPort) {
	sctpRegistry.Lock()
	defer sctpRegistry.Unlock()
	for _, ap := range aps {
		delete(sctpRegistry.m[ns], ap)
	}
	if len(sctpRegistry.m[ns]) == 0 {
		delete(sctpRegistry.m, ns)
	}
}

// servedSCTP reports whether some server of this process serves ap in ns.
func servedSCTP(ns nsKey, ap netip.AddrPort) bool {
	sctpRegistry.Lock()
	defer sctpRegistry.Unlock()
	return sctpRegistry.m[ns][ap]
}

// probeSCTP sends an INIT from the netns to dst and waits for the INIT-ACK
// (allowed) or ABORT (refused) that answers it.
func probeSCTP(ctx context.Context, netnsPath string, src netip.Addr, dst netip.AddrPort, deadline time.Time) Result {
	var r *rawSCTP
	err := inNetns(netnsPath, func() error {
		var err error
		r, err = openRawSCTP(src, dst.Addr())
		return err
	})
	if err != nil {
		if r != nil {
			r.Close()
		}
		return errResult(SCTP, "probe sctp", err)
	}
	defer r.Close()
	stop, err := watch(ctx, r.f, deadline)
	if err != nil {
		return Result{Outcome: Error, Detail: err.Error()}
	}
	defer stop()
	tag := rand.Uint32() | 1
	sport := uint16(sctpClientPort + rand.IntN(28000))
	init := marshalSCTP(sctpPacket{SrcPort: sport, DstPort: dst.Port(), Chunk: chunkInit, InitTag: tag})
	if err := r.write(init, dst.Addr()); err != nil {
		return errResult(SCTP, "send sctp init", err)
	}
	buf := make([]byte, 65536)
	for {
		b, _, err := r.read(buf)
		if errors.Is(err, errNotSCTP) {
			continue
		}
		if err != nil {
			return errResult(SCTP, "read sctp", err)
		}
		p, err := parseSCTP(b)
		if err != nil || p.SrcPort != dst.Port() || p.DstPort != sport || p.VTag != tag {
			continue
		}
		switch p.Chunk {
		case chunkInitAck:
			name, seen, err := parseHello(p.Cookie)
			if err != nil {
				return Result{Outcome: Allowed, Detail: "init-ack without a hello cookie"}
			}
			return Result{Outcome: Allowed, Backend: name, SourceSeen: seen}
		case chunkAbort:
			return Result{Outcome: Refused, Detail: "sctp abort"}
		}
	}
}
