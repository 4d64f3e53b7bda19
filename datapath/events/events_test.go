package events_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/cilium/api/v1/flow"
	"github.com/cilium/ebpf"

	"github.com/ciliaproject/cilia/datapath"
	"github.com/ciliaproject/cilia/datapath/dropreason"
	"github.com/ciliaproject/cilia/datapath/events"
	"github.com/ciliaproject/cilia/datapath/maps"
	"github.com/ciliaproject/cilia/datapath/testrun"
)

func encode(t *testing.T, r maps.Event) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := binary.Write(&buf, binary.NativeEndian, &r); err != nil {
		t.Fatalf("encode: %v", err)
	}
	return buf.Bytes()
}

// equalEvents compares every field, Data by content.
func equalEvents(a, b events.Event) bool {
	da, db := a.Data, b.Data
	a.Data, b.Data = nil, nil
	return reflect.DeepEqual(a, b) && bytes.Equal(da, db)
}

func sampleRecord() maps.Event {
	r := maps.Event{
		Timestamp:    123456789012,
		Type:         uint8(events.TypeTrace),
		ObsPoint:     uint8(events.ObsToProxy),
		CTState:      maps.CTEstablished,
		Direction:    uint8(maps.Egress),
		Reason:       uint16(dropreason.PuntToProxy),
		EndpointID:   0xbeef,
		SrcIdentity:  0x01020304,
		DstIdentity:  0x05060708,
		Ifindex:      0x0a0b0c0d,
		RuleID:       0xdeadbeef,
		ProxyPortNet: maps.HostToNet16(15001),
		PolicyMatch:  events.MatchL3 | events.MatchL4,
		Verdict:      uint8(events.VerdictRedirected),
		OrigLen:      1514,
		CapLen:       40,
		TunnelFamily: maps.FamilyIPv4,
		Pad:          0xff,
		TunnelID:     0x00abcdef,
	}
	copy(r.TunnelEndpoint[:], []byte{192, 0, 2, 7})
	for i := range r.Data {
		r.Data[i] = byte(i + 1)
	}
	return r
}

func TestDecodeRoundTrip(t *testing.T) {
	r := sampleRecord()
	raw := encode(t, r)
	if len(raw) != 192 {
		t.Fatalf("struct event encodes to %d bytes, want 192 (sizeof(struct event))", len(raw))
	}
	// The proxy port is in network order in the record: its first byte is
	// the high byte of 15001 (0x3a99).
	if off := unsafe.Offsetof(r.ProxyPortNet); raw[off] != 0x3a || raw[off+1] != 0x99 {
		t.Fatalf("proxy_port bytes = %#x %#x, want 0x3a 0x99 (network order)", raw[off], raw[off+1])
	}

	e, err := events.Decode(raw)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	want := events.Event{
		Timestamp:        123456789012 * time.Nanosecond,
		Type:             events.TypeTrace,
		ObservationPoint: events.ObsToProxy,
		CTState:          maps.CTEstablished,
		Direction:        maps.Egress,
		Reason:           dropreason.PuntToProxy,
		EndpointID:       0xbeef,
		SrcIdentity:      0x01020304,
		DstIdentity:      0x05060708,
		Ifindex:          0x0a0b0c0d,
		RuleID:           0xdeadbeef,
		ProxyPort:        15001,
		PolicyMatch:      events.MatchL3 | events.MatchL4,
		Verdict:          events.VerdictRedirected,
		OrigLen:          1514,
		TunnelID:         0x00abcdef,
		TunnelEndpoint:   netip.MustParseAddr("192.0.2.7"),
		Data:             r.Data[:40],
	}
	if !equalEvents(e, want) {
		t.Errorf("Decode:\n got %+v\nwant %+v", e, want)
	}

	// Data is a copy truncated to cap_len: changing raw afterwards does
	// not change it.
	raw[192-maps.EventCaptureMax] ^= 0xff // data[0]
	if !bytes.Equal(e.Data, r.Data[:40]) {
		t.Errorf("Data aliases the record")
	}

	// A record longer than struct event (ring buffer records are rounded
	// up) decodes the same.
	e2, err := events.Decode(append(encode(t, r), 0, 0, 0, 0, 0, 0, 0, 0))
	if err != nil || !equalEvents(e2, want) {
		t.Errorf("Decode of a padded record: %+v, %v", e2, err)
	}
}

