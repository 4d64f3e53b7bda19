// Package exec is the conformance target for any implementation behind the
// driver protocol (docs/driver-protocol.md): TARGET=exec:COMMAND starts
// COMMAND once to ask its features, then once per scenario, and talks
// JSON-RPC 2.0 with it over its stdin and stdout.
//
// COMMAND is a command line split on white space (no quoting): the first
// word is the program (a path, or a name looked up in $PATH), the others
// its arguments, e.g. "exec:bin/cilia driver --target testrun".
//
// Every call has a time limit, CILIA_EXEC_TIMEOUT (a Go duration, default
// 60s). A driver that crashes, hangs past the limit or answers garbage
// makes the call fail with an error naming the command, the method and
// the probe; the driver is killed and the scenario's later calls fail at
// once with the same cause. The next scenario starts a new process.
package exec

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/ciliaproject/cilia/conformance/driver"
	"github.com/ciliaproject/cilia/conformance/features"
	"github.com/ciliaproject/cilia/conformance/scenario"
	"github.com/ciliaproject/cilia/conformance/target"
)

// Name is the target's name.
const Name = "exec"

// TimeoutEnv names the environment variable with the per-call time limit.
const TimeoutEnv = "CILIA_EXEC_TIMEOUT"

// DefaultTimeout is the per-call time limit without TimeoutEnv.
const DefaultTimeout = 60 * time.Second

// Quiet, when set, stops the driver's stderr from being copied to this
// process's stderr (its last lines still appear in errors).
var Quiet bool

func init() {
	target.Register(Name, func(opts target.Options) (target.Target, error) { return New(opts.Arg) })
}

// Target is the exec target.
type Target struct {
	command string
	argv    []string
	timeout time.Duration
	info    driver.FeaturesResult
	feats   features.Set

	proc *process
	sc   *scenario.Scenario
}

// cache holds the features result per command line: the suite constructs
// a target per scenario, the driver is asked once per run.
var cache sync.Map // command line -> driver.FeaturesResult

// New returns the target for a command line. It asks the driver for its
// features (once per command line and process).
func New(command string) (*Target, error) {
	argv := strings.Fields(command)
	if len(argv) == 0 {
		return nil, errors.New("exec target: no driver command: use TARGET=exec:COMMAND (e.g. exec:bin/cilia driver)")
	}
	timeout, err := Timeout()
	if err != nil {
		return nil, fmt.Errorf("exec target %s: %w", command, err)
	}
	t := &Target{command: strings.Join(argv, " "), argv: argv, timeout: timeout}
	if v, ok := cache.Load(t.command); ok {
		t.setInfo(v.(driver.FeaturesResult))
		return t, nil
	}
	p, err := start(argv, timeout)
	if err != nil {
		if !filepath.IsAbs(argv[0]) && strings.Contains(argv[0], "/") {
			wd, _ := os.Getwd()
			err = fmt.Errorf("%w (a relative path is resolved from the run's working directory, %s: give an absolute path)", err, wd)
		}
		return nil, t.errorf("features", err)
	}
	var res driver.FeaturesResult
	err = p.call(context.Background(), driver.MethodFeatures, nil, &res)
	if err == nil {
		err = checkFeatures(res)
	}
	if err == nil {
		err = p.call(context.Background(), driver.MethodClose, nil, nil)
		if err != nil {
			err = fmt.Errorf("close after features: %w", err)
		}
	}
	if serr := p.stop(); err == nil && serr != nil {
		err = serr
	}
	if err != nil {
		return nil, t.errorf("features", err)
	}
	cache.Store(t.command, res)
	t.setInfo(res)
	return t, nil
}

// Timeout returns the per-call time limit: TimeoutEnv, or DefaultTimeout.
func Timeout() (time.Duration, error) {
	v := os.Getenv(TimeoutEnv)
	if v == "" {
		return DefaultTimeout, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s=%q: want a positive Go duration such as 90s or 5m", TimeoutEnv, v)
	}
	return d, nil
}

