package bench

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

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
	if len(tab.Bars) != 3 {
		t.Errorf("got %d bars, want 3: %+v", len(tab.Bars), tab.Bars)
	}
	var out bytes.Buffer
	tab.Print(&out)
	for _, s := range []string{RowCTEstablished, RowNewFlowAllow, "ipcache size=100", "policy-map size=1 ",
		"CT fast path within 3x of the floor", "ipcache flat ±10% 1..100", "policy flat ±10% 1..100"} {
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
	}}
	tab.Bars = tab.bars()
	want := []bool{true, true, false}
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
		"max/min = 1.050", "max/min = 1.500", "2.50x floor"} {
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