func TestDecodeCapLen(t *testing.T) {
	for _, tc := range []struct {
		capLen uint16
		want   int
	}{
		{0, 0},
		{1, 1},
		{maps.EventCaptureMax, maps.EventCaptureMax},
		// A cap_len beyond data[] is clamped, never read past it.
		{maps.EventCaptureMax + 1, maps.EventCaptureMax},
		{0xffff, maps.EventCaptureMax},
	} {
		r := sampleRecord()
		r.CapLen = tc.capLen
		e, err := events.Decode(encode(t, r))
		if err != nil {
			t.Fatalf("cap_len %d: %v", tc.capLen, err)
		}
		if len(e.Data) != tc.want || !bytes.Equal(e.Data, r.Data[:tc.want]) {
			t.Errorf("cap_len %d: %d bytes of data, want %d", tc.capLen, len(e.Data), tc.want)
		}
	}
}

func TestDecodeShortRecord(t *testing.T) {
	raw := encode(t, sampleRecord())
	for _, n := range []int{0, 1, 47, len(raw) - 1} {
		_, err := events.Decode(raw[:n])
		if !errors.Is(err, events.ErrShortRecord) {
			t.Errorf("Decode of %d bytes: %v, want ErrShortRecord", n, err)
		}
	}
	if _, err := events.Decode(nil); !errors.Is(err, events.ErrShortRecord) {
		t.Errorf("Decode(nil): %v, want ErrShortRecord", err)
	}
}

func TestEventString(t *testing.T) {
	drop := events.Event{
		Type: events.TypeDrop, Reason: dropreason.PolicyDenied, EndpointID: 2, Direction: maps.Ingress,
		SrcIdentity: 1001, DstIdentity: 1002, RuleID: 0, CTState: maps.CTNew, Verdict: events.VerdictDropped,
		ObservationPoint: events.ObsToEndpoint,
	}
	if !drop.IsDrop() {
		t.Errorf("IsDrop of a drop = false")
	}
	if got, want := drop.String(), "drop POLICY_DENIED ep=2 dir=ingress 1001->1002 rule=0 ct=0"; got != want {
		t.Errorf("drop String() = %q, want %q", got, want)
	}
	trace := events.Event{
		Type: events.TypeTrace, Verdict: events.VerdictForwarded, ObservationPoint: events.ObsToEndpoint,
		Ifindex: 17, EndpointID: 1, Direction: maps.Egress, SrcIdentity: 1001, DstIdentity: 1002, RuleID: 42,
		CTState: maps.CTReply,
	}
	if trace.IsDrop() {
		t.Errorf("IsDrop of a trace = true")
	}
	if got, want := trace.String(), "trace FORWARDED TO_ENDPOINT ifindex=17 ep=1 dir=egress 1001->1002 rule=42 ct=2"; got != want {
		t.Errorf("trace String() = %q, want %q", got, want)
	}
	proxy := trace
	proxy.Verdict, proxy.ObservationPoint, proxy.Ifindex = events.VerdictRedirected, events.ObsToProxy, 0
	if got := proxy.String(); !strings.HasPrefix(got, "trace REDIRECTED TO_PROXY ifindex=0 ") {
		t.Errorf("proxy trace String() = %q", got)
	}
	unknown := events.Event{Type: events.TypeDrop, Reason: 250, Direction: 3}
	if got := unknown.String(); !strings.Contains(got, "UNKNOWN_REASON_250") || !strings.Contains(got, "dir=unknown") {
		t.Errorf("unknown drop String() = %q", got)
	}
	for o, want := range map[events.ObservationPoint]string{
		events.ObsToProxy: "TO_PROXY", events.ObsToHost: "TO_HOST", events.ObsToStack: "TO_STACK",
		events.ObsToOverlay: "TO_OVERLAY", events.ObsFromEndpoint: "FROM_ENDPOINT",
		events.ObsToEndpoint: "TO_ENDPOINT", 77: "UNKNOWN_POINT(77)",
		events.ObsFromProxy: "FROM_PROXY", events.ObsFromHost: "FROM_HOST", events.ObsFromStack: "FROM_STACK",
		events.ObsFromOverlay: "FROM_OVERLAY", events.ObsFromNetwork: "FROM_NETWORK", events.ObsToNetwork: "TO_NETWORK",
	} {
		if got := o.String(); got != want {
			t.Errorf("ObservationPoint(%d).String() = %q, want %q", o, got, want)
		}
	}
	for v, want := range map[events.Verdict]string{
		events.VerdictForwarded: "FORWARDED", events.VerdictDropped: "DROPPED",
		events.VerdictRedirected: "REDIRECTED", 9: "VERDICT_UNKNOWN(9)",
	} {
		if got := v.String(); got != want {
			t.Errorf("Verdict(%d).String() = %q, want %q", v, got, want)
		}
	}
}

