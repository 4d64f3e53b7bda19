package replay

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cilium/cilium/api/v1/flow"
	"github.com/cilium/cilium/api/v1/observer"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/ciliaproject/cilia/sim/walker"
)

// jsonpb is how `hubble observe -o jsonpb` marshals.
var jsonpb = protojson.MarshalOptions{UseProtoNames: true}

// writeJSONFlow writes f as one `hubble observe -o jsonpb` line.
func writeJSONFlow(w *bufio.Writer, f *flow.Flow) error {
	b, err := jsonpb.Marshal(&observer.GetFlowsResponse{
		ResponseTypes: &observer.GetFlowsResponse_Flow{Flow: f},
		NodeName:      f.GetNodeName(),
		Time:          f.GetTime(),
	})
	if err != nil {
		return err
	}
	w.Write(b)
	return w.WriteByte('\n')
}

// pktInfo is what the table shows of the packet as captured.
type pktInfo struct {
	src, dst     netip.Addr
	sport, dport uint16
	ports        bool
	proto        string
}

// parseInfo reads addresses, ports and protocol of an Ethernet frame.
func parseInfo(f []byte) pktInfo {
	var pi pktInfo
	if len(f) < 14 {
		return pktInfo{proto: "?"}
	}
	var proto uint8
	l4 := 0
	switch binary.BigEndian.Uint16(f[12:]) {
	case etherTypeIPv4:
		if len(f) < 34 {
			return pktInfo{proto: "IPv4 (short)"}
		}
		pi.src, pi.dst = netip.AddrFrom4([4]byte(f[26:30])), netip.AddrFrom4([4]byte(f[30:34]))
		proto, l4 = f[23], 14+int(f[14]&0x0f)*4
		if binary.BigEndian.Uint16(f[20:])&0x1fff != 0 {
			pi.proto = "IPv4 fragment"
			return pi
		}
	case etherTypeIPv6:
		if len(f) < 54 {
			return pktInfo{proto: "IPv6 (short)"}
		}
		pi.src, pi.dst = netip.AddrFrom16([16]byte(f[22:38])), netip.AddrFrom16([16]byte(f[38:54]))
		proto, l4 = f[20], 54
	case etherTypeARP:
		pi.proto = "ARP"
		if len(f) >= 42 && f[18] == 6 && f[19] == 4 {
			pi.src, pi.dst = netip.AddrFrom4([4]byte(f[28:32])), netip.AddrFrom4([4]byte(f[38:42]))
			if binary.BigEndian.Uint16(f[20:]) == 2 {
				pi.proto = "ARP reply"
			} else {
				pi.proto = "ARP request"
			}
		}
		return pi
	default:
		return pktInfo{proto: fmt.Sprintf("0x%04x", binary.BigEndian.Uint16(f[12:]))}
	}
	l := f[min(l4, len(f)):]
	switch proto {
	case 6, 17, 132:
		pi.proto = map[uint8]string{6: "TCP", 17: "UDP", 132: "SCTP"}[proto]
		if len(l) >= 4 {
			pi.sport, pi.dport, pi.ports = binary.BigEndian.Uint16(l), binary.BigEndian.Uint16(l[2:]), true
		}
		if proto == 6 && len(l) >= 14 {
			pi.proto = tcpProto[tcpFlagBits(l[13])]
		}
		if proto == 17 && pi.dport == walker.VXLANPort {
			pi.proto = "UDP VXLAN"
		}
	case 1, 58:
		name := "ICMPv4"
		if proto == 58 {
			name = "ICMPv6"
		}
		pi.proto = name
		if len(l) >= 2 {
			pi.proto = fmt.Sprintf("%s %s", name, icmpName(proto, l[0], l[1]))
		}
	default:
		pi.proto = "IP proto " + strconv.Itoa(int(proto))
	}
	return pi
}

