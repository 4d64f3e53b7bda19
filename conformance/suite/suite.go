package suite

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/ginkgo/v2/types"

	"github.com/ciliaproject/cilia/conformance/features"
	"github.com/ciliaproject/cilia/conformance/report"
	"github.com/ciliaproject/cilia/conformance/scenario"
	"github.com/ciliaproject/cilia/conformance/target"
)

// Names of the report entries the suite attaches to specs.
const (
	// EntryUnsupported is attached to a spec skipped for unsupported
	// features; its value lists them.
	EntryUnsupported = "unsupported"
	// EntryTruthTable is attached to a failing spec; its value is the
	// truth table of the probe's step.
	EntryTruthTable = "truth table"
)

// Run loads cfg.Scenarios, builds the spec tree against cfg.Target and runs
// it with Ginkgo (whose own -ginkgo.* flags apply: focus, label filters,
// JUnit and JSON reports). It returns whether every spec passed, and an
// error when the run could not start (bad flags, invalid scenarios, unknown
// target). Call it once per process, from a Go test.
func Run(t ginkgo.GinkgoTestingT, cfg Config) (bool, error) {
	if cfg.Target == "" {
		return false, errors.New("run conformance: no -target given")
	}
	scs, err := scenario.LoadDir(cfg.Scenarios)
	if err != nil {
		return false, fmt.Errorf("run conformance: %w", err)
	}
	if len(scs) == 0 {
		return false, fmt.Errorf("run conformance: no scenario files in %s", cfg.Scenarios)
	}
	tgt, err := target.New(cfg.Target)
	if err != nil {
		return false, fmt.Errorf("run conformance: %w", err)
	}
	name, supported := tgt.Name(), tgt.Features()
	if err := tgt.Close(); err != nil {
		return false, fmt.Errorf("run conformance: close target %s after asking its features: %w", cfg.Target, err)
	}
	p, err := newPlan(cfg, scs, name, supported)
	if err != nil {
		return false, err
	}
	p.printHeader()
	p.define()
	ginkgo.ReportAfterSuite("conformance report", p.reportAfterSuite)
	return ginkgo.RunSpecs(t, "cilia conformance ("+cfg.Target+")"), nil
}

// Validate loads cfg.Scenarios and plans a run as if the target supported
// every feature, without running anything: what `go test ./conformance/`
// does without -target. It returns the number of scenarios and probes.
func Validate(cfg Config) (scenarios, probes int, err error) {
	scs, err := scenario.LoadDir(cfg.Scenarios)
	if err != nil {
		return 0, 0, fmt.Errorf("validate scenarios: %w", err)
	}
	all := features.Set{}
	for _, pr := range features.Profiles {
		for _, f := range pr.Features {
			all[f] = struct{}{}
		}
	}
	p, err := newPlan(cfg, scs, "", all)
	if err != nil {
		return 0, 0, err
	}
	return len(p.scenarios), p.probes(), nil
}

func (p *plan) printHeader() {
	w := p.cfg.out()
	fmt.Fprintf(w, "cilia conformance: target %s (%s), %d scenarios, %d probes from %s\n",
		p.cfg.Target, p.targetName, len(p.scenarios), p.probes(), p.cfg.Scenarios)
	fmt.Fprintf(w, "  tested features:   %s\n", featureList(p.enabled.Sorted()))
	var untested []features.Feature
	for _, pr := range features.Profiles {
		untested = append(untested, p.enabled.Missing(pr.Features)...)
	}
	fmt.Fprintf(w, "  untested features: %s (their probes are skipped as unsupported)\n", featureList(untested))
	if p.cfg.Features != "" {
		fmt.Fprintf(w, "  -features filter:  %s\n", p.cfg.Features)
	}
}

