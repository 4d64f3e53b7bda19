package differential

import (
	"bytes"
	"context"
	"fmt"
	"strconv"

	"go.yaml.in/yaml/v3"

	"github.com/ciliaproject/cilia/conformance/generate"
	"github.com/ciliaproject/cilia/conformance/scenario"
	"github.com/ciliaproject/cilia/conformance/target"
)

// Regression turns a scenario on which oracle and other disagree into a
// minimal regression scenario file:
//
//  1. the matrices are replaced by explicit probes: the disagreeing cells
//     (and, in a step with none, its first probe, since every step must
//     probe something);
//  2. generate.Shrink removes whatever is not needed for oracle and other
//     to still disagree (a shrink candidate on which a target errs does
//     not count as disagreeing);
//  3. every probe's expectation is set to the oracle's observation (the
//     verdict, and the drop reason when the oracle gives one);
//  4. metadata: name "regression-seed-N", source "generated: seed N,
//     shrunk", a description of the disagreement.
//
// It returns the file and the disagreements of the shrunk scenario; nil
// and no error when the targets agree on scenarioYAML.
func Regression(ctx context.Context, oracle, other string, seed int64, scenarioYAML []byte) ([]byte, []Disagreement, error) {
	ds, err := Compare(ctx, oracle, other, scenarioYAML)
	if err != nil || len(ds) == 0 {
		return nil, nil, err
	}
	sc, err := scenario.Parse("generated.yaml", scenarioYAML)
	if err != nil {
		return nil, nil, err
	}
	explicit, err := explicitProbes(scenarioYAML, sc, ds)
	if err != nil {
		return nil, nil, err
	}
	// A shrink step must keep one of the original disagreements (same ends,
	// port, protocol, family and observations; step numbers may move), so
	// that shrinking does not drift to another one.
	want := map[string]bool{}
	for _, d := range ds {
		want[d.signature()] = true
	}
	failing := func(b []byte) bool {
		d, err := Compare(ctx, oracle, other, b)
		if err != nil {
			return false
		}
		for _, x := range d {
			if want[x.signature()] {
				return true
			}
		}
		return false
	}
	start := scenarioYAML
	if failing(explicit) {
		start = explicit
	}
	small := generate.Shrink(start, failing)
	ds, err = Compare(ctx, oracle, other, small)
	if err != nil {
		return nil, nil, err
	}
	out, err := fillExpectations(ctx, oracle, other, seed, small, ds)
	if err != nil {
		return nil, nil, err
	}
	return out, ds, nil
}

// explicitProbes rewrites the file so that every step lists explicit
// probes: the disagreeing ones, or the first probe of a step without any.
func explicitProbes(data []byte, sc *scenario.Scenario, ds []Disagreement) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	root := doc.Content[0]
	bad := map[string]bool{}
	for _, d := range ds {
		bad[d.Probe.ID] = true
	}
	lists := stepMappings(root)
	if len(lists) != len(sc.Steps) {
		return nil, fmt.Errorf("explicit probes: %d step sections for %d steps", len(lists), len(sc.Steps))
	}
	for i, m := range lists {
		var ps []scenario.Probe
		for _, p := range sc.Steps[i].Probes {
			if bad[p.ID] {
				ps = append(ps, p)
			}
		}
		if len(ps) == 0 && len(sc.Steps[i].Probes) > 0 {
			ps = sc.Steps[i].Probes[:1]
		}
		seq := &yaml.Node{Kind: yaml.SequenceNode}
		for _, p := range ps {
			seq.Content = append(seq.Content, probeNode(p, scenario.Expectation{Verdict: scenario.Allow}))
		}
		deleteKey(m, "matrix")
		setKey(m, "probes", seq)
	}
	return encode(&doc)
}

// stepMappings returns the mappings holding each step's probes, in step
// order: the top level (when it has probes or a matrix), then each entry
// of steps.
func stepMappings(root *yaml.Node) []*yaml.Node {
	var out []*yaml.Node
	if getKey(root, "probes") != nil || getKey(root, "matrix") != nil {
		out = append(out, root)
	}
	if steps := getKey(root, "steps"); steps != nil {
		out = append(out, steps.Content...)
	}
	return out
}

