package conformance_test

import (
	"flag"
	"testing"

	"github.com/ciliaproject/cilia/conformance/suite"
	// Targets register themselves; each one linked in here is selectable
	// with -target.
	_ "github.com/ciliaproject/cilia/conformance/target/exec"
	_ "github.com/ciliaproject/cilia/conformance/target/kube"
	_ "github.com/ciliaproject/cilia/conformance/target/model"
	_ "github.com/ciliaproject/cilia/conformance/target/netns"
	_ "github.com/ciliaproject/cilia/conformance/target/testrun"
)

// cfg holds the suite's flags. The defaults are relative to this package's
// folder, where go test runs the binary; make conformance passes absolute
// paths.
var cfg = suite.Config{
	Scenarios: "../fixtures/scenarios",
	Report:    "../conformance-report.yaml",
}

func init() { cfg.RegisterFlags(flag.CommandLine) }

// TestConformance runs the scenarios against -target. Without -target (as
// make test runs it) it only checks that the scenarios load and plan.
func TestConformance(t *testing.T) {
	if cfg.Target == "" {
		scenarios, probes, err := suite.Validate(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("no -target given: %d scenarios with %d probes in %s load and plan; nothing run (make conformance runs them)",
			scenarios, probes, cfg.Scenarios)
		return
	}
	if _, err := suite.Run(t, cfg); err != nil {
		t.Fatal(err)
	}
}
