// Package bench measures the datapath's cost per packet with
// BPF_PROG_TEST_RUN: the kernel runs a program `repeat` times on one packet
// and reports the time per run (cilium/ebpf's Program.Benchmark), so the
// numbers exclude the syscall, the skb allocation and every copy between
// user space and the kernel.
//
// Each path is reported next to the harness floor (bpf/empty.c, a tc
// program that returns at once, run on the same packet) as a ratio, and the
// scaling curves of the ipcache and of the per-endpoint policy map are
// checked for flatness, and so are the service load-balancing curves
// (1..100k services). docs/benchmarks.md describes every row and the
// method.
package bench

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/ciliaproject/cilia/datapath"
	"github.com/ciliaproject/cilia/datapath/dropreason"
	"github.com/ciliaproject/cilia/datapath/maps"
	"github.com/ciliaproject/cilia/datapath/testrun"
)

// Options say how much to measure. The zero value of a field takes the
// default of Default(), except CPU (0 is a CPU).
type Options struct {
	// Batches is how many timed batches each loop measurement takes; the
	// reported number is their median. A warm-up batch comes first.
	Batches int
	// BatchTime is the target duration of one batch: the repeat count of a
	// path is calibrated so that a batch takes about this long (paths that
	// emit an event per run are capped by the ring buffer's capacity).
	BatchTime time.Duration
	// Flows is how many distinct new flows the single-run measurements
	// send (one BPF_PROG_TEST_RUN each), allowed and denied.
	Flows int
	// IPCacheSizes are the ipcache sizes (prefixes) of the ipcache curve.
	IPCacheSizes []int
	// PolicySizes are the policy map sizes (entries) of the policy curve.
	PolicySizes []int
	// LBSizes are the numbers of services of the load-balancing curves.
	LBSizes []int
	// Seed makes the random prefixes and policy entries reproducible.
	Seed uint64
	// CPU is the CPU to measure on; -1 picks the last one the process may
	// use (CPU 0 usually takes more interrupts).
	CPU int
}

// Default returns the options of `cilia bench datapath`.
func Default() Options {
	return Options{
		Batches:      31,
		BatchTime:    5 * time.Millisecond,
		Flows:        5000,
		IPCacheSizes: []int{1, 1000, 10000, 100000},
		PolicySizes:  []int{1, 1000, 4000, 16384},
		LBSizes:      []int{1, 10, 100, 1000, 10000, 100000},
		Seed:         1,
		CPU:          -1,
	}
}

// Quick returns options for a fast run (`cilia bench datapath --quick`):
// the same rows and sizes, fewer and shorter batches.
func Quick() Options {
	o := Default()
	o.Batches = 11
	o.BatchTime = 2 * time.Millisecond
	o.Flows = 2000
	return o
}

func (o Options) withDefaults() Options {
	d := Default()
	if o.Batches <= 0 {
		o.Batches = d.Batches
	}
	if o.BatchTime <= 0 {
		o.BatchTime = d.BatchTime
	}
	if o.Flows <= 0 {
		o.Flows = d.Flows
	}
	if len(o.IPCacheSizes) == 0 {
		o.IPCacheSizes = d.IPCacheSizes
	}
	if len(o.PolicySizes) == 0 {
		o.PolicySizes = d.PolicySizes
	}
	if len(o.LBSizes) == 0 {
		o.LBSizes = d.LBSizes
	}
	if o.Seed == 0 {
		o.Seed = d.Seed
	}
	o.IPCacheSizes = slices.Sorted(slices.Values(o.IPCacheSizes))
	o.PolicySizes = slices.Sorted(slices.Values(o.PolicySizes))
	o.LBSizes = slices.Sorted(slices.Values(o.LBSizes))
	return o
}

// Groups of rows.
const (
	GroupPath    = "path"
	GroupIPCache = "ipcache"
	GroupPolicy  = "policy"
	// GroupLBNewConn is the curve of a new connection's first packet to a
	// ClusterIP over the number of services.
	GroupLBNewConn = "lb services"
	// GroupLBEstablished is the curve of a pinned connection's packets
	// to a ClusterIP over the number of services.
	GroupLBEstablished = "lb established"
)

// Methods of measurement.
const (
	// MethodLoop: one packet, the kernel repeats the run `repeat` times
	// per batch, batches alternate with batches of the floor program; the
	// median batch is reported.
	MethodLoop = "loop"
	// MethodSingle: many distinct packets, one kernel-timed run each next
	// to one run of the floor program; the median difference plus the
	// loop floor is reported.
	MethodSingle = "single"
	// MethodDerived: computed from other rows (see the row's note).
	MethodDerived = "derived"
)

// Row names.
const (
	RowFloor          = "floor"
	RowCTEstablished  = "ct-established"
	RowCTEstablishedT = "ct-established (trace every packet)"
	RowPolicyDeny     = "policy-deny"
	// RowPolicyDenySingle is policy-deny measured with the single-run
	// method, which calibrates that method.
	RowPolicyDenySingle = "policy-deny (single-run)"
	RowNewFlowAllow     = "new-flow-allow (single-run)"
	// RowNewFlowAllowHot is the hot estimate of new-flow-allow.
	RowNewFlowAllowHot = "new-flow-allow (hot estimate)"
	RowIPCache         = "ipcache"
	RowPolicyMap       = "policy-map"
	// RowLBNewConn is a new connection's first packet to a ClusterIP.
	RowLBNewConn = "lb new-conn"
	// RowLBEstablished is a packet of an established connection to a
	// ClusterIP (pinned to its backend).
	RowLBEstablished = "lb established"
)