// TestReadMetricsSumsCPUs fills a PERCPU_ARRAY shaped like cilia_metrics
// with different values per CPU and checks the sums and the slot decoding.
func TestReadMetricsSumsCPUs(t *testing.T) {
	testrun.RequirePrivileges(t)
	node, err := datapath.NewNode(datapath.NodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	real, err := node.Maps[datapath.MapMetrics].Info()
	if err != nil {
		t.Fatal(err)
	}
	spec := &ebpf.MapSpec{Name: "test_metrics", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 16, MaxEntries: 256 << 2}
	if real.Type != spec.Type || real.KeySize != spec.KeySize || real.ValueSize != spec.ValueSize ||
		real.MaxEntries != spec.MaxEntries {
		t.Fatalf("cilia_metrics is %v key %d value %d max %d; the test's spec is out of date",
			real.Type, real.KeySize, real.ValueSize, real.MaxEntries)
	}
	m, err := ebpf.NewMap(spec)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	empty, err := events.ReadMetrics(m)
	if err != nil || len(empty) != 0 {
		t.Fatalf("ReadMetrics of an empty map: %v, %v", empty, err)
	}

	slots := []struct {
		reason dropreason.Reason
		dir    maps.Direction
	}{
		{dropreason.Forwarded, maps.Egress},
		{dropreason.PolicyDenied, maps.Ingress},
		{dropreason.PuntToProxy, maps.Egress},
		{dropreason.TTLExceeded, maps.Ingress},
		{255, maps.Egress}, // the last slot
	}
	want := map[events.MetricKey]maps.MetricsValue{}
	for n, s := range slots {
		vals := make([]maps.MetricsValue, ncpu)
		var sum maps.MetricsValue
		for cpu := range vals {
			vals[cpu] = maps.MetricsValue{Packets: uint64(n + cpu + 1), Bytes: uint64((n + 1) * (cpu + 1) * 100)}
			sum.Packets += vals[cpu].Packets
			sum.Bytes += vals[cpu].Bytes
		}
		key := maps.MetricsIndex(uint8(s.reason), s.dir)
		if err := m.Put(&key, vals); err != nil {
			t.Fatalf("put slot %d: %v", key, err)
		}
		want[events.MetricKey{Reason: s.reason, Direction: s.dir}] = sum
	}
	// A slot with bytes but no packets on any CPU is left out.
	key := maps.MetricsIndex(uint8(dropreason.InvalidPacket), maps.Egress)
	zero := make([]maps.MetricsValue, ncpu)
	zero[0].Bytes = 5
	if err := m.Put(&key, zero); err != nil {
		t.Fatal(err)
	}
	// A slot counted on one CPU only.
	key = maps.MetricsIndex(uint8(dropreason.InvalidSourceIP), maps.Egress)
	one := make([]maps.MetricsValue, ncpu)
	one[ncpu-1] = maps.MetricsValue{Packets: 3, Bytes: 300}
	if err := m.Put(&key, one); err != nil {
		t.Fatal(err)
	}
	want[events.MetricKey{Reason: dropreason.InvalidSourceIP, Direction: maps.Egress}] = one[ncpu-1]

	got, err := events.ReadMetrics(m)
	if err != nil {
		t.Fatalf("ReadMetrics: %v", err)
	}
	if len(got) != len(want) {
		t.Errorf("ReadMetrics returned %d slots, want %d: %v", len(got), len(want), got)
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("slot %s/%s: got %+v, want %+v (%d CPUs)", k.Reason, k.Direction, got[k], w, ncpu)
		}
	}
}

