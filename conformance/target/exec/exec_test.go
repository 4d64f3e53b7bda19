package exec

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ciliaproject/cilia/conformance/driver"
	"github.com/ciliaproject/cilia/conformance/scenario"
	"github.com/ciliaproject/cilia/conformance/target"
)

// fakeCommand is the command line of the fake driver in mode.
func fakeCommand(mode string) string { return os.Args[0] + " fake-driver " + mode }

// runScenario drives a target through testdata/two-steps.yaml as the
// suite does (setup; per step: step when it has mutations, then its
// probes; close) and returns every error, in order, as "call: error". A
// failed setup or step ends the run, as in the suite.
func runScenario(t *testing.T, sel string) (errs []string, obs []target.Observation) {
	t.Helper()
	sc, err := scenario.Load("testdata/two-steps.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tg, err := target.New(sel)
	if err != nil {
		return []string{err.Error()}, nil
	}
	ctx := context.Background()
	defer func() {
		if err := tg.Close(); err != nil {
			errs = append(errs, err.Error())
		}
	}()
	if err := tg.Setup(ctx, sc); err != nil {
		return []string{err.Error()}, nil
	}
	for _, st := range sc.Steps {
		if st.Index > 0 {
			if err := tg.Step(ctx, st); err != nil {
				return append(errs, err.Error()), obs
			}
		}
		for _, p := range st.Probes {
			o, err := tg.Probe(ctx, p)
			if err != nil {
				errs = append(errs, err.Error())
				continue
			}
			obs = append(obs, o)
		}
	}
	return errs, obs
}

func TestFakeDrivers(t *testing.T) {
	Quiet = true
	defer func() { Quiet = false }()
	sc, err := scenario.Load("testdata/two-steps.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p0, p1 := sc.Steps[0].Probes[0].ID, sc.Steps[0].Probes[1].ID
	crashed := "driver exited (status 2) without answering; last stderr lines:\n    fake driver: about to crash\n    panic: boom"
	for _, tc := range []struct {
		mode    string
		timeout string
		// want are the errors, "%s" standing for the command line.
		want []string
		// prefix: compare only the start of each error (the rest quotes
		// the driver's line).
		prefix bool
		// seed the features cache: the driver's fault would fail the
		// features session already.
		seed bool
	}{
		{mode: "ok"},
		{mode: "crash-on-features", want: []string{"exec target %s: features: " + crashed}},
		{mode: "badversion-on-features", want: []string{"exec target %s: features: driver speaks protocol version 2.0, this suite speaks 1.0"}},
		{mode: "crash-on-setup", want: []string{`exec target %s: setup "exec-two-steps": ` + crashed}},
		{mode: "crash-on-probe", want: []string{
			`exec target %s: probe "` + p0 + `": ` + crashed,
			`exec target %s: probe "` + p1 + `": not sent, the driver failed earlier: ` + crashed,
			`exec target %s: step 1: not sent, the driver failed earlier: ` + crashed,
		}},
		{mode: "hang-on-probe", timeout: "300ms", want: []string{
			`exec target %s: probe "` + p0 + `": no answer within 300ms (the time limit per call, CILIA_EXEC_TIMEOUT); the driver was killed; it wrote nothing to stderr`,
			`exec target %s: probe "` + p1 + `": not sent, the driver failed earlier: no answer within 300ms (the time limit per call, CILIA_EXEC_TIMEOUT); the driver was killed; it wrote nothing to stderr`,
			`exec target %s: step 1: not sent, the driver failed earlier: no answer within 300ms (the time limit per call, CILIA_EXEC_TIMEOUT); the driver was killed; it wrote nothing to stderr`,
		}},
		{mode: "hang-on-step", timeout: "300ms", want: []string{
			`exec target %s: step 1: no answer within 300ms (the time limit per call, CILIA_EXEC_TIMEOUT); the driver was killed; it wrote nothing to stderr`,
		}},
		{mode: "garbage-on-probe", want: []string{
			`exec target %s: probe "` + p0 + `": driver answered garbage, not a JSON object (invalid character 'h' in literal true (expecting 'r')): "this is not json"`,
			`exec target %s: probe "` + p1 + `": not sent, the driver failed earlier: driver answered garbage, not a JSON object (invalid character 'h' in literal true (expecting 'r')): "this is not json"`,
			`exec target %s: step 1: not sent, the driver failed earlier: driver answered garbage, not a JSON object (invalid character 'h' in literal true (expecting 'r')): "this is not json"`,
		}},
		{mode: "wrongid-on-probe", prefix: true, want: []string{
			`exec target %s: probe "` + p0 + `": driver answered id 43, want 2: "{\"id\":43,`,
			`exec target %s: probe "` + p1 + `": not sent, the driver failed earlier: driver answered id 43, want 2: `,
			`exec target %s: step 1: not sent, the driver failed earlier: driver answered id 43, want 2: `,
		}},
		{mode: "error-on-probe", want: []string{
			`exec target %s: probe "` + p0 + `": driver error -32004 (probe failed): no route from x/a to x/b`,
			`exec target %s: probe "` + p1 + `": driver error -32004 (probe failed): no route from x/a to x/b`,
			`exec target %s: probe "` + sc.Steps[1].Probes[0].ID + `": driver error -32004 (probe failed): no route from x/a to x/b`,
		}},
		{mode: "noverdict-on-probe", want: []string{
			`exec target %s: probe "` + p0 + `": driver answered a malformed result: observation has no verdict`,
			`exec target %s: probe "` + p1 + `": driver answered a malformed result: observation has no verdict`,
			`exec target %s: probe "` + sc.Steps[1].Probes[0].ID + `": driver answered a malformed result: observation has no verdict`,
		}},
		{mode: "noresult-on-step", want: []string{
			`exec target %s: step 1: driver answered with neither result nor error: "{\"id\":4,\"jsonrpc\":\"2.0\"}"`,
		}},
		{mode: "exit0-on-close", seed: true, want: []string{
			`exec target %s: close: driver exited (status 0) without answering; it wrote nothing to stderr`,
		}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			if tc.timeout != "" {
				t.Setenv(TimeoutEnv, tc.timeout)
			}
			cmd := fakeCommand(tc.mode)
			if tc.seed {
				cache.Store(cmd, driver.FeaturesResult{ProtocolVersion: driver.ProtocolVersion, Features: []string{"policy-knp"}})
			}
			start := time.Now()
			errs, obs := runScenario(t, "exec:"+cmd)
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %s, want < 2s", d)
			}
			var want []string
			for _, w := range tc.want {
				want = append(want, fmt.Sprintf(w, cmd))
			}
			if tc.prefix && len(errs) == len(want) {
				for i := range errs {
					if strings.HasPrefix(errs[i], want[i]) {
						errs[i] = want[i]
					}
				}
			}
			if !reflect.DeepEqual(errs, want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(errs, "\n"), strings.Join(want, "\n"))
			}
			if tc.mode == "ok" {
				if len(obs) != 3 {
					t.Fatalf("%d observations, want 3", len(obs))
				}
				o := obs[0]
				if o.Verdict != target.Denied || o.DropReason != "POLICY_DENIED" || len(o.Flows) != 1 ||
					o.Flows[0].GetSource().GetPodName() != "a" || o.Flows[0].GetDropReasonDesc().String() != "POLICY_DENIED" {
					t.Errorf("observation %+v", o)
				}
			}
		})
	}
}