// tcpProto holds "TCP SYN,ACK" and the like for every combination of the
// SYN, ACK, FIN, RST and PSH bits, so no packet builds one.
var tcpProto = func() (t [32]string) {
	for i := range t {
		var fl []string
		for bit, name := range []string{"SYN", "ACK", "FIN", "RST", "PSH"} {
			if i&(1<<bit) != 0 {
				fl = append(fl, name)
			}
		}
		t[i] = strings.TrimSpace("TCP " + strings.Join(fl, ","))
	}
	return t
}()

// tcpFlagBits maps the TCP flags byte to tcpProto's index.
func tcpFlagBits(b byte) int {
	i := 0
	for bit, mask := range [5]byte{0x02, 0x10, 0x01, 0x04, 0x08} {
		if b&mask != 0 {
			i |= 1 << bit
		}
	}
	return i
}

func icmpName(proto, typ, code uint8) string {
	if proto == 1 {
		switch typ {
		case 8:
			return "echo-request"
		case 0:
			return "echo-reply"
		case 3:
			return "unreachable/" + strconv.Itoa(int(code))
		}
	} else {
		switch typ {
		case 128:
			return "echo-request"
		case 129:
			return "echo-reply"
		case 135:
			return "neighbor-solicit"
		case 136:
			return "neighbor-advert"
		}
	}
	return fmt.Sprintf("type %d/%d", typ, code)
}

func hostName(a netip.Addr, names map[netip.Addr]string) string {
	if n, ok := names[a]; ok {
		return n
	}
	if !a.IsValid() {
		return "-"
	}
	return a.String()
}

func (pi pktInfo) label(a netip.Addr, port uint16, names map[netip.Addr]string) string {
	if n, ok := names[a]; ok {
		return n
	}
	if !a.IsValid() {
		return "-"
	}
	if pi.ports {
		return netip.AddrPortFrom(a, port).String()
	}
	return a.String()
}

func (pi pktInfo) srcHost(names map[netip.Addr]string) string { return hostName(pi.src, names) }
func (pi pktInfo) dstHost(names map[netip.Addr]string) string { return hostName(pi.dst, names) }
func (pi pktInfo) srcLabel(names map[netip.Addr]string) string {
	return pi.label(pi.src, pi.sport, names)
}
func (pi pktInfo) dstLabel(names map[netip.Addr]string) string {
	return pi.label(pi.dst, pi.dport, names)
}

// namer maps the addresses in a packet's flows to the pods ("ns/name")
// they name. It is reused packet after packet, and remembers parsed
// addresses, so naming costs no allocation in the steady state.
type namer struct {
	names  map[netip.Addr]string
	parsed map[string]netip.Addr
	pods   map[[2]string]string
}

func newNamer() *namer {
	return &namer{names: map[netip.Addr]string{}, parsed: map[string]netip.Addr{}, pods: map[[2]string]string{}}
}

// of fills the names of flows' endpoints and returns them.
func (n *namer) of(flows []*flow.Flow) map[netip.Addr]string {
	clear(n.names)
	for _, f := range flows {
		n.add(f.GetIP().GetSource(), f.GetSource())
		n.add(f.GetIP().GetDestination(), f.GetDestination())
	}
	return n.names
}

func (n *namer) add(ip string, ep *flow.Endpoint) {
	if ep.GetPodName() == "" || ip == "" {
		return
	}
	a, ok := n.parsed[ip]
	if !ok {
		var err error
		if a, err = netip.ParseAddr(ip); err != nil {
			return
		}
		if len(n.parsed) > 1<<16 {
			clear(n.parsed)
		}
		n.parsed[ip] = a
	}
	k := [2]string{ep.GetNamespace(), ep.GetPodName()}
	name, ok := n.pods[k]
	if !ok {
		name = k[0] + "/" + k[1]
		if len(n.pods) > 1<<16 {
			clear(n.pods)
		}
		n.pods[k] = name
	}
	n.names[a] = name
}

