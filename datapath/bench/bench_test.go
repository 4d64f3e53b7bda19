package bench

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/ciliaproject/cilia/datapath"
	"github.com/ciliaproject/cilia/datapath/testrun"
)

// TestRunTiny runs a tiny Run (small sizes, few repeats) to check the table
// machinery: every row is there with a positive number, the bars are
// computed and the table prints. It asserts nothing about timing.
func TestRunTiny(t *testing.T) {
	testrun.RequirePrivileges(t)
	testrun.FreshNetns(t)
	opts := Options{
		Batches:      3,
		BatchTime:    200 * time.Microsecond,
		Flows:        300,
		IPCacheSizes: []int{100, 1},
		PolicySizes:  []int{1, 100},
		LBSizes:      []int{10, 1},
		CPU:          -1,
	}
	var progress bytes.Buffer
	tab, err := Run(opts, &progress)
	if err != nil {
		t.Fatalf("Run: %v\nprogress:\n%s", err, progress.String())
	}
	want := []struct {
		name string
		size int
	}{
		{RowFloor, 0}, {RowCTEstablished, 0}, {RowCTEstablishedT, 0}, {RowPolicyDeny, 0},
		{RowPolicyDenySingle, 0}, {RowNewFlowAllow, 0}, {RowNewFlowAllowHot, 0},
		{RowIPCache, 1}, {RowIPCache, 100}, {RowPolicyMap, 1}, {RowPolicyMap, 100},
		{RowLBNewConn, 1}, {RowLBNewConn, 10}, {RowLBEstablished, 1}, {RowLBEstablished, 10},
	}
	if len(tab.Rows) != len(want) {
		t.Errorf("got %d rows, want %d: %+v", len(tab.Rows), len(want), tab.Rows)
	}
	for _, w := range want {
		r, ok := tab.Row(w.name, w.size)
		if !ok {
			t.Errorf("row %q size %d missing", w.name, w.size)
			continue
		}
		if !(r.NsPerPacket > 0) || !(r.Ratio > 0) {
			t.Errorf("row %q size %d: ns/pkt %v, ratio %v: want both positive", w.name, w.size, r.NsPerPacket, r.Ratio)
		}
	}
	if tab.Floor <= 0 {
		t.Errorf("floor %v, want positive", tab.Floor)
	}
	if got := tab.Curve(GroupIPCache); len(got) != 2 || got[0].Size != 1 || got[1].Size != 100 {
		t.Errorf("ipcache curve not sorted by size: %+v", got)
	}
	if got := tab.Curve(GroupLBNewConn); len(got) != 2 || got[0].Size != 1 || got[1].Size != 10 {
		t.Errorf("lb curve not sorted by size: %+v", got)
	}
	if len(tab.Bars) != 5 {
		t.Errorf("got %d bars, want 5: %+v", len(tab.Bars), tab.Bars)
	}
	var out bytes.Buffer
	tab.Print(&out)
	for _, s := range []string{RowCTEstablished, RowNewFlowAllow, "ipcache size=100", "policy-map size=1 ",
		"CT fast path within 3x of the floor", "ipcache flat ±10% 1..100", "policy flat ±10% 1..100",
		"lb new-conn size=10 ", "lb established size=1 ", "lb new-conn flat ±10% 1..10", "lb established flat ±10% 1..10"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("printed table lacks %q:\n%s", s, out.String())
		}
	}
	if !strings.Contains(progress.String(), "bench: done") {
		t.Errorf("no progress lines:\n%s", progress.String())
	}
	t.Logf("\n%s", out.String())
}