// define adds the specs to Ginkgo's tree: one Ordered container per
// scenario, one It per probe in step order.
func (p *plan) define() {
	for _, sp := range p.scenarios {
		run := &scenarioRun{plan: p, sp: sp, steps: make([]stepRun, len(sp.steps))}
		sc := sp.sc
		args := []any{ginkgo.Ordered, ginkgo.ContinueOnFailure, types.CodeLocation{FileName: sc.File, LineNumber: 1}}
		if ls := labels(sc.Metadata.Features); len(ls) > 0 {
			args = append(args, ginkgo.Label(ls...))
		}
		args = append(args, func() {
			ginkgo.BeforeAll(run.setup)
			for _, st := range sp.steps {
				for _, pp := range st {
					itArgs := []any{types.CodeLocation{FileName: sc.File, LineNumber: pp.probe.Line}}
					if ls := labels(pp.probe.Features); len(ls) > 0 {
						itArgs = append(itArgs, ginkgo.Label(ls...))
					}
					itArgs = append(itArgs, func(ctx ginkgo.SpecContext) { run.check(ctx, pp) })
					ginkgo.It(pp.probe.ID, itArgs...)
				}
			}
		})
		ginkgo.Describe(sc.Metadata.Name, args...)
	}
}

func labels(fs []features.Feature) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = string(f)
	}
	return out
}

// scenarioRun is the state of one scenario while its specs run. Specs run
// one at a time, in order, so it needs no lock.
type scenarioRun struct {
	plan     *plan
	sp       *scenarioPlan
	tgt      target.Target
	setupErr error
	// observed is the number of steps whose probes have run.
	observed int
	steps    []stepRun
	// named are the backends that served the named probes run so far
	// ("" when the probe observed none), for sameBackendAs.
	named map[string]string
}

type stepRun struct {
	// err is why the step's probes did not run (its mutations failed, or
	// an earlier step's did).
	err     error
	results []probeResult
	// firstFailure is the ID of the first failing probe of the step.
	firstFailure string
}

type probeResult struct {
	obs   target.Observation
	err   error
	wrong []string
	// ran is false for probes skipped as unsupported.
	ran bool
	// backends are the backends of every repetition, in order.
	backends []string
}

// setup constructs the scenario's target and sets the scenario up. It
// never fails the BeforeAll itself (that would skip every spec): each spec
// fails with the error instead.
func (r *scenarioRun) setup(ctx ginkgo.SpecContext) {
	if !r.sp.runnable() {
		return
	}
	var tgt target.Target
	if err := safely("target.New", func() (err error) {
		tgt, err = target.New(r.plan.cfg.Target)
		return err
	}); err != nil {
		r.setupErr = err
		return
	}
	r.tgt = tgt
	ginkgo.DeferCleanup(func() {
		if err := safely("Close", tgt.Close); err != nil {
			msg := fmt.Sprintf("scenario %s: close target: %v", r.sp.sc.Metadata.Name, err)
			fmt.Fprintln(ginkgo.GinkgoWriter, "warning: "+msg)
			r.plan.warnings = append(r.plan.warnings, msg)
		}
	})
	if err := safely("Setup", func() error { return tgt.Setup(ctx, r.sp.sc) }); err != nil {
		r.setupErr = err
	}
}

// observe runs the steps up to and including k that have not run yet:
// their mutations, then all their tested probes, so that a step's truth
// table is complete when its first spec asserts. Earlier steps run even
// when their specs are not selected (focus): later steps build on them.
func (r *scenarioRun) observe(ctx context.Context, k int) {
	for ; r.observed <= k; r.observed++ {
		j := r.observed
		st := &r.steps[j]
		step := r.sp.sc.Steps[j]
		st.results = make([]probeResult, len(r.sp.steps[j]))
		if j > 0 && r.steps[j-1].err != nil {
			st.err = r.steps[j-1].err
			if nr := (*notRunError)(nil); !errors.As(st.err, &nr) {
				st.err = &notRunError{cause: st.err}
			}
			continue
		}
		if j > 0 || hasMutations(step) {
			if err := safely("Step", func() error { return r.tgt.Step(ctx, step) }); err != nil {
				st.err = &stepFailedError{step: j, file: r.sp.sc.File, line: step.Line, err: err}
				continue
			}
		}
		for i, pp := range r.sp.steps[j] {
			if len(pp.missing) > 0 {
				continue
			}
			res := r.runProbe(ctx, pp)
			st.results[i] = res
		}
	}
}

