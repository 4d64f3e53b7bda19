package kubeproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/netip"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ciliaproject/cilia/datapath"
)

// Options say what to measure. Zero fields take Default()'s values.
type Options struct {
	// Sizes are the numbers of services, measured in increasing order.
	Sizes []int
	// Samples is how many connections per size and datapath go to
	// service addresses drawn uniformly from the whole list.
	Samples int
	// PositionSamples is how many more go to each of the first, the
	// middle and the last service of the list.
	PositionSamples int
	// Backends is the number of endpoints of every service (1..4).
	Backends int
	// Timeout bounds one connection.
	Timeout time.Duration
	// Seed makes the choice of service addresses reproducible.
	Seed uint64
}

// Default returns the options of `cilia bench services`.
func Default() Options {
	return Options{Sizes: []int{1000, 10000, 30000}, Samples: 3000, PositionSamples: 500, Backends: 2,
		Timeout: 2 * time.Second, Seed: 1}
}

// Quick returns options for a fast run: the same sizes, fewer samples.
func Quick() Options {
	o := Default()
	o.Samples = 600
	o.PositionSamples = 100
	return o
}

func (o Options) withDefaults() Options {
	d := Default()
	if len(o.Sizes) == 0 {
		o.Sizes = d.Sizes
	}
	if o.Samples <= 0 {
		o.Samples = d.Samples
	}
	if o.PositionSamples <= 0 {
		o.PositionSamples = d.PositionSamples
	}
	if o.Backends <= 0 {
		o.Backends = d.Backends
	}
	if o.Timeout <= 0 {
		o.Timeout = d.Timeout
	}
	if o.Seed == 0 {
		o.Seed = d.Seed
	}
	o.Sizes = slices.Sorted(slices.Values(o.Sizes))
	return o
}

// Stats summarise the connect() times of one datapath at one size.
type Stats struct {
	// Median and P99 are over the connections to uniformly drawn
	// services.
	Median, P99 time.Duration
	Samples     int
	// First, Middle and Last are the medians of the connections to the
	// first, middle and last service of the list.
	First, Middle, Last time.Duration
	// Backends counts the connections each backend answered.
	Backends map[string]int
}

// Point is one size of the comparison.
type Point struct {
	Services int
	// Rules is the number of iptables rules kube-proxy's layout needs
	// (nat table, jumps from the built-in chains included).
	Rules int
	// IPTablesLoad is how long iptables-restore took; EBPFLoad how long
	// writing the services' map entries took (the new ones only: the maps
	// keep the services of the smaller sizes).
	IPTablesLoad, EBPFLoad time.Duration
	IPTables, EBPF         Stats
}

// Ratio returns iptables / eBPF for a pair of times.
func Ratio(ipt, ebpf time.Duration) float64 {
	if ebpf <= 0 {
		return math.NaN()
	}
	return float64(ipt) / float64(ebpf)
}

// Result is the outcome of Run.
type Result struct {
	Kernel string
	// IPTablesVersion is the output of iptables --version.
	IPTablesVersion string
	CPUs            int
	Opts            Options
	// Direct is the connect() time straight to a backend's address in
	// each world before any service exists (no NAT at all).
	DirectIPTables, DirectEBPF Stats
	Points                     []Point
	Elapsed                    time.Duration
}

