// Package replay pushes every packet of a capture (pcap or pcapng; Ethernet,
// Linux cooked v1/v2 or raw IP) through a simulated cluster's datapath and
// reports, packet by packet, where it went and why it was dropped: Hubble
// flows as `hubble observe -o jsonpb` lines, or a readable table, and a
// summary with drops by reason and by policy rule and the top talkers.
//
// The cluster is behind the Simulator interface; package sim/cluster
// provides the real one.
package replay

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"time"

	"github.com/cilium/cilium/api/v1/flow"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/ciliaproject/cilia/datapath/dropreason"
	"github.com/ciliaproject/cilia/sim/walker"
)

// Simulator is what replay needs from a simulated cluster.
type Simulator interface {
	// EntryFor picks where frame enters: the source pod's from_container
	// when the source IP is a pod, else the uplink of the node that owns
	// the (outer) destination; an error when nothing in the cluster would
	// see the packet.
	EntryFor(frame []byte) (walker.Entry, error)
	// ParseEntry parses an --at value ("pod:ns/name", "node:NAME",
	// "host:NAME").
	ParseEntry(s string) (walker.Entry, error)
	// Walk walks one Ethernet frame from entry.
	Walk(entry walker.Entry, frame []byte) (*walker.Walk, error)
	// Flows converts a walk into Hubble flows (one per event, with pod and
	// node names filled), stamped with ts.
	Flows(w *walker.Walk, ts time.Time) []*flow.Flow
	// Rule describes the policy rule behind a rule id from an event
	// ("ns/name (file.yaml:12) ingress[0]"), "" if unknown.
	Rule(ruleID uint32) string
}

// Output formats.
const (
	FormatTable = "table"
	FormatJSON  = "json"
)

// Options tune Run.
type Options struct {
	// Format is FormatTable (the default when empty) or FormatJSON.
	Format string
	// At overrides the entry point of every packet ("" = EntryFor).
	At string
	// Write, when non-nil, receives a pcap (Ethernet link type) of the
	// packets as delivered (after NAT and encapsulation); dropped packets
	// are left out.
	Write io.Writer
	// Progress, when non-nil, shows a progress bar redrawn in place
	// (e.g. stderr on a terminal).
	Progress io.Writer
	// Limit stops after this many packets (0 = all).
	Limit int
	// Verbose prints every hop and its flows under each packet line
	// (table format).
	Verbose bool
	// AbsoluteTime prints wall-clock timestamps instead of the time since
	// the first packet (table format).
	AbsoluteTime bool
	// Log receives what must stay out of the JSON stream: the summary in
	// JSON format and notes about skipped packets. Nil: Progress.
	Log io.Writer
}

// Talker is a source and destination pair (pod name or IP address) and
// how many of its packets were replayed and dropped.
type Talker struct {
	Source, Destination string
	Packets, Dropped    int
}

// Summary counts the outcomes of a replay.
type Summary struct {
	// Packets is the number of records read, skipped ones included.
	Packets     int
	Delivered   int
	Dropped     int
	LeftCluster int
	ToProxy     int
	// Errors counts packets the simulator could not place or walk.
	Errors int
	// Skipped counts packets that were not walked (not IP or ARP);
	// SkippedByKind says what they were.
	Skipped       int
	SkippedByKind map[string]int
	// DropsByReason counts drops by drop reason name.
	DropsByReason map[string]int
	// DropsByRule counts drops by the rule that decided them.
	DropsByRule map[string]int
	// TopTalkers are the 10 source/destination pairs with most packets.
	TopTalkers []Talker
	// Elapsed is the wall time of the replay.
	Elapsed time.Duration
}

