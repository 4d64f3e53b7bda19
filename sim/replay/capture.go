package replay

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// ErrCorrupt is wrapped by every error about a truncated or corrupt
// capture; the message names the packet index and the byte offset.
var ErrCorrupt = errors.New("corrupt capture")

// ErrLinkType is wrapped by the error for a capture whose link type replay
// cannot turn into Ethernet frames.
var ErrLinkType = errors.New("unsupported link type")

// linkType is a capture's link type. gopacket's layers.LinkType is a
// uint8, which cannot hold LINKTYPE_LINUX_SLL2 (276): the framer reads link
// types from the file itself.
type linkType uint32

// Link types replay reads.
const (
	linkTypeEthernet  linkType = 1
	linkTypeRawBSD    linkType = 12 // DLT_RAW on OpenBSD, seen in old files
	linkTypeRaw       linkType = 101
	linkTypeLinuxSLL  linkType = 113
	linkTypeIPv4      linkType = 228
	linkTypeIPv6      linkType = 229
	linkTypeLinuxSLL2 linkType = 276
)

func (lt linkType) String() string {
	switch lt {
	case linkTypeEthernet:
		return "Ethernet"
	case linkTypeRawBSD, linkTypeRaw:
		return "raw IP"
	case linkTypeLinuxSLL:
		return "Linux cooked v1"
	case linkTypeIPv4:
		return "raw IPv4"
	case linkTypeIPv6:
		return "raw IPv6"
	case linkTypeLinuxSLL2:
		return "Linux cooked v2"
	}
	if lt < 256 {
		return layers.LinkType(lt).String()
	}
	return "unknown"
}

// Capture file magics.
const (
	magicPcapUsLE = 0xa1b2c3d4
	magicPcapNsLE = 0xa1b23c4d
	magicPcapngSH = 0x0a0d0d0a
)

// packet is one record of a capture, normalised to an Ethernet frame.
type packet struct {
	// Index is the 1-based record number in the file.
	Index int
	// Offset is the byte offset of the record in the (uncompressed) file.
	Offset int64
	Time   time.Time
	// Frame is the record as an Ethernet frame; nil for a skipped packet.
	Frame []byte
	// Skip says why the packet is not replayed ("EtherType 0x88cc").
	Skip string
}

// packetReader reads a pcap or pcapng capture record by record.
type packetReader struct {
	framer *framer
	src    gopacket.PacketDataSource
	ng     bool
	index  int
}

// newPacketReader detects the format by its magic (pcap in either byte
// order and timestamp precision, pcapng, either of them gzipped).
func newPacketReader(r io.Reader) (*packetReader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	if m, _ := br.Peek(2); len(m) == 2 && m[0] == 0x1f && m[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("open gzipped capture: %w: %w", ErrCorrupt, err)
		}
		br = bufio.NewReaderSize(zr, 64<<10)
	}
	m, err := br.Peek(4)
	if err != nil {
		return nil, fmt.Errorf("read capture header: %w: file is %d bytes, too short for a capture", ErrCorrupt, len(m))
	}
	pr := &packetReader{}
	le, be := binary.LittleEndian.Uint32(m), binary.BigEndian.Uint32(m)
	switch {
	case le == magicPcapngSH:
		pr.ng = true
		pr.framer = &framer{r: br, ng: true}
		ng, err := pcapgo.NewNgReader(pr.framer, pcapgo.NgReaderOptions{WantMixedLinkType: true})
		if err != nil {
			return nil, fmt.Errorf("read pcapng section header: %w: %w", ErrCorrupt, pr.framer.explain(err))
		}
		pr.src = ng
	case le == magicPcapUsLE || le == magicPcapNsLE || be == magicPcapUsLE || be == magicPcapNsLE:
		pr.framer = &framer{r: br, bigEndian: be == magicPcapUsLE || be == magicPcapNsLE}
		pc, err := pcapgo.NewReader(pr.framer)
		if err != nil {
			return nil, fmt.Errorf("read pcap file header: %w: %w", ErrCorrupt, pr.framer.explain(err))
		}
		pr.src = pc
	default:
		return nil, fmt.Errorf("read capture header: %w: magic %08x is neither pcap nor pcapng", ErrCorrupt, be)
	}
	if lt := pr.framer.linkType(0); !pr.ng && !supportedLinkType(lt) {
		return nil, fmt.Errorf("read capture: %w %d (%s): replay reads Ethernet, Linux cooked v1/v2 and raw IP",
			ErrLinkType, int(lt), lt)
	}
	return pr, nil
}