// fillExpectations sets every probe's expect to the oracle's observation
// and writes the metadata of a regression.
func fillExpectations(ctx context.Context, oracle, other string, seed int64, data []byte, ds []Disagreement) ([]byte, error) {
	sc, err := scenario.Parse("regression.yaml", data)
	if err != nil {
		return nil, err
	}
	obs, err := Run(ctx, oracle, sc)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	root := doc.Content[0]
	lists := stepMappings(root)
	if len(lists) != len(sc.Steps) {
		return nil, fmt.Errorf("fill expectations: %d step sections for %d steps", len(lists), len(sc.Steps))
	}
	for i, m := range lists {
		if getKey(m, "matrix") != nil {
			return nil, fmt.Errorf("fill expectations: step %d still has a matrix", i)
		}
		seq := &yaml.Node{Kind: yaml.SequenceNode}
		for _, p := range sc.Steps[i].Probes {
			o, ok := obs[p.ID]
			if !ok {
				return nil, fmt.Errorf("fill expectations: %s skipped %s", oracle, p.ID)
			}
			e := scenario.Expectation{Verdict: scenario.Allow}
			if o.Verdict == target.Denied {
				e = scenario.Expectation{Verdict: scenario.Deny, DropReason: o.DropReason}
			}
			seq.Content = append(seq.Content, probeNode(p, e))
		}
		setKey(m, "probes", seq)
	}
	md := getKey(root, "metadata")
	name := "regression-seed-" + strconv.FormatUint(uint64(seed), 10)
	desc := fmt.Sprintf("Shrunk from generated seed %d: %s and %s disagree. Expectations are %s's (the oracle), checked by hand against docs/policy-engine.md. Disagreements:\n%s",
		seed, oracle, other, oracle, Summary(oracle, other, ds))
	setKey(md, "name", scalar(name))
	setKey(md, "description", &yaml.Node{Kind: yaml.ScalarNode, Value: desc, Style: yaml.LiteralStyle})
	setKey(md, "source", scalar(fmt.Sprintf("generated: seed %d, shrunk", seed)))
	out, err := encode(&doc)
	if err != nil {
		return nil, err
	}
	if _, err := scenario.Parse("regression.yaml", out); err != nil {
		return nil, fmt.Errorf("fill expectations: the regression file does not load: %w", err)
	}
	return out, nil
}

// probeNode writes a probe in the flow style of hand-written files.
func probeNode(p scenario.Probe, e scenario.Expectation) *yaml.Node {
	m := &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}
	add := func(k string, v *yaml.Node) { m.Content = append(m.Content, scalar(k), v) }
	add("from", scalar(p.From.String()))
	add("to", scalar(p.To.String()))
	if p.Protocol != scenario.ICMP {
		if p.PortName != "" {
			add("port", scalar(p.PortName))
		} else {
			add("port", &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.Itoa(int(p.Port))})
		}
	}
	if p.Protocol != scenario.TCP {
		add("protocol", scalar(string(p.Protocol)))
	}
	if p.Family == scenario.IPv6 {
		add("family", scalar("ipv6"))
	}
	if e.DropReason == "" {
		add("expect", scalar(string(e.Verdict)))
	} else {
		em := &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}
		em.Content = append(em.Content, scalar("verdict"), scalar(string(e.Verdict)), scalar("dropReason"), scalar(e.DropReason))
		add("expect", em)
	}
	return m
}

func scalar(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
}

func getKey(m *yaml.Node, k string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == k {
			return m.Content[i+1]
		}
	}
	return nil
}

func setKey(m *yaml.Node, k string, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == k {
			m.Content[i+1] = v
			return
		}
	}
	m.Content = append(m.Content, scalar(k), v)
}

func deleteKey(m *yaml.Node, k string) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == k {
			m.Content = append(m.Content[:i], m.Content[i+2:]...)
			return
		}
	}
}

func encode(doc *yaml.Node) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// signature identifies a disagreement independently of the step number.
func (d Disagreement) signature() string {
	p := d.Probe
	return fmt.Sprintf("%s>%s %d/%s/%s %s %s|%s %s|%s %s", p.From, p.To, p.Port, p.PortName, p.Protocol, p.Family,
		d.A.Verdict, d.A.DropReason, d.B.Verdict, d.B.DropReason, d.What)
}
