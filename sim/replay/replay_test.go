package replay_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/cilium/cilium/api/v1/flow"
	"github.com/cilium/cilium/api/v1/observer"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/ciliaproject/cilia/sim/replay"
	rt "github.com/ciliaproject/cilia/sim/replay/replaytest"
	"github.com/ciliaproject/cilia/sim/walker"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// ipRecs is the standard capture: every outcome of the fake once or more.
func ipRecs() []rt.Record {
	frames := [][]byte{
		rt.Frame(rt.A, rt.B, "tcp", 40001, 80, 10),         // 1 delivered on n1
		rt.Frame(rt.A, rt.C, "tcp", 40002, 80, 0),          // 2 delivered across nodes
		rt.Frame(rt.A, rt.B, "tcp", 40003, 23, 0),          // 3 dropped, rule 7
		rt.Frame(rt.External, rt.C, "udp", 5353, 53, 20),   // 4 from outside, delivered
		rt.Frame(rt.B, rt.Internet, "udp", 40004, 53, 20),  // 5 leaves the cluster
		rt.Frame(rt.A6, rt.B6, "icmp", 0, 0, 8),            // 6 IPv6 delivered
		rt.Frame(rt.Nowhere, rt.Internet, "tcp", 1, 80, 0), // 7 nothing sees it: error
		rt.Frame(rt.A, rt.B, "tcp", 40005, 23, 0),          // 8 dropped, rule 7
	}
	recs := make([]rt.Record, len(frames))
	for i, f := range frames {
		recs[i] = rt.Record{Time: t0.Add(time.Duration(i) * time.Millisecond), Frame: f}
	}
	return recs
}

func run(t testing.TB, sim replay.Simulator, capture []byte, opts replay.Options) (string, replay.Summary, error) {
	t.Helper()
	var out bytes.Buffer
	sum, err := replay.Run(context.Background(), sim, bytes.NewReader(capture), &out, opts)
	return out.String(), sum, err
}

func mustRun(t *testing.T, capture []byte, opts replay.Options) (string, replay.Summary) {
	t.Helper()
	out, sum, err := run(t, rt.DefaultSim(), capture, opts)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, out)
	}
	return out, sum
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

