package cluster

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/cilium/cilium/api/v1/flow"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ciliaproject/cilia/conformance/scenario"
	"github.com/ciliaproject/cilia/sim/replay"
	"github.com/ciliaproject/cilia/sim/topology"
	"github.com/ciliaproject/cilia/sim/walker"
)

// SimulatorOptions configure OpenSimulator.
type SimulatorOptions struct {
	// Mode is "tunnel" (default) or "native".
	Mode string
	// Step is the index of the scenario step whose state the capture is
	// replayed against: every step up to and including it is applied.
	// Negative means the last step.
	Step int
}

// OpenSimulator builds the cluster of the scenario file at path for
// cilia replay. Close the returned closer to remove it.
func OpenSimulator(ctx context.Context, path string, opts SimulatorOptions) (replay.Simulator, io.Closer, error) {
	sc, err := scenario.Load(path)
	if err != nil {
		return nil, nil, err
	}
	mode, err := topology.ParseMode(opts.Mode)
	if err != nil {
		return nil, nil, fmt.Errorf("open simulator: %w", err)
	}
	last := opts.Step
	if last < 0 || last >= len(sc.Steps) {
		if opts.Step >= len(sc.Steps) {
			return nil, nil, fmt.Errorf("open simulator: %s has steps 0..%d, not %d", path, len(sc.Steps)-1, opts.Step)
		}
		last = len(sc.Steps) - 1
	}
	c, err := New(ctx, sc, Options{Mode: mode})
	if err != nil {
		return nil, nil, err
	}
	for _, st := range sc.Steps[:last+1] {
		if err := c.Step(st); err != nil {
			c.Close()
			return nil, nil, fmt.Errorf("open simulator: step %d: %w", st.Index, err)
		}
	}
	return &Simulator{c: c}, c, nil
}

// Simulator is a cluster seen by cilia replay (replay.Simulator).
type Simulator struct {
	c *Cluster
}

// NewSimulator returns the replay view of c.
func NewSimulator(c *Cluster) *Simulator { return &Simulator{c: c} }

// EntryFor implements replay.Simulator.
func (s *Simulator) EntryFor(frame []byte) (walker.Entry, error) { return s.c.Walker.EntryFor(frame) }

// ParseEntry implements replay.Simulator.
func (s *Simulator) ParseEntry(v string) (walker.Entry, error) { return s.c.Walker.ParseEntry(v) }

// Walk implements replay.Simulator.
func (s *Simulator) Walk(e walker.Entry, frame []byte) (*walker.Walk, error) {
	return s.c.Walker.Walk(e, frame)
}

// Flows implements replay.Simulator: one flow per event, named after the
// scenario's pods and the node that emitted it.
func (s *Simulator) Flows(w *walker.Walk, ts time.Time) []*flow.Flow {
	out := s.c.Flows(w)
	for _, f := range out {
		f.Time = timestamppb.New(ts)
	}
	return out
}

// Rule implements replay.Simulator: the policy rule behind a rule id.
func (s *Simulator) Rule(id uint32) string {
	if id == 0 {
		return ""
	}
	if o, ok := s.c.Agent.Repository().Origin(id); ok {
		return o.String()
	}
	return ""
}