// runProbe makes a probe's connections (Repeat of them) and checks each
// observation, then the expectations that relate them: sameBackend,
// distinctBackends, sameBackendAs. The result carries the first
// observation, or the first that failed.
func (r *scenarioRun) runProbe(ctx context.Context, pp *probePlan) probeResult {
	p := pp.probe
	n := max(p.Repeat, 1)
	var (
		res      probeResult
		backends []string
	)
	res.ran = true
	for k := 0; k < n; k++ {
		pctx, cancel := ctx, context.CancelFunc(func() {})
		if r.plan.cfg.ProbeTimeout > 0 {
			pctx, cancel = context.WithTimeout(ctx, r.plan.cfg.ProbeTimeout)
		}
		var obs target.Observation
		err := safely("Probe", func() (err error) {
			obs, err = r.tgt.Probe(pctx, p)
			return err
		})
		cancel()
		if err != nil {
			if n > 1 {
				err = fmt.Errorf("repetition %d of %d: %w", k+1, n, err)
			}
			res.obs, res.err = obs, err
			return res
		}
		wrong := Check(p.Expect, obs, r.plan.enabled.Has(features.DropReasons), pp.addrs)
		if len(wrong) > 0 && len(res.wrong) == 0 {
			res.obs = obs
			for _, w := range wrong {
				if n > 1 {
					w = fmt.Sprintf("repetition %d of %d: %s", k+1, n, w)
				}
				res.wrong = append(res.wrong, w)
			}
		}
		if k == 0 && len(res.wrong) == 0 {
			res.obs = obs
		}
		backends = append(backends, obs.Backend)
	}
	res.backends = backends
	res.wrong = append(res.wrong, r.checkRelations(p, backends)...)
	if p.Name != "" {
		if r.named == nil {
			r.named = map[string]string{}
		}
		r.named[p.Name] = backends[0]
	}
	return res
}

// checkRelations checks the expectations that relate observations
// (CheckRelations) against the named probes run so far.
func (r *scenarioRun) checkRelations(p scenario.Probe, backends []string) []string {
	return CheckRelations(p, backends, r.named, func(pod string) bool { return r.podExists(p.Step, pod) })
}

// CheckRelations checks the expectations that relate observations and
// returns one line per mismatch: sameBackend and distinctBackends across
// the backends of a probe's repetitions, and sameBackendAs against
// named, the backends the named probes run so far reported ("" for
// none). A sameBackendAs whose earlier backend no longer exists (exists
// says) holds whatever the backend: the connection had to move.
func CheckRelations(p scenario.Probe, backends []string, named map[string]string, exists func(pod string) bool) []string {
	var wrong []string
	distinct := map[string]bool{}
	for _, b := range backends {
		if b != "" {
			distinct[b] = true
		}
	}
	if p.Expect.SameBackend && (len(distinct) != 1 || slices.Contains(backends, "")) {
		wrong = append(wrong, fmt.Sprintf("sameBackend: the %d repetitions were served by %s", len(backends), countBackends(backends)))
	}
	if k := p.Expect.DistinctBackends; k > 0 && len(distinct) < k {
		wrong = append(wrong, fmt.Sprintf("distinctBackends: expected at least %d backends over %d repetitions, observed %s",
			k, len(backends), countBackends(backends)))
	}
	if name := p.Expect.SameBackendAs; name != "" {
		before, ran := named[name]
		switch {
		case !ran:
			wrong = append(wrong, fmt.Sprintf("sameBackendAs: probe %q did not run", name))
		case before == "":
			wrong = append(wrong, fmt.Sprintf("sameBackendAs: probe %q observed no backend", name))
		case !exists(before):
			// The backend went away: the connection may go anywhere.
		default:
			for k, b := range backends {
				if b != before {
					wrong = append(wrong, fmt.Sprintf("sameBackendAs: expected %s (the backend of probe %q), repetition %d observed %s",
						before, name, k+1, orNone(b)))
					break
				}
			}
		}
	}
	return wrong
}

// podExists reports whether pod key exists at step k of the scenario.
func (r *scenarioRun) podExists(k int, key string) bool {
	if r.sp == nil {
		return true
	}
	_, ok := r.sp.sc.StateAt(k).Pod(key)
	return ok
}

// countBackends describes backends as "a (3), b (2)", "none" for probes
// that observed no backend.
func countBackends(backends []string) string {
	counts := map[string]int{}
	var order []string
	for _, b := range backends {
		b = orNone(b)
		if counts[b] == 0 {
			order = append(order, b)
		}
		counts[b]++
	}
	sort.Strings(order)
	parts := make([]string, len(order))
	for i, b := range order {
		parts[i] = fmt.Sprintf("%s (%d)", b, counts[b])
	}
	return strings.Join(parts, ", ")
}

