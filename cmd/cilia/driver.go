package main

import (
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/ciliaproject/cilia/conformance/driver"
	"github.com/ciliaproject/cilia/conformance/target"
	// The targets cilia driver can serve.
	_ "github.com/ciliaproject/cilia/conformance/target/testrun"
)

func newDriverCmd() *cobra.Command {
	var targetName string
	cmd := &cobra.Command{
		Use:   "driver [--target testrun]",
		Short: "Serve the reference agent over the driver protocol on stdin/stdout (docs/driver-protocol.md)",
		Long: `driver serves one conformance target over the driver protocol
(docs/driver-protocol.md): JSON-RPC 2.0 requests, one JSON object per line,
on stdin; one response per line on stdout; logs on stderr. It serves one
scenario (features, setup, step, probe..., close) and exits after "close"
or when stdin ends.

It is the reference implementation of the protocol and what the exec
target is tested with:

  make build
  make conformance TARGET="exec:$PWD/bin/cilia driver"

(the path must be absolute: make conformance runs from conformance/).
The default target, testrun, runs the reference agent and the real BPF
programs through BPF_PROG_TEST_RUN: it needs root (CAP_BPF, CAP_NET_ADMIN).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDriver(cmd, targetName)
		},
	}
	cmd.Flags().StringVar(&targetName, "target", "testrun", "the target to serve ("+strings.Join(driverTargets(), ", ")+")")
	return cmd
}

// driverTargets are the registered targets cilia driver can serve: all but
// exec (a driver serving a driver).
func driverTargets() []string {
	var out []string
	for _, n := range target.Names() {
		if n != "exec" {
			out = append(out, n)
		}
	}
	return out
}

func runDriver(cmd *cobra.Command, name string) error {
	if n, _, _ := strings.Cut(name, ":"); n == "exec" {
		return fmt.Errorf("driver: --target %s: cilia driver serves an implementation, not another driver", name)
	}
	t, err := target.New(name)
	if err != nil {
		return fmt.Errorf("driver: %w", err)
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return driver.ServeWith(ctx, t, os.Stdin, os.Stdout, driver.ServeOptions{
		Implementation: driver.Implementation{Name: "cilia (" + t.Name() + ")", Version: Version()},
	})
}