func TestFeaturesCached(t *testing.T) {
	tg, err := New(fakeCommand("ok"))
	if err != nil {
		t.Fatal(err)
	}
	if got := tg.Features().Sorted(); fmt.Sprint(got) != "[drop-reasons policy-knp policy-l4]" {
		t.Errorf("features %v", got)
	}
	if info := tg.Info(); info.Name != "fake" || info.Version != "0.0.1" {
		t.Errorf("info %+v", info)
	}
	// A second target for the same command does not start the driver:
	// this one would crash on features.
	cache.Store(fakeCommand("crash-on-features-cached"), tg.info)
	if _, err := New(fakeCommand("crash-on-features-cached")); err != nil {
		t.Errorf("cached features: %v", err)
	}
}

func TestBadSelectors(t *testing.T) {
	for _, tc := range []struct{ sel, env, want string }{
		{sel: "exec:", want: "exec target: no driver command: use TARGET=exec:COMMAND (e.g. exec:bin/cilia driver)"},
		{sel: "exec:/nonexistent/driver", want: `exec target /nonexistent/driver: features: start driver: fork/exec /nonexistent/driver: no such file or directory`},
		{sel: "exec:" + fakeCommand("ok"), env: "soon", want: `exec target ` + fakeCommand("ok") + `: CILIA_EXEC_TIMEOUT="soon": want a positive Go duration such as 90s or 5m`},
	} {
		t.Run(tc.sel, func(t *testing.T) {
			t.Setenv(TimeoutEnv, tc.env)
			_, err := target.New(tc.sel)
			if err == nil || err.Error() != tc.want {
				t.Errorf("error %v, want %s", err, tc.want)
			}
		})
	}
}

// TestContextDeadline: a probe whose context ends (the suite's
// -probe-timeout) kills a hung driver and says why.
func TestContextDeadline(t *testing.T) {
	Quiet = true
	defer func() { Quiet = false }()
	sc, err := scenario.Load("testdata/two-steps.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cmd := fakeCommand("hang-on-probe")
	tg, err := New(cmd)
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	if err := tg.Setup(context.Background(), sc); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	p := sc.Steps[0].Probes[0]
	_, err = tg.Probe(ctx, p)
	want := `exec target ` + cmd + `: probe "` + p.ID + `": no answer before the context ended (context deadline exceeded); the driver was killed; it wrote nothing to stderr`
	if err == nil || err.Error() != want {
		t.Errorf("error %v\nwant %s", err, want)
	}
	if err := tg.Close(); err != nil {
		t.Errorf("close after a killed driver: %v", err)
	}
}
