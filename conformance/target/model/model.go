// Package model is the conformance target "model": it answers every probe
// with conformance/model, the executable spec, computed from the scenario's
// state at the probe's step. No kernel, no root, no agent.
//
//	make conformance TARGET=model
package model

import (
	"context"
	"errors"
	"fmt"

	"github.com/ciliaproject/cilia/conformance/features"
	specmodel "github.com/ciliaproject/cilia/conformance/model"
	"github.com/ciliaproject/cilia/conformance/scenario"
	"github.com/ciliaproject/cilia/conformance/target"
)

// Name is the target's name.
const Name = "model"

func init() {
	target.Register(Name, func(target.Options) (target.Target, error) { return New(), nil })
}

// firstSourcePort is the first client source port the target hands out
// (the start of Linux's ephemeral range); the counter wraps back to it.
const firstSourcePort = 32768

// Target is the model target.
type Target struct {
	sc    *scenario.Scenario
	model *specmodel.Model
	// nextPort is the client source port of the next probe that does not
	// fix one: every Probe call is a new connection.
	nextPort uint16
}

// New returns a target with no scenario; Setup gives it one.
func New() *Target { return &Target{nextPort: firstSourcePort} }

// Name implements target.Target.
func (t *Target) Name() string { return Name }

// Features implements target.Target: the policy and loadbalancing
// profiles and drop reasons (the model tells a deny rule, POLICY_DENY,
// from nothing allowing, POLICY_DENIED, and from a service without a
// backend, NO_SERVICE).
func (t *Target) Features() features.Set {
	policy, _ := features.ProfileFeatures("policy")
	lb, _ := features.ProfileFeatures("loadbalancing")
	fs := append(append([]features.Feature{}, policy...), lb...)
	return features.NewSet(append(fs, features.DropReasons)...)
}

// Setup implements target.Target: the model of the initial state.
func (t *Target) Setup(_ context.Context, sc *scenario.Scenario) error {
	t.sc = sc
	st := sc.InitialState()
	if st == nil {
		return fmt.Errorf("model: scenario %s has no initial state (not loaded through scenario.Load?)", sc.Metadata.Name)
	}
	m, err := specmodel.New(st)
	if err != nil {
		return fmt.Errorf("model: %w", err)
	}
	t.model = m
	return nil
}

// Step implements target.Target: the model of the state the step's
// probes see (scenario.StateAt applies the mutations).
func (t *Target) Step(_ context.Context, st scenario.Step) error {
	if t.sc == nil {
		return fmt.Errorf("model: Step before Setup")
	}
	state := t.sc.StateAt(st.Index)
	if state == nil {
		return fmt.Errorf("model: scenario %s has no step %d", t.sc.Metadata.Name, st.Index)
	}
	m, err := specmodel.New(state)
	if err != nil {
		return fmt.Errorf("model: step %d: %w", st.Index, err)
	}
	t.model = m
	return nil
}

// Probe implements target.Target. Every call is a new connection: unless
// the probe fixes its source port, it gets the next one of the target's
// counter (so repetitions of a probe spread over a service's backends).
// What the model does not evaluate (specmodel.ErrNotModelled, e.g. a node
// as the client of a service) is reported as target.ErrUnsupported, which
// the suite skips.
func (t *Target) Probe(_ context.Context, p scenario.Probe) (target.Observation, error) {
	if t.model == nil {
		return target.Observation{}, fmt.Errorf("model: Probe before Setup")
	}
	if p.SourcePort == 0 && p.Protocol != scenario.ICMP {
		p.SourcePort = t.sourcePort()
	}
	a, err := t.model.Probe(p)
	if errors.Is(err, specmodel.ErrNotModelled) {
		return target.Observation{}, fmt.Errorf("model: %w: %w", target.ErrUnsupported, err)
	}
	if err != nil {
		return target.Observation{}, err
	}
	obs := target.Observation{DropReason: a.DropReason, Backend: a.Backend, SourceSeen: a.SourceSeen, ReplyVia: a.ReplyVia}
	if a.Verdict == scenario.Allow {
		obs.Verdict = target.Allowed
	} else {
		obs.Verdict = target.Denied
	}
	return obs, nil
}

// sourcePort hands out the next client source port, from firstSourcePort
// to 65535 and round again.
func (t *Target) sourcePort() uint16 {
	if t.nextPort < firstSourcePort {
		t.nextPort = firstSourcePort
	}
	port := t.nextPort
	t.nextPort++
	return port
}

// Close implements target.Target; the model holds nothing.
func (t *Target) Close() error { return nil }
