// Package suite builds the Ginkgo spec tree of the conformance suite from
// scenario files (DESIGN.md §1–3, docs/conformance.md): one Ordered
// container per scenario, one spec per probe, named by the probe's ID and
// labelled with its features. It drives a target through each scenario,
// checks every observation against its expectation, prints the truth table
// of a step when one of its probes fails, and writes the conformance
// report at the end.
package suite

import (
	"flag"
	"io"
	"os"
	"runtime/debug"
	"time"
)

// Config is what a conformance run is told, normally by its flags.
type Config struct {
	// Target selects the implementation: a registered target name,
	// optionally with ":ARG" (see target.New). Empty: run nothing.
	Target string
	// Scenarios is the folder the scenario files are loaded from.
	Scenarios string
	// Features is a features.Parse list (features and profile names): the
	// run tests only these, intersected with what the target supports.
	// Empty: everything the target supports.
	Features string
	// Report is the path conformance-report.yaml is written to; empty
	// writes no report.
	Report string
	// ImplementationName and ImplementationVersion name what is tested, in
	// the report. The name defaults to the target's name.
	ImplementationName    string
	ImplementationVersion string
	// CiliaVersion is the suite's own version, in the report. It defaults
	// to the VCS revision the binary was built from, or "devel".
	CiliaVersion string
	// ProbeTimeout bounds each probe; 0 leaves it to the target.
	ProbeTimeout time.Duration
	// Out receives the lines printed before and after the run (the
	// features tested, the summary table); os.Stdout when nil.
	Out io.Writer
}

// RegisterFlags defines the suite's flags on fs, with c's current values as
// defaults, writing into c when fs is parsed.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Target, "target", c.Target,
		"target to run the scenarios against: testrun | model | netns | kube | exec:PATH (empty: run nothing)")
	fs.StringVar(&c.Scenarios, "scenarios", c.Scenarios, "folder of scenario files, searched recursively")
	fs.StringVar(&c.Features, "features", c.Features,
		"comma-separated features and profiles to test, intersected with the target's (empty: all the target supports)")
	fs.StringVar(&c.Report, "report", c.Report, "where to write conformance-report.yaml (empty: no report)")
	fs.StringVar(&c.ImplementationName, "implementation-name", c.ImplementationName,
		"implementation name for the report (default: the target's name)")
	fs.StringVar(&c.ImplementationVersion, "implementation-version", c.ImplementationVersion,
		"implementation version for the report")
	fs.StringVar(&c.CiliaVersion, "cilia-version", c.CiliaVersion,
		"version of the conformance suite for the report (default: the VCS revision, or devel)")
	fs.DurationVar(&c.ProbeTimeout, "probe-timeout", c.ProbeTimeout, "time limit of one probe (0: none)")
}

func (c *Config) out() io.Writer {
	if c.Out == nil {
		return os.Stdout
	}
	return c.Out
}

func (c *Config) ciliaVersion() string {
	if c.CiliaVersion != "" {
		return c.CiliaVersion
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			return v
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && s.Value != "" {
				return s.Value
			}
		}
	}
	return "devel"
}