// Run reads a capture from r and replays every packet, writing flows to
// out as opts.Format says, then the summary (table format: a readable
// block after the packets; JSON format: to opts.Log, never into the JSON
// stream). A truncated or corrupt capture stops the replay with an error
// wrapping ErrCorrupt that names the packet index (1-based) and byte
// offset; everything before it has been written by then.
func Run(ctx context.Context, sim Simulator, r io.Reader, out io.Writer, opts Options) (Summary, error) {
	start := time.Now()
	if opts.Format == "" {
		opts.Format = FormatTable
	}
	if opts.Format != FormatTable && opts.Format != FormatJSON {
		return Summary{}, fmt.Errorf("replay: unknown output format %q (table or json)", opts.Format)
	}
	if opts.Log == nil {
		opts.Log = opts.Progress
	}
	rp := &replayer{
		sim: sim, opts: opts, out: bufio.NewWriterSize(out, 64<<10),
		rules: map[uint32]string{}, namer: newNamer(), talkers: map[[2]string]*Talker{},
		sum: Summary{SkippedByKind: map[string]int{}, DropsByReason: map[string]int{}, DropsByRule: map[string]int{}},
	}
	defer rp.out.Flush()
	if opts.At != "" {
		e, err := sim.ParseEntry(opts.At)
		if err != nil {
			return Summary{}, fmt.Errorf("replay: --at %q: %w", opts.At, err)
		}
		rp.at = &e
	}
	pr, err := newPacketReader(r)
	if err != nil {
		return Summary{}, err
	}
	if opts.Write != nil {
		rp.pw = pcapgo.NewWriter(opts.Write)
		if err := rp.pw.WriteFileHeader(262144, layers.LinkTypeEthernet); err != nil {
			return Summary{}, fmt.Errorf("write pcap header: %w", err)
		}
	}
	if opts.Format == FormatTable {
		rp.table = newStreamTable(rp.out, "TIME", "SOURCE", "DESTINATION", "PROTO", "VERDICT", "REASON", "RULE", "PATH")
	}
	if opts.Progress != nil {
		rp.bar = newProgress(opts.Progress, sizeOf(r))
		defer rp.bar.finish()
	}
	runErr := rp.loop(ctx, pr)
	if rp.table != nil {
		rp.table.flush()
	}
	rp.finishSummary(start)
	if rp.bar != nil {
		rp.bar.finish()
	}
	if opts.Format == FormatTable {
		writeSummary(rp.out, rp.sum)
	} else if opts.Log != nil {
		rp.out.Flush()
		writeSummary(opts.Log, rp.sum)
	}
	if err := rp.out.Flush(); err != nil && runErr == nil {
		runErr = fmt.Errorf("write output: %w", err)
	}
	return rp.sum, runErr
}

// replayer is the state of one Run.
type replayer struct {
	sim     Simulator
	opts    Options
	out     *bufio.Writer
	at      *walker.Entry
	pw      *pcapgo.Writer
	table   *streamTable
	bar     *progress
	first   time.Time
	rules   map[uint32]string
	namer   *namer
	talkers map[[2]string]*Talker
	sum     Summary
}

func (rp *replayer) loop(ctx context.Context, pr *packetReader) error {
	for rp.opts.Limit <= 0 || rp.sum.Packets < rp.opts.Limit {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("replay: stopped after %d packets: %w", rp.sum.Packets, err)
		}
		p, err := pr.next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		rp.sum.Packets++
		if rp.sum.Packets == 1 {
			rp.first = p.Time
		}
		if err := rp.one(p); err != nil {
			return err
		}
		if rp.bar != nil {
			rp.bar.update(rp.sum.Packets, pr.bytesRead())
		}
	}
	return nil
}

