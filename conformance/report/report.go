// Package report builds and writes conformance-report.yaml (DESIGN.md §8,
// docs/conformance.md): per profile, whether an implementation passed the
// scenarios that cover it, modelled on the Gateway API conformance report.
//
// The package knows nothing of Ginkgo: the suite turns each spec into a
// TestResult and Build does the rest, so the rules (result, statistics,
// profile attribution) are plain functions with plain tests.
package report

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ciliaproject/cilia/conformance/features"
)

// APIVersion is the apiVersion of a conformance report.
const APIVersion = "conformance.cilia.dev/v1alpha1"

// Kind is the kind of a conformance report.
const Kind = "ConformanceReport"

// Report is conformance-report.yaml.
type Report struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	// Date is when the run ended, RFC 3339.
	Date           string         `yaml:"date"`
	Implementation Implementation `yaml:"implementation"`
	// CiliaVersion is the version of the suite (scenarios and checks) the
	// report was made with, as Gateway API's gatewayAPIVersion.
	CiliaVersion string `yaml:"ciliaVersion"`
	// Scenarios is the folder the scenarios were loaded from.
	Scenarios string `yaml:"scenarios"`
	// FeatureFilter is the -features list the run was restricted to, ""
	// when it ran everything the target supports.
	FeatureFilter string `yaml:"featureFilter,omitempty"`
	// Summary covers every spec once, whatever its profiles.
	Summary Summary `yaml:"summary"`
	// Profiles are in features.Profiles order, every profile listed.
	Profiles []ProfileReport `yaml:"profiles"`
}

// Implementation names what was tested.
type Implementation struct {
	Name    string `yaml:"name"`
	Version string `yaml:"version"`
	// Target is the target selector the suite drove (e.g. "testrun").
	Target string `yaml:"target"`
}

// Summary is a result and its statistics.
type Summary struct {
	Result     Result     `yaml:"result"`
	Statistics Statistics `yaml:"statistics"`
}

// ProfileReport is the outcome of one profile.
type ProfileReport struct {
	Name    string `yaml:"name"`
	Summary `yaml:",inline"`
	// SupportedFeatures are the profile's features that were tested: the
	// target supports them and the -features filter (if any) kept them.
	SupportedFeatures []features.Feature `yaml:"supportedFeatures"`
	// UnsupportedFeatures are the profile's other features; specs needing
	// them were skipped.
	UnsupportedFeatures []features.Feature `yaml:"unsupportedFeatures"`
	FailedTests         []Test             `yaml:"failedTests,omitempty"`
	SkippedTests        []Test             `yaml:"skippedTests,omitempty"`
}

// Test names one spec (a probe of a scenario) in a report.
type Test struct {
	Scenario string `yaml:"scenario"`
	Probe    string `yaml:"probe"`
	// Message is the first line of the failure or skip message.
	Message string `yaml:"message,omitempty"`
}

// Result is the verdict on a profile or on the whole run.
type Result string

// Results.
const (
	// Success: specs ran, all passed, none was skipped and every feature
	// was supported.
	Success Result = "success"
	// Partial: every spec that ran passed, but some were skipped or some
	// features are unsupported.
	Partial Result = "partial"
	// Failure: at least one spec failed.
	Failure Result = "failure"
	// Skipped: no spec passed or failed (none covered the profile, or all
	// were skipped); nothing is claimed.
	Skipped Result = "skipped"
)

// Statistics counts specs.
type Statistics struct {
	Passed  int `yaml:"passed"`
	Failed  int `yaml:"failed"`
	Skipped int `yaml:"skipped"`
}

// Outcome is what happened to one spec.
type Outcome string

// Outcomes.
const (
	OutcomePassed  Outcome = "passed"
	OutcomeFailed  Outcome = "failed"
	OutcomeSkipped Outcome = "skipped"
)

// TestResult is one spec that ran (specs not selected by focus or label
// filters are not results at all).
type TestResult struct {
	Scenario string
	Probe    string
	// Features are the scenario's features and the probe's; the spec
	// counts in the profile of each.
	Features []features.Feature
	Outcome  Outcome
	// Message is the failure or skip message.
	Message string
}

// Run is everything Build needs.
type Run struct {
	Implementation Implementation
	CiliaVersion   string
	Scenarios      string
	FeatureFilter  string
	Date           time.Time
	// Enabled are the features tested: the target's, restricted by the
	// -features filter.
	Enabled features.Set
	Results []TestResult
}

