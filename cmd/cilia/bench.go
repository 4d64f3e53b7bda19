package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/ciliaproject/cilia/datapath/bench"
	"github.com/ciliaproject/cilia/datapath/bench/kubeproxy"
)

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure the datapath and the control plane",
		Long: `Benchmarks of cilia, reported as tables next to the performance bars of
the design (docs/benchmarks.md describes every row and the method).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	cmd.AddCommand(newBenchDatapathCmd(), newBenchServicesCmd())
	return cmd
}

func newBenchDatapathCmd() *cobra.Command {
	var (
		quick bool
		check bool
		cpu   int
	)
	cmd := &cobra.Command{
		Use:   "datapath",
		Short: "Measure ns/packet of each datapath path with BPF_PROG_TEST_RUN",
		Long: `Measure the cost per packet of each path of the eBPF datapath (bpf/lxc.c)
with BPF_PROG_TEST_RUN, timed by the kernel, next to an empty tc program
(the harness floor): the conntrack fast path at both trace levels, a new
flow allowed by policy, a denied flow, the ipcache (1..100k prefixes) and
policy map (1..16k entries) scaling curves, and the service load-balancing
curves (a new connection's first packet and a pinned connection's packet
to a ClusterIP, 1..100k services; every run checked to be DNATed to a
backend). Prints the table and the performance bars (PASS/FAIL) on
stdout, progress on stderr.

Needs root (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON). Runs in well under two
minutes; --quick takes fewer, shorter batches. The numbers are measured,
not asserted: a failed bar exits 0 unless --check is given.`,
		Example: `  cilia bench datapath
  cilia bench datapath --quick
  cilia bench datapath --check   # exit 1 when a bar fails`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := bench.Default()
			if quick {
				opts = bench.Quick()
			}
			opts.CPU = cpu
			t, err := bench.Run(opts, cmd.ErrOrStderr())
			if err != nil {
				return fmt.Errorf("bench datapath: %w", err)
			}
			t.Print(cmd.OutOrStdout())
			if check && !t.Passed() {
				return errors.New("bench datapath: a performance bar failed")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&quick, "quick", false, "fewer and shorter batches (same rows and sizes)")
	cmd.Flags().BoolVar(&check, "check", false, "exit with status 1 when a performance bar fails")
	cmd.Flags().IntVar(&cpu, "cpu", -1, "CPU to measure on (-1: the last CPU the process may use)")
	return cmd
}

func newBenchServicesCmd() *cobra.Command {
	var (
		quick bool
		sizes []int
	)
	cmd := &cobra.Command{
		Use:   "services",
		Short: "Compare first-packet latency through kube-proxy's iptables rules and cilia's eBPF",
		Long: `Compare service load balancing with kube-proxy's approach, in the same run:
the same ClusterIP services (1k, 10k and 30k, two backends each) as
kube-proxy's iptables-mode rules (KUBE-SERVICES, KUBE-SVC-* with
statistic-mode-random, KUBE-SEP-* doing the DNAT; loaded with
iptables-restore) in the netns of one simulated node, and in cilia's eBPF
maps with its programs attached with tcx to the pods' veths on another.
Every sample is a real TCP connection from a client pod to a service
address, answered by a server on a backend pod; the time connect() takes
is the first-packet latency. The two datapaths take turns by blocks of
50 connections. Prints the median and p99 per size for both, the medians to
the first, middle and last service of the list, and the ratios
iptables/eBPF on stdout, progress on stderr.

Needs root and Debian's iptables package. Every netns and rule it makes
is removed before it exits.`,
		Example: `  cilia bench services
  cilia bench services --quick
  cilia bench services --sizes 1000,10000`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := kubeproxy.Default()
			if quick {
				opts = kubeproxy.Quick()
			}
			if len(sizes) > 0 {
				opts.Sizes = sizes
			}
			// Interrupted, the run stops between two connections and
			// removes what it made.
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			res, err := kubeproxy.Run(ctx, opts, cmd.ErrOrStderr())
			if err != nil {
				return fmt.Errorf("bench services: %w", err)
			}
			res.Print(cmd.OutOrStdout())
			return nil
		},
	}
	cmd.Flags().BoolVar(&quick, "quick", false, "fewer connections per size (same sizes)")
	cmd.Flags().IntSliceVar(&sizes, "sizes", nil, "numbers of services (default 1000,10000,30000; at most 65533)")
	return cmd
}