// safely calls f, turning a panic of the target into an error, so that a
// crashing implementation fails its specs instead of the suite's
// bookkeeping.
func safely(what string, f func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("target panicked in %s: %v\n%s", what, v, debug.Stack())
		}
	}()
	return f()
}

// stepFailedError is a step whose mutations the target failed to apply.
type stepFailedError struct {
	step int
	file string
	line int
	err  error
}

func (e *stepFailedError) Error() string {
	return fmt.Sprintf("apply step %d (%s:%d): %v", e.step, e.file, e.line, e.err)
}

func (e *stepFailedError) Unwrap() error { return e.err }

// notRunError is a step not run because an earlier one failed.
type notRunError struct{ cause error }

func (e *notRunError) Error() string { return "not run, an earlier step failed: " + e.cause.Error() }

func (e *notRunError) Unwrap() error { return e.cause }

func hasMutations(st scenario.Step) bool {
	return len(st.Apply) > 0 || len(st.Delete) > 0 || len(st.SetLabels) > 0 || len(st.AddPods) > 0 || len(st.DeletePods) > 0 || len(st.TerminatePods) > 0
}

// skipIfUnsupported skips the running spec as unsupported when err says
// the target cannot do what it needs here (target.ErrUnsupported).
func skipIfUnsupported(err error) {
	if errors.Is(err, target.ErrUnsupported) {
		ginkgo.AddReportEntry(EntryUnsupported, err.Error(), ginkgo.ReportEntryVisibilityNever)
		ginkgo.Skip("unsupported by the target here: " + err.Error())
	}
}

// check is the body of a probe's spec.
func (r *scenarioRun) check(ctx ginkgo.SpecContext, pp *probePlan) {
	sc := r.sp.sc
	if len(pp.missing) > 0 {
		ginkgo.AddReportEntry(EntryUnsupported, featureList(pp.missing), ginkgo.ReportEntryVisibilityNever)
		ginkgo.Skip(unsupportedMessage(pp.missing))
	}
	if r.setupErr != nil {
		skipIfUnsupported(r.setupErr)
		ginkgo.Fail(fmt.Sprintf("scenario %s could not be set up on target %s: %v", sc.Metadata.Name, r.plan.cfg.Target, r.setupErr))
	}
	r.observe(ctx, pp.step)
	st := &r.steps[pp.step]
	if st.err != nil {
		skipIfUnsupported(st.err)
		ginkgo.Fail(fmt.Sprintf("step %d of scenario %s: %v", pp.step, sc.Metadata.Name, st.err))
	}
	res := st.results[pp.index]
	if res.err != nil {
		skipIfUnsupported(res.err)
	}
	if res.err == nil && len(res.wrong) == 0 {
		return
	}
	var b strings.Builder
	if res.err != nil {
		fmt.Fprintf(&b, "probe error: the target could not run the probe: %v\n", res.err)
	} else {
		fmt.Fprintf(&b, "%s\n", strings.Join(res.wrong, "; "))
	}
	fmt.Fprintf(&b, "probe:    %s (%s:%d)\n", pp.probe.ID, sc.File, pp.probe.Line)
	fmt.Fprintf(&b, "expected: %s\n", describeExpectation(pp.probe.Expect, r.plan.enabled.Has(features.DropReasons), pp.addrs))
	if res.err == nil {
		fmt.Fprintf(&b, "observed: %s\n", describeObservation(res.obs))
		if len(res.backends) > 1 {
			fmt.Fprintf(&b, "backends: %s over %d repetitions\n", countBackends(res.backends), len(res.backends))
		}
		if len(res.obs.Flows) == 0 {
			b.WriteString("flows:    none reported by the target\n")
		} else {
			fmt.Fprintf(&b, "flows reported by the target (%d):\n", len(res.obs.Flows))
			for _, f := range res.obs.Flows {
				fmt.Fprintf(&b, "  %s\n", FormatFlow(f))
			}
		}
	}
	// The first failing probe of a step prints the step's truth table in its
	// failure message (what CI tools show of a JUnit failure); the others
	// point to it. Every failing spec carries the table as a report entry,
	// for the JSON and JUnit reports.
	table := r.truthTable(pp.step)
	ginkgo.AddReportEntry(EntryTruthTable, table, ginkgo.ReportEntryVisibilityNever)
	if st.firstFailure == "" {
		st.firstFailure = pp.probe.ID
		fmt.Fprintf(&b, "\n%s", table)
	} else {
		fmt.Fprintf(&b, "truth table of step %d: printed with the failure of %q\n", pp.step, st.firstFailure)
	}
	ginkgo.Fail(strings.TrimRight(b.String(), "\n"))
}