// finalDst is " → X" when the last flow's destination differs from the
// captured one (service translation), else "".
func finalDst(pi pktInfo, flows []*flow.Flow, names map[netip.Addr]string) string {
	for i := len(flows) - 1; i >= 0; i-- {
		ip := flows[i].GetIP()
		if ip == nil {
			continue
		}
		a, err := netip.ParseAddr(ip.GetDestination())
		if err != nil || a == pi.dst {
			return ""
		}
		port := pi.dport
		if l4 := flows[i].GetL4(); l4 != nil {
			switch {
			case l4.GetTCP() != nil:
				port = uint16(l4.GetTCP().GetDestinationPort())
			case l4.GetUDP() != nil:
				port = uint16(l4.GetUDP().GetDestinationPort())
			case l4.GetSCTP() != nil:
				port = uint16(l4.GetSCTP().GetDestinationPort())
			}
		}
		return " → " + pi.label(a, port, names)
	}
	return ""
}

// path renders the hops compactly: program hooks and encapsulation, the
// pods at the ends, and where the walk ended when that is not a pod.
func path(w *walker.Walk) string {
	var parts []string
	lastToContainer := -1
	for i, h := range w.Hops {
		if h.Hook == walker.ToContainer {
			lastToContainer = i
		}
	}
	for i, h := range w.Hops {
		var s string
		switch h.Hook {
		case walker.FromContainer:
			if i == 0 && w.Entry.Pod != "" {
				s = w.Entry.Pod + " " + string(h.Hook)
			} else {
				s = h.Node + " " + string(h.Hook)
			}
		case walker.ToContainer:
			if pod, ok := strings.CutPrefix(w.At, "pod "); ok && i == lastToContainer {
				s = pod + " " + string(h.Hook)
			} else {
				s = h.Node + " " + string(h.Hook)
			}
		case walker.Encap:
			s = h.Node + " vxlan"
		case walker.Stack, walker.Fabric, walker.Decap:
			if i != len(w.Hops)-1 {
				continue
			}
			s = strings.TrimSpace(h.Node + " " + string(h.Hook))
		default:
			s = h.Node + " " + string(h.Hook)
		}
		parts = append(parts, s)
	}
	switch w.Outcome {
	case walker.Dropped:
		parts = append(parts, "✗")
	case walker.LeftCluster, walker.ToProxy:
		parts = append(parts, w.At)
	case walker.Delivered:
		if !strings.HasPrefix(w.At, "pod ") && w.At != "" {
			parts = append(parts, w.At)
		}
	}
	return strings.Join(parts, " → ")
}

// verboseLines lists every hop of w with the flows of its events.
func verboseLines(w *walker.Walk, flows []*flow.Flow) []string {
	var lines []string
	events := 0
	for _, h := range w.Hops {
		events += len(h.Events)
	}
	zip := events == len(flows)
	fi := 0
	for _, h := range w.Hops {
		s := "    ↳ " + strings.TrimSpace(fmt.Sprintf("%s %s %s", h.Node, h.Hook, h.Device))
		if h.Program != "" {
			s += fmt.Sprintf(" %s=%s", h.Program, tcCode(h.Code))
		}
		if h.Note != "" {
			s += " [" + h.Note + "]"
		}
		lines = append(lines, s)
		if zip {
			for range h.Events {
				lines = append(lines, "        "+flowLine(flows[fi]))
				fi++
			}
		}
	}
	if !zip {
		for _, f := range flows {
			lines = append(lines, "        "+flowLine(f))
		}
	}
	return lines
}

func tcCode(c int) string {
	switch c {
	case 0:
		return "OK"
	case 2:
		return "SHOT"
	case 7:
		return "REDIRECT"
	}
	return strconv.Itoa(c)
}