// pcapgoFile writes recs as Ethernet with gopacket's own pcap writer.
func pcapgoFile(t *testing.T, recs []rt.Record) []byte {
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	if err := w.WriteFileHeader(65536, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		ci := gopacket.CaptureInfo{Timestamp: r.Time, CaptureLength: len(r.Frame), Length: len(r.Frame)}
		if err := w.WritePacket(ci, r.Frame); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// pcapgoNgFile writes recs as Ethernet with gopacket's pcapng writer.
func pcapgoNgFile(t *testing.T, recs []rt.Record) []byte {
	var buf bytes.Buffer
	w, err := pcapgo.NewNgWriter(&buf, layers.LinkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		ci := gopacket.CaptureInfo{Timestamp: r.Time, CaptureLength: len(r.Frame), Length: len(r.Frame)}
		if err := w.WritePacket(ci, r.Frame); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestLinkTypesGiveSameFlows(t *testing.T) {
	recs := ipRecs()
	var v4 []rt.Record
	for _, r := range recs {
		if r.Frame[12] == 0x08 {
			v4 = append(v4, r)
		}
	}
	want, wantSum := mustRun(t, rt.Pcap(rt.Ethernet, recs, false, false), replay.Options{Format: "json"})
	if n := strings.Count(want, "\n"); n < 8 {
		t.Fatalf("reference replay has %d flows, want at least 8:\n%s", n, want)
	}
	want4, _ := mustRun(t, rt.Pcap(rt.Ethernet, v4, false, false), replay.Options{Format: "json"})
	var tagged []rt.Record
	for _, r := range recs {
		f := append(append(append([]byte(nil), r.Frame[:12]...), 0x81, 0x00, 0x00, 0x2a), r.Frame[12:]...)
		tagged = append(tagged, rt.Record{Time: r.Time, Frame: f})
	}
	tests := []struct {
		name    string
		capture []byte
		want    string
	}{
		{"pcap Ethernet 802.1Q tagged", rt.Pcap(rt.Ethernet, tagged, false, false), want},
		{"pcap Ethernet big endian nanoseconds", rt.Pcap(rt.Ethernet, recs, true, true), want},
		{"pcap Ethernet by pcapgo", pcapgoFile(t, recs), want},
		{"pcap Linux cooked v1", rt.Pcap(rt.LinuxSLL, recs, false, false), want},
		{"pcap Linux cooked v2", rt.Pcap(rt.LinuxSLL2, recs, false, false), want},
		{"pcap Linux cooked v2 big endian", rt.Pcap(rt.LinuxSLL2, recs, true, false), want},
		{"pcap raw IP", rt.Pcap(rt.Raw, recs, false, false), want},
		{"pcap raw IPv4", rt.Pcap(rt.IPv4, v4, false, false), want4},
		{"pcap gzipped Linux cooked v2", gz(rt.Pcap(rt.LinuxSLL2, recs, false, true)), want},
		{"pcapng Ethernet", rt.Pcapng(rt.Ethernet, recs), want},
		{"pcapng Ethernet by pcapgo", pcapgoNgFile(t, recs), want},
		{"pcapng Linux cooked v2", rt.Pcapng(rt.LinuxSLL2, recs), want},
		{"pcapng raw IP", rt.Pcapng(rt.Raw, recs), want},
		{"pcapng gzipped Linux cooked v1", gz(rt.Pcapng(rt.LinuxSLL, recs)), want},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, sum := mustRun(t, tt.capture, replay.Options{Format: "json"})
			if got != tt.want {
				t.Errorf("flows differ from the Ethernet capture's\ngot:\n%s\nwant:\n%s", got, tt.want)
			}
			if tt.want == want && (sum.Delivered != wantSum.Delivered || sum.Dropped != wantSum.Dropped) {
				t.Errorf("summary %+v, want %+v", sum, wantSum)
			}
		})
	}
}

func TestWalkerSeesEthernet(t *testing.T) {
	// The walker sees the captured frame: untagged, and for cooked
	// captures with the cooked header's link-layer address as source MAC.
	rec := ipRecs()[0]
	tagged := append(append(append([]byte(nil), rec.Frame[:12]...), 0x81, 0x00, 0x00, 0x2a), rec.Frame[12:]...)
	tests := []struct {
		name    string
		capture []byte
		macs    bool // the MACs are the captured ones
	}{
		{"802.1Q", rt.Pcap(rt.Ethernet, []rt.Record{{Time: t0, Frame: tagged}}, false, false), true},
		{"Linux cooked v1", rt.Pcap(rt.LinuxSLL, []rt.Record{rec}, false, false), false},
		{"Linux cooked v2", rt.Pcap(rt.LinuxSLL2, []rt.Record{rec}, false, false), false},
		{"raw IP", rt.Pcap(rt.Raw, []rt.Record{rec}, false, false), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var seen []byte
			sim := &frameSpy{Sim: rt.DefaultSim(), seen: &seen}
			if _, _, err := run(t, sim, tt.capture, replay.Options{}); err != nil {
				t.Fatal(err)
			}
			if len(seen) != len(rec.Frame) || !bytes.Equal(seen[12:], rec.Frame[12:]) {
				t.Fatalf("walked % x, want the frame % x", seen, rec.Frame)
			}
			cooked := tt.name != "raw IP"
			if (tt.macs && !bytes.Equal(seen[:12], rec.Frame[:12])) || (!tt.macs && cooked && !bytes.Equal(seen[6:12], rec.Frame[6:12])) {
				t.Errorf("walked MACs % x, captured % x", seen[:12], rec.Frame[:12])
			}
		})
	}
}

type frameSpy struct {
	*rt.Sim
	seen *[]byte
}

func (s *frameSpy) Walk(e walker.Entry, f []byte) (*walker.Walk, error) {
	*s.seen = append([]byte(nil), f...)
	return s.Sim.Walk(e, f)
}

func TestJSONIsHubbleJSONPB(t *testing.T) {
	var log bytes.Buffer
	out, sum := mustRun(t, rt.Pcap(rt.Ethernet, ipRecs(), false, false), replay.Options{Format: "json", Log: &log})
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	var drops int
	for i, l := range lines {
		var resp observer.GetFlowsResponse
		if err := protojson.Unmarshal([]byte(l), &resp); err != nil {
			t.Fatalf("line %d does not unmarshal into GetFlowsResponse: %v\n%s", i+1, err, l)
		}
		f := resp.GetFlow()
		if f == nil {
			t.Fatalf("line %d holds no flow: %s", i+1, l)
		}
		if resp.GetNodeName() == "" || resp.GetNodeName() != f.GetNodeName() {
			t.Errorf("line %d: node_name %q, flow's %q", i+1, resp.GetNodeName(), f.GetNodeName())
		}
		if !resp.GetTime().AsTime().Equal(f.GetTime().AsTime()) || f.GetTime().AsTime().Before(t0) {
			t.Errorf("line %d: time %v, flow's %v", i+1, resp.GetTime().AsTime(), f.GetTime().AsTime())
		}
		if !strings.Contains(l, `"node_name"`) {
			t.Errorf("line %d does not use proto names: %s", i+1, l)
		}
		if f.GetVerdict() == flow.Verdict_DROPPED {
			drops++
			if f.GetDropReasonDesc() != flow.DropReason_POLICY_DENIED || !strings.Contains(l, `"drop_reason_desc"`) {
				t.Errorf("drop flow without POLICY_DENIED drop_reason_desc: %s", l)
			}
			if f.GetL4().GetTCP().GetDestinationPort() != rt.DeniedPort || f.GetSource().GetPodName() != "a" {
				t.Errorf("drop flow is not x/a's packet to port 23: %s", l)
			}
		}
	}
	if drops != 2 || sum.Dropped != 2 {
		t.Errorf("%d drop flows, summary %d drops; want 2", drops, sum.Dropped)
	}
	if strings.Contains(out, "Summary") {
		t.Errorf("the summary is in the JSON stream:\n%s", out)
	}
	if !strings.Contains(log.String(), "Summary: 8 packets") || !strings.Contains(log.String(), rt.DenyRuleText) {
		t.Errorf("log lacks the summary:\n%s", log.String())
	}
	if !strings.Contains(log.String(), "packet 7: ") || !strings.Contains(log.String(), "no entry point") {
		t.Errorf("log does not name packet 7's error:\n%s", log.String())
	}
}

func TestTable(t *testing.T) {
	out, _ := mustRun(t, rt.Pcap(rt.Ethernet, ipRecs(), false, false), replay.Options{})
	lines := strings.Split(out, "\n")
	header := lines[0]
	for _, col := range []string{"TIME", "SOURCE", "DESTINATION", "PROTO", "VERDICT", "REASON", "RULE", "PATH"} {
		if !strings.Contains(header, col) {
			t.Fatalf("header %q lacks %s", header, col)
		}
	}
	rows := lines[1:9]
	wants := [][]string{
		{"0.000000", "x/a", "x/b", "TCP SYN", "FORWARDED", rt.AllowRuleText, "x/a from-container → x/b to-container"},
		{"0.001000", "x/c", "FORWARDED", "x/a from-container → n1 vxlan → n2 from-overlay → x/c to-container"},
		{"0.002000", "x/a", "x/b", "DROPPED", "POLICY_DENIED", rt.DenyRuleText, "x/a from-container → ✗"},
		{"192.0.2.10:5353", "x/c", "UDP", "FORWARDED", "n2 from-netdev → x/c to-container"},
		{"x/b", "8.8.8.8:53", "LEFT-CLUSTER", "external 8.8.8.8"},
		{"x/a", "x/b", "ICMPv6 echo-request", "FORWARDED"},
		{"203.0.113.5:1", "ERROR", "no entry point"},
		{"0.007000", "DROPPED", "POLICY_DENIED", rt.DenyRuleText},
	}
	verdictCol := utf8.RuneCountInString(header[:strings.Index(header, "VERDICT")])
	for i, w := range wants {
		for _, s := range w {
			if !strings.Contains(rows[i], s) {
				t.Errorf("row %d lacks %q: %s", i+1, s, rows[i])
			}
		}
		r := []rune(rows[i])
		if len(r) < verdictCol || !strings.ContainsAny(string(r[verdictCol]), "FDLE") || r[verdictCol-1] != ' ' {
			t.Errorf("row %d: verdict not aligned under VERDICT (col %d):\n%s\n%s", i+1, verdictCol, header, rows[i])
		}
	}
	summary := strings.Join(lines[9:], "\n")
	for _, s := range []string{"Summary: 8 packets", "delivered 4, dropped 2, left cluster 1, to proxy 0, errors 1, skipped 0",
		"Drops by reason:", "POLICY_DENIED", "Drops by rule:", rt.DenyRuleText, "Top talkers:", "x/a", "→ x/b", "4 packets", "2 dropped"} {
		if !strings.Contains(summary, s) {
			t.Errorf("summary lacks %q:\n%s", s, summary)
		}
	}
}

func TestTableOptions(t *testing.T) {
	capture := rt.Pcap(rt.Ethernet, ipRecs(), false, false)
	tests := []struct {
		name      string
		opts      replay.Options
		want, not []string
	}{
		{"absolute time", replay.Options{AbsoluteTime: true}, []string{"2026-01-02T03:04:05.000000Z", "2026-01-02T03:04:05.007000Z"}, []string{"0.007000 "}},
		{"verbose", replay.Options{Verbose: true}, []string{
			"    ↳ n1 from-container lxc0 from_container=SHOT",
			"n1: x/a (ID:1001) -> x/b (ID:1002)",
			"DROPPED (POLICY_DENIED)",
			"    ↳ n1 vxlan-encap",
			"    ↳ n2 from-overlay cilia_vxlan from_overlay=OK",
		}, nil},
		{"plain", replay.Options{}, nil, []string{"↳"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _ := mustRun(t, capture, tt.opts)
			for _, s := range tt.want {
				if !strings.Contains(out, s) {
					t.Errorf("output lacks %q:\n%s", s, out)
				}
			}
			for _, s := range tt.not {
				if strings.Contains(out, s) {
					t.Errorf("output has %q:\n%s", s, out)
				}
			}
		})
	}
}

func TestSummary(t *testing.T) {
	recs := append(ipRecs(), rt.Record{Time: t0.Add(time.Second), Frame: rt.LLDP()},
		rt.Record{Time: t0.Add(time.Second), Frame: rt.ARP(rt.A, rt.B)})
	_, sum := mustRun(t, rt.Pcap(rt.Ethernet, recs, false, false), replay.Options{Format: "json"})
	sum.Elapsed = 0
	want := replay.Summary{
		Packets: 10, Delivered: 5, Dropped: 2, LeftCluster: 1, Errors: 1, Skipped: 1,
		SkippedByKind: map[string]int{"EtherType 0x88cc (LinkLayerDiscovery)": 1},
		DropsByReason: map[string]int{"POLICY_DENIED": 2},
		DropsByRule:   map[string]int{rt.DenyRuleText: 2},
		// The IPv6 echo is x/a -> x/b too; the ARP request has no flows to
		// name its addresses.
		TopTalkers: []replay.Talker{
			{Source: "x/a", Destination: "x/b", Packets: 4, Dropped: 2},
			{Source: "10.0.1.1", Destination: "10.0.1.2", Packets: 1},
			{Source: "192.0.2.10", Destination: "x/c", Packets: 1},
			{Source: "203.0.113.5", Destination: "8.8.8.8", Packets: 1},
			{Source: "x/a", Destination: "x/c", Packets: 1},
			{Source: "x/b", Destination: "8.8.8.8", Packets: 1},
		},
	}
	if !reflect.DeepEqual(sum, want) {
		t.Errorf("summary\n%+v\nwant\n%+v", sum, want)
	}
}

func TestSkippedPacketsAreReported(t *testing.T) {
	recs := []rt.Record{{Time: t0, Frame: rt.LLDP()}, {Time: t0, Frame: ipRecs()[0].Frame}}
	for _, lt := range []int{rt.Ethernet, rt.LinuxSLL, rt.LinuxSLL2} {
		out, sum := mustRun(t, rt.Pcap(lt, recs, false, false), replay.Options{})
		if sum.Skipped != 1 || sum.Delivered != 1 || !strings.Contains(out, "SKIPPED") || !strings.Contains(out, "0x88cc") ||
			!strings.Contains(out, "skipped 1") {
			t.Errorf("link type %d: skipped %d, delivered %d; output:\n%s", lt, sum.Skipped, sum.Delivered, out)
		}
	}
	var log bytes.Buffer
	if _, _, err := run(t, rt.DefaultSim(), rt.Pcap(rt.Ethernet, recs, false, false), replay.Options{Format: "json", Log: &log}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "Skipped (not walked):") || !strings.Contains(log.String(), "0x88cc") {
		t.Errorf("JSON mode does not report the skipped packet:\n%s", log.String())
	}
}

func TestCorruptCaptures(t *testing.T) {
	recs := ipRecs()
	pcap := rt.Pcap(rt.Ethernet, recs, false, false)
	off4 := len(rt.Pcap(rt.Ethernet, recs[:3], false, false))
	ng := rt.Pcapng(rt.Ethernet, recs)
	ngOff4 := len(rt.Pcapng(rt.Ethernet, recs[:3]))
	snapped := rt.Pcap(rt.Ethernet, recs[:3], false, false)
	snapped[off4-len(recs[2].Frame)-16+8]-- // record 3: captured length one less than the original
	snapped = snapped[:len(snapped)-1]
	badBlock := append([]byte(nil), ng[:ngOff4]...)
	badBlock = append(badBlock, 6, 0, 0, 0, 7, 0, 0, 0) // enhanced packet block of length 7
	badBlock = append(badBlock, ng[ngOff4+8:]...)
	garbage := make([]byte, 500)
	rand.New(rand.NewSource(1)).Read(garbage)
	tests := []struct {
		name    string
		capture []byte
		good    int // packets replayed before the error
		want    string
	}{
		{"pcap cut in record data", pcap[:off4+16+10], 3, fmt.Sprintf("packet 4 at byte offset %d", off4)},
		{"pcap cut in record header", pcap[:off4+7], 3, fmt.Sprintf("packet 4 at byte offset %d", off4)},
		{"pcap snaplen cut", snapped, 2, fmt.Sprintf("packet 3 at byte offset %d", off4-len(recs[2].Frame)-16)},
		{"pcap garbage after header", append(append([]byte(nil), pcap[:24]...), garbage...), 0, "packet 1 at byte offset 24"},
		{"pcap garbage after packets", append(append([]byte(nil), pcap[:off4]...), garbage...), 3, fmt.Sprintf("packet 4 at byte offset %d", off4)},
		{"pcapng cut in block", ng[:ngOff4+30], 3, fmt.Sprintf("packet 4 at byte offset %d", ngOff4)},
		{"pcapng impossible block length", badBlock, 3, fmt.Sprintf("packet 4 at byte offset %d", ngOff4)},
		{"gzip cut", gz(pcap)[:60], 0, "corrupt capture"},
		{"garbage", garbage, 0, "neither pcap nor pcapng"},
		{"empty", nil, 0, "too short"},
		{"pcap header only half", pcap[:12], 0, "pcap file header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, sum, err := run(t, rt.DefaultSim(), tt.capture, replay.Options{Format: "json"})
			if err == nil {
				t.Fatalf("Run succeeded:\n%s", out)
			}
			if !errors.Is(err, replay.ErrCorrupt) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want ErrCorrupt and %q", err, tt.want)
			}
			if sum.Packets != tt.good {
				t.Errorf("%d packets replayed before the error, want %d", sum.Packets, tt.good)
			}
			if tt.good > 0 {
				want, _ := mustRun(t, rt.Pcap(rt.Ethernet, recs[:tt.good], false, false), replay.Options{Format: "json"})
				if out != want {
					t.Errorf("output before the error\n%s\nwant the first %d packets' flows\n%s", out, tt.good, want)
				}
			}
		})
	}
}

