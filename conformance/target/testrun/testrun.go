// Package testrun is the default conformance target: the reference agent
// programs real BPF programs and maps (one harness and one network
// namespace per scenario node), and every probe is a packet exchange
// crafted with gopacket and run through BPF_PROG_TEST_RUN: the client's
// from_container, the server's to_container, and back for the replies.
package testrun

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync/atomic"

	"github.com/cilium/cilium/api/v1/flow"
	"github.com/vishvananda/netns"

	"github.com/ciliaproject/cilia/agent"
	ciliaflow "github.com/ciliaproject/cilia/agent/flow"
	"github.com/ciliaproject/cilia/agent/identity"
	"github.com/ciliaproject/cilia/conformance/features"
	"github.com/ciliaproject/cilia/conformance/scenario"
	"github.com/ciliaproject/cilia/conformance/scenarioagent"
	"github.com/ciliaproject/cilia/conformance/target"
	"github.com/ciliaproject/cilia/datapath"
	"github.com/ciliaproject/cilia/datapath/events"
	dptestrun "github.com/ciliaproject/cilia/datapath/testrun"
)

// Name is the target's name.
const Name = "testrun"

func init() {
	target.Register(Name, func(target.Options) (target.Target, error) { return New(), nil })
}

// Target is the testrun target.
type Target struct {
	agent     *agent.Agent
	nodes     map[string]*node
	nodeOrder []string
	sc        *scenario.Scenario
	// state is the cluster as of the last step (pod addresses and nodes,
	// externals), for probes.
	state    *scenario.State
	nextPort uint16
}

// node is one scenario node: its netns and its datapath harness.
type node struct {
	spec    scenario.Node
	nsName  string
	harness *dptestrun.Harness
	dp      *harnessDatapath
}

var runID atomic.Uint64

// New returns an unconfigured target; Setup builds the cluster.
func New() *Target {
	return &Target{nodes: map[string]*node{}, nextPort: 32768}
}

// Name implements target.Target.
func (t *Target) Name() string { return Name }

// Features implements target.Target: the policy profile, and drop reasons
// (every drop event carries its reason).
func (t *Target) Features() features.Set {
	fs, _ := features.ProfileFeatures("policy")
	return features.NewSet(append(fs, features.DropReasons)...)
}

// Setup implements target.Target.
func (t *Target) Setup(ctx context.Context, sc *scenario.Scenario) error {
	t.sc, t.state = sc, sc.InitialState()
	t.agent = agent.New()
	return scenarioagent.Setup(t.agent, sc, func(n scenario.Node) (agent.Datapath, error) {
		nd, err := newNode(n)
		if err != nil {
			return nil, err
		}
		t.nodes[n.Name] = nd
		t.nodeOrder = append(t.nodeOrder, n.Name)
		return nd.dp, nil
	})
}

// newNode creates a node's netns and its harness.
func newNode(n scenario.Node) (*node, error) {
	name := fmt.Sprintf("cilia-tr-%d-%d-%s", os.Getpid(), runID.Add(1), n.Name)
	if len(name) > 60 {
		name = name[:60]
	}
	if err := createNamedNetns(name); err != nil {
		return nil, fmt.Errorf("create node %s: %w", n.Name, err)
	}
	h, err := dptestrun.New(dptestrun.Options{Settings: datapath.Settings{TraceLevel: 0}})
	if err != nil {
		netns.DeleteNamed(name)
		return nil, fmt.Errorf("create node %s: %w", n.Name, err)
	}
	return &node{spec: n, nsName: name, harness: h, dp: &harnessDatapath{h: h}}, nil
}

// createNamedNetns creates a named network namespace for a node without
// moving the calling goroutine's thread into it.
func createNamedNetns(name string) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return fmt.Errorf("get current netns: %w", err)
	}
	defer orig.Close()
	ns, err := netns.NewNamed(name)
	if err != nil {
		return fmt.Errorf("create netns %s: %w", name, err)
	}
	ns.Close()
	if err := netns.Set(orig); err != nil {
		return fmt.Errorf("restore netns: %w", err)
	}
	return nil
}

// Step implements target.Target.
func (t *Target) Step(ctx context.Context, st scenario.Step) error {
	t.state = t.sc.StateAt(st.Index)
	return scenarioagent.Step(t.agent, st)
}

// namespaces returns the names of the nodes' network namespaces.
func (t *Target) namespaces() []string {
	var out []string
	for _, name := range t.nodeOrder {
		out = append(out, t.nodes[name].nsName)
	}
	return out
}

// Close implements target.Target.
func (t *Target) Close() error {
	var errs []error
	for _, name := range t.nodeOrder {
		n := t.nodes[name]
		if err := n.harness.Close(); err != nil {
			errs = append(errs, err)
		}
		if err := netns.DeleteNamed(n.nsName); err != nil {
			errs = append(errs, fmt.Errorf("delete netns %s: %w", n.nsName, err))
		}
	}
	t.nodes, t.nodeOrder = map[string]*node{}, nil
	return errors.Join(errs...)
}

// harnessDatapath adapts a harness to agent.Datapath.
type harnessDatapath struct {
	h *dptestrun.Harness
}

func (d *harnessDatapath) UpsertIPCache(p netip.Prefix, id identity.NumericIdentity) error {
	return d.h.SetIdentity(p, uint32(id))
}

func (d *harnessDatapath) DeleteIPCache(p netip.Prefix) error { return d.h.DeleteIdentity(p) }

func (d *harnessDatapath) AddEndpoint(spec agent.EndpointSpec) (agent.EndpointDatapath, error) {
	ep, err := d.h.AddEndpoint(dptestrun.EndpointSpec{ID: spec.ID, Identity: uint32(spec.Identity), IPv4: spec.IPv4, IPv6: spec.IPv6})
	if err != nil {
		return nil, err
	}
	return &harnessEndpoint{Endpoint: ep, h: d.h}, nil
}

// harnessEndpoint adapts a harness endpoint to agent.EndpointDatapath.
type harnessEndpoint struct {
	*dptestrun.Endpoint
	h *dptestrun.Harness
}

func (e *harnessEndpoint) Close() error { return e.h.RemoveEndpoint(e.Endpoint) }

// flowsOf converts events to flows, naming the scenario's pods.
func (t *Target) flowsOf(evs []events.Event) []*flow.Flow {
	names := func(a netip.Addr) (string, string, bool) {
		if owner, ok := t.state.Owner(a); ok && owner.Kind == scenario.PeerPod {
			ns, name, _ := strings.Cut(owner.Name, "/")
			return ns, name, true
		}
		return "", "", false
	}
	out := make([]*flow.Flow, 0, len(evs))
	for _, e := range evs {
		out = append(out, ciliaflow.FromEvent(e, names))
	}
	return out
}
