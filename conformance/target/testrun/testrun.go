// Package testrun is the default conformance target: the reference agent
// programs real BPF programs and maps in a simulated cluster (sim/cluster:
// a network namespace per node and pod, VXLAN between nodes), and every
// probe is a packet exchange crafted with gopacket and walked hop by hop
// through BPF_PROG_TEST_RUN (sim/walker): the client's from_container, the
// overlay or the fabric, the server node's programs, the server's
// to_container, and back for the replies.
package testrun

import (
	"context"
	"errors"
	"fmt"

	"github.com/cilium/cilium/api/v1/flow"

	"github.com/ciliaproject/cilia/conformance/features"
	"github.com/ciliaproject/cilia/conformance/scenario"
	"github.com/ciliaproject/cilia/conformance/target"
	"github.com/ciliaproject/cilia/datapath/events"
	"github.com/ciliaproject/cilia/sim/cluster"
	"github.com/ciliaproject/cilia/sim/topology"
	"github.com/ciliaproject/cilia/sim/walker"
)

// Name is the target's name.
const Name = "testrun"

func init() {
	target.Register(Name, func(o target.Options) (target.Target, error) {
		mode, err := topology.ParseMode(o.Arg)
		if err != nil {
			return nil, fmt.Errorf("target testrun: %w", err)
		}
		return NewWithMode(mode), nil
	})
}

// Target is the testrun target.
type Target struct {
	mode     topology.Mode
	c        *cluster.Cluster
	nextPort uint16
}

// New returns an unconfigured target (tunnel mode); Setup builds the
// cluster.
func New() *Target { return &Target{mode: topology.Tunnel, nextPort: 32768} }

// NewWithMode returns a target whose cluster routes between nodes in mode.
func NewWithMode(mode topology.Mode) *Target { return &Target{mode: mode, nextPort: 32768} }

// Name implements target.Target.
func (t *Target) Name() string { return Name }

// Features implements target.Target: the policy and loadbalancing
// profiles, and drop reasons (every drop event carries its reason).
func (t *Target) Features() features.Set {
	policy, _ := features.ProfileFeatures("policy")
	lb, _ := features.ProfileFeatures("loadbalancing")
	return features.NewSet(append(append(policy, lb...), features.DropReasons)...)
}

// Setup implements target.Target.
func (t *Target) Setup(ctx context.Context, sc *scenario.Scenario) error {
	c, err := cluster.New(ctx, sc, cluster.Options{Mode: t.mode})
	if c != nil && err == nil {
		t.c = c
	}
	return err
}

// Step implements target.Target.
func (t *Target) Step(ctx context.Context, st scenario.Step) error {
	if t.c == nil {
		return errors.New("step: no cluster (Setup failed)")
	}
	return t.c.Step(st)
}

// Cluster returns the simulated cluster (nil before Setup).
func (t *Target) Cluster() *cluster.Cluster { return t.c }

// Close implements target.Target.
func (t *Target) Close() error {
	if t.c == nil {
		return nil
	}
	err := t.c.Close()
	t.c = nil
	return err
}

// flowsOf converts the events of walks to flows, naming the scenario's
// pods and the node of each hop.
func (t *Target) flowsOf(walks []*walker.Walk) []*flow.Flow {
	var out []*flow.Flow
	for _, w := range walks {
		out = append(out, t.c.Flows(w)...)
	}
	return out
}

// firstDrop returns the drop event of the first walk that has one.
func firstDrop(walks []*walker.Walk) *events.Event {
	for _, w := range walks {
		if w.Drop != nil {
			return w.Drop
		}
	}
	return nil
}