// Bar thresholds (DESIGN.md "Performance bars").
const (
	CTFastPathMaxRatio = 3.0
	FlatMaxRatio       = 1.10
)

// Row is one measured path.
type Row struct {
	Name  string
	Group string
	// Size is the ipcache or policy map size (or number of services) of a
	// curve point, else 0.
	Size int
	// NsPerPacket is the kernel-measured time of one run of the program.
	NsPerPacket float64
	// Ratio is the cost relative to the floor: the median over pairs of
	// batches of (path batch / floor batch run just before it), so that a
	// change of the machine's speed during the run cancels out.
	Ratio float64
	// PairedFloor is the median of the floor batches paired with this
	// row's batches (single rows: of the loop floor measured after them).
	PairedFloor float64
	// Spread is half the interquartile range of the batches (or single
	// runs) relative to the median: a noise indicator, not an error bar.
	Spread float64
	Method string
	// Repeat is the kernel repeat count of one batch (loop), or the
	// number of distinct packets (single).
	Repeat int
	// Samples is how many batches (loop) or runs (single) the median is of.
	Samples int
	// Note says what the path includes, for the printed table.
	Note string
}

// Bar is one performance bar of DESIGN.md checked against the rows.
type Bar struct {
	Name   string
	Pass   bool
	Detail string
}

// Table is the result of Run.
type Table struct {
	Kernel string
	CPUs   int
	// CPU is the CPU the measurement ran on.
	CPU   int
	Opts  Options
	Floor float64
	Rows  []Row
	Bars  []Bar
	// Elapsed is the wall time of the whole run.
	Elapsed time.Duration
}

// Row returns the row with the given name (and size, for curve points).
func (t Table) Row(name string, size int) (Row, bool) {
	for _, r := range t.Rows {
		if r.Name == name && r.Size == size {
			return r, true
		}
	}
	return Row{}, false
}

// Curve returns the rows of a group (GroupIPCache, GroupPolicy,
// GroupLBNewConn, GroupLBEstablished) in order.
func (t Table) Curve(group string) []Row {
	var out []Row
	for _, r := range t.Rows {
		if r.Group == group {
			out = append(out, r)
		}
	}
	return out
}

// Passed reports whether every bar passed.
func (t Table) Passed() bool {
	for _, b := range t.Bars {
		if !b.Pass {
			return false
		}
	}
	return true
}

func (t Table) bars() []Bar {
	var bars []Bar
	if ct, ok := t.Row(RowCTEstablished, 0); ok {
		bars = append(bars, Bar{
			Name: fmt.Sprintf("CT fast path within %gx of the floor", CTFastPathMaxRatio),
			Pass: ct.Ratio <= CTFastPathMaxRatio,
			Detail: fmt.Sprintf("%s = %.2fx floor (%.0f ns vs %.0f ns)",
				RowCTEstablished, ct.Ratio, ct.NsPerPacket, ct.PairedFloor),
		})
	}
	for _, c := range []struct {
		group, label string
	}{{GroupIPCache, "ipcache"}, {GroupPolicy, "policy"}, {GroupLBNewConn, "lb new-conn"},
		{GroupLBEstablished, "lb established"}} {
		rows := t.Curve(c.group)
		if len(rows) == 0 {
			continue
		}
		ratio := Flatness(rows)
		bars = append(bars, Bar{
			Name: fmt.Sprintf("%s flat ±%.0f%% %s..%s", c.label, (FlatMaxRatio-1)*100,
				humanSize(rows[0].Size), humanSize(rows[len(rows)-1].Size)),
			Pass:   ratio <= FlatMaxRatio,
			Detail: fmt.Sprintf("max/min = %.3f (x floor %s)", ratio, curveString(rows)),
		})
	}
	return bars
}

// Flatness returns max/min over a curve's points of their cost relative to
// the floor (Row.Ratio): ns/packet with the machine's speed drift taken
// out.
func Flatness(rows []Row) float64 {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, r := range rows {
		lo = math.Min(lo, r.Ratio)
		hi = math.Max(hi, r.Ratio)
	}
	return hi / lo
}

func curveString(rows []Row) string {
	var parts []string
	for _, r := range rows {
		parts = append(parts, fmt.Sprintf("%.2f", r.Ratio))
	}
	return strings.Join(parts, " / ")
}

func humanSize(n int) string {
	switch {
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	case n == 16384:
		return "16k"
	}
	return fmt.Sprint(n)
}

// Print writes the table: one line per path with ns/packet and the ratio
// to the floor, the curves, and the bars with PASS/FAIL.
func (t Table) Print(w io.Writer) {
	fmt.Fprintf(w, "datapath benchmark: BPF_PROG_TEST_RUN, kernel-timed; kernel %s, %d CPUs, measured on CPU %d\n",
		t.Kernel, t.CPUs, t.CPU)
	fmt.Fprintf(w, "loop: median of %d batches of ~%s, each after a floor batch; single: %d distinct flows, one run each\n\n",
		t.Opts.Batches, t.Opts.BatchTime, t.Opts.Flows)
	const format = "%-38s %8s %8s %7s %8s  %s\n"
	fmt.Fprintf(w, format, "path", "ns/pkt", "x floor", "spread", "method", "what it includes")
	fmt.Fprintln(w, strings.Repeat("-", 130))
	group := GroupPath
	for _, r := range t.Rows {
		if r.Group != group {
			fmt.Fprintln(w)
			group = r.Group
		}
		name := r.Name
		if r.Group != GroupPath {
			name = fmt.Sprintf("%s size=%s", r.Name, humanSize(r.Size))
		}
		spread := fmt.Sprintf("±%.1f%%", r.Spread*100)
		if r.Method == MethodDerived {
			spread = "-"
		}
		fmt.Fprintf(w, format, name, fmt.Sprintf("%.1f", r.NsPerPacket), fmt.Sprintf("%.2f", r.Ratio),
			spread, r.Method, r.Note)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "bars (DESIGN.md, Performance bars):")
	for _, b := range t.Bars {
		verdict := "PASS"
		if !b.Pass {
			verdict = "FAIL"
		}
		fmt.Fprintf(w, "  %-38s %s  %s\n", b.Name, verdict, b.Detail)
	}
}

