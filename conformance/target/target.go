// Package target defines what the conformance suite drives (DESIGN.md §3):
// a Target builds a scenario's cluster, applies its steps and answers
// probes with Observations. Implementations register themselves by name.
package target

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"

	"github.com/cilium/cilium/api/v1/flow"

	"github.com/ciliaproject/cilia/conformance/features"
	"github.com/ciliaproject/cilia/conformance/scenario"
)

// Target is an implementation under test.
type Target interface {
	// Name is the target's name as selected (e.g. "testrun").
	Name() string
	// Features are the features it supports; specs needing others are
	// skipped and reported as unsupported.
	Features() features.Set
	// Setup builds the scenario's cluster and applies its policies.
	Setup(ctx context.Context, sc *scenario.Scenario) error
	// Step applies a step's mutations (not its probes).
	Step(ctx context.Context, st scenario.Step) error
	// Probe runs one probe and reports what happened. An error means the
	// target could not run the probe at all (not that it was denied).
	Probe(ctx context.Context, p scenario.Probe) (Observation, error)
	// Close tears down everything Setup and Step built.
	Close() error
}

// Verdict is what a probe observed.
type Verdict string

// Verdicts.
const (
	Allowed Verdict = "allowed"
	Denied  Verdict = "denied"
)

// Observation is the outcome of a probe.
type Observation struct {
	Verdict Verdict
	// DropReason is the catalogue name (docs/drop-reasons.md), "" if the
	// target cannot tell.
	DropReason string
	HTTPStatus int
	// Backend is the pod ("namespace/name") that served the probe.
	Backend string
	// SourceSeen is the source address as the server saw it.
	SourceSeen netip.Addr
	// ReplyVia are the names of the nodes whose datapath handled a reply
	// packet of the probe, sorted; nil when the target cannot tell.
	ReplyVia []string
	// Flows are what the datapath reported, for diagnostics.
	Flows []*flow.Flow
}

// Info describes the implementation for the report.
type Info struct {
	Name    string
	Version string
}

// ErrUnsupported is returned (wrapped) by Setup, Step or Probe for what a
// target cannot do where it runs although it declares the features: an
// external host on a real cluster, a CRD the cluster lacks. The suite
// skips the specs it affects as unsupported instead of failing them.
var ErrUnsupported = errors.New("unsupported by the target here")

// Options are given to a target's constructor.
type Options struct {
	// Arg is what followed "name:" in the target selector ("exec:PATH"
	// gives "PATH"); empty otherwise.
	Arg string
}

// Factory constructs a target. A new target is constructed per scenario.
type Factory func(opts Options) (Target, error)

var (
	mu        sync.Mutex
	factories = map[string]Factory{}
)

// Register makes a target constructible by name. It panics on a duplicate.
func Register(name string, f Factory) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := factories[name]; dup {
		panic("target: duplicate registration of " + name)
	}
	factories[name] = f
}

// Names returns the registered target names, sorted.
func Names() []string {
	mu.Lock()
	defer mu.Unlock()
	var out []string
	for n := range factories {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// New constructs the target selected by sel: a registered name, optionally
// followed by ":ARG" (e.g. "exec:/usr/bin/driver").
func New(sel string) (Target, error) {
	name, arg, _ := strings.Cut(sel, ":")
	mu.Lock()
	f, ok := factories[name]
	mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("new target: unknown target %q (known: %s)", name, strings.Join(Names(), ", "))
	}
	return f(Options{Arg: arg})
}
