package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/ciliaproject/cilia/sim/cluster"
	"github.com/ciliaproject/cilia/sim/replay"
)

// simulatorOptions mirror sim/cluster.SimulatorOptions.
type simulatorOptions struct {
	// Mode is "tunnel" or "native".
	Mode string
	// Step is the scenario step whose state is replayed against (every
	// step up to it applied); negative: the last step.
	Step int
}

// openSimulator builds the scenario's cluster (sim/cluster). It is a
// variable so tests can swap in a fake.
var openSimulator = func(ctx context.Context, path string, o simulatorOptions) (replay.Simulator, io.Closer, error) {
	return cluster.OpenSimulator(ctx, path, cluster.SimulatorOptions{Mode: o.Mode, Step: o.Step})
}

// replayFlags are the options of cilia replay.
type replayFlags struct {
	scenario, pcap, at, output, write, mode string
	step, limit                             int
	verbose, noProgress, progress, absTime  bool
}

func newReplayCmd() *cobra.Command {
	var f replayFlags
	cmd := &cobra.Command{
		Use:   "replay --scenario FILE --pcap CAPTURE",
		Short: "Replay a packet capture through a simulated cluster and show where each packet went",
		Long: `Replay builds the cluster of a scenario (nodes and pods in network namespaces,
the real datapath loaded, the scenario's policies applied) and pushes every
packet of a capture through it, hop by hop, the way the kernel would. For each
packet it tells where the packet went: delivered to a pod, dropped (with the
drop reason and the policy rule that decided), handed to the L7 proxy, or out
of the cluster.

The capture may be pcap or pcapng (gzipped or not), with link type Ethernet,
Linux cooked v1 or v2 ("tcpdump -i any") or raw IP; "-" reads standard input.
Packets that are not IP or ARP (LLDP, STP, ...) are skipped and counted.

Each packet enters where it would in the real cluster: at the source pod's
veth when its source address is a pod's, else at the uplink of the node that
owns its destination. --at enters every packet at the same place instead:
  pod:NAMESPACE/NAME   the pod sent it (its veth's from-container hook)
  node:NODE            it arrived on the node's uplink from the fabric
  host:NODE            the node's own stack sent it

Output (-o):
  table  one line per packet: time since the first packet (--absolute-time
         for wall-clock time), source and destination (pod or IP:port),
         protocol and TCP flags, verdict, drop reason, deciding rule, and the
         path through the cluster; -v adds every hop and its flows. A
         summary follows: outcomes, drops by reason and by rule, top talkers.
  json   one Hubble flow per line exactly as "hubble observe -o jsonpb"
         prints them, one flow per datapath event; pipe it into
         "hubble observe --input-file -" to filter. The summary goes to
         standard error.

A truncated or corrupt capture stops the replay with an error naming the
packet number and its byte offset in the file; everything before it is
printed, and the exit status is non-zero. A progress bar is drawn on standard
error when it is a terminal.`,
		Example: `  # Why are the packets of this capture dropped?
  cilia replay --scenario fixtures/scenarios/policy/demo-deathstar-l3-l4.yaml \
      --pcap fixtures/pcaps/deathstar-exhaust-port.pcap

  # Every hop, and the state after step 1 of the scenario
  cilia replay --scenario s.yaml --pcap cap.pcapng -v --step 1

  # A capture taken on node n2's uplink with tcpdump -i any, as Hubble JSON
  cilia replay --scenario s.yaml --pcap any.pcap --at node:n2 -o json | \
      hubble observe --input-file - --verdict DROPPED

  # Keep the packets as delivered (after NAT and VXLAN encapsulation)
  cilia replay --scenario s.yaml --pcap cap.pcap --write delivered.pcap --mode native`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runReplay(cmd, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.scenario, "scenario", "", "scenario file whose cluster replays the capture (required)")
	fl.StringVar(&f.pcap, "pcap", "", `capture file, pcap or pcapng ("-": standard input) (required)`)
	fl.StringVar(&f.at, "at", "", "enter every packet at pod:NS/NAME, node:NODE (uplink) or host:NODE (the node's stack)")
	fl.StringVarP(&f.output, "output", "o", replay.FormatTable, "output format: table or json (hubble observe -o jsonpb)")
	fl.BoolVarP(&f.verbose, "verbose", "v", false, "table: print every hop and its flows under each packet")
	fl.StringVar(&f.write, "write", "", "write the packets as delivered (after NAT and encapsulation) to this pcap file")
	fl.StringVar(&f.mode, "mode", "tunnel", "cluster networking: tunnel (VXLAN) or native (routed)")
	fl.IntVar(&f.step, "step", -1, "replay against the state of scenario step N (every step up to N applied; -1: the last)")
	fl.IntVar(&f.limit, "limit", 0, "stop after N packets (0: all)")
	fl.BoolVar(&f.noProgress, "no-progress", false, "never draw the progress bar")
	fl.BoolVar(&f.progress, "progress", false, "draw the progress bar even when standard error is not a terminal")
	fl.BoolVar(&f.absTime, "absolute-time", false, "table: print capture timestamps instead of the time since the first packet")
	for _, name := range []string{"scenario", "pcap"} {
		cmd.MarkFlagRequired(name)
	}
	return cmd
}

func runReplay(cmd *cobra.Command, f replayFlags) error {
	if f.output != replay.FormatTable && f.output != replay.FormatJSON {
		return fmt.Errorf("replay: -o %q: want table or json", f.output)
	}
	if f.mode != "tunnel" && f.mode != "native" {
		return fmt.Errorf("replay: --mode %q: want tunnel or native", f.mode)
	}
	if f.limit < 0 {
		return fmt.Errorf("replay: --limit %d: want 0 or more", f.limit)
	}
	if f.noProgress && f.progress {
		return errors.New("replay: --progress and --no-progress contradict each other")
	}
	// Open the capture first: a typo should not cost a cluster build.
	var in io.Reader = cmd.InOrStdin()
	if f.pcap != "-" {
		file, err := os.Open(f.pcap)
		if err != nil {
			return fmt.Errorf("replay: %w", err)
		}
		defer file.Close()
		in = file
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sim, closer, err := openSimulator(ctx, f.scenario, simulatorOptions{Mode: f.mode, Step: f.step})
	if err != nil {
		return fmt.Errorf("replay: build the cluster of %s: %w", f.scenario, err)
	}
	var closeOnce sync.Once
	var closeErr error
	teardown := func() error {
		closeOnce.Do(func() { closeErr = closer.Close() })
		return closeErr
	}
	defer teardown()
	stderr := cmd.ErrOrStderr()
	opts := replay.Options{Format: f.output, At: f.at, Limit: f.limit, Verbose: f.verbose, AbsoluteTime: f.absTime, Log: stderr}
	if f.progress || (!f.noProgress && isTerminal(stderr)) {
		opts.Progress = stderr
	}
	var out *os.File
	if f.write != "" {
		if out, err = os.Create(f.write); err != nil {
			return fmt.Errorf("replay: %w", err)
		}
		defer out.Close()
		opts.Write = out
	}
	_, err = replay.Run(ctx, sim, in, cmd.OutOrStdout(), opts)
	if out != nil {
		if cerr := out.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("replay: write %s: %w", f.write, cerr)
		}
	}
	if cerr := teardown(); cerr != nil && err == nil {
		err = fmt.Errorf("replay: tear down the cluster: %w", cerr)
	}
	return err
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