// Addresses and identities of the benchmark topology: the pod (endpoint 1),
// external hosts in 203.0.113.0/24 that policy allows on TCP/80, and a
// denied host.
var (
	podAddr      = netip.MustParseAddr("10.0.1.10")
	podIdentity  = uint32(1000)
	extPrefix    = netip.MustParsePrefix("203.0.113.0/24")
	extAddr      = netip.MustParseAddr("203.0.113.7")
	extIdentity  = uint32(16777217) // a CIDR identity (local scope)
	denyAddr     = netip.MustParseAddr("198.51.100.77")
	denyIdentity = uint32(16777218)
	serverPort   = uint16(80)
	clientPort   = uint16(40000)
)

// allowExternal is the pod's egress allow entry to the external hosts.
var allowExternal = testrun.Rule{Direction: maps.Egress, Identity: extIdentity, Protocol: testrun.ProtoTCP,
	Ports: maps.PortRange{Lo: serverPort, Hi: serverPort}, RuleID: 1}

// Run measures every row and checks the bars. Progress lines go to
// progress (nil: none).
func Run(opts Options, progress io.Writer) (Table, error) {
	opts = opts.withDefaults()
	if progress == nil {
		progress = io.Discard
	}
	start := time.Now()
	r := &runner{opts: opts, progress: progress}
	t := Table{Kernel: kernelRelease(), CPUs: runtime.NumCPU(), Opts: opts}
	if missing, err := datapath.MissingCapabilities(); err != nil {
		return t, err
	} else if len(missing) > 0 {
		return t, fmt.Errorf("%w: %s (BPF_PROG_TEST_RUN of tc programs needs root)",
			datapath.ErrMissingCapability, strings.Join(missing, ", "))
	}

	// Keep the measurement on one OS thread pinned to one CPU: the CPUs of
	// a shared machine do not run at the same speed, and a run that hops
	// between them mixes two populations of batches.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu, restore, err := pinCPU(opts.CPU)
	if err != nil {
		return t, err
	}
	defer restore()
	t.CPU = cpu
	r.logf("measuring on CPU %d", cpu)

	floor, err := NewFloor()
	if err != nil {
		return t, err
	}
	defer floor.Close()
	r.floor = floor

	for _, step := range []func(*Table) error{r.paths, r.newFlows, r.ipcacheCurve, r.policyCurve, r.lbCurves} {
		if err := step(&t); err != nil {
			return t, err
		}
	}
	t.Bars = t.bars()
	t.Elapsed = time.Since(start)
	r.logf("done in %s", t.Elapsed.Round(10*time.Millisecond))
	return t, nil
}

type runner struct {
	opts     Options
	progress io.Writer
	floor    *Floor
}

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(r.progress, "bench: "+format+"\n", args...)
}

// paths measures the loop rows of the path group, interleaved: the floor,
// ct-established at both trace levels and policy-deny.
func (r *runner) paths(t *Table) error {
	r.logf("paths: setting up ct-established (both trace levels) and policy-deny")
	ct, ctPkt, err := setupEstablished(datapath.TraceConnectionEvents)
	if err != nil {
		return fmt.Errorf("%s: %w", RowCTEstablished, err)
	}
	defer ct.Close()
	ctT, ctTPkt, err := setupEstablished(datapath.TraceEveryPacket)
	if err != nil {
		return fmt.Errorf("%s: %w", RowCTEstablishedT, err)
	}
	defer ctT.Close()
	deny, denyPkt, err := setupDeny()
	if err != nil {
		return fmt.Errorf("%s: %w", RowPolicyDeny, err)
	}
	defer deny.Close()

	targets := []target{
		{name: RowFloor, prog: r.floor.Prog, pkt: ctPkt, wantCode: testrun.ActOK,
			note: "empty tc program on the ct-established packet: the test-run loop itself"},
		{name: RowCTEstablished, prog: ct.EP.Endpoint.FromContainer, pkt: ctPkt, wantCode: testrun.ActOK, env: ct,
			note: "from_container, TCP ACK, CT hit, no event (agent default)"},
		{name: RowCTEstablishedT, prog: ctT.EP.Endpoint.FromContainer, pkt: ctTPkt, wantCode: testrun.ActOK,
			env: ctT, emits: true, note: "same, plus a trace event per packet (simulator, replay)"},
		{name: RowPolicyDeny, prog: deny.EP.Endpoint.FromContainer, pkt: denyPkt, wantCode: testrun.ActShot,
			env: deny, emits: true, note: "TCP SYN, CT miss x2, ipcache, policy (no match), drop event"},
	}
	r.logf("paths: measuring %d paths, %d interleaved batches each", len(targets), r.opts.Batches)
	ms, err := r.loop(targets)
	if err != nil {
		return err
	}
	for i, tg := range targets {
		m := ms[i]
		if tg.name == RowFloor {
			t.Floor = m.median
			m.ratio, m.floor = 1, m.median
		}
		t.Rows = append(t.Rows, m.row(tg.name, GroupPath, 0, tg.note))
		r.logf("%s: %.1f ns/pkt (%.2fx floor)", tg.name, m.median, m.ratio)
	}
	return nil
}