func checkFeatures(res driver.FeaturesResult) error {
	if res.ProtocolVersion == "" {
		return errors.New(`driver's features result has no "protocolVersion"`)
	}
	major := func(v string) string { m, _, _ := strings.Cut(v, "."); return m }
	if major(res.ProtocolVersion) != major(driver.ProtocolVersion) {
		return fmt.Errorf("driver speaks protocol version %s, this suite speaks %s", res.ProtocolVersion, driver.ProtocolVersion)
	}
	if res.Features == nil {
		return errors.New(`driver's features result has no "features" list`)
	}
	for _, f := range res.Features {
		if !features.Known(features.Feature(f)) {
			return fmt.Errorf("driver declares unknown feature %q", f)
		}
	}
	return nil
}

func (t *Target) setInfo(res driver.FeaturesResult) {
	t.info = res
	t.feats = features.Set{}
	for _, f := range res.Features {
		t.feats[features.Feature(f)] = struct{}{}
	}
}

func (t *Target) errorf(what string, err error) error {
	return fmt.Errorf("exec target %s: %s: %w", t.command, what, err)
}

// Name implements target.Target.
func (t *Target) Name() string { return Name }

// Features implements target.Target: what the driver's "features" said.
func (t *Target) Features() features.Set { return t.feats }

// Info returns the implementation the driver reported.
func (t *Target) Info() target.Info {
	return target.Info{Name: t.info.Implementation.Name, Version: t.info.Implementation.Version}
}

// Setup implements target.Target: it starts the driver and sends the
// scenario.
func (t *Target) Setup(ctx context.Context, sc *scenario.Scenario) error {
	what := fmt.Sprintf("setup %q", sc.Metadata.Name)
	if t.proc != nil {
		return t.errorf(what, errors.New("the target is already set up"))
	}
	src, err := os.ReadFile(sc.File)
	if err != nil {
		return t.errorf(what, fmt.Errorf("read the scenario file: %w", err))
	}
	sj, err := driver.EncodeScenario(sc)
	if err != nil {
		return t.errorf(what, err)
	}
	p, err := start(t.argv, t.timeout)
	if err != nil {
		return t.errorf(what, err)
	}
	t.proc, t.sc = p, sc
	params := driver.SetupParams{File: sc.File, Source: string(src), Scenario: sj}
	if err := p.call(ctx, driver.MethodSetup, params, nil); err != nil {
		return t.errorf(what, err)
	}
	return nil
}

// Step implements target.Target.
func (t *Target) Step(ctx context.Context, st scenario.Step) error {
	what := fmt.Sprintf("step %d", st.Index)
	if t.proc == nil {
		return t.errorf(what, errors.New("not set up"))
	}
	params, err := driver.EncodeStep(st)
	if err != nil {
		return t.errorf(what, err)
	}
	if err := t.proc.call(ctx, driver.MethodStep, params, nil); err != nil {
		return t.errorf(what, err)
	}
	return nil
}

// Probe implements target.Target.
func (t *Target) Probe(ctx context.Context, p scenario.Probe) (target.Observation, error) {
	what := fmt.Sprintf("probe %q", p.ID)
	if t.proc == nil {
		return target.Observation{}, t.errorf(what, errors.New("not set up"))
	}
	var oj driver.ObservationJSON
	if err := t.proc.call(ctx, driver.MethodProbe, driver.EncodeProbe(p), &oj); err != nil {
		return target.Observation{}, t.errorf(what, err)
	}
	obs, err := driver.DecodeObservation(oj)
	if err != nil {
		return target.Observation{}, t.errorf(what, fmt.Errorf("driver answered a malformed result: %w", err))
	}
	return obs, nil
}

// Close implements target.Target: it sends "close" and waits for the
// driver to exit. A driver that already failed is not asked again (its
// failure was reported by the call that saw it).
func (t *Target) Close() error {
	p := t.proc
	if p == nil {
		return nil
	}
	t.proc = nil
	var err error
	if p.dead == nil {
		if cerr := p.call(context.Background(), driver.MethodClose, nil, nil); cerr != nil {
			err = t.errorf("close", cerr)
		}
	}
	if serr := p.stop(); serr != nil && err == nil {
		err = t.errorf("close", serr)
	}
	return err
}