// bytesRead returns how many bytes of the (uncompressed) capture were read.
func (pr *packetReader) bytesRead() int64 { return pr.framer.pos }

// next returns the next packet, io.EOF at a clean end of the file, or an
// error wrapping ErrCorrupt that names the packet index and byte offset.
func (pr *packetReader) next() (packet, error) {
	data, ci, err := pr.src.ReadPacketData()
	idx := pr.index + 1
	if err == io.EOF && pr.framer.clean() {
		return packet{}, io.EOF
	}
	off := pr.framer.recStart
	if err != nil {
		return packet{}, fmt.Errorf("read packet %d at byte offset %d: %w: %w", idx, off, ErrCorrupt, pr.framer.explain(err))
	}
	pr.index = idx
	if ci.CaptureLength < ci.Length {
		return packet{}, fmt.Errorf("read packet %d at byte offset %d: %w: only %d of its %d bytes were captured (snaplen); "+
			"capture with tcpdump -s 0", idx, off, ErrCorrupt, ci.CaptureLength, ci.Length)
	}
	lt := pr.framer.linkType(ci.InterfaceIndex)
	p := packet{Index: idx, Offset: off, Time: ci.Timestamp}
	p.Frame, p.Skip, err = toEthernet(lt, data)
	if err != nil {
		return packet{}, fmt.Errorf("read packet %d at byte offset %d: %w: %w", idx, off, ErrCorrupt, err)
	}
	return p, nil
}

// framer sits between the file and pcapgo. It hands out at most one record
// (pcap) or block (pcapng) per Read, so pcapgo's internal bufio never reads
// past the record it is parsing, which makes recStart the exact offset of
// the record pcapgo is on. It also rejects impossible pcapng block lengths.
type framer struct {
	r         *bufio.Reader
	ng        bool
	bigEndian bool // pcap only; pcapng learns it from each section header
	pos       int64
	recStart  int64
	left      int64 // bytes of the current record not yet handed out
	started   bool  // the file header was handed out
	err       error // a framing error, also returned by Read
	cut       bool  // the file ended inside a record
	// links are the link types: the file's (pcap), or the current
	// section's interfaces' (pcapng).
	links []linkType
}

// linkType returns the link type of interface i (pcapng) or the file's.
func (f *framer) linkType(i int) linkType {
	if !f.ng {
		i = 0
	}
	if i >= 0 && i < len(f.links) {
		return f.links[i]
	}
	return 0
}

// errCut marks a file that ends inside a record.
var errCut = errors.New("file ends in the middle of a record")

func (f *framer) Read(p []byte) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	if f.cut && f.left == 0 {
		return 0, io.ErrUnexpectedEOF
	}
	if f.left == 0 {
		if err := f.startRecord(); err != nil {
			return 0, err
		}
	}
	if int64(len(p)) > f.left {
		p = p[:f.left]
	}
	n, err := f.r.Read(p)
	f.pos += int64(n)
	f.left -= int64(n)
	if err == io.EOF && f.left > 0 {
		f.cut = true
		return n, io.ErrUnexpectedEOF
	}
	return n, err
}