// setupEstablished returns an environment with the given trace level and
// the established ACK of the pod's TCP connection to the external host.
func setupEstablished(traceLevel uint8) (*Env, []byte, error) {
	env, err := NewEnv(traceLevel, datapath.NodeOptions{})
	if err != nil {
		return nil, nil, err
	}
	pkt, err := env.Establish(clientPort)
	if err != nil {
		env.Close()
		return nil, nil, err
	}
	// The fast path emits an event only when every packet is traced.
	if err := checkEvents(env, pkt, traceLevel == datapath.TraceEveryPacket); err != nil {
		env.Close()
		return nil, nil, err
	}
	return env, pkt, nil
}

// setupDeny returns an environment whose ipcache knows the denied host and
// the SYN of a new flow to it, which no policy entry allows.
func setupDeny() (*Env, []byte, error) {
	env, err := NewEnv(datapath.TraceConnectionEvents, datapath.NodeOptions{})
	if err != nil {
		return nil, nil, err
	}
	pkt, err := env.denyHost()
	if err != nil {
		env.Close()
		return nil, nil, err
	}
	return env, pkt, nil
}

func (e *Env) denyHost() ([]byte, error) {
	if err := e.H.SetIdentity(netip.PrefixFrom(denyAddr, 32), denyIdentity); err != nil {
		return nil, err
	}
	pkt := synTo(denyAddr, clientPort)
	if err := checkDrop(e, pkt, dropreason.PolicyDenied, denyIdentity); err != nil {
		return nil, err
	}
	return pkt, nil
}

// synTo returns the SYN of a new TCP flow from the pod's sport to dst:80.
func synTo(dst netip.Addr, sport uint16) []byte {
	return testrun.TCP(netip.AddrPortFrom(podAddr, sport), netip.AddrPortFrom(dst, serverPort), testrun.SYN, nil)
}

// flowPackets returns n SYNs of distinct new flows from the pod to port 80
// of base and the addresses after it (60000 source ports per address).
func flowPackets(n int, base netip.Addr) [][]byte {
	pkts := make([][]byte, n)
	for i := range pkts {
		dst := base
		for range i / 60000 {
			dst = dst.Next()
		}
		pkts[i] = synTo(dst, uint16(1024+i%60000))
	}
	return pkts
}

// newFlows measures new flows with the single-run method (see
// docs/benchmarks.md): an allowed new flow cannot be measured in a loop,
// since its first run creates the conntrack entry that every further run
// of the same packet hits. So each of opts.Flows distinct flows (distinct
// source ports) runs once, kernel-timed, next to one run of the empty
// program on the same packet; and, interleaved with them, as many denied
// new flows: the path policy-deny measures in a loop. The difference
// between the loop and the single-run numbers of the denied flow is what
// the method adds (caches cooled by the syscall around every run); taking
// it off gives a hot estimate of the allowed new flow.
func (r *runner) newFlows(t *Table) error {
	name := RowNewFlowAllow
	r.logf("new flows: %d allowed and %d denied distinct new TCP flows, one kernel-timed run each", r.opts.Flows, r.opts.Flows)
	env, err := NewEnv(datapath.TraceConnectionEvents, datapath.NodeOptions{})
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	defer env.Close()
	if _, err := env.denyHost(); err != nil {
		return fmt.Errorf("%s: %w", RowPolicyDenySingle, err)
	}
	if err := checkNewFlowAllowed(env, synTo(extAddr, 65000)); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	allow := flowPackets(r.opts.Flows, extAddr)
	deny := make([][]byte, r.opts.Flows)
	for i := range deny {
		deny[i] = synTo(denyAddr, uint16(1024+i%60000))
	}
	before, err := env.CountCT()
	if err != nil {
		return err
	}
	ms, err := r.single(env, env.EP.Endpoint.FromContainer, []singleSet{
		{pkts: deny, wantCode: testrun.ActShot},
		{pkts: allow, wantCode: testrun.ActOK},
	})
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	after, err := env.CountCT()
	if err != nil {
		return err
	}
	if after-before != len(allow) {
		return fmt.Errorf("%s: %d allowed runs created %d conntrack entries: not every run was a new flow",
			name, len(allow), after-before)
	}
	// Put the single-run numbers (cost over the empty program) in the loop
	// rows' units: add the loop floor, measured now.
	fm, err := r.loop([]target{{name: RowFloor, prog: r.floor.Prog, pkt: allow[0], wantCode: testrun.ActOK}})
	if err != nil {
		return fmt.Errorf("%s: floor: %w", name, err)
	}
	for i := range ms {
		ms[i].floor = fm[0].median
		ms[i].median += fm[0].median
		ms[i].ratio = ms[i].median / fm[0].median
	}
	denyS, allowS := ms[0], ms[1]
	t.Rows = append(t.Rows,
		denyS.row(RowPolicyDenySingle, GroupPath, 0, "policy-deny, one run per distinct flow: calibrates the method"),
		allowS.row(RowNewFlowAllow, GroupPath, 0,
			"TCP SYN, one run per distinct flow: CT miss x2, ipcache, policy allow, CT insert, trace event"))
	r.logf("%s: %.1f ns/pkt; %s: %.1f ns/pkt", RowPolicyDenySingle, denyS.median, name, allowS.median)
	if loop, ok := t.Row(RowPolicyDeny, 0); ok {
		hot := measurement{
			median: loop.NsPerPacket + allowS.median - denyS.median,
			ratio:  loop.Ratio + allowS.ratio - denyS.ratio,
			floor:  loop.PairedFloor,
			method: MethodDerived,
		}
		t.Rows = append(t.Rows, hot.row(RowNewFlowAllowHot, GroupPath, 0,
			"policy-deny (loop) + new-flow-allow (single-run) - policy-deny (single-run)"))
		r.logf("%s: %.1f ns/pkt", RowNewFlowAllowHot, hot.median)
	}
	return nil
}