func TestUnsupportedLinkType(t *testing.T) {
	_, _, err := run(t, rt.DefaultSim(), rt.Pcap(105, ipRecs(), false, false), replay.Options{})
	if !errors.Is(err, replay.ErrLinkType) || !strings.Contains(err.Error(), "105") {
		t.Errorf("error %v, want ErrLinkType naming 105", err)
	}
}

func TestWriteHoldsDeliveredPackets(t *testing.T) {
	var pc bytes.Buffer
	_, sum := mustRun(t, rt.Pcap(rt.LinuxSLL2, ipRecs(), false, false), replay.Options{Write: &pc})
	r, err := pcapgo.NewReader(&pc)
	if err != nil {
		t.Fatal(err)
	}
	if r.LinkType() != layers.LinkTypeEthernet {
		t.Errorf("written link type %v, want Ethernet", r.LinkType())
	}
	var n, delivered int
	for {
		data, ci, err := r.ReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
		p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
		if tcp, ok := p.Layer(layers.LayerTypeTCP).(*layers.TCP); ok && tcp.DstPort == rt.DeniedPort {
			t.Errorf("dropped packet written: %v", p)
		}
		if bytes.Equal(data[0:6], rt.DeliveredMAC) {
			delivered++
		}
		if ci.Timestamp.Before(t0) {
			t.Errorf("packet %d has time %v", n, ci.Timestamp)
		}
	}
	if n != sum.Delivered+sum.LeftCluster || delivered != sum.Delivered {
		t.Errorf("%d packets written (%d as delivered), want %d delivered + %d left", n, delivered, sum.Delivered, sum.LeftCluster)
	}
}