// startRecord finds the length of the record at pos.
func (f *framer) startRecord() error {
	f.recStart = f.pos
	if !f.ng {
		if !f.started {
			f.started = true
			f.left = 24
			if h, err := f.r.Peek(24); err == nil {
				f.links = []linkType{linkType(f.u32(h[20:]))}
			}
			return nil
		}
		h, err := f.r.Peek(16)
		if len(h) == 0 && err == io.EOF {
			return io.EOF
		}
		if err != nil {
			// Hand out the partial header; pcapgo reports the cut.
			f.left = int64(len(h))
			f.cut = true
			if f.left == 0 {
				return io.ErrUnexpectedEOF
			}
			return nil
		}
		var capLen uint32
		if f.bigEndian {
			capLen = binary.BigEndian.Uint32(h[8:])
		} else {
			capLen = binary.LittleEndian.Uint32(h[8:])
		}
		if capLen > maxRecord {
			f.err = fmt.Errorf("record header claims %d captured bytes", capLen)
			return f.err
		}
		f.left = 16 + int64(capLen)
		return nil
	}
	h, err := f.r.Peek(12)
	if len(h) == 0 && err == io.EOF {
		return io.EOF
	}
	if len(h) < 8 {
		f.left = int64(len(h))
		f.cut = true
		if f.left == 0 {
			return io.ErrUnexpectedEOF
		}
		return nil
	}
	if binary.LittleEndian.Uint32(h) == magicPcapngSH {
		if len(h) < 12 {
			f.left = int64(len(h))
			f.cut = true
			return nil
		}
		f.links = nil
		switch {
		case binary.LittleEndian.Uint32(h[8:]) == 0x1a2b3c4d:
			f.bigEndian = false
		case binary.BigEndian.Uint32(h[8:]) == 0x1a2b3c4d:
			f.bigEndian = true
		default:
			f.err = errors.New("section header has no byte-order magic")
			return f.err
		}
	}
	n := f.u32(h[4:])
	if n < 12 || n%4 != 0 || n > maxRecord {
		f.err = fmt.Errorf("block has an impossible length %d", n)
		return f.err
	}
	if f.u32(h) == 1 {
		// An interface description block: remember its link type.
		if b, err := f.r.Peek(10); err == nil {
			lt := binary.LittleEndian.Uint16(b[8:])
			if f.bigEndian {
				lt = binary.BigEndian.Uint16(b[8:])
			}
			f.links = append(f.links, linkType(lt))
		}
	}
	if typ := f.u32(h); typ == 6 || typ == 2 {
		// An (enhanced) packet block's captured length must fit in it.
		if b, err := f.r.Peek(28); err == nil && (n < 32 || f.u32(b[20:]) > n-32) {
			f.err = fmt.Errorf("packet block of %d bytes claims %d captured bytes", n, f.u32(b[20:]))
			return f.err
		}
	}
	f.left = int64(n)
	return nil
}

// maxRecord bounds a record's size (pcapgo allocates what a header claims).
const maxRecord = 16 << 20

func (f *framer) u32(b []byte) uint32 {
	if f.bigEndian {
		return binary.BigEndian.Uint32(b)
	}
	return binary.LittleEndian.Uint32(b)
}

// clean reports whether the file ended on a record boundary.
func (f *framer) clean() bool { return !f.cut && f.err == nil && f.left == 0 }

// explain returns the framing error, or a clearer error for a file cut in
// a record, or err itself.
func (f *framer) explain(err error) error {
	switch {
	case f.err != nil:
		return f.err
	case f.cut || errors.Is(err, io.ErrUnexpectedEOF) || (err == io.EOF && f.left > 0):
		return errCut
	}
	return err
}

func supportedLinkType(lt linkType) bool {
	switch lt {
	case linkTypeEthernet, linkTypeLinuxSLL, linkTypeLinuxSLL2, linkTypeRaw, linkTypeRawBSD, linkTypeIPv4, linkTypeIPv6:
		return true
	}
	return false
}

