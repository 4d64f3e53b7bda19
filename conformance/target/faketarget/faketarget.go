// Package faketarget is an in-memory conformance target for testing the
// suite itself: it answers every probe with exactly what the probe expects,
// except where its configuration says otherwise, and builds nothing.
//
// It registers as "fake". The selector "fake" supports every feature and
// never errs; "fake:PATH" reads a YAML Config from PATH:
//
//	features: [policy-l3, policy-l4]      # supported; omitted: all
//	overrides:                            # probes answered differently
//	  - {scenario: s, probe: "step 0: a/x -> a/y 80/TCP ipv4", verdict: allowed}
//	  - {scenario: s, probe: "...", error: "cannot reach pod"}
//	failSetup: [scenario-name]
//	failSteps: [{scenario: s, step: 1}]
package faketarget

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/cilium/cilium/api/v1/flow"
	"go.yaml.in/yaml/v3"

	"github.com/ciliaproject/cilia/conformance/features"
	"github.com/ciliaproject/cilia/conformance/scenario"
	"github.com/ciliaproject/cilia/conformance/target"
)

// Name is the name the fake target registers under.
const Name = "fake"

func init() {
	target.Register(Name, func(opts target.Options) (target.Target, error) {
		cfg := Config{}
		if opts.Arg != "" {
			c, err := ReadConfig(opts.Arg)
			if err != nil {
				return nil, err
			}
			cfg = *c
		}
		return New(cfg), nil
	})
}

// Config says where the fake target departs from the expectations.
type Config struct {
	// Features it supports; nil means every feature.
	Features []features.Feature `yaml:"features"`
	// Overrides change the observation of single probes.
	Overrides []Override `yaml:"overrides"`
	// FailSetup names scenarios whose Setup fails.
	FailSetup []string `yaml:"failSetup"`
	// FailSteps are steps whose mutations fail.
	FailSteps []StepRef `yaml:"failSteps"`
}

// Override is the observation of one probe, named by scenario and probe
// ID. Set fields replace those of the expected observation; Error makes
// Probe fail instead.
type Override struct {
	Scenario   string         `yaml:"scenario"`
	Probe      string         `yaml:"probe"`
	Verdict    target.Verdict `yaml:"verdict"`
	DropReason string         `yaml:"dropReason"`
	HTTPStatus int            `yaml:"httpStatus"`
	Backend    string         `yaml:"backend"`
	SourceSeen string         `yaml:"sourceSeen"`
	Error      string         `yaml:"error"`
	// Unsupported makes Probe fail with target.ErrUnsupported (the
	// target cannot run this probe where it is).
	Unsupported bool `yaml:"unsupported"`
}

// StepRef names a step of a scenario by its index.
type StepRef struct {
	Scenario string `yaml:"scenario"`
	Step     int    `yaml:"step"`
}

// ReadConfig reads a Config from a YAML file.
func ReadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read fake target config: %w", err)
	}
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("read fake target config %s: %w", path, err)
	}
	return &c, nil
}

// Target is the fake target.
type Target struct {
	cfg Config
	sc  *scenario.Scenario
	// Calls records the methods called, e.g. "setup s", "step 1",
	// "probe ID", "close".
	Calls []string
}

// New returns a fake target configured by cfg.
func New(cfg Config) *Target { return &Target{cfg: cfg} }

// Name returns "fake".
func (t *Target) Name() string { return Name }

// Features returns the configured features, or all of them.
func (t *Target) Features() features.Set {
	if t.cfg.Features != nil {
		return features.NewSet(t.cfg.Features...)
	}
	s := features.Set{}
	for _, p := range features.Profiles {
		for _, f := range p.Features {
			s[f] = struct{}{}
		}
	}
	return s
}

// Setup remembers the scenario; it fails for scenarios in FailSetup.
func (t *Target) Setup(_ context.Context, sc *scenario.Scenario) error {
	t.Calls = append(t.Calls, "setup "+sc.Metadata.Name)
	for _, name := range t.cfg.FailSetup {
		if name == sc.Metadata.Name {
			return errors.New("fake: setup fails as configured")
		}
	}
	t.sc = sc
	return nil
}

// Step does nothing; it fails for steps in FailSteps.
func (t *Target) Step(_ context.Context, st scenario.Step) error {
	if t.sc == nil {
		return errors.New("fake: step before setup")
	}
	t.Calls = append(t.Calls, fmt.Sprintf("step %d", st.Index))
	for _, f := range t.cfg.FailSteps {
		if f.Scenario == t.sc.Metadata.Name && f.Step == st.Index {
			return errors.New("fake: step fails as configured")
		}
	}
	return nil
}