func checkNewFlowAllowed(env *Env, pkt []byte) error {
	res, err := env.EP.FromContainer(pkt)
	if err != nil {
		return err
	}
	tr, ok := res.Trace()
	if res.Code != testrun.ActOK || !ok || tr.CTState != maps.CTNew || tr.RuleID != allowExternal.RuleID {
		return fmt.Errorf("want a new flow allowed by rule %d, got %s", allowExternal.RuleID, res)
	}
	return nil
}

// ipcacheCurve measures the denied new flow (it looks the destination up in
// the ipcache) with the ipcache holding each of opts.IPCacheSizes prefixes.
func (r *runner) ipcacheCurve(t *Table) error {
	return r.sizedCurve(t, GroupIPCache, RowIPCache, "ipcache", r.opts.IPCacheSizes, setupIPCache,
		"policy-deny path; the destination's /32 among N random prefixes")
}

// sizedCurve measures one environment per size (built by setup), all of
// them interleaved, as the rows of a curve.
func (r *runner) sizedCurve(t *Table, group, row, what string, sizes []int,
	setup func(size int, seed uint64) (*Env, []byte, error), note string) error {
	var targets []target
	for _, size := range sizes {
		r.logf("%s: filling with %d entries", what, size)
		env, pkt, err := setup(size, r.opts.Seed)
		if err != nil {
			return fmt.Errorf("%s size %d: %w", what, size, err)
		}
		defer env.Close()
		targets = append(targets, target{name: row, size: size, prog: env.EP.Endpoint.FromContainer, pkt: pkt,
			wantCode: testrun.ActShot, env: env, emits: true, note: note})
	}
	return r.curve(t, group, targets)
}

// setupIPCache returns a policy-deny environment whose ipcache holds size
// prefixes besides the pod's and the external hosts': the denied host's
// /32 and size-1 random prefixes (70% /32, 20% /24, 7% /20, 3% /16).
func setupIPCache(size int, seed uint64) (*Env, []byte, error) {
	env, err := NewEnv(datapath.TraceConnectionEvents, datapath.NodeOptions{})
	if err != nil {
		return nil, nil, err
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	for i, pfx := range randomPrefixes(rng, size-1, denyAddr, podAddr, extAddr) {
		if err := env.H.SetIdentity(pfx, 16777300+uint32(i)); err != nil {
			env.Close()
			return nil, nil, err
		}
	}
	pkt, err := env.denyHost()
	if err != nil {
		env.Close()
		return nil, nil, err
	}
	return env, pkt, nil
}

// randomPrefixes returns n distinct random IPv4 prefixes, none equal to
// the /32 of an excluded address (covering ones are fine: the /32 is the
// longest match).
func randomPrefixes(rng *rand.Rand, n int, exclude ...netip.Addr) []netip.Prefix {
	seen := map[netip.Prefix]bool{}
	for _, a := range exclude {
		seen[netip.PrefixFrom(a, 32)] = true
	}
	out := make([]netip.Prefix, 0, max(n, 0))
	for len(out) < n {
		var a [4]byte
		binary.BigEndian.PutUint32(a[:], rng.Uint32())
		if a[0] == 0 || a[0] == 127 || a[0] >= 224 {
			continue
		}
		bits := 32
		switch p := rng.IntN(100); {
		case p < 3:
			bits = 16
		case p < 10:
			bits = 20
		case p < 30:
			bits = 24
		}
		pfx := netip.PrefixFrom(netip.AddrFrom4(a), bits).Masked()
		if seen[pfx] {
			continue
		}
		seen[pfx] = true
		out = append(out, pfx)
	}
	return out
}

// policyCurve measures the denied new flow with the endpoint's policy map
// holding each of opts.PolicySizes entries.
func (r *runner) policyCurve(t *Table) error {
	return r.sizedCurve(t, GroupPolicy, RowPolicyMap, "policy", r.opts.PolicySizes, setupPolicyMap,
		"policy-deny path; a deny entry among N single-port entries (2 hash probes)")
}

// setupPolicyMap returns an environment whose pod's policy map holds size
// entries: a deny entry for the denied host's identity on TCP/80, and
// size-1 random single-port entries of other identities (TCP or UDP,
// either direction); and the SYN to the denied host, which it drops.
func setupPolicyMap(size int, seed uint64) (*Env, []byte, error) {
	node := datapath.NodeOptions{}
	if size > 16384 {
		node.PolicyMaxEntries = uint32(size)
	}
	env, err := NewEnv(datapath.TraceConnectionEvents, node)
	if err != nil {
		return nil, nil, err
	}
	pkt, err := env.fillPolicy(size, seed)
	if err != nil {
		env.Close()
		return nil, nil, err
	}
	return env, pkt, nil
}

func (e *Env) fillPolicy(size int, seed uint64) ([]byte, error) {
	// Sizes count every entry of the map: the environment's allow entry
	// goes, the deny entry is the first.
	if err := e.EP.DeleteRule(allowExternal); err != nil {
		return nil, err
	}
	if err := e.H.SetIdentity(netip.PrefixFrom(denyAddr, 32), denyIdentity); err != nil {
		return nil, err
	}
	deny := testrun.Rule{Direction: maps.Egress, Identity: denyIdentity, Protocol: testrun.ProtoTCP,
		Ports: maps.PortRange{Lo: serverPort, Hi: serverPort}, Deny: true, RuleID: 2}
	if err := e.EP.AddRule(deny); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(seed, 2))
	seen := map[maps.PolicyKey]bool{}
	for have := 1; have < size; {
		k := maps.PolicyKey{
			Identity: 256 + uint32(rng.IntN(1<<24)),
			Protocol: []uint8{testrun.ProtoTCP, testrun.ProtoUDP}[rng.IntN(2)],
			Egress:   uint8(rng.IntN(2)),
		}
		if k.Identity == denyIdentity || k.Identity == extIdentity {
			continue
		}
		// Single-port entries, like the deny entry: the lookup probes each
		// distinct prefix length the map uses, so the curve keeps that set
		// fixed and varies only the number of entries.
		k.Prefixlen = maps.PolicyPrefixFull
		k.DPortNet = maps.HostToNet16(uint16(1 + rng.IntN(65535)))
		if seen[k] {
			continue
		}
		seen[k] = true
		v := maps.PolicyEntry{Prefixlen: uint8(k.Prefixlen), RuleID: 1000 + uint32(have)}
		if err := e.EP.PutPolicy(k, v); err != nil {
			return nil, err
		}
		have++
	}
	if err := e.EP.BumpPolicyRevision(); err != nil {
		return nil, err
	}
	pkt := synTo(denyAddr, clientPort)
	if err := checkDrop(e, pkt, dropreason.PolicyDeny, denyIdentity); err != nil {
		return nil, err
	}
	return pkt, nil
}