// Run builds the two worlds (same topology: a node with a client pod and
// backend pods; kube-proxy's rules in one node's netns, cilia's programs
// on the other's veths), then for every size loads the services into both
// and measures connections to them, the two datapaths taking turns by
// blocks of Block connections. Every connection must reach a backend, which
// must see the client's address; any failure ends the run with an error.
// Everything made is removed before Run returns. Progress lines go to
// progress (nil: none).
func Run(ctx context.Context, opts Options, progress io.Writer) (res Result, err error) {
	opts = opts.withDefaults()
	if progress == nil {
		progress = io.Discard
	}
	logf := func(format string, args ...any) { fmt.Fprintf(progress, "bench services: "+format+"\n", args...) }
	start := time.Now()
	res = Result{Kernel: kernelRelease(), CPUs: runtime.NumCPU(), Opts: opts}
	if missing, err := datapath.MissingCapabilities(); err != nil {
		return res, err
	} else if len(missing) > 0 {
		return res, fmt.Errorf("%w: %s (network namespaces, iptables and tcx need root)",
			datapath.ErrMissingCapability, strings.Join(missing, ", "))
	}
	if res.IPTablesVersion, err = iptablesVersion(); err != nil {
		return res, err
	}
	logf("building the worlds (%s: %s in the node's netns; %s: cilia's programs on the pods' veths)",
		IPTables, res.IPTablesVersion, EBPF)
	ipt, err := newWorld(ctx, IPTables, opts.Backends, opts.Timeout)
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, ipt.Close()) }()
	ebpf, err := newWorld(ctx, EBPF, opts.Backends, opts.Timeout)
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, ebpf.Close()) }()
	worlds := []*world{ipt, ebpf}

	rng := rand.New(rand.NewPCG(opts.Seed, 3))
	direct := netip.AddrPortFrom(backendAddrs[0], BackendPort)
	logf("direct: %d connections straight to %s in each world", opts.PositionSamples, direct)
	ds, err := measure(ctx, worlds, opts.PositionSamples, func(int) netip.AddrPort { return direct })
	if err != nil {
		return res, fmt.Errorf("direct: %w", err)
	}
	res.DirectIPTables, res.DirectEBPF = summarize(ds[0], nil), summarize(ds[1], nil)

	for _, n := range opts.Sizes {
		services, err := Services(n, opts.Backends)
		if err != nil {
			return res, err
		}
		p := Point{Services: n, Rules: ruleCount(services)}
		if p.IPTablesLoad, err = ipt.load(services); err != nil {
			return res, err
		}
		if p.EBPFLoad, err = ebpf.load(services); err != nil {
			return res, err
		}
		logf("%d services: iptables-restore of %d rules took %s, the eBPF maps %s", n, p.Rules,
			p.IPTablesLoad.Round(time.Millisecond), p.EBPFLoad.Round(time.Millisecond))
		frontend := func(i int) netip.AddrPort { return netip.AddrPortFrom(services[i].ClusterIP, services[i].Port) }
		for _, w := range worlds {
			for _, i := range []int{0, n / 2, n - 1} {
				if _, err := w.check(frontend(i)); err != nil {
					return res, fmt.Errorf("%d services: %w", n, err)
				}
			}
		}
		logf("%d services: %d connections per datapath to random services, %d each to the first, middle and last",
			n, opts.Samples, opts.PositionSamples)
		random, err := measure(ctx, worlds, opts.Samples, func(int) netip.AddrPort { return frontend(rng.IntN(n)) })
		if err != nil {
			return res, fmt.Errorf("%d services: %w", n, err)
		}
		var pos [3][][]sample
		for k, i := range []int{0, n / 2, n - 1} {
			if pos[k], err = measure(ctx, worlds, opts.PositionSamples, func(int) netip.AddrPort { return frontend(i) }); err != nil {
				return res, fmt.Errorf("%d services: %w", n, err)
			}
		}
		p.IPTables = summarize(random[0], [][]sample{pos[0][0], pos[1][0], pos[2][0]})
		p.EBPF = summarize(random[1], [][]sample{pos[0][1], pos[1][1], pos[2][1]})
		logf("%d services: %s median %s p99 %s; %s median %s p99 %s", n,
			IPTables, us(p.IPTables.Median), us(p.IPTables.P99), EBPF, us(p.EBPF.Median), us(p.EBPF.P99))
		res.Points = append(res.Points, p)
	}
	res.Elapsed = time.Since(start)
	logf("done in %s", res.Elapsed.Round(100*time.Millisecond))
	return res, nil
}

// measure makes n connections from each world's client, to dst(i) for the
// i-th, and checks every one of them. The worlds take turns by blocks of
// Block connections (the same destinations in both, the order of the
// worlds alternating from block to block): a drift of the machine's speed
// over seconds hits both alike, while the cache pollution of a slow
// iptables traversal (hundreds of thousands of rules walked) only reaches
// the first eBPF connection of a block, not every one. It returns the
// samples per world.
func measure(ctx context.Context, worlds []*world, n int, dst func(i int) netip.AddrPort) ([][]sample, error) {
	out := make([][]sample, len(worlds))
	dsts := make([]netip.AddrPort, n)
	for i := range dsts {
		dsts[i] = dst(i)
	}
	for b := 0; b*Block < n; b++ {
		lo, hi := b*Block, min((b+1)*Block, n)
		for j := range worlds {
			k := j
			if b%2 == 1 {
				k = len(worlds) - 1 - j
			}
			if err := worlds[k].drainEvents(); err != nil {
				return nil, err
			}
			for _, d := range dsts[lo:hi] {
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				s, err := worlds[k].check(d)
				if err != nil {
					return nil, err
				}
				out[k] = append(out[k], s)
			}
		}
	}
	return out, nil
}

// Block is how many connections one world makes before the other's turn.
const Block = 50

// summarize returns the stats of random (and, when given, of the first,
// middle and last service's samples).
func summarize(random []sample, pos [][]sample) Stats {
	st := Stats{Samples: len(random), Backends: map[string]int{}}
	ds := durations(random)
	st.Median, st.P99 = quantile(ds, 0.5), quantile(ds, 0.99)
	for _, s := range random {
		st.Backends[s.backend]++
	}
	if len(pos) == 3 {
		st.First = quantile(durations(pos[0]), 0.5)
		st.Middle = quantile(durations(pos[1]), 0.5)
		st.Last = quantile(durations(pos[2]), 0.5)
	}
	return st
}

