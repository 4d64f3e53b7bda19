package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ciliaproject/cilia/conformance/features"
	"github.com/ciliaproject/cilia/conformance/scenario"
)

func newScenarioCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "scenario",
		Short: "Check conformance scenario files (docs/scenario-format.md)",
	}
	cmd.AddCommand(newScenarioValidateCmd(), newScenarioProbesCmd())
	return cmd
}

func newScenarioValidateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "validate FILE|DIR...",
		Short: "Validate scenario files, printing every problem",
		Long: `validate loads every scenario file given (directories are searched
recursively for *.yaml and *.yml) and prints each problem on a line of its
own as file:line:column: field.path: message. Scenario names must be
unique across all the files given. It exits non-zero if any problem is
found, and ends with a summary: scenarios, steps, probes and features.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runScenarioValidate(cmd.OutOrStdout(), args)
		},
	}
}

// runScenarioValidate validates the files and directories in args.
func runScenarioValidate(w io.Writer, args []string) error {
	files, err := scenarioFiles(args)
	if err != nil {
		return err
	}
	var loaded []*scenario.Scenario
	var problems []scenario.Problem
	bad := map[string]bool{}
	for _, f := range files {
		sc, err := scenario.Load(f)
		var ve *scenario.ValidationError
		switch {
		case errors.As(err, &ve):
			problems = append(problems, ve.Problems...)
			bad[f] = true
		case err != nil:
			return err
		default:
			loaded = append(loaded, sc)
		}
	}
	for _, p := range scenario.DuplicateNames(loaded) {
		problems = append(problems, p)
		bad[p.File] = true
	}
	for _, p := range problems {
		fmt.Fprintln(w, p)
	}
	printScenarioSummary(w, loaded)
	if len(problems) > 0 {
		return fmt.Errorf("%d problem(s) in %d of %d file(s)", len(problems), len(bad), len(files))
	}
	return nil
}

// scenarioFiles expands directories into the scenario files under them.
func scenarioFiles(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		st, err := os.Stat(a)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			out = append(out, a)
			continue
		}
		fs, err := scenario.Files(a)
		if err != nil {
			return nil, err
		}
		if len(fs) == 0 {
			return nil, fmt.Errorf("%s: no *.yaml or *.yml files", a)
		}
		out = append(out, fs...)
	}
	return out, nil
}

// printScenarioSummary prints the counts and features of valid scenarios.
func printScenarioSummary(w io.Writer, scs []*scenario.Scenario) {
	steps, probes := 0, 0
	feats := features.Set{}
	for _, sc := range scs {
		steps += len(sc.Steps)
		probes += len(sc.Probes())
		for _, f := range sc.RequiredFeatures() {
			feats[f] = struct{}{}
		}
	}
	var names []string
	for _, f := range feats.Sorted() {
		names = append(names, string(f))
	}
	fmt.Fprintf(w, "%d valid scenario(s), %d step(s), %d probe(s)\n", len(scs), steps, probes)
	if len(names) > 0 {
		fmt.Fprintf(w, "features: %s\n", strings.Join(names, ", "))
	}
}

func newScenarioProbesCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "probes FILE",
		Short: "Print a scenario's probes, matrices expanded",
		Long: `probes loads a scenario and prints every probe it runs, one per line, in
order: its ID (step, from, to, port, family, L7 request) and what it
expects. Matrices are expanded and named ports resolved.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sc, err := scenario.Load(args[0])
			if err != nil {
				return err
			}
			return printProbes(cmd.OutOrStdout(), sc)
		},
	}
}

// printProbes prints one probe per line: ID, then expectation.
func printProbes(w io.Writer, sc *scenario.Scenario) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	for _, p := range sc.Probes() {
		fmt.Fprintf(tw, "%s\t%s\n", p.ID, p.Expect)
	}
	return tw.Flush()
}