// Synthesized MAC addresses for frames built from cooked and raw captures
// (locally administered).
var (
	synthDstMAC = [6]byte{0x02, 0xc1, 0x11, 0x1a, 0x00, 0x01}
	synthSrcMAC = [6]byte{0x02, 0xc1, 0x11, 0x1a, 0x00, 0x02}
)

// EtherTypes replay walks; anything else is skipped and counted.
const (
	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86dd
	etherTypeARP  = 0x0806
	etherTypeVLAN = 0x8100
)

// toEthernet turns a record of link type lt into an Ethernet frame. skip
// is non-empty for a packet that is not IP or ARP.
func toEthernet(lt linkType, data []byte) (frame []byte, skip string, err error) {
	switch lt {
	case linkTypeEthernet:
		if len(data) < 14 {
			return nil, "", fmt.Errorf("Ethernet frame of %d bytes", len(data))
		}
		et := binary.BigEndian.Uint16(data[12:])
		if et == etherTypeVLAN && len(data) >= 18 {
			// Strip one 802.1Q tag: the cluster's devices are untagged.
			f := make([]byte, len(data)-4)
			copy(f, data[:12])
			copy(f[12:], data[16:])
			data, et = f, binary.BigEndian.Uint16(data[16:])
		}
		if s := skipEtherType(et); s != "" {
			return nil, s, nil
		}
		return data, "", nil
	case linkTypeLinuxSLL:
		// packet type, ARPHRD, address length, address[8], protocol.
		if len(data) < 16 {
			return nil, "", fmt.Errorf("Linux cooked header of %d bytes", len(data))
		}
		alen := int(binary.BigEndian.Uint16(data[4:]))
		return cooked(binary.BigEndian.Uint16(data[14:]), data[6:6+min(alen, 8)], data[16:])
	case linkTypeLinuxSLL2:
		// protocol, reserved, ifindex, ARPHRD, packet type, address
		// length, address[8].
		if len(data) < 20 {
			return nil, "", fmt.Errorf("Linux cooked v2 header of %d bytes", len(data))
		}
		alen := int(data[11])
		return cooked(binary.BigEndian.Uint16(data[0:]), data[12:12+min(alen, 8)], data[20:])
	case linkTypeRaw, linkTypeRawBSD, linkTypeIPv4, linkTypeIPv6:
		return cooked(0, nil, data)
	}
	return nil, fmt.Sprintf("link type %d (%s)", int(lt), lt), nil
}

// cooked builds an Ethernet frame around payload: the source MAC is addr
// when it is a MAC, the EtherType is proto when it is IP or ARP, else it
// comes from the IP version.
func cooked(proto uint16, addr, payload []byte) ([]byte, string, error) {
	et := proto
	if et != etherTypeIPv4 && et != etherTypeIPv6 && et != etherTypeARP {
		if len(payload) == 0 {
			return nil, "empty packet", nil
		}
		switch payload[0] >> 4 {
		case 4:
			et = etherTypeIPv4
		case 6:
			et = etherTypeIPv6
		default:
			if proto != 0 {
				return nil, skipEtherType(proto), nil
			}
			return nil, fmt.Sprintf("not IP (version nibble %d)", payload[0]>>4), nil
		}
	}
	f := make([]byte, 14+len(payload))
	copy(f[0:6], synthDstMAC[:])
	if len(addr) == 6 {
		copy(f[6:12], addr)
	} else {
		copy(f[6:12], synthSrcMAC[:])
	}
	binary.BigEndian.PutUint16(f[12:], et)
	copy(f[14:], payload)
	return f, "", nil
}

// skipEtherType says why a frame of EtherType et is skipped, "" when it is
// walked.
func skipEtherType(et uint16) string {
	switch et {
	case etherTypeIPv4, etherTypeIPv6, etherTypeARP:
		return ""
	}
	if et < 0x0600 {
		return "802.3 frame (no EtherType)"
	}
	return fmt.Sprintf("EtherType 0x%04x (%s)", et, layers.EthernetType(et))
}