func durations(ss []sample) []time.Duration {
	out := make([]time.Duration, len(ss))
	for i, s := range ss {
		out[i] = s.connect
	}
	slices.Sort(out)
	return out
}

// quantile returns the q-quantile of sorted (nearest rank).
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// ruleCount is the number of rules Rules writes for services.
func ruleCount(services []Service) int {
	n := 3 + 3 + 1 + 1 // jumps, KUBE-POSTROUTING, KUBE-MARK-MASQ, the NodePort rule
	for _, s := range services {
		n += 2 + 3*len(s.Endpoints)
	}
	return n
}

func us(d time.Duration) string {
	return fmt.Sprintf("%.1fµs", float64(d)/float64(time.Microsecond))
}

// Print writes the comparison: per size, both datapaths' median and p99
// connect() times, the medians to the first, middle and last service, and
// the ratios iptables / eBPF.
func (r Result) Print(w io.Writer) {
	fmt.Fprintf(w, "service load balancing vs kube-proxy: first-packet latency = TCP connect() time from a pod to a ClusterIP\n")
	fmt.Fprintf(w, "kernel %s, %d CPUs; %s (kube-proxy's iptables-mode rules, iptables-restore) vs cilia eBPF (tcx on the pods' veths)\n",
		r.Kernel, r.CPUs, r.IPTablesVersion)
	fmt.Fprintf(w, "per size and datapath: %d connections to services drawn uniformly from the list (median, p99), %d each to the first/middle/last; %d backends per service; the datapaths take turns by blocks of %d connections\n\n",
		r.Opts.Samples, r.Opts.PositionSamples, r.Opts.Backends, Block)
	const format = "%-9s %-9s %9s %9s %9s %9s %9s %9s  %s\n"
	fmt.Fprintf(w, format, "services", "datapath", "median", "p99", "first", "middle", "last", "load", "rules / backends answered")
	fmt.Fprintln(w, strings.Repeat("-", 118))
	fmt.Fprintf(w, format, "0 direct", IPTables, us(r.DirectIPTables.Median), us(r.DirectIPTables.P99), "-", "-", "-", "-",
		"connect() straight to a backend, no service")
	fmt.Fprintf(w, format, "", EBPF, us(r.DirectEBPF.Median), us(r.DirectEBPF.P99), "-", "-", "-", "-",
		"connect() straight to a backend, no service")
	for _, p := range r.Points {
		fmt.Fprintf(w, format, humanSize(p.Services), IPTables, us(p.IPTables.Median), us(p.IPTables.P99),
			us(p.IPTables.First), us(p.IPTables.Middle), us(p.IPTables.Last), loadString(p.IPTablesLoad),
			fmt.Sprintf("%d rules; %s", p.Rules, backendsString(p.IPTables.Backends)))
		fmt.Fprintf(w, format, "", EBPF, us(p.EBPF.Median), us(p.EBPF.P99),
			us(p.EBPF.First), us(p.EBPF.Middle), us(p.EBPF.Last), loadString(p.EBPFLoad),
			backendsString(p.EBPF.Backends))
		fmt.Fprintf(w, "%-9s %-9s %9s %9s %9s %9s %9s\n", "", "ratio",
			ratioString(p.IPTables.Median, p.EBPF.Median), ratioString(p.IPTables.P99, p.EBPF.P99),
			ratioString(p.IPTables.First, p.EBPF.First), ratioString(p.IPTables.Middle, p.EBPF.Middle),
			ratioString(p.IPTables.Last, p.EBPF.Last))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "curves (median connect() time; ratio iptables/eBPF):")
	for _, p := range r.Points {
		fmt.Fprintf(w, "  %-6s iptables %9s  eBPF %9s  ratio %s (p99 %s)\n", humanSize(p.Services),
			us(p.IPTables.Median), us(p.EBPF.Median), ratioString(p.IPTables.Median, p.EBPF.Median),
			ratioString(p.IPTables.P99, p.EBPF.P99))
	}
}

// loadString rounds a load time to three significant digits or so.
func loadString(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(100 * time.Microsecond).String()
	}
	return d.Round(10 * time.Millisecond).String()
}

func ratioString(a, b time.Duration) string { return fmt.Sprintf("%.2fx", Ratio(a, b)) }

func backendsString(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

func humanSize(n int) string {
	if n >= 1000 && n%1000 == 0 {
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}

// iptablesVersion returns `iptables --version` (e.g. "iptables v1.8.9
// (nf_tables)").
func iptablesVersion() (string, error) {
	out, err := exec.Command("iptables", "--version").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("run iptables --version: %w: %s (install Debian's iptables package)", err,
			strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}