// curve measures the targets of a scaling curve and adds their rows.
func (r *runner) curve(t *Table, group string, targets []target) error {
	r.logf("%s: measuring %d sizes, %d interleaved batches each", group, len(targets), r.opts.Batches)
	ms, err := r.loop(targets)
	if err != nil {
		return fmt.Errorf("%s: %w", group, err)
	}
	for i, tg := range targets {
		t.Rows = append(t.Rows, ms[i].row(tg.name, group, tg.size, tg.note))
		r.logf("%s size=%d: %.1f ns/pkt (%.2fx floor)", group, tg.size, ms[i].median, ms[i].ratio)
	}
	return nil
}

// checkEvents runs pkt once through the harness and checks that it passes
// to the stack as an established packet, with an event exactly when
// wantEvent says.
func checkEvents(env *Env, pkt []byte, wantEvent bool) error {
	res, err := env.EP.FromContainer(pkt)
	if err != nil {
		return err
	}
	if res.Code != testrun.ActOK {
		return fmt.Errorf("want the established packet passed, got %s", res)
	}
	if got := len(res.Events) > 0; got != wantEvent {
		return fmt.Errorf("want event=%v, got %s", wantEvent, res)
	}
	for _, ev := range res.Events {
		if ev.CTState != maps.CTEstablished {
			return fmt.Errorf("want conntrack state established, got %s", ev)
		}
	}
	return nil
}

// checkDrop runs pkt once through the harness and checks its drop event.
func checkDrop(env *Env, pkt []byte, reason dropreason.Reason, dstIdentity uint32) error {
	res, err := env.EP.FromContainer(pkt)
	if err != nil {
		return err
	}
	d, ok := res.Drop()
	if !ok || d.Reason != reason || d.DstIdentity != dstIdentity {
		return fmt.Errorf("want a drop %s to identity %d, got %s", reason, dstIdentity, res)
	}
	return nil
}

// Floor is the empty tc program (bpf/empty.c), the harness floor.
type Floor struct {
	Prog *ebpf.Program
	coll *ebpf.Collection
}

// NewFloor loads bpf/empty.c.
func NewFloor() (*Floor, error) {
	spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(datapath.EmptyObject()))
	if err != nil {
		return nil, fmt.Errorf("load empty spec: %w", err)
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		return nil, fmt.Errorf("load empty program: %w", err)
	}
	return &Floor{Prog: coll.Programs["empty"], coll: coll}, nil
}

// Close releases the program.
func (f *Floor) Close() error {
	f.coll.Close()
	return nil
}

// Env is a harness with one endpoint, the pod, set up for benchmarks:
// enforcement on in both directions and an egress allow entry for TCP/80
// to the external hosts (203.0.113.0/24, a CIDR identity).
type Env struct {
	H  *testrun.Harness
	EP *testrun.Endpoint
	rb *ringbuf.Reader
	// recSize is the ring buffer space of one event.
	recSize int
}

// NewEnv creates the environment with the given trace level and node
// options.
func NewEnv(traceLevel uint8, node datapath.NodeOptions) (*Env, error) {
	h, err := testrun.New(testrun.Options{Node: node, Settings: datapath.Settings{TraceLevel: traceLevel}})
	if err != nil {
		return nil, err
	}
	env := &Env{H: h}
	if err := env.init(); err != nil {
		env.Close()
		return nil, err
	}
	return env, nil
}

func (e *Env) init() error {
	ep, err := e.H.AddEndpoint(testrun.EndpointSpec{ID: 1, Identity: podIdentity, IPv4: podAddr})
	if err != nil {
		return err
	}
	e.EP = ep
	if err := e.H.SetIdentity(extPrefix, extIdentity); err != nil {
		return err
	}
	if err := ep.AddRule(allowExternal); err != nil {
		return err
	}
	if err := ep.SetEnforcement(true, true); err != nil {
		return err
	}
	// A reader of our own on the ring buffer, to discard events cheaply
	// (the harness's reader decodes them).
	rb, err := ringbuf.NewReader(e.H.Node.Maps[datapath.MapEvents])
	if err != nil {
		return fmt.Errorf("open ring buffer: %w", err)
	}
	e.rb = rb
	// One record: 8 bytes of header plus struct event, 8-byte aligned.
	e.recSize = (binary.Size(maps.Event{}) + 8 + 7) &^ 7
	return nil
}

