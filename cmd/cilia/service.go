package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ciliaproject/cilia/agent"
	"github.com/ciliaproject/cilia/agent/service"
	"github.com/ciliaproject/cilia/conformance/scenario"
	"github.com/ciliaproject/cilia/conformance/scenarioagent"
)

func newServiceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "service",
		Short: "Inspect services as the reference agent programs them",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newServiceListCmd())
	return cmd
}

func newServiceListCmd() *cobra.Command {
	var (
		scenarioPath, node, output string
		step, maglevSize           int
	)
	cmd := &cobra.Command{
		Use:   "list --scenario FILE [--step N] [--node NAME] [-o table|json]",
		Short: "List a scenario's service frontends, backends and Maglev shares",
		Long: `List builds a scenario's cluster with the reference agent on in-memory maps
(no kernel needed), reads one node's load-balancing maps back and prints every
frontend entry: its service, kind (ClusterIP, NodePort, ExternalIP,
LoadBalancerIP), address:port/protocol, scope (internal: traffic from pods and
nodes; external: traffic entering at the node's uplink) and flags (nodeport,
external, local = externalTrafficPolicy Local, affinity = sessionAffinity
ClientIP with its timeout, maglev, dsr). Under each frontend come its backend
slots: the backend's address:port, pod, node and state (active, or terminating:
used only when no active backend remains) and, for Maglev frontends, the share
of the Maglev table each backend holds (percent of M, and the entry count).
Any inconsistency found in the maps is printed as a problem.

Frontends of NodePort services exist for every node's addresses on every node;
external entries of externalTrafficPolicy Local services hold only the node's
own backends, so the output depends on --node (default: the first node).`,
		Example: `  cilia service list --scenario fixtures/scenarios/lb/maglev.yaml
  cilia service list --scenario fixtures/scenarios/lb/maglev.yaml --step 1 -o json
  cilia service list --scenario fixtures/scenarios/lb/etp-local.yaml --node node-2`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("service list: unknown output format %q (table or json)", output)
			}
			sc, err := scenario.Load(scenarioPath)
			if err != nil {
				return err
			}
			a, err := scenarioAgent(sc, step, agent.Options{MaglevSize: maglevSize})
			if err != nil {
				return fmt.Errorf("service list: %w", err)
			}
			if node == "" {
				node = sc.Cluster.Nodes[0].Name
			}
			fs, err := a.DescribeServices(node)
			if err != nil {
				return fmt.Errorf("service list: %w", err)
			}
			l := serviceList{Node: node, Step: step, MaglevSize: a.MaglevSize(), Frontends: fs}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(l)
			}
			return l.print(cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&scenarioPath, "scenario", "", "scenario file (required)")
	cmd.Flags().IntVar(&step, "step", 0, "list in the state step N probes (its mutations and every earlier step's applied)")
	cmd.Flags().StringVar(&node, "node", "", "the node whose maps to read (default: the scenario's first node)")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	cmd.Flags().IntVar(&maglevSize, "maglev-size", 0, "Maglev table size M, a prime <= 16381 (0: 16381)")
	cmd.MarkFlagRequired("scenario")
	return cmd
}

// scenarioAgent builds sc's cluster in a reference agent on in-memory
// datapaths, with every step up to step applied.
func scenarioAgent(sc *scenario.Scenario, step int, opts agent.Options) (*agent.Agent, error) {
	a := agent.NewWithOptions(opts)
	if err := scenarioagent.InMemoryAt(a, sc, step); err != nil {
		return nil, err
	}
	return a, nil
}

// serviceList is one node's frontends (the JSON output).
type serviceList struct {
	Node       string                   `json:"node"`
	Step       int                      `json:"step"`
	MaglevSize int                      `json:"maglevSize"`
	Frontends  []service.FrontendStatus `json:"frontends"`
}

func (l serviceList) print(w io.Writer) error {
	fmt.Fprintf(w, "Node %s, step %d: %d frontend entries (Maglev table size %d)\n", l.Node, l.Step, len(l.Frontends), l.MaglevSize)
	if len(l.Frontends) == 0 {
		fmt.Fprintln(w, "No services.")
		return nil
	}
	for _, f := range l.Frontends {
		name := f.Service
		if name == "" {
			name = "(unknown service)"
		}
		if f.Port != "" {
			name += " port " + f.Port
		}
		flags := make([]string, 0, len(f.Flags))
		for _, fl := range f.Flags {
			if fl == "affinity" {
				fl = fmt.Sprintf("affinity(%ds)", f.AffinityTimeout)
			}
			flags = append(flags, fl)
		}
		flagText := strings.Join(flags, ",")
		if flagText == "" {
			flagText = "-"
		}
		fmt.Fprintf(w, "\n%s/%s  %s  %s  scope=%s  flags=%s  rev-nat=%d\n", f.Address, f.Protocol, name, f.Kind, f.Scope, flagText, f.RevNatID)
		for _, p := range f.Problems {
			fmt.Fprintf(w, "  PROBLEM: %s\n", p)
		}
		if len(f.Backends) == 0 {
			fmt.Fprintln(w, "  no backends")
			continue
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		head := "  SLOT\tID\tBACKEND\tPOD\tNODE\tSTATE"
		if f.MaglevSize > 0 {
			head += "\tMAGLEV SHARE"
		}
		fmt.Fprintln(tw, head)
		for _, b := range f.Backends {
			state := "active"
			if b.Terminating {
				state = "terminating"
			}
			line := fmt.Sprintf("  %d\t%d\t%s\t%s\t%s\t%s", b.Slot, b.ID, b.Address, dash(b.Pod), dash(b.Node), state)
			if f.MaglevSize > 0 {
				line += fmt.Sprintf("\t%.2f%% (%d/%d)", b.MaglevShare, b.MaglevEntries, f.MaglevSize)
			}
			fmt.Fprintln(tw, line)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