func TestAtOverridesEveryEntry(t *testing.T) {
	sim := rt.DefaultSim()
	out, sum, err := run(t, sim, rt.Pcap(rt.Ethernet, ipRecs(), false, false), replay.Options{At: "node:n2"})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, out)
	}
	want := walker.Entry{Node: "n2", Hook: walker.FromNetdev}
	if len(sim.Entries) != 8 || sum.Errors != 0 {
		t.Fatalf("%d walks, %d errors; want all 8 packets walked", len(sim.Entries), sum.Errors)
	}
	for i, e := range sim.Entries {
		if e != want {
			t.Errorf("packet %d entered at %v, want %v", i+1, e, want)
		}
	}
	_, _, err = run(t, sim, rt.Pcap(rt.Ethernet, ipRecs(), false, false), replay.Options{At: "pod:x/nope"})
	if err == nil || !strings.Contains(err.Error(), "pod:x/nope") {
		t.Errorf("bad --at: error %v", err)
	}
}

func TestLimitProgressCancel(t *testing.T) {
	capture := rt.Pcap(rt.Ethernet, ipRecs(), false, false)
	_, sum := mustRun(t, capture, replay.Options{Limit: 3})
	if sum.Packets != 3 {
		t.Errorf("limit 3: %d packets", sum.Packets)
	}
	var bar bytes.Buffer
	mustRun(t, capture, replay.Options{Progress: &bar, Format: "json"})
	if s := bar.String(); !strings.Contains(s, "\r\x1b[Kreplay: 1 packets") || !strings.Contains(s, "Summary") {
		t.Errorf("progress output %q", s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err := func() (string, replay.Summary, error) {
		var out bytes.Buffer
		s, err := replay.Run(ctx, rt.DefaultSim(), bytes.NewReader(capture), &out, replay.Options{})
		return out.String(), s, err
	}()
	if !errors.Is(err, context.Canceled) {
		t.Errorf("canceled: error %v", err)
	}
	if _, _, err := run(t, rt.DefaultSim(), capture, replay.Options{Format: "yaml"}); err == nil {
		t.Error("format yaml accepted")
	}
}

// cannedSim answers every packet with one precomputed walk and its flows,
// so a benchmark measures replay's own work, not the simulator's.
type cannedSim struct {
	*rt.Sim
	entry walker.Entry
	walk  *walker.Walk
	flows []*flow.Flow
}

func newCannedSim(frame []byte) *cannedSim {
	s := &cannedSim{Sim: rt.DefaultSim()}
	s.entry, _ = s.Sim.EntryFor(frame)
	s.walk, _ = s.Sim.Walk(s.entry, frame)
	s.flows = s.Sim.Flows(s.walk, t0)
	return s
}

func (s *cannedSim) EntryFor([]byte) (walker.Entry, error)           { return s.entry, nil }
func (s *cannedSim) Walk(walker.Entry, []byte) (*walker.Walk, error) { return s.walk, nil }
func (s *cannedSim) Flows(*walker.Walk, time.Time) []*flow.Flow      { return s.flows }

// BenchmarkRun measures the replay side's own overhead (capture reading,
// conversion to Ethernet, output, summary) over 100k single-hop packets,
// with a simulator that answers from a precomputed walk; "fake-sim" runs
// the full fake instead.
func BenchmarkRun(b *testing.B) {
	const n = 100_000
	recs := make([]rt.Record, n)
	for i := range recs {
		recs[i] = rt.Record{Time: t0.Add(time.Duration(i) * time.Microsecond),
			Frame: rt.Frame(rt.A, rt.B, "tcp", uint16(10000+i%50000), 80, 0)}
	}
	canned := newCannedSim(recs[0].Frame)
	for _, bc := range []struct {
		name string
		lt   int
		sim  replay.Simulator
		opts replay.Options
	}{
		{"table", rt.Ethernet, canned, replay.Options{}},
		{"table-sll2", rt.LinuxSLL2, canned, replay.Options{}},
		{"table-pcapng", rt.Ethernet, canned, replay.Options{}},
		{"json", rt.Ethernet, canned, replay.Options{Format: "json"}},
		{"table-fake-sim", rt.Ethernet, nil, replay.Options{}},
	} {
		capture := rt.Pcap(bc.lt, recs, false, false)
		if bc.name == "table-pcapng" {
			capture = rt.Pcapng(bc.lt, recs)
		}
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				sim := bc.sim
				if sim == nil {
					sim = rt.DefaultSim()
				}
				sum, err := replay.Run(context.Background(), sim, bytes.NewReader(capture), io.Discard, bc.opts)
				if err != nil || sum.Delivered != n {
					b.Fatalf("Run: %v, %d delivered", err, sum.Delivered)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "packets/s")
		})
	}
}

// TestRealTcpdumpSLL2 reads a capture tcpdump 4.99.3 / libpcap 1.10.3 wrote
// with "tcpdump -i any -w" in a network namespace (link type LINUX_SLL2):
// a UDP datagram to 127.0.0.1:9 and the port unreachable it caused.
func TestRealTcpdumpSLL2(t *testing.T) {
	capture, err := os.ReadFile("testdata/tcpdump-any-sll2.pcap")
	if err != nil {
		t.Fatal(err)
	}
	out, sum := mustRun(t, capture, replay.Options{At: "node:n1"})
	if sum.Packets != 2 || sum.LeftCluster != 2 || sum.Skipped != 0 {
		t.Errorf("summary %+v, want 2 packets walked", sum)
	}
	for _, s := range []string{"127.0.0.1:9  UDP", "ICMPv4 unreachable/3"} {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q:\n%s", s, out)
		}
	}
}
