package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ciliaproject/cilia/datapath/bench"
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
	cmd.AddCommand(newBenchDatapathCmd())
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
flow allowed by policy, a denied flow, and the ipcache (1..100k prefixes)
and policy map (1..16k entries) scaling curves. Prints the table and the
performance bars (PASS/FAIL) on stdout, progress on stderr.

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