// Probe answers with the probe's expectation, changed by its override.
func (t *Target) Probe(ctx context.Context, p scenario.Probe) (target.Observation, error) {
	if t.sc == nil {
		return target.Observation{}, errors.New("fake: probe before setup")
	}
	if err := ctx.Err(); err != nil {
		return target.Observation{}, err
	}
	t.Calls = append(t.Calls, "probe "+p.ID)
	exp := p.Expect
	obs := target.Observation{Verdict: target.Denied, DropReason: exp.DropReason, HTTPStatus: exp.HTTPStatus}
	if exp.Verdict == scenario.Allow {
		obs.Verdict = target.Allowed
	}
	if len(exp.BackendIn) > 0 {
		obs.Backend = exp.BackendIn[0]
	}
	client := t.addrOf(p.From, p.Family)
	obs.SourceSeen = t.sourceSeen(exp.SourceSeen, client, p.Family)
	for _, o := range t.cfg.Overrides {
		if o.Scenario != t.sc.Metadata.Name || o.Probe != p.ID {
			continue
		}
		if o.Error != "" {
			return target.Observation{}, errors.New(o.Error)
		}
		if o.Unsupported {
			return target.Observation{}, fmt.Errorf("fake: %w: configured", target.ErrUnsupported)
		}
		if o.Verdict != "" {
			obs.Verdict = o.Verdict
		}
		if o.DropReason != "" {
			obs.DropReason = o.DropReason
		}
		if o.HTTPStatus != 0 {
			obs.HTTPStatus = o.HTTPStatus
		}
		if o.Backend != "" {
			obs.Backend = o.Backend
		}
		if o.SourceSeen != "" {
			obs.SourceSeen = t.sourceSeen(o.SourceSeen, client, p.Family)
		}
	}
	obs.Flows = []*flow.Flow{t.flowOf(p, obs, client)}
	return obs, nil
}

// Close forgets the scenario.
func (t *Target) Close() error {
	t.Calls = append(t.Calls, "close")
	t.sc = nil
	return nil
}

func (t *Target) sourceSeen(want string, client netip.Addr, fam scenario.Family) netip.Addr {
	switch want {
	case "":
		return client
	case "client":
		return client
	case "node":
		for _, n := range t.sc.Cluster.Nodes {
			if a := pick(n.IPv4, n.IPv6, fam); a.IsValid() {
				return a
			}
		}
		return fallback(fam, 1)
	}
	a, _ := netip.ParseAddr(want)
	return a
}

// addrOf returns the scenario's address of a probe endpoint, or a made-up
// one when the scenario leaves it to the target.
func (t *Target) addrOf(p scenario.Peer, fam scenario.Family) netip.Addr {
	switch p.Kind {
	case scenario.PeerPod:
		pods := append([]scenario.Pod(nil), t.sc.Cluster.Pods...)
		for _, st := range t.sc.Steps {
			pods = append(pods, st.AddPods...)
		}
		for i, pod := range pods {
			if pod.Key() == p.Name {
				if a := pick(pod.IPv4, pod.IPv6, fam); a.IsValid() {
					return a
				}
				return fallback(fam, 100+i)
			}
		}
	case scenario.PeerExternal:
		for _, e := range t.sc.Cluster.Externals {
			if e.Name == p.Name {
				return pick(e.IPv4, e.IPv6, fam)
			}
		}
	case scenario.PeerNode:
		for _, n := range t.sc.Cluster.Nodes {
			if n.Name == p.Name {
				return pick(n.IPv4, n.IPv6, fam)
			}
		}
	case scenario.PeerService:
		for _, svc := range t.sc.Cluster.Services {
			if svc.Key() == p.Name {
				return pick(svc.ClusterIP, svc.ClusterIPv6, fam)
			}
		}
	case scenario.PeerIP:
		return p.Addr
	}
	return netip.Addr{}
}

func (t *Target) flowOf(p scenario.Probe, obs target.Observation, client netip.Addr) *flow.Flow {
	f := &flow.Flow{
		Verdict:               flow.Verdict_FORWARDED,
		TraceObservationPoint: flow.TraceObservationPoint_TO_ENDPOINT,
		TrafficDirection:      flow.TrafficDirection_INGRESS,
		NodeName:              "fake",
		IP:                    &flow.IP{Destination: t.addrOf(p.To, p.Family).String()},
		Source:                endpoint(p.From),
		Destination:           endpoint(p.To),
		L4: &flow.Layer4{Protocol: &flow.Layer4_TCP{TCP: &flow.TCP{
			SourcePort: 40000, DestinationPort: uint32(p.Port), Flags: &flow.TCPFlags{SYN: true},
		}}},
	}
	if client.IsValid() {
		f.IP.Source = client.String()
	}
	if obs.Verdict == target.Denied {
		f.Verdict = flow.Verdict_DROPPED
		f.TraceObservationPoint = flow.TraceObservationPoint_UNKNOWN_POINT
		if v, ok := flow.DropReason_value[obs.DropReason]; ok {
			f.DropReasonDesc = flow.DropReason(v)
			f.DropReason = uint32(v)
		}
	}
	return f
}

func endpoint(p scenario.Peer) *flow.Endpoint {
	if p.Kind != scenario.PeerPod {
		return nil
	}
	ns, name := splitKey(p.Name)
	return &flow.Endpoint{Namespace: ns, PodName: name}
}

func pick(v4, v6 netip.Addr, fam scenario.Family) netip.Addr {
	if fam == scenario.IPv6 {
		return v6
	}
	return v4
}

// fallback makes up the address number i of a family, in documentation
// ranges.
func fallback(fam scenario.Family, i int) netip.Addr {
	if fam == scenario.IPv6 {
		return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)})
	}
	return netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})
}

func splitKey(key string) (ns, name string) {
	ns, name, ok := strings.Cut(key, "/")
	if !ok {
		return "", key
	}
	return ns, name
}
