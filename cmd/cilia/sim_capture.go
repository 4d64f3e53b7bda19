package main

import (
	"fmt"
	"regexp"

	"github.com/spf13/cobra"

	"github.com/ciliaproject/cilia/conformance/scenario"
	"github.com/ciliaproject/cilia/sim/capture"
	"github.com/ciliaproject/cilia/sim/topology"
)

func newSimCaptureCmd() *cobra.Command {
	var at, out, mode, probes string
	cmd := &cobra.Command{
		Use:   "capture --scenario S --at pod:NS/NAME|node:NAME --out FILE.pcap",
		Short: "Run a scenario's probes as real traffic in a netns cluster and capture it with tcpdump",
		Long: `capture builds the scenario's cluster out of network namespaces with the
datapath attached to the real devices (the netns target), starts tcpdump
in one namespace, runs every probe of every step as a real socket
exchange, and stops tcpdump. The capture is real traffic as the datapath
handled it: replay it with cilia replay against the same scenario.

--at pod:NS/NAME captures on the pod's eth0 (Ethernet link type);
--at node:NAME captures on every device of the node (tcpdump -i any,
Linux cooked v2), VXLAN outer packets included.`,
		Example: `  cilia sim capture --scenario fixtures/pcaps/cross-node-port.yaml \
      --at pod:shop/client --out /tmp/cross-node-port.pcap
  cilia replay --scenario fixtures/pcaps/cross-node-port.yaml --pcap /tmp/cross-node-port.pcap`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			path, _ := cmd.Flags().GetString("scenario")
			sc, err := scenario.Load(path)
			if err != nil {
				return err
			}
			opts := capture.Options{At: at, Out: out, Mode: topology.Mode(mode), Log: cmd.ErrOrStderr()}
			if probes != "" {
				if opts.Probes, err = regexp.Compile(probes); err != nil {
					return fmt.Errorf("capture: --probes: %w", err)
				}
			}
			res, err := capture.Run(cmd.Context(), sc, opts)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "captured %d probes (%d allowed, %d denied) at %s into %s\n",
				res.Probes, res.Allowed, res.Denied, at, out)
			return nil
		},
	}
	cmd.Flags().String("scenario", "", "scenario file (required)")
	cmd.Flags().StringVar(&at, "at", "", "where to capture: pod:NS/NAME (its eth0) or node:NAME (-i any) (required)")
	cmd.Flags().StringVar(&out, "out", "", "pcap file to write (required)")
	cmd.Flags().StringVar(&mode, "mode", "tunnel", "routing between nodes: tunnel (VXLAN) or native")
	cmd.Flags().StringVar(&probes, "probes", "", "regexp over probe IDs: run only these")
	for _, f := range []string{"scenario", "at", "out"} {
		cmd.MarkFlagRequired(f)
	}
	return cmd
}