// one replays one packet and writes its result.
func (rp *replayer) one(p packet) error {
	if p.Skip != "" {
		rp.sum.Skipped++
		rp.sum.SkippedByKind[p.Skip]++
		if rp.table != nil {
			rp.table.row(nil, rp.timeCol(p.Time), "-", "-", "-", "SKIPPED", "-", "-", "not walked: "+p.Skip)
		}
		return nil
	}
	info := parseInfo(p.Frame)
	entry, err := rp.entry(p.Frame)
	var w *walker.Walk
	if err == nil {
		w, err = rp.sim.Walk(entry, p.Frame)
		if err == nil && w == nil {
			err = fmt.Errorf("walk from %s: the simulator returned no walk", entry)
		}
	}
	if err != nil {
		rp.sum.Errors++
		rp.talk(info.srcHost(nil), info.dstHost(nil), false)
		if rp.table != nil {
			rp.table.row(nil, rp.timeCol(p.Time), info.srcLabel(nil), info.dstLabel(nil), info.proto, "ERROR", "-", "-", "error: "+err.Error())
		} else if rp.opts.Log != nil {
			fmt.Fprintf(rp.opts.Log, "packet %d: %v\n", p.Index, err)
		}
		return nil
	}
	flows := rp.sim.Flows(w, p.Time)
	names := rp.namer.of(flows)
	verdict := rp.count(w)
	rp.talk(info.srcHost(names), info.dstHost(names), w.Outcome == walker.Dropped)
	if rp.pw != nil && w.Packet != nil && w.Outcome != walker.Dropped {
		ci := gopacket.CaptureInfo{Timestamp: p.Time, CaptureLength: len(w.Packet), Length: len(w.Packet)}
		if err := rp.pw.WritePacket(ci, w.Packet); err != nil {
			return fmt.Errorf("write packet %d to pcap: %w", p.Index, err)
		}
	}
	if rp.table == nil {
		for _, f := range flows {
			if err := writeJSONFlow(rp.out, f); err != nil {
				return fmt.Errorf("write flow of packet %d: %w", p.Index, err)
			}
		}
		return nil
	}
	reason, rule := "-", "-"
	if w.Outcome == walker.Dropped {
		reason = dropReason(w)
	}
	if id := decisiveRule(w); id != 0 || w.Drop != nil {
		if s := rp.rule(w, id); s != "" {
			rule = s
		}
	}
	var detail []string
	if rp.opts.Verbose {
		detail = verboseLines(w, flows)
	}
	rp.table.row(detail, rp.timeCol(p.Time), info.srcLabel(names), info.dstLabel(names)+finalDst(info, flows, names),
		info.proto, verdict, reason, rule, path(w))
	return nil
}

func (rp *replayer) entry(frame []byte) (walker.Entry, error) {
	if rp.at != nil {
		return *rp.at, nil
	}
	return rp.sim.EntryFor(frame)
}

// count adds a walk's outcome to the summary and returns its verdict.
func (rp *replayer) count(w *walker.Walk) string {
	switch w.Outcome {
	case walker.Delivered:
		rp.sum.Delivered++
		return "FORWARDED"
	case walker.Dropped:
		rp.sum.Dropped++
		rp.sum.DropsByReason[dropReason(w)]++
		if s := rp.rule(w, decisiveRule(w)); s != "" {
			rp.sum.DropsByRule[s]++
		}
		return "DROPPED"
	case walker.LeftCluster:
		rp.sum.LeftCluster++
		return "LEFT-CLUSTER"
	case walker.ToProxy:
		rp.sum.ToProxy++
		return "TO-PROXY"
	}
	rp.sum.Errors++
	return "UNKNOWN(" + string(w.Outcome) + ")"
}

// rule names the rule behind id (cached): the simulator's description,
// "rule N" when it has none, "default deny" for a policy drop no rule
// decided, "" otherwise.
func (rp *replayer) rule(w *walker.Walk, id uint32) string {
	if id == 0 {
		if w.Drop != nil && w.Drop.Reason == dropreason.PolicyDenied {
			return "default deny (no rule allows)"
		}
		return ""
	}
	s, ok := rp.rules[id]
	if !ok {
		s = rp.sim.Rule(id)
		if s == "" {
			s = fmt.Sprintf("rule %d", id)
		}
		rp.rules[id] = s
	}
	return s
}