// TestTablePrint checks the bars and the printed table on a made-up table
// (no privileges needed).
func TestTablePrint(t *testing.T) {
	tab := Table{Kernel: "test", CPUs: 2, Opts: Default(), Floor: 10, Rows: []Row{
		{Name: RowFloor, Group: GroupPath, NsPerPacket: 10, Ratio: 1, Method: MethodLoop},
		{Name: RowCTEstablished, Group: GroupPath, NsPerPacket: 25, Ratio: 2.5, PairedFloor: 10, Method: MethodLoop},
		{Name: RowIPCache, Group: GroupIPCache, Size: 1, NsPerPacket: 100, Ratio: 10, Method: MethodLoop},
		{Name: RowIPCache, Group: GroupIPCache, Size: 100000, NsPerPacket: 105, Ratio: 10.5, Method: MethodLoop},
		{Name: RowPolicyMap, Group: GroupPolicy, Size: 1, NsPerPacket: 100, Ratio: 10, Method: MethodLoop},
		{Name: RowPolicyMap, Group: GroupPolicy, Size: 16384, NsPerPacket: 150, Ratio: 15, Method: MethodLoop},
		{Name: RowLBNewConn, Group: GroupLBNewConn, Size: 1, NsPerPacket: 800, Ratio: 20, Method: MethodSingle},
		{Name: RowLBNewConn, Group: GroupLBNewConn, Size: 100000, NsPerPacket: 840, Ratio: 21, Method: MethodSingle},
		{Name: RowLBEstablished, Group: GroupLBEstablished, Size: 1, NsPerPacket: 300, Ratio: 10, Method: MethodSingle},
		{Name: RowLBEstablished, Group: GroupLBEstablished, Size: 100000, NsPerPacket: 360, Ratio: 12, Method: MethodSingle},
	}}
	tab.Bars = tab.bars()
	want := []bool{true, true, false, true, false}
	if len(tab.Bars) != len(want) {
		t.Fatalf("bars: %+v", tab.Bars)
	}
	for i, b := range tab.Bars {
		if b.Pass != want[i] {
			t.Errorf("bar %q: pass=%v, want %v (%s)", b.Name, b.Pass, want[i], b.Detail)
		}
	}
	if tab.Passed() {
		t.Error("Passed() with a failing bar")
	}
	var out bytes.Buffer
	tab.Print(&out)
	for _, s := range []string{"ipcache flat ±10% 1..100k", "policy flat ±10% 1..16k", "PASS", "FAIL",
		"max/min = 1.050", "max/min = 1.500", "2.50x floor", "lb new-conn flat ±10% 1..100k",
		"lb established flat ±10% 1..100k", "max/min = 1.200", "lb new-conn size=100k"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("printed table lacks %q:\n%s", s, out.String())
		}
	}
}

func TestMedianSpread(t *testing.T) {
	med, spread := medianSpread([]float64{4, 1, 3, 2, 5})
	if med != 3 || spread != (4.0-2.0)/2/3 {
		t.Errorf("medianSpread = %v, %v", med, spread)
	}
	if med, _ := medianSpread([]float64{7}); med != 7 {
		t.Errorf("median of one = %v", med)
	}
}

// benchSetup checks privileges and moves the benchmark into a fresh netns.
func benchSetup(b *testing.B) {
	b.Helper()
	testrun.RequirePrivileges(b)
	testrun.FreshNetns(b)
}