// flowLine is one flow the way `hubble observe` prints it, roughly.
func flowLine(f *flow.Flow) string {
	ep := func(e *flow.Endpoint, ip string) string {
		s := ip
		if e.GetPodName() != "" {
			s = e.GetNamespace() + "/" + e.GetPodName()
		}
		return fmt.Sprintf("%s (ID:%d)", s, e.GetIdentity())
	}
	s := fmt.Sprintf("%s: %s -> %s %s %s", f.GetNodeName(), ep(f.GetSource(), f.GetIP().GetSource()),
		ep(f.GetDestination(), f.GetIP().GetDestination()), f.GetTraceObservationPoint(), f.GetVerdict())
	if f.GetVerdict() == flow.Verdict_DROPPED {
		s += " (" + f.GetDropReasonDesc().String() + ")"
	}
	return s
}

// streamTable writes aligned columns without holding the whole output:
// it buffers the first rows to size the columns, then streams, widening a
// column when a later row needs it. (text/tabwriter needs every row before
// it can align, which a million-packet capture cannot afford, and its
// column blocks break at -v's detail lines.)
type streamTable struct {
	w      io.Writer
	widths []int
	buf    []tableRow
	warm   bool
	line   []byte
}

type tableRow struct {
	cells  []string
	widths []int // rune counts of cells
	detail []string
}

// warmRows is how many rows size the columns before streaming starts.
const warmRows = 256

func newStreamTable(w io.Writer, header ...string) *streamTable {
	t := &streamTable{w: w}
	if len(header) > 0 {
		t.row(nil, header...)
	}
	return t
}

func (t *streamTable) row(detail []string, cells ...string) {
	for len(t.widths) < len(cells) {
		t.widths = append(t.widths, 0)
	}
	r := tableRow{cells: cells, detail: detail, widths: make([]int, len(cells))}
	for i, c := range cells {
		r.widths[i] = utf8.RuneCountInString(c)
		t.widths[i] = max(t.widths[i], r.widths[i])
	}
	if !t.warm {
		t.buf = append(t.buf, r)
		if len(t.buf) >= warmRows {
			t.flush()
		}
		return
	}
	t.write(r)
}

const spaces = "                                                                "

func (t *streamTable) write(r tableRow) {
	b := t.line[:0]
	for i, c := range r.cells {
		b = append(b, c...)
		if i < len(r.cells)-1 {
			for pad := t.widths[i] - r.widths[i] + 2; pad > 0; pad -= len(spaces) {
				b = append(b, spaces[:min(pad, len(spaces))]...)
			}
		}
	}
	b = append(b, '\n')
	for _, d := range r.detail {
		b = append(b, d...)
		b = append(b, '\n')
	}
	t.w.Write(b)
	t.line = b
}

// flush writes the buffered rows and switches to streaming.
func (t *streamTable) flush() {
	for _, r := range t.buf {
		t.write(r)
	}
	t.buf, t.warm = nil, true
}

// progress draws "packets / bytes read" in place on a terminal.
type progress struct {
	w     io.Writer
	total int64
	start time.Time
	last  time.Time
	drawn bool
	done  bool
}

func newProgress(w io.Writer, total int64) *progress {
	return &progress{w: w, total: total, start: time.Now()}
}

func (p *progress) update(packets int, bytes int64) {
	now := time.Now()
	if now.Sub(p.last) < 100*time.Millisecond {
		return
	}
	p.last = now
	rate := float64(packets) / max(now.Sub(p.start).Seconds(), 1e-9)
	s := fmt.Sprintf("replay: %d packets, %s read", packets, mib(bytes))
	if p.total > 0 {
		frac := min(float64(bytes)/float64(p.total), 1)
		const width = 30
		n := int(frac * width)
		s = fmt.Sprintf("replay [%s%s] %3.0f%% %d packets, %s/%s", strings.Repeat("=", n), strings.Repeat(" ", width-n),
			frac*100, packets, mib(bytes), mib(p.total))
	}
	fmt.Fprintf(p.w, "\r\x1b[K%s, %.0f packets/s", s, rate)
	p.drawn = true
}

// finish erases the bar.
func (p *progress) finish() {
	if p.drawn && !p.done {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
	p.done = true
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