// truthTable renders the truth table of step k, which has run.
func (r *scenarioRun) truthTable(k int) string {
	st := r.steps[k]
	var cells []Cell
	for i, pp := range r.sp.steps[k] {
		c := Cell{Row: pp.row, Column: pp.column, Expect: pp.probe.Expect.Verdict}
		res := st.results[i]
		switch {
		case len(pp.missing) > 0:
			c.State = Unsupported
		case !res.ran || res.err != nil:
			c.State = NoObservation
		default:
			c.Observed = res.obs.Verdict
			if len(res.wrong) > 0 {
				c.State = Wrong
			}
		}
		cells = append(cells, c)
	}
	return RenderTruthTable(fmt.Sprintf("scenario %s, step %d", r.sp.sc.Metadata.Name, k), cells)
}

// reportAfterSuite writes the conformance report and prints its summary.
func (p *plan) reportAfterSuite(rep ginkgo.Report) {
	name := p.cfg.ImplementationName
	if name == "" {
		name = p.targetName
	}
	r := report.Build(report.Run{
		Implementation: report.Implementation{Name: name, Version: p.cfg.ImplementationVersion, Target: p.cfg.Target},
		CiliaVersion:   p.cfg.ciliaVersion(),
		Scenarios:      p.cfg.Scenarios,
		FeatureFilter:  p.cfg.Features,
		Date:           time.Now(),
		Enabled:        p.enabled,
		Results:        Results(rep),
	})
	w := p.cfg.out()
	fmt.Fprintln(w)
	fmt.Fprintf(w, "cilia conformance summary: target %s, implementation %s\n", p.cfg.Target,
		strings.TrimSpace(name+" "+p.cfg.ImplementationVersion))
	if err := r.PrintSummary(w); err != nil {
		ginkgo.Fail(fmt.Sprintf("print summary: %v", err))
	}
	for _, msg := range p.warnings {
		fmt.Fprintf(w, "warning: %s\n", msg)
	}
	if p.cfg.Report == "" {
		return
	}
	if err := r.WriteFile(p.cfg.Report); err != nil {
		ginkgo.Fail(err.Error())
	}
	fmt.Fprintf(w, "report: %s\n", p.cfg.Report)
}

// Results turns Ginkgo's report into the report package's results: one
// per probe spec that ran, attributed to its scenario (the outermost
// container) and its features (the spec's labels). Specs that Ginkgo did
// not run (filtered by focus or labels, or never reached) are left out;
// a spec skipped for unsupported features counts as skipped.
func Results(rep ginkgo.Report) []report.TestResult {
	var out []report.TestResult
	for _, s := range rep.SpecReports {
		if s.LeafNodeType != types.NodeTypeIt || len(s.ContainerHierarchyTexts) == 0 {
			continue
		}
		res := report.TestResult{Scenario: s.ContainerHierarchyTexts[0], Probe: s.LeafNodeText}
		for _, l := range s.Labels() {
			if f := features.Feature(l); features.Known(f) {
				res.Features = append(res.Features, f)
			}
		}
		switch {
		case s.State == types.SpecStatePassed:
			res.Outcome = report.OutcomePassed
		case s.State.Is(types.SpecStateFailureStates):
			res.Outcome = report.OutcomeFailed
			res.Message = s.Failure.Message
		case s.State == types.SpecStateSkipped && (hasEntry(s, EntryUnsupported) || s.Failure.Message != ""):
			res.Outcome = report.OutcomeSkipped
			res.Message = s.Failure.Message
		default:
			continue
		}
		out = append(out, res)
	}
	return out
}

func hasEntry(s types.SpecReport, name string) bool {
	for _, e := range s.ReportEntries {
		if e.Name == name {
			return true
		}
	}
	return false
}