// benchLoop runs tg b.N times in kernel batches (at most tg.maxRepeat()
// each, the timer stopped while the ring buffer is drained between them)
// and reports the kernel's time per run as ns/pkt.
func benchLoop(b *testing.B, tg target) {
	b.Helper()
	if _, err := runBatch(tg, min(1000, tg.maxRepeat())); err != nil { // warm-up
		b.Fatal(err)
	}
	b.ResetTimer()
	var totalNs float64
	for done := 0; done < b.N; {
		n := min(b.N-done, tg.maxRepeat())
		b.StopTimer()
		if tg.env != nil && tg.emits {
			if err := tg.env.DrainEvents(); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		ns, err := runBatch(tg, n)
		if err != nil {
			b.Fatal(err)
		}
		totalNs += ns * float64(n)
		done += n
	}
	b.ReportMetric(totalNs/float64(b.N), "ns/pkt")
}

func BenchmarkFloor(b *testing.B) {
	benchSetup(b)
	f, err := NewFloor()
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	benchLoop(b, target{name: RowFloor, prog: f.Prog, pkt: synTo(extAddr, clientPort), wantCode: testrun.ActOK})
}

func BenchmarkCTEstablished(b *testing.B) {
	benchSetup(b)
	for _, c := range []struct {
		name  string
		level uint8
	}{
		{"trace=connection-events", datapath.TraceConnectionEvents},
		{"trace=every-packet", datapath.TraceEveryPacket},
	} {
		env, pkt, err := setupEstablished(c.level)
		if err != nil {
			b.Fatal(err)
		}
		defer env.Close()
		b.Run(c.name, func(b *testing.B) {
			benchLoop(b, target{name: RowCTEstablished, prog: env.EP.Endpoint.FromContainer, pkt: pkt,
				wantCode: testrun.ActOK, env: env, emits: c.level == datapath.TraceEveryPacket})
		})
	}
}

// BenchmarkNewFlowAllow runs b.N distinct new flows, each once (the
// single-run method of docs/benchmarks.md), and reports the median cost
// over the empty program plus the loop floor as ns/pkt.
func BenchmarkNewFlowAllow(b *testing.B) {
	benchSetup(b)
	env, err := NewEnv(datapath.TraceConnectionEvents, datapath.NodeOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer env.Close()
	f, err := NewFloor()
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := checkNewFlowAllowed(env, synTo(extAddr, 65000)); err != nil {
		b.Fatal(err)
	}
	pkts := flowPackets(b.N, extAddr)
	r := &runner{opts: Default().withDefaults(), floor: f}
	b.ResetTimer()
	ms, err := r.single(env, env.EP.Endpoint.FromContainer, []singleSet{{pkts: pkts, wantCode: testrun.ActOK}})
	if err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	floor, err := runBatch(target{prog: f.Prog, pkt: pkts[0], wantCode: testrun.ActOK}, 100000)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(ms[0].median+floor, "ns/pkt")
}

func BenchmarkPolicyDeny(b *testing.B) {
	benchSetup(b)
	env, pkt, err := setupDeny()
	if err != nil {
		b.Fatal(err)
	}
	defer env.Close()
	benchLoop(b, target{name: RowPolicyDeny, prog: env.EP.Endpoint.FromContainer, pkt: pkt,
		wantCode: testrun.ActShot, env: env, emits: true})
}

func BenchmarkIPCache(b *testing.B) {
	benchSetup(b)
	for _, size := range Default().IPCacheSizes {
		env, pkt, err := setupIPCache(size, 1)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			benchLoop(b, target{name: RowIPCache, size: size, prog: env.EP.Endpoint.FromContainer, pkt: pkt,
				wantCode: testrun.ActShot, env: env, emits: true})
		})
		env.Close()
	}
}

func BenchmarkPolicyMap(b *testing.B) {
	benchSetup(b)
	for _, size := range Default().PolicySizes {
		env, pkt, err := setupPolicyMap(size, 1)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			benchLoop(b, target{name: RowPolicyMap, size: size, prog: env.EP.Endpoint.FromContainer, pkt: pkt,
				wantCode: testrun.ActShot, env: env, emits: true})
		})
		env.Close()
	}
}

