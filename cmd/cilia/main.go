// Command cilia is the one CLI of the project: the reference agent, packet
// replay, policy tools, benchmarks and conformance helpers, one subcommand
// each. This file only assembles the root command; each subcommand lives in
// a file of its own.
package main

import (
	"os"

	"github.com/spf13/cobra"
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "cilia",
		Short: "Identity-based eBPF container networking: datapath, agent and conformance suite",
		Long: `cilia is a conformance and simulation suite for identity-based eBPF
container networking, with a reference agent and a real eBPF datapath.

Run "cilia help <command>" for the details of a command.`,
		SilenceUsage:  true,
		SilenceErrors: false,
	}
	root.AddCommand(newVersionCmd(), newBenchCmd(), newScenarioCmd(), newPolicyCmd(), newDriverCmd(), newReplayCmd())
	root.AddCommand(newSimCmd())
	root.AddCommand(newServiceCmd())
	return root
}

func main() {
	if err := newRootCmd().Execute(); err != nil {
		os.Exit(1)
	}
}