// Close releases the harness.
func (e *Env) Close() error {
	if e.rb != nil {
		e.rb.Close()
	}
	return e.H.Close()
}

// EventCapacity is how many events fit in the ring buffer.
func (e *Env) EventCapacity() int {
	return e.rb.BufferSize() / e.recSize
}

// DrainEvents discards every event in the ring buffer.
func (e *Env) DrainEvents() error {
	var rec ringbuf.Record
	e.rb.SetDeadline(time.Now())
	for {
		err := e.rb.ReadInto(&rec)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("drain ring buffer: %w", err)
		}
	}
}

// LostEvents returns how many events the datapath could not write to the
// ring buffer so far (the EVENT_LOST metrics slots, both directions).
func (e *Env) LostEvents() (uint64, error) {
	m := e.H.Node.Maps[datapath.MapMetrics]
	var n uint64
	for _, dir := range []maps.Direction{maps.Ingress, maps.Egress} {
		var percpu []maps.MetricsValue
		if err := m.Lookup(maps.MetricsIndex(uint8(dropreason.EventLost), dir), &percpu); err != nil {
			return 0, fmt.Errorf("read lost events: %w", err)
		}
		for _, v := range percpu {
			n += v.Packets
		}
	}
	return n, nil
}

// CountCT returns the number of conntrack entries.
func (e *Env) CountCT() (int, error) {
	entries, err := e.H.Node.CTEntries()
	return len(entries), err
}

// Establish runs the TCP handshake of the pod's connection from client
// port cport to the external host's port 80 and returns the packet of the
// established flow (the client's next ACK).
func (e *Env) Establish(cport uint16) ([]byte, error) {
	conn := e.H.Conn(testrun.PodV4(e.EP), testrun.External(extAddr), testrun.ProtoTCP, cport, serverPort)
	if _, err := conn.Handshake(); err != nil {
		return nil, fmt.Errorf("handshake: %w", err)
	}
	return conn.Packet(true, testrun.ACK), nil
}

// target is one path measured by loop.
type target struct {
	name     string
	size     int
	prog     *ebpf.Program
	pkt      []byte
	wantCode uint32
	// env, when set, is checked for lost events around every batch; emits
	// says the path writes an event per run, so batches are capped by the
	// ring buffer's capacity and the buffer is drained before each.
	env   *Env
	emits bool
	note  string
}

// measurement is the result of loop or single.
type measurement struct {
	median, spread float64
	// ratio is the median ratio to the floor batches paired with the
	// batches; floor is the median of those floor batches.
	ratio, floor float64
	repeat       int
	samples      int
	method       string
}

func (m measurement) row(name, group string, size int, note string) Row {
	return Row{Name: name, Group: group, Size: size, NsPerPacket: m.median, Ratio: m.ratio,
		PairedFloor: m.floor, Spread: m.spread, Method: m.method, Repeat: m.repeat, Samples: m.samples,
		Note: note}
}

// loop measures the targets: it calibrates each one's repeat count to the
// batch time, runs a warm-up batch of each, then opts.Batches rounds in
// which every target runs one batch of the floor program on its packet
// followed by one batch of its own. Per target it returns the median of the
// per-run times and the median of the ratios to the paired floor batches.
// Interleaving the targets (a curve's sizes, the paths) and pairing every
// batch with a floor batch cancel the slow drifts of a shared machine's
// speed that measuring one after the other would turn into differences.
func (r *runner) loop(targets []target) ([]measurement, error) {
	repeats := make([]int, len(targets))
	floorRepeats := make([]int, len(targets))
	for i, tg := range targets {
		var err error
		if repeats[i], err = r.calibrate(tg); err != nil {
			return nil, fmt.Errorf("%s: %w", tg.name, err)
		}
		floorTarget := target{name: RowFloor, prog: r.floor.Prog, pkt: tg.pkt, wantCode: testrun.ActOK}
		if floorRepeats[i], err = r.calibrate(floorTarget); err != nil {
			return nil, fmt.Errorf("floor: %w", err)
		}
		if _, err := runBatch(tg, repeats[i]); err != nil { // warm-up
			return nil, fmt.Errorf("%s: %w", tg.name, err)
		}
	}
	samples := make([][]float64, len(targets))
	ratios := make([][]float64, len(targets))
	floors := make([][]float64, len(targets))
	for range r.opts.Batches {
		for i, tg := range targets {
			f, err := runBatch(target{prog: r.floor.Prog, pkt: tg.pkt, wantCode: testrun.ActOK}, floorRepeats[i])
			if err != nil {
				return nil, fmt.Errorf("floor: %w", err)
			}
			ns, err := runBatch(tg, repeats[i])
			if err != nil {
				return nil, fmt.Errorf("%s: %w", tg.name, err)
			}
			samples[i] = append(samples[i], ns)
			floors[i] = append(floors[i], f)
			ratios[i] = append(ratios[i], ns/f)
		}
	}
	out := make([]measurement, len(targets))
	for i := range targets {
		med, spread := medianSpread(samples[i])
		ratio, _ := medianSpread(ratios[i])
		floor, _ := medianSpread(floors[i])
		out[i] = measurement{median: med, spread: spread, ratio: ratio, floor: floor, repeat: repeats[i],
			samples: len(samples[i]), method: MethodLoop}
	}
	return out, nil
}

// maxRepeat is the largest batch of a target: a path that writes an event
// per run must not fill the ring buffer, or the later runs would measure
// the "event lost" path instead. Keep room for a batch restarted after a
// signal.
func (tg target) maxRepeat() int {
	if tg.emits && tg.env != nil {
		return max(tg.env.EventCapacity()*4/10, 1)
	}
	return 1 << 24
}