// Build computes the report of run. Tests in FailedTests and SkippedTests
// are sorted by scenario, then in run order.
func Build(run Run) *Report {
	results := append([]TestResult(nil), run.Results...)
	sort.SliceStable(results, func(i, j int) bool { return results[i].Scenario < results[j].Scenario })

	r := &Report{
		APIVersion:     APIVersion,
		Kind:           Kind,
		Date:           run.Date.UTC().Format(time.RFC3339),
		Implementation: run.Implementation,
		CiliaVersion:   run.CiliaVersion,
		Scenarios:      run.Scenarios,
		FeatureFilter:  run.FeatureFilter,
	}
	var all Statistics
	for _, res := range results {
		all.add(res.Outcome)
	}
	var allFeatures []features.Feature
	for _, p := range features.Profiles {
		allFeatures = append(allFeatures, p.Features...)
	}
	r.Summary = Summary{Result: result(all, len(run.Enabled.Missing(allFeatures)) > 0), Statistics: all}

	for _, p := range features.Profiles {
		pr := ProfileReport{
			Name:                p.Name,
			SupportedFeatures:   []features.Feature{},
			UnsupportedFeatures: []features.Feature{},
		}
		for _, f := range p.Features {
			if run.Enabled.Has(f) {
				pr.SupportedFeatures = append(pr.SupportedFeatures, f)
			} else {
				pr.UnsupportedFeatures = append(pr.UnsupportedFeatures, f)
			}
		}
		for _, res := range results {
			if !inProfile(res.Features, p) {
				continue
			}
			pr.Statistics.add(res.Outcome)
			t := Test{Scenario: res.Scenario, Probe: res.Probe, Message: firstLine(res.Message)}
			switch res.Outcome {
			case OutcomeFailed:
				pr.FailedTests = append(pr.FailedTests, t)
			case OutcomeSkipped:
				pr.SkippedTests = append(pr.SkippedTests, t)
			}
		}
		pr.Result = result(pr.Statistics, len(pr.UnsupportedFeatures) > 0)
		r.Profiles = append(r.Profiles, pr)
	}
	return r
}

// result applies the rules documented on the Result constants.
func result(s Statistics, unsupported bool) Result {
	switch {
	case s.Failed > 0:
		return Failure
	case s.Passed == 0:
		return Skipped
	case s.Skipped > 0 || unsupported:
		return Partial
	default:
		return Success
	}
}

func (s *Statistics) add(o Outcome) {
	switch o {
	case OutcomePassed:
		s.Passed++
	case OutcomeFailed:
		s.Failed++
	case OutcomeSkipped:
		s.Skipped++
	}
}

// inProfile reports whether any of fs belongs to p.
func inProfile(fs []features.Feature, p features.Profile) bool {
	for _, f := range fs {
		for _, pf := range p.Features {
			if f == pf {
				return true
			}
		}
	}
	return false
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = strings.TrimSpace(s[:i])
	}
	return s
}

// Marshal returns the report as YAML.
func (r *Report) Marshal() ([]byte, error) {
	var b strings.Builder
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(r); err != nil {
		return nil, fmt.Errorf("marshal report: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("marshal report: %w", err)
	}
	return []byte(b.String()), nil
}

// WriteFile writes the report as YAML to path, creating its folder.
func (r *Report) WriteFile(path string) error {
	data, err := r.Marshal()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// ReadFile reads a report written by WriteFile.
func ReadFile(path string) (*Report, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read report: %w", err)
	}
	var r Report
	if err := yaml.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("read report %s: %w", path, err)
	}
	return &r, nil
}

// PrintSummary writes the short table printed at the end of a run: one
// row per profile and a total.
func (r *Report) PrintSummary(w io.Writer) error {
	const row = "%-14s %-8s %6s %6s %7s  %s\n"
	var b strings.Builder
	fmt.Fprintf(&b, row, "PROFILE", "RESULT", "PASSED", "FAILED", "SKIPPED", "UNSUPPORTED FEATURES")
	for _, p := range r.Profiles {
		unsupported := "-"
		switch {
		case len(p.UnsupportedFeatures) == 0:
		case len(p.SupportedFeatures) == 0:
			unsupported = "all"
		default:
			names := make([]string, len(p.UnsupportedFeatures))
			for i, f := range p.UnsupportedFeatures {
				names[i] = string(f)
			}
			unsupported = strings.Join(names, ",")
		}
		fmt.Fprintf(&b, row, p.Name, p.Result, itoa(p.Statistics.Passed), itoa(p.Statistics.Failed),
			itoa(p.Statistics.Skipped), unsupported)
	}
	s := r.Summary.Statistics
	fmt.Fprintf(&b, row, "total", r.Summary.Result, itoa(s.Passed), itoa(s.Failed), itoa(s.Skipped), "")
	_, err := io.WriteString(w, strings.ReplaceAll(b.String(), "  \n", "\n"))
	return err
}

func itoa(n int) string { return fmt.Sprint(n) }
