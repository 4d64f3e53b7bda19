package report

import (
	"bytes"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ciliaproject/cilia/conformance/features"
)

func allFeatures() features.Set {
	s := features.Set{}
	for _, p := range features.Profiles {
		for _, f := range p.Features {
			s[f] = struct{}{}
		}
	}
	return s
}

func without(s features.Set, fs ...features.Feature) features.Set {
	out := features.Set{}
	for f := range s {
		out[f] = struct{}{}
	}
	for _, f := range fs {
		delete(out, f)
	}
	return out
}

func pass(sc string, fs ...features.Feature) TestResult {
	return TestResult{Scenario: sc, Probe: "p-" + sc, Features: fs, Outcome: OutcomePassed}
}

func fail(sc, probe, msg string, fs ...features.Feature) TestResult {
	return TestResult{Scenario: sc, Probe: probe, Features: fs, Outcome: OutcomeFailed, Message: msg}
}

func skip(sc, probe string, fs ...features.Feature) TestResult {
	return TestResult{Scenario: sc, Probe: probe, Features: fs, Outcome: OutcomeSkipped, Message: "unsupported feature: x"}
}

// profile returns the named profile of r.
func profile(t *testing.T, r *Report, name string) ProfileReport {
	t.Helper()
	for _, p := range r.Profiles {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("no profile %q in report", name)
	return ProfileReport{}
}

func TestBuildResults(t *testing.T) {
	type want struct {
		result Result
		stats  Statistics
	}
	tests := []struct {
		name    string
		enabled features.Set
		results []TestResult
		// per profile name; profiles not listed must be Skipped with no
		// statistics.
		want    map[string]want
		summary want
	}{
		{
			name:    "all passed, everything supported",
			enabled: allFeatures(),
			results: []TestResult{pass("a", features.PolicyL3), pass("b", features.PolicyL4)},
			want:    map[string]want{"policy": {Success, Statistics{Passed: 2}}},
			summary: want{Success, Statistics{Passed: 2}},
		},
		{
			name:    "a failure fails the profile",
			enabled: allFeatures(),
			results: []TestResult{pass("a", features.PolicyL3), fail("b", "p", "verdict", features.PolicyL4)},
			want:    map[string]want{"policy": {Failure, Statistics{Passed: 1, Failed: 1}}},
			summary: want{Failure, Statistics{Passed: 1, Failed: 1}},
		},
		{
			name:    "skipped specs make it partial",
			enabled: without(allFeatures(), features.PolicySCTP),
			results: []TestResult{pass("a", features.PolicyL3), skip("b", "p", features.PolicySCTP)},
			want:    map[string]want{"policy": {Partial, Statistics{Passed: 1, Skipped: 1}}},
			summary: want{Partial, Statistics{Passed: 1, Skipped: 1}},
		},
		{
			name:    "an unsupported feature without specs still makes it partial",
			enabled: without(allFeatures(), features.PolicySCTP),
			results: []TestResult{pass("a", features.PolicyL3)},
			want:    map[string]want{"policy": {Partial, Statistics{Passed: 1}}},
			summary: want{Partial, Statistics{Passed: 1}},
		},
		{
			name:    "failure wins over skipped",
			enabled: without(allFeatures(), features.PolicySCTP),
			results: []TestResult{fail("a", "p", "x", features.PolicyL3), skip("b", "p", features.PolicySCTP)},
			want:    map[string]want{"policy": {Failure, Statistics{Failed: 1, Skipped: 1}}},
			summary: want{Failure, Statistics{Failed: 1, Skipped: 1}},
		},
		{
			name:    "only skipped specs: skipped",
			enabled: without(allFeatures(), features.LBDSR),
			results: []TestResult{skip("a", "p", features.LBDSR)},
			want:    map[string]want{"loadbalancing": {Skipped, Statistics{Skipped: 1}}},
			summary: want{Skipped, Statistics{Skipped: 1}},
		},
		{
			name:    "a spec with features of two profiles counts in both, once in the summary",
			enabled: allFeatures(),
			results: []TestResult{
				fail("a", "p", "x", features.PolicyL3, features.L7HTTP, features.PolicyL4),
				pass("b", features.LBClusterIP),
			},
			want: map[string]want{
				"policy":        {Failure, Statistics{Failed: 1}},
				"l7":            {Failure, Statistics{Failed: 1}},
				"loadbalancing": {Success, Statistics{Passed: 1}},
			},
			summary: want{Failure, Statistics{Passed: 1, Failed: 1}},
		},
		{
			name:    "no results at all",
			enabled: allFeatures(),
			want:    map[string]want{},
			summary: want{Skipped, Statistics{}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Build(Run{Enabled: tt.enabled, Results: tt.results, Date: time.Unix(0, 0)})
			if len(r.Profiles) != len(features.Profiles) {
				t.Fatalf("report has %d profiles, want all %d", len(r.Profiles), len(features.Profiles))
			}
			for i, p := range features.Profiles {
				if r.Profiles[i].Name != p.Name {
					t.Errorf("profile %d is %q, want %q (features.Profiles order)", i, r.Profiles[i].Name, p.Name)
				}
				got := r.Profiles[i]
				w, ok := tt.want[p.Name]
				if !ok {
					w = want{Skipped, Statistics{}}
				}
				if got.Result != w.result || got.Statistics != w.stats {
					t.Errorf("profile %s: got %s %+v, want %s %+v", p.Name, got.Result, got.Statistics, w.result, w.stats)
				}
			}
			if r.Summary.Result != tt.summary.result || r.Summary.Statistics != tt.summary.stats {
				t.Errorf("summary: got %s %+v, want %s %+v", r.Summary.Result, r.Summary.Statistics,
					tt.summary.result, tt.summary.stats)
			}
		})
	}
}

func TestBuildLists(t *testing.T) {
	enabled := without(allFeatures(), features.PolicySCTP, features.PolicyICMP)
	r := Build(Run{
		Implementation: Implementation{Name: "cilia", Version: "v1", Target: "testrun"},
		CiliaVersion:   "abc",
		Scenarios:      "/x/fixtures/scenarios",
		Date:           time.Date(2026, 5, 4, 3, 2, 1, 0, time.FixedZone("x", 3600)),
		Enabled:        enabled,
		Results: []TestResult{
			fail("zeta", "step 0: a -> b", "verdict: expected deny, observed allowed\nprobe: ...", features.PolicyL3),
			skip("beta", "step 1: a -> b", features.PolicySCTP),
			fail("alpha", "step 0: c -> d", "probe error: boom", features.PolicyL4),
			fail("alpha", "step 0: a -> b", "x", features.PolicyL4),
		},
	})
	if r.APIVersion != APIVersion || r.Kind != Kind {
		t.Errorf("apiVersion/kind = %s/%s", r.APIVersion, r.Kind)
	}
	if r.Date != "2026-05-04T02:02:01Z" {
		t.Errorf("date = %s, want UTC RFC 3339", r.Date)
	}
	p := profile(t, r, "policy")
	wantFailed := []Test{
		{Scenario: "alpha", Probe: "step 0: c -> d", Message: "probe error: boom"},
		{Scenario: "alpha", Probe: "step 0: a -> b", Message: "x"},
		{Scenario: "zeta", Probe: "step 0: a -> b", Message: "verdict: expected deny, observed allowed"},
	}
	if !reflect.DeepEqual(p.FailedTests, wantFailed) {
		t.Errorf("failedTests = %+v\nwant %+v", p.FailedTests, wantFailed)
	}
	wantSkipped := []Test{{Scenario: "beta", Probe: "step 1: a -> b", Message: "unsupported feature: x"}}
	if !reflect.DeepEqual(p.SkippedTests, wantSkipped) {
		t.Errorf("skippedTests = %+v, want %+v", p.SkippedTests, wantSkipped)
	}
	if want := []features.Feature{features.PolicyICMP, features.PolicySCTP}; !reflect.DeepEqual(p.UnsupportedFeatures, want) {
		t.Errorf("unsupportedFeatures = %v, want %v (profile order)", p.UnsupportedFeatures, want)
	}
	if len(p.SupportedFeatures)+len(p.UnsupportedFeatures) != len(features.Profiles[0].Features) {
		t.Errorf("supported %v + unsupported %v do not cover the profile", p.SupportedFeatures, p.UnsupportedFeatures)
	}
	if lb := profile(t, r, "loadbalancing"); len(lb.UnsupportedFeatures) != 0 || lb.FailedTests != nil {
		t.Errorf("loadbalancing = %+v, want every feature supported and no tests", lb)
	}
}

func TestWriteReadRoundTrip(t *testing.T) {
	r := Build(Run{
		Implementation: Implementation{Name: "cilia", Version: "v1", Target: "testrun"},
		CiliaVersion:   "abc",
		Scenarios:      "fixtures/scenarios",
		FeatureFilter:  "policy",
		Date:           time.Unix(1700000000, 0),
		Enabled:        features.NewSet(features.PolicyL3),
		Results:        []TestResult{fail("s", "p", "m", features.PolicyL3)},
	})
	path := filepath.Join(t.TempDir(), "sub", "conformance-report.yaml")
	if err := r.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	got, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, r) {
		t.Errorf("read back %+v\nwant %+v", got, r)
	}
	data, _ := r.Marshal()
	for _, want := range []string{
		"apiVersion: conformance.cilia.dev/v1alpha1\nkind: ConformanceReport\ndate: \"2023-11-14T22:13:20Z\"\n",
		"implementation:\n  name: cilia\n  version: v1\n  target: testrun\n",
		"ciliaVersion: abc\n",
		"featureFilter: policy\n",
		"profiles:\n  - name: policy\n    result: failure\n    statistics:\n      passed: 0\n      failed: 1\n      skipped: 0\n",
		"    failedTests:\n      - scenario: s\n        probe: p\n        message: m\n",
	} {
		if !strings.Contains(string(data), want) {
			t.Errorf("YAML lacks %q:\n%s", want, data)
		}
	}
}

func TestPrintSummary(t *testing.T) {
	r := Build(Run{
		Enabled: without(allFeatures(), features.PolicySCTP, features.L7HTTP, features.L7Kafka),
		Results: []TestResult{pass("a", features.PolicyL3), fail("b", "p", "m", features.PolicyL4)},
	})
	var b bytes.Buffer
	if err := r.PrintSummary(&b); err != nil {
		t.Fatal(err)
	}
	want := `PROFILE        RESULT   PASSED FAILED SKIPPED  UNSUPPORTED FEATURES
policy         failure       1      1       0  policy-sctp
loadbalancing  skipped       0      0       0  -
l7             skipped       0      0       0  all
robustness     skipped       0      0       0  -
observability  skipped       0      0       0  -
total          failure       1      1       0
`
	if b.String() != want {
		t.Errorf("summary:\n%s\nwant:\n%s", b.String(), want)
	}
}
