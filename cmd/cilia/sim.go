package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/ciliaproject/cilia/sim/topology"
)

func newSimCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Manage the network namespaces of the packet simulator",
		Long: `sim groups the commands that manage the simulator's clusters: network
namespaces (a fabric, one per node, pod and external host) that the
simulator builds for a scenario.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newSimCleanCmd(), newSimCaptureCmd())
	return cmd
}

func newSimCleanCmd() *cobra.Command {
	var all, dryRun bool
	cmd := &cobra.Command{
		Use:   "clean [--all] [--dry-run]",
		Short: "Remove the network namespaces left behind by killed simulator runs",
		Long: `clean removes the network namespaces that simulator runs left behind.

Every run names its namespaces cilia-<pid>-<n>-<role> under /var/run/netns
and removes them when it ends, also when it fails: there is nothing to
clean after a run that ended normally. A run that was killed (SIGKILL, a
test binary stopped by its timeout, a crash) leaves its namespaces behind;
clean removes those of every run whose process is gone. With --all it also
removes those of runs still going, which breaks them.

It needs root (CAP_SYS_ADMIN, to unmount the namespaces).`,
		Example: `  cilia sim clean --dry-run   # list what would go
  sudo cilia sim clean`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runSimClean(cmd.OutOrStdout(), all, dryRun)
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "also remove the namespaces of runs whose process is still alive")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "only print what would be removed")
	return cmd
}

// runSimClean removes (or with dryRun lists) the netns of dead runs, or of
// all runs, and prints one line per netns.
func runSimClean(out io.Writer, all, dryRun bool) error {
	match := func(prefix string) bool {
		if all {
			return true
		}
		pid, ok := topology.PrefixPID(prefix)
		return ok && !processAlive(pid)
	}
	if dryRun {
		runs, err := topology.Runs()
		if err != nil {
			return fmt.Errorf("sim clean: %w", err)
		}
		var names []string
		for prefix, ns := range runs {
			if match(prefix) {
				names = append(names, ns...)
			}
		}
		slices.Sort(names)
		for _, n := range names {
			fmt.Fprintf(out, "would remove %s\n", topology.NetnsPath(n))
		}
		_, err = fmt.Fprintf(out, "%d network namespace(s) of %s would be removed\n", len(names), whichRuns(all))
		return err
	}
	removed, err := topology.Clean(match)
	for _, n := range removed {
		fmt.Fprintf(out, "removed %s\n", topology.NetnsPath(n))
	}
	fmt.Fprintf(out, "%d network namespace(s) of %s removed\n", len(removed), whichRuns(all))
	if err != nil {
		return fmt.Errorf("sim clean: %w", err)
	}
	return nil
}

// whichRuns names the runs clean looks at.
func whichRuns(all bool) string {
	if all {
		return "all runs"
	}
	return "dead runs"
}

// processAlive reports whether process pid exists (signal 0; EPERM means
// it exists but belongs to someone else) and is not a zombie: a killed run
// whose parent has not reaped it yet is dead.
func processAlive(pid int) bool {
	if err := unix.Kill(pid, 0); err != nil && !errors.Is(err, unix.EPERM) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return !errors.Is(err, fs.ErrNotExist)
	}
	// "pid (comm) state ...": comm may hold spaces and parentheses.
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z' && stat[i+2] != 'X'
	}
	return true
}