func (rp *replayer) talk(src, dst string, dropped bool) {
	k := [2]string{src, dst}
	t := rp.talkers[k]
	if t == nil {
		t = &Talker{Source: src, Destination: dst}
		rp.talkers[k] = t
	}
	t.Packets++
	if dropped {
		t.Dropped++
	}
}

func (rp *replayer) timeCol(ts time.Time) string {
	if rp.opts.AbsoluteTime {
		return ts.UTC().Format("2006-01-02T15:04:05.000000Z")
	}
	return strconv.FormatFloat(ts.Sub(rp.first).Seconds(), 'f', 6, 64)
}

func (rp *replayer) finishSummary(start time.Time) {
	ts := make([]Talker, 0, len(rp.talkers))
	for _, t := range rp.talkers {
		ts = append(ts, *t)
	}
	sort.Slice(ts, func(i, j int) bool {
		if ts[i].Packets != ts[j].Packets {
			return ts[i].Packets > ts[j].Packets
		}
		if ts[i].Source != ts[j].Source {
			return ts[i].Source < ts[j].Source
		}
		return ts[i].Destination < ts[j].Destination
	})
	if len(ts) > 10 {
		ts = ts[:10]
	}
	rp.sum.TopTalkers = ts
	rp.sum.Elapsed = time.Since(start)
}

// dropReason names why a dropped walk was dropped.
func dropReason(w *walker.Walk) string {
	if w.Drop != nil {
		return w.Drop.Reason.String()
	}
	return "KERNEL_DROP"
}

// decisiveRule returns the rule id of the event that decided the walk: the
// drop event, else the last event that names a rule.
func decisiveRule(w *walker.Walk) uint32 {
	if w.Drop != nil {
		return w.Drop.RuleID
	}
	var id uint32
	for _, h := range w.Hops {
		for _, e := range h.Events {
			if e.RuleID != 0 {
				id = e.RuleID
			}
		}
	}
	return id
}

// sizeOf returns the size of r when it is a regular file, else 0.
func sizeOf(r io.Reader) int64 {
	f, ok := r.(interface{ Stat() (os.FileInfo, error) })
	if !ok {
		return 0
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return 0
	}
	return fi.Size()
}

// writeSummary writes the summary block.
func writeSummary(w io.Writer, s Summary) {
	rate := ""
	if s.Elapsed > 0 {
		rate = fmt.Sprintf(", %.0f packets/s", float64(s.Packets)/s.Elapsed.Seconds())
	}
	fmt.Fprintf(w, "\nSummary: %d packets in %s%s\n", s.Packets, s.Elapsed.Round(time.Millisecond), rate)
	fmt.Fprintf(w, "  delivered %d, dropped %d, left cluster %d, to proxy %d, errors %d, skipped %d\n",
		s.Delivered, s.Dropped, s.LeftCluster, s.ToProxy, s.Errors, s.Skipped)
	section := func(title string, m map[string]int) {
		if len(m) == 0 {
			return
		}
		fmt.Fprintf(w, "%s:\n", title)
		t := newStreamTable(w)
		for _, kv := range sortedCounts(m) {
			t.row(nil, "  "+kv.k, fmt.Sprint(kv.n))
		}
		t.flush()
	}
	section("Skipped (not walked)", s.SkippedByKind)
	section("Drops by reason", s.DropsByReason)
	section("Drops by rule", s.DropsByRule)
	if len(s.TopTalkers) > 0 {
		fmt.Fprintln(w, "Top talkers:")
		t := newStreamTable(w)
		for _, tk := range s.TopTalkers {
			t.row(nil, "  "+tk.Source, "→ "+tk.Destination, plural(tk.Packets, "packet"), fmt.Sprintf("%d dropped", tk.Dropped))
		}
		t.flush()
	}
}

type count struct {
	k string
	n int
}

func sortedCounts(m map[string]int) []count {
	out := make([]count, 0, len(m))
	for k, n := range m {
		out = append(out, count{k, n})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].n != out[j].n {
			return out[i].n > out[j].n
		}
		return out[i].k < out[j].k
	})
	return out
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
