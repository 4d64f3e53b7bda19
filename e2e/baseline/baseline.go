// Package baseline checks a conformance run against a CNI that enforces no
// policy: every probe that expects allow must pass and every probe that
// expects deny must fail, nothing else. That is what the suite should say
// about a non-conformant implementation, and e2e/reports/baseline-ptp.yaml
// is the run that shows it on a real cluster.
package baseline

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"

	"github.com/onsi/ginkgo/v2/types"

	"github.com/ciliaproject/cilia/conformance/scenario"
)

// Result counts a run's specs by expectation and outcome.
type Result struct {
	AllowPassed, AllowFailed int
	DenyPassed, DenyFailed   int
	Skipped                  int
	// Unknown are specs that match no probe of the scenarios.
	Unknown []string
	// Mismatches name the specs that broke the rule: an allow that failed,
	// or a deny that passed.
	Mismatches []string
}

// OK reports whether every allow passed and every deny failed.
func (r Result) OK() bool {
	return r.AllowFailed == 0 && r.DenyPassed == 0 && len(r.Unknown) == 0
}

// String summarises the result.
func (r Result) String() string {
	return fmt.Sprintf("expected allow: %d passed, %d failed; expected deny: %d failed, %d passed; %d skipped",
		r.AllowPassed, r.AllowFailed, r.DenyFailed, r.DenyPassed, r.Skipped)
}

// Check reads a Ginkgo JSON report of the suite (make conformance writes
// one) and the scenarios it ran, and sorts every spec by the expectation of
// its probe.
func Check(reportFile, scenariosDir string) (Result, error) {
	var res Result
	data, err := os.ReadFile(reportFile)
	if err != nil {
		return res, fmt.Errorf("read report: %w", err)
	}
	var reports []types.Report
	if err := json.Unmarshal(data, &reports); err != nil {
		return res, fmt.Errorf("parse report %s: %w", reportFile, err)
	}
	scs, err := scenario.LoadDir(scenariosDir)
	if err != nil {
		return res, err
	}
	expect := map[[2]string]scenario.Verdict{}
	for _, sc := range scs {
		for _, st := range sc.Steps {
			for _, p := range st.Probes {
				expect[[2]string{sc.Metadata.Name, p.ID}] = p.Expect.Verdict
			}
		}
	}
	for _, r := range reports {
		for _, s := range r.SpecReports {
			if s.LeafNodeType != types.NodeTypeIt {
				continue
			}
			name := ""
			if len(s.ContainerHierarchyTexts) > 0 {
				name = s.ContainerHierarchyTexts[0]
			}
			v, ok := expect[[2]string{name, s.LeafNodeText}]
			spec := name + " " + s.LeafNodeText
			switch {
			case !ok:
				res.Unknown = append(res.Unknown, spec)
			case s.State == types.SpecStateSkipped:
				res.Skipped++
			case v == scenario.Deny && s.State == types.SpecStatePassed:
				res.DenyPassed++
				res.Mismatches = append(res.Mismatches, "deny passed: "+spec)
			case v == scenario.Deny:
				res.DenyFailed++
			case s.State == types.SpecStatePassed:
				res.AllowPassed++
			default:
				res.AllowFailed++
				res.Mismatches = append(res.Mismatches, "allow failed: "+spec+": "+s.Failure.Message)
			}
		}
	}
	sort.Strings(res.Mismatches)
	sort.Strings(res.Unknown)
	return res, nil
}