// BenchmarkLB runs the load-balancing rows at the smallest and largest
// default sizes: b.N new connections (SYNs to a ClusterIP) or established
// packets of a pinned connection, each one kernel-timed run checked to be
// DNATed to a backend (the single-run method: the translation rewrites
// the packet, a loop cannot measure it). It reports the median cost over
// the empty program plus the loop floor as ns/pkt.
func BenchmarkLB(b *testing.B) {
	benchSetup(b)
	f, err := NewFloor()
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	r := &runner{opts: Default().withDefaults(), floor: f}
	sizes := Default().LBSizes
	for _, size := range []int{sizes[0], sizes[len(sizes)-1]} {
		env, err := newLBEnv(size)
		if err != nil {
			b.Fatal(err)
		}
		defer env.Close()
		ack, backend, err := env.establish(64999)
		if err != nil {
			b.Fatal(err)
		}
		run := func(b *testing.B, tg lbTarget) float64 {
			ms, err := r.singleChecked([]lbTarget{tg})
			if err != nil {
				b.Fatal(err)
			}
			return ms[0].median * float64(len(tg.pkts))
		}
		b.Run(fmt.Sprintf("established/size=%d", size), func(b *testing.B) {
			pkts := make([][]byte, b.N)
			for i := range pkts {
				pkts[i] = ack
			}
			b.ResetTimer()
			total := run(b, lbTarget{env: env, pkts: pkts, check: func(_ int, out []byte) error {
				_, err := env.checkDNAT(out, 64999, backend)
				return err
			}})
			b.StopTimer()
			b.ReportMetric(total/float64(b.N)+loopFloor(b, f, ack), "ns/pkt")
		})
		b.Run(fmt.Sprintf("new-conn/size=%d", size), func(b *testing.B) {
			// At most 50000 distinct source ports per batch; the
			// conntrack map is emptied between batches (timer stopped),
			// so every SYN is a new connection.
			var total float64
			for done := 0; done < b.N; {
				n := min(b.N-done, 50000)
				b.StopTimer()
				if err := clearCT(env.Env); err != nil {
					b.Fatal(err)
				}
				tg := newConnTarget(env, n)
				b.StartTimer()
				total += run(b, tg)
				done += n
			}
			b.StopTimer()
			b.ReportMetric(total/float64(b.N)+loopFloor(b, f, env.syn(1024)), "ns/pkt")
		})
	}
}

// loopFloor returns the floor's ns per run in a loop on pkt.
func loopFloor(b *testing.B, f *Floor, pkt []byte) float64 {
	ns, err := runBatch(target{prog: f.Prog, pkt: pkt, wantCode: testrun.ActOK}, 100000)
	if err != nil {
		b.Fatal(err)
	}
	return ns
}

// clearCT removes every IPv4 conntrack entry of env.
func clearCT(env *Env) error {
	m := env.H.Node.Maps[datapath.MapCT4]
	var keys [][]byte
	key := make([]byte, m.KeySize())
	val := make([]byte, m.ValueSize())
	it := m.Iterate()
	for it.Next(&key, &val) {
		keys = append(keys, slices.Clone(key))
	}
	if err := it.Err(); err != nil {
		return err
	}
	for _, k := range keys {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
	}
	return nil
}

// TestCheckDNAT checks the check every load-balancing run goes through: a
// packet still addressed to the frontend (or to another address, or from
// another port) is no number, a packet to a backend is.
func TestCheckDNAT(t *testing.T) {
	e := &lbEnv{target: lbService(41)}
	client := netip.AddrPortFrom(podAddr, 1234)
	be := e.target.Backends[1]
	for _, c := range []struct {
		name string
		pkt  []byte
		want netip.AddrPort
		ok   bool
	}{
		{"to a backend", testrun.TCP(client, be, testrun.SYN, nil), netip.AddrPort{}, true},
		{"to the pinned backend", testrun.TCP(client, be, testrun.ACK, nil), be, true},
		{"to the other backend", testrun.TCP(client, e.target.Backends[0], testrun.ACK, nil), be, false},
		{"not translated", e.syn(1234), netip.AddrPort{}, false},
		{"source port changed", testrun.TCP(netip.AddrPortFrom(podAddr, 999), be, testrun.SYN, nil), netip.AddrPort{}, false},
		{"backend of another service", testrun.TCP(client, lbService(40).Backends[0], testrun.SYN, nil), netip.AddrPort{}, false},
		{"truncated", e.syn(1234)[:30], netip.AddrPort{}, false},
	} {
		_, err := e.checkDNAT(c.pkt, 1234, c.want)
		if (err == nil) != c.ok {
			t.Errorf("%s: err = %v, want ok=%v", c.name, err, c.ok)
		}
	}
	if got := lbService(41).Frontend; got != netip.MustParseAddrPort("10.96.0.42:80") {
		t.Errorf("service 41's frontend = %s", got)
	}
}
