package suite_test

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/onsi/ginkgo/v2/types"
	"go.yaml.in/yaml/v3"

	"github.com/ciliaproject/cilia/conformance/features"
	"github.com/ciliaproject/cilia/conformance/report"
	"github.com/ciliaproject/cilia/conformance/scenario"
	"github.com/ciliaproject/cilia/conformance/suite"
	"github.com/ciliaproject/cilia/conformance/target/faketarget"
)

// The end-to-end tests run the suite the way make conformance does, against
// the fake target over testdata/scenarios: this test binary re-executes
// itself with childEnv set, and then TestMain runs the Ginkgo suite (which
// can run once per process) with the flags it was given, instead of the
// tests.
const childEnv = "CILIA_SUITE_E2E_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		var cfg suite.Config
		cfg.RegisterFlags(flag.CommandLine)
		flag.Parse()
		os.Exit(runChild(cfg))
	}
	os.Exit(m.Run())
}

// childT is the GinkgoTestingT of the child: it only records failure.
type childT struct{ failed bool }

func (c *childT) Fail() { c.failed = true }

func runChild(cfg suite.Config) int {
	t := &childT{}
	ok, err := suite.Run(t, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if !ok || t.failed {
		return 1
	}
	return 0
}

// childRun is what one run of the suite produced.
type childRun struct {
	out    string
	exit   int
	report *report.Report
	specs  []types.SpecReport // the It specs Ginkgo ran or skipped
	junit  junitSuites
}

type junitSuites struct {
	Suites []struct {
		Cases []struct {
			Name    string    `xml:"name,attr"`
			Failure *struct{} `xml:"failure"`
			Skipped *struct{} `xml:"skipped"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// runSuite runs the suite against the fake target configured by fake.
func runSuite(t *testing.T, fake faketarget.Config, extra ...string) childRun {
	t.Helper()
	dir := t.TempDir()
	cfgData, err := yaml.Marshal(fake)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "fake.yaml")
	if err := os.WriteFile(cfgPath, cfgData, 0o644); err != nil {
		t.Fatal(err)
	}
	reportPath := filepath.Join(dir, "conformance-report.yaml")
	jsonPath := filepath.Join(dir, "ginkgo.json")
	junitPath := filepath.Join(dir, "junit.xml")
	args := append([]string{
		"-target=fake:" + cfgPath,
		"-scenarios=testdata/scenarios",
		"-report=" + reportPath,
		"-implementation-name=fake",
		"-implementation-version=v0.0.1",
		"-cilia-version=test",
		"-ginkgo.no-color",
		"-ginkgo.json-report=" + jsonPath,
		"-ginkgo.junit-report=" + junitPath,
	}, extra...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	out, err := cmd.CombinedOutput()
	run := childRun{out: string(out)}
	var exitErr *exec.ExitError
	switch {
	case errors.As(err, &exitErr):
		run.exit = exitErr.ExitCode()
	case err != nil:
		t.Fatalf("run suite: %v\n%s", err, out)
	}
	if run.exit == 2 {
		t.Fatalf("suite did not start:\n%s", out)
	}
	if run.report, err = report.ReadFile(reportPath); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	data, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatalf("read Ginkgo JSON report: %v\n%s", err, out)
	}
	var reports []types.Report
	if err := json.Unmarshal(data, &reports); err != nil {
		t.Fatalf("parse Ginkgo JSON report: %v", err)
	}
	for _, r := range reports {
		for _, s := range r.SpecReports {
			if s.LeafNodeType == types.NodeTypeIt {
				run.specs = append(run.specs, s)
			}
		}
	}
	data, err = os.ReadFile(junitPath)
	if err != nil {
		t.Fatalf("read JUnit report: %v", err)
	}
	if err := xml.Unmarshal(data, &run.junit); err != nil {
		t.Fatalf("parse JUnit report: %v", err)
	}
	return run
}

// probeID finds the ID of the probe of scenario name, step, from, to and
// port in testdata, so that the tests do not depend on how IDs are spelled.
func probeID(t *testing.T, name string, step int, from, to string, port uint16, fam scenario.Family) string {
	t.Helper()
	scs, err := scenario.LoadDir("testdata/scenarios")
	if err != nil {
		t.Fatal(err)
	}
	for _, sc := range scs {
		if sc.Metadata.Name != name {
			continue
		}
		for _, p := range sc.Steps[step].Probes {
			if p.From.Name == from && p.To.Name == to && p.Port == port && p.Family == fam {
				return p.ID
			}
		}
	}
	t.Fatalf("no probe %s -> %s %d %s in step %d of %s", from, to, port, fam, step, name)
	return ""
}

// probeSteps maps the probe IDs of scenario name in testdata to their step.
func probeSteps(t *testing.T, name string) map[string]int {
	t.Helper()
	scs, err := scenario.LoadDir("testdata/scenarios")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]int{}
	for _, sc := range scs {
		if sc.Metadata.Name == name {
			for i, st := range sc.Steps {
				for _, p := range st.Probes {
					m[p.ID] = i
				}
			}
		}
	}
	return m
}

// outcomes maps "scenario / probe" to the spec state and failure message.
func outcomes(specs []types.SpecReport) map[string]string {
	m := map[string]string{}
	for _, s := range specs {
		v := s.State.String()
		if s.Failure.Message != "" {
			v += ": " + strings.SplitN(s.Failure.Message, "\n", 2)[0]
		}
		m[s.ContainerHierarchyTexts[0]+" / "+s.LeafNodeText] = v
	}
	return m
}

var fakeFeatures = []features.Feature{
	features.PolicyKNP, features.PolicyL3, features.PolicyL4, features.LBClusterIP, features.DropReasons,
}

func TestEndToEnd(t *testing.T) {
	wrong := probeID(t, "e2e-l4-steps", 1, "y/c", "x/b", 80, scenario.IPv4)
	v6 := probeID(t, "e2e-l4-steps", 1, "x/a", "x/b", 80, scenario.IPv6)
	sctp := probeID(t, "e2e-sctp", 0, "x/a", "x/b", 5000, scenario.IPv4)
	run := runSuite(t, faketarget.Config{
		Features:  fakeFeatures,
		Overrides: []faketarget.Override{{Scenario: "e2e-l4-steps", Probe: wrong, Verdict: "allowed"}},
	})
	if run.exit != 1 {
		t.Errorf("suite exited %d, want 1 (a probe failed)\n%s", run.exit, run.out)
	}

	t.Run("specs", func(t *testing.T) {
		got := outcomes(run.specs)
		if len(got) != 9 {
			t.Errorf("%d specs, want 9: %v", len(got), got)
		}
		want := map[string]string{
			"e2e-l4-steps / " + wrong: "failed: verdict: expected deny, observed allowed",
			"e2e-l4-steps / " + v6:    "skipped: unsupported feature: ipv6",
			"e2e-sctp / " + sctp:      "skipped: unsupported feature: policy-sctp",
		}
		for k, v := range got {
			w, ok := want[k]
			if !ok {
				w = "passed"
			}
			if v != w {
				t.Errorf("%s: %s, want %s", k, v, w)
			}
		}
	})

	t.Run("truth table", func(t *testing.T) {
		var table string
		for _, s := range run.specs {
			for _, e := range s.ReportEntries {
				if e.Name == suite.EntryTruthTable {
					if s.LeafNodeText != wrong {
						t.Errorf("truth table attached to %q, want only %q", s.LeafNodeText, wrong)
					}
					table = e.StringRepresentation()
				}
			}
		}
		if table == "" {
			t.Fatalf("no truth table attached to the failing spec")
		}
		for _, l := range strings.Split(table, "\n") {
			if !strings.Contains(run.out, l) {
				t.Errorf("truth table line %q not printed:\n%s", l, run.out)
			}
		}
		marks := cellMarks(t, table, "diff")
		for cell, m := range marks {
			want := "."
			switch cell {
			case "y/c x/b:80/TCP":
				want = "!"
			case "x/a x/b:80/TCP/ipv6":
				want = "-"
			}
			if m != want {
				t.Errorf("diff cell %s = %q, want %q\n%s", cell, m, want, table)
			}
		}
		if len(marks) != 5 {
			t.Errorf("diff has %d cells, want the 5 probes of step 1:\n%s", len(marks), table)
		}
		if m := cellMarks(t, table, "expected")["y/c x/b:80/TCP"]; m != "X" {
			t.Errorf("expected cell = %q, want X", m)
		}
		if m := cellMarks(t, table, "observed")["y/c x/b:80/TCP"]; m != "." {
			t.Errorf("observed cell = %q, want .", m)
		}
	})

	t.Run("failure output", func(t *testing.T) {
		for _, want := range []string{
			"verdict: expected deny, observed allowed",
			"probe:    " + wrong + " (testdata/scenarios/l4-steps.yaml:",
			"expected: deny, dropReason POLICY_DENIED",
			"observed: allowed, dropReason POLICY_DENIED, source seen 10.0.0.3",
			"flows reported by the target (1):",
			"  FORWARDED y/c 10.0.0.3:40000 -> x/b 10.0.0.2:80 TCP SYN to-endpoint ingress fake",
		} {
			if !strings.Contains(run.out, want) {
				t.Errorf("output lacks %q", want)
			}
		}
		if t.Failed() {
			t.Logf("output:\n%s", run.out)
		}
	})

	t.Run("report", func(t *testing.T) {
		r := run.report
		if r.Implementation != (report.Implementation{Name: "fake", Version: "v0.0.1", Target: run.report.Implementation.Target}) ||
			!strings.HasPrefix(r.Implementation.Target, "fake:") || r.CiliaVersion != "test" {
			t.Errorf("implementation = %+v, ciliaVersion %q", r.Implementation, r.CiliaVersion)
		}
		if r.Summary.Result != report.Failure || r.Summary.Statistics != (report.Statistics{Passed: 6, Failed: 1, Skipped: 2}) {
			t.Errorf("summary = %+v", r.Summary)
		}
		policy, lb, obs := r.Profiles[0], r.Profiles[1], r.Profiles[4]
		if policy.Name != "policy" || policy.Result != report.Failure ||
			policy.Statistics != (report.Statistics{Passed: 5, Failed: 1, Skipped: 2}) {
			t.Errorf("policy = %s %s %+v", policy.Name, policy.Result, policy.Statistics)
		}
		wantFailed := []report.Test{{Scenario: "e2e-l4-steps", Probe: wrong, Message: "verdict: expected deny, observed allowed"}}
		if !reflect.DeepEqual(policy.FailedTests, wantFailed) {
			t.Errorf("policy failedTests = %+v, want %+v", policy.FailedTests, wantFailed)
		}
		wantSkipped := []report.Test{
			{Scenario: "e2e-l4-steps", Probe: v6, Message: "unsupported feature: ipv6"},
			{Scenario: "e2e-sctp", Probe: sctp, Message: "unsupported feature: policy-sctp"},
		}
		if !reflect.DeepEqual(policy.SkippedTests, wantSkipped) {
			t.Errorf("policy skippedTests = %+v, want %+v", policy.SkippedTests, wantSkipped)
		}
		if want := []features.Feature{features.PolicyKNP, features.PolicyL3, features.PolicyL4}; !reflect.DeepEqual(policy.SupportedFeatures, want) {
			t.Errorf("policy supportedFeatures = %v, want %v", policy.SupportedFeatures, want)
		}
		if lb.Name != "loadbalancing" || lb.Result != report.Partial || lb.Statistics != (report.Statistics{Passed: 1}) {
			t.Errorf("loadbalancing = %s %s %+v", lb.Name, lb.Result, lb.Statistics)
		}
		if obs.Name != "observability" || obs.Result != report.Skipped {
			t.Errorf("observability = %s %s, want skipped (no spec)", obs.Name, obs.Result)
		}
		if !strings.Contains(run.out, "PROFILE        RESULT") || !strings.Contains(run.out, "total          failure       6      1       2") {
			t.Errorf("summary table not printed:\n%s", run.out)
		}
	})

	t.Run("junit", func(t *testing.T) {
		var names []string
		failures := 0
		for _, s := range run.junit.Suites {
			for _, c := range s.Cases {
				if c.Failure != nil {
					failures++
					names = append(names, c.Name)
				}
			}
		}
		want := "[It] e2e-l4-steps " + wrong + " [policy-knp, policy-l4]"
		if failures != 1 || names[0] != want {
			t.Errorf("JUnit failures %q, want [%q]", names, want)
		}
	})
}

// cellMarks reads the table named name ("expected", "observed", "diff") of
// a rendered truth table into "row column" -> mark.
func cellMarks(t *testing.T, table, name string) map[string]string {
	t.Helper()
	lines := strings.Split(table, "\n")
	start := -1
	for i, l := range lines {
		if strings.HasPrefix(l, name+" (") {
			start = i + 1
		}
	}
	if start < 0 || start >= len(lines) {
		t.Fatalf("no %s table in\n%s", name, table)
	}
	header := lines[start]
	// Column labels contain no double space; find where each starts.
	type col struct {
		label      string
		start, end int
	}
	var cols []col
	for i := 0; i < len(header); {
		if header[i] == ' ' {
			i++
			continue
		}
		j := strings.Index(header[i:], "  ")
		if j < 0 {
			j = len(header) - i
		}
		cols = append(cols, col{header[i : i+j], i, i + j})
		i += j
	}
	marks := map[string]string{}
	for _, l := range lines[start+1:] {
		if l == "" {
			break
		}
		row := l[:strings.IndexByte(l, ' ')]
		for _, c := range cols {
			if c.start >= len(l) {
				continue
			}
			if m := strings.TrimSpace(l[c.start:min(c.end, len(l))]); m != "" {
				marks[row+" "+c.label] = m
			}
		}
	}
	return marks
}

func TestEndToEndTargetErrors(t *testing.T) {
	probeErr := probeID(t, "e2e-l4-steps", 0, "x/a", "x/b", 80, scenario.IPv4)
	run := runSuite(t, faketarget.Config{
		Features:  fakeFeatures,
		FailSetup: []string{"e2e-clusterip"},
		FailSteps: []faketarget.StepRef{{Scenario: "e2e-l4-steps", Step: 1}},
		Overrides: []faketarget.Override{{Scenario: "e2e-l4-steps", Probe: probeErr, Error: "cannot reach x/b"}},
	})
	if run.exit != 1 {
		t.Errorf("suite exited %d, want 1\n%s", run.exit, run.out)
	}
	v6 := probeID(t, "e2e-l4-steps", 1, "x/a", "x/b", 80, scenario.IPv6)
	steps := probeSteps(t, "e2e-l4-steps")
	for k, v := range outcomes(run.specs) {
		sc, id, _ := strings.Cut(k, " / ")
		var want string
		switch {
		case sc == "e2e-clusterip":
			want = "failed: scenario e2e-clusterip could not be set up on target fake:"
		case sc == "e2e-sctp" || id == v6:
			want = "skipped: unsupported feature"
		case id == probeErr:
			want = "failed: probe error: the target could not run the probe: cannot reach x/b"
		case steps[id] == 1:
			want = "failed: step 1 of scenario e2e-l4-steps: apply step 1"
		default:
			want = "passed"
		}
		if !strings.HasPrefix(v, want) {
			t.Errorf("%s: %s, want %s…", k, v, want)
		}
	}
	if s := run.report.Summary.Statistics; s != (report.Statistics{Passed: 1, Failed: 6, Skipped: 2}) {
		t.Errorf("statistics = %+v, want 1 passed, 6 failed, 2 skipped", s)
	}
}

// TestEndToEndTargetUnsupported: a probe the target reports as
// target.ErrUnsupported is skipped as unsupported, not failed.
func TestEndToEndTargetUnsupported(t *testing.T) {
	unsupported := probeID(t, "e2e-l4-steps", 0, "x/a", "x/b", 80, scenario.IPv4)
	run := runSuite(t, faketarget.Config{
		Features:  fakeFeatures,
		Overrides: []faketarget.Override{{Scenario: "e2e-l4-steps", Probe: unsupported, Unsupported: true}},
	})
	if run.exit != 0 {
		t.Errorf("suite exited %d, want 0 (nothing failed)\n%s", run.exit, run.out)
	}
	got := outcomes(run.specs)[fmt.Sprintf("e2e-l4-steps / %s", unsupported)]
	if want := "skipped: unsupported by the target here"; !strings.HasPrefix(got, want) {
		t.Errorf("%s: %s, want %s…", unsupported, got, want)
	}
}

func TestEndToEndFocus(t *testing.T) {
	focus := probeID(t, "e2e-l4-steps", 1, "x/a", "x/b", 81, scenario.IPv4)
	run := runSuite(t, faketarget.Config{Features: fakeFeatures}, "-ginkgo.focus="+focus, "-features=policy-l4,policy-knp")
	if run.exit != 0 {
		t.Errorf("suite exited %d, want 0\n%s", run.exit, run.out)
	}
	r := run.report
	if r.Summary.Statistics != (report.Statistics{Passed: 1}) || r.Summary.Result != report.Partial {
		t.Errorf("summary = %+v, want only the focused spec, passed (partial: features filtered)", r.Summary)
	}
	if r.FeatureFilter != "policy-l4,policy-knp" {
		t.Errorf("featureFilter = %q", r.FeatureFilter)
	}
	if want := []features.Feature{features.PolicyKNP, features.PolicyL4}; !reflect.DeepEqual(r.Profiles[0].SupportedFeatures, want) {
		t.Errorf("policy supportedFeatures = %v, want %v", r.Profiles[0].SupportedFeatures, want)
	}
}