// TestReaderReadsDatapathEvents reads a drop the real programs emitted
// (a spoofed source address in from_container) with Read, checks the
// capture is cut at the configured length, and that Close unblocks Read.
func TestReaderReadsDatapathEvents(t *testing.T) {
	testrun.RequirePrivileges(t)
	node, err := datapath.NewNode(datapath.NodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	rd, err := events.NewReader(node.Maps[datapath.MapEvents])
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	const capLen = 32
	ep, err := node.LoadEndpoint(datapath.EndpointConfig{
		ID: 3, Identity: 1003, Ifindex: 33, IPv4: netip.MustParseAddr("10.0.0.3"),
	}, datapath.Settings{TraceLevel: datapath.TraceDropsOnly, CaptureLen: capLen})
	if err != nil {
		t.Fatal(err)
	}
	defer ep.Close()

	pkt := testrun.UDP(netip.MustParseAddrPort("10.0.0.99:1000"), netip.MustParseAddrPort("10.0.0.4:53"), []byte("spoofed"))
	ret, err := ep.FromContainer.Run(&ebpf.RunOptions{Data: pkt})
	if err != nil {
		t.Fatal(err)
	}
	if ret != testrun.ActShot {
		t.Fatalf("from_container returned %d, want TC_ACT_SHOT", ret)
	}
	e, err := rd.Read()
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if !e.IsDrop() || e.Reason != dropreason.InvalidSourceIP || e.EndpointID != 3 || e.Direction != maps.Egress ||
		e.Verdict != events.VerdictDropped || e.ObservationPoint != events.ObsFromEndpoint || e.Ifindex != 33 ||
		e.SrcIdentity != 1003 || e.OrigLen != uint32(len(pkt)) {
		t.Errorf("drop event: %+v", e)
	}
	if !bytes.Equal(e.Data, pkt[:capLen]) {
		t.Errorf("captured data %x, want the first %d bytes %x", e.Data, capLen, pkt[:capLen])
	}
	if e.Timestamp <= 0 {
		t.Errorf("timestamp %v", e.Timestamp)
	}
	if evs, err := rd.Drain(); err != nil || len(evs) != 0 {
		t.Errorf("Drain after Read: %v, %v; want nothing left", evs, err)
	}

	done := make(chan error, 1)
	go func() {
		_, err := rd.Read()
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	rd.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Errorf("Read after Close returned no error")
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("Close did not unblock Read")
	}
}

// TestObservationPointsAreHubbles: every named point has the number and
// name of flow.TraceObservationPoint.
func TestObservationPointsAreHubbles(t *testing.T) {
	for _, o := range []events.ObservationPoint{
		events.ObsToProxy, events.ObsToHost, events.ObsToStack, events.ObsToOverlay, events.ObsFromEndpoint,
		events.ObsFromProxy, events.ObsFromHost, events.ObsFromStack, events.ObsFromOverlay,
		events.ObsFromNetwork, events.ObsToNetwork, events.ObsToEndpoint,
	} {
		if got := flow.TraceObservationPoint(o).String(); got != o.String() {
			t.Errorf("point %d: ours %s, Hubble's %s", o, o, got)
		}
	}
}