// calibrate returns the repeat count that makes a batch of tg take about
// opts.BatchTime, within [100, maxRepeat].
func (r *runner) calibrate(tg target) (int, error) {
	limit := tg.maxRepeat()
	est, err := runBatch(tg, min(1000, limit))
	if err != nil {
		return 0, err
	}
	repeat := int(float64(r.opts.BatchTime.Nanoseconds()) / math.Max(est, 1))
	return max(min(repeat, limit), min(100, limit)), nil
}

// runBatch runs tg's program on its packet repeat times in one
// BPF_PROG_TEST_RUN and returns the kernel's time per run in ns. The kernel
// reports whole nanoseconds (its total divided by repeat, truncated): the
// resolution is 1 ns, a few percent of the floor. (The wall time of the
// syscall cannot refine it: the kernel stops its clock while the thread
// yields the CPU, the wall clock does not.)
func runBatch(tg target, repeat int) (float64, error) {
	var (
		reset func()
		lost  uint64
	)
	if tg.env != nil {
		if tg.emits {
			if err := tg.env.DrainEvents(); err != nil {
				return 0, err
			}
			// The kernel restarts a batch interrupted by a signal from
			// scratch: make room for its events again.
			reset = func() { tg.env.DrainEvents() }
		}
		var err error
		if lost, err = tg.env.LostEvents(); err != nil {
			return 0, err
		}
	}
	ret, d, err := tg.prog.Benchmark(tg.pkt, repeat, reset)
	if err != nil {
		return 0, err
	}
	if ret != tg.wantCode {
		return 0, fmt.Errorf("program returned %d, want %d", ret, tg.wantCode)
	}
	if tg.env != nil {
		n, err := tg.env.LostEvents()
		if err != nil {
			return 0, err
		}
		if n != lost {
			return 0, fmt.Errorf("%d events lost during a batch: the ring buffer was full, the batch measured the wrong path", n-lost)
		}
	}
	return float64(d.Nanoseconds()), nil
}

// singleSet is a set of distinct packets for single.
type singleSet struct {
	pkts     [][]byte
	wantCode uint32
}

// single runs the i-th packet of every set once through prog, each next to
// one run of the floor program on the same packet (interleaved, so that
// all see the same cache and timer conditions), and returns per set the
// median single-run time of prog minus the median of the floor's: the cost
// of the program over the empty one when every run is a syscall of its own.
func (r *runner) single(env *Env, prog *ebpf.Program, sets []singleSet) ([]measurement, error) {
	n := len(sets[0].pkts)
	progNs := make([][]float64, len(sets))
	floorNs := make([][]float64, len(sets))
	drainEvery := max(env.EventCapacity()/(2*len(sets)), 1)
	if err := env.DrainEvents(); err != nil {
		return nil, err
	}
	lost, err := env.LostEvents()
	if err != nil {
		return nil, err
	}
	for i := range n {
		if i > 0 && i%drainEvery == 0 {
			if err := env.DrainEvents(); err != nil {
				return nil, err
			}
		}
		for j, set := range sets {
			pkt := set.pkts[i]
			_, fd, err := r.floor.Prog.Benchmark(pkt, 1, nil)
			if err != nil {
				return nil, err
			}
			ret, d, err := prog.Benchmark(pkt, 1, nil)
			if err != nil {
				return nil, err
			}
			if ret != set.wantCode {
				return nil, fmt.Errorf("packet %d of set %d: program returned %d, want %d", i, j, ret, set.wantCode)
			}
			progNs[j] = append(progNs[j], float64(d.Nanoseconds()))
			floorNs[j] = append(floorNs[j], float64(fd.Nanoseconds()))
		}
	}
	if now, err := env.LostEvents(); err != nil {
		return nil, err
	} else if now != lost {
		return nil, fmt.Errorf("%d events lost", now-lost)
	}
	out := make([]measurement, len(sets))
	for j := range sets {
		pm, ps := medianSpread(progNs[j])
		fm, _ := medianSpread(floorNs[j])
		net := pm - fm
		out[j] = measurement{median: net, spread: ps * pm / math.Max(net, 1), repeat: n, samples: n,
			method: MethodSingle}
	}
	return out, nil
}

// medianSpread returns the median of xs and half its interquartile range
// relative to the median.
func medianSpread(xs []float64) (float64, float64) {
	if len(xs) == 0 {
		return 0, 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	q := func(p float64) float64 {
		pos := p * float64(len(s)-1)
		i := int(pos)
		if i+1 >= len(s) {
			return s[len(s)-1]
		}
		f := pos - float64(i)
		return s[i]*(1-f) + s[i+1]*f
	}
	med := q(0.5)
	if med == 0 {
		return 0, 0
	}
	return med, (q(0.75) - q(0.25)) / 2 / med
}

// pinCPU pins the calling (locked) thread to cpu (-1: the last allowed
// one) and returns the CPU and a function that restores the old mask.
func pinCPU(cpu int) (int, func(), error) {
	var old unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return 0, nil, fmt.Errorf("get CPU affinity: %w", err)
	}
	if cpu < 0 {
		for c := range 1024 {
			if old.IsSet(c) {
				cpu = c
			}
		}
	}
	if cpu < 0 || !old.IsSet(cpu) {
		return 0, nil, fmt.Errorf("CPU %d is not available to this process", cpu)
	}
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return 0, nil, fmt.Errorf("pin to CPU %d: %w", cpu, err)
	}
	return cpu, func() { unix.SchedSetaffinity(0, &old) }, nil
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}
