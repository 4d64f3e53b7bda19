package generate

import (
	"bytes"

	"go.yaml.in/yaml/v3"

	"github.com/ciliaproject/cilia/conformance/scenario"
)

// Shrink greedily makes a failing scenario smaller while failing still
// holds: it tries to remove every element of every YAML sequence
// (policies, rules, peers, selector terms, ports, pods, externals, steps,
// probes, matrix entries and their patterns and ports) and every optional
// mapping entry (a selector's matchLabels entry, an except, a
// policyTypes, a protocol, ...), larger things first, keeping a removal
// when the result is still a valid scenario (scenario.Parse) and failing
// returns true. It repeats until a whole pass removes nothing, and returns
// the smallest file found (scenarioYAML itself when nothing could go, or
// when it does not parse).
//
// failing should be deterministic; it is not called on files that do not
// parse. The metadata section is left alone.
func Shrink(scenarioYAML []byte, failing func([]byte) bool) []byte {
	var doc yaml.Node
	if err := yaml.Unmarshal(scenarioYAML, &doc); err != nil || len(doc.Content) == 0 {
		return scenarioYAML
	}
	best := scenarioYAML
	for changed := true; changed; {
		changed = false
		for i := 0; ; i++ {
			cands := candidates(&doc)
			if i >= len(cands) {
				break
			}
			c := cands[i]
			undo := c.remove()
			out, err := encode(&doc)
			if err == nil && valid(out) && failing(out) {
				best = out
				changed = true
				i-- // the next candidate moved into this position
				continue
			}
			undo()
		}
	}
	return best
}

func valid(data []byte) bool {
	_, err := scenario.Parse("shrink.yaml", data)
	return err == nil
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

// candidate is one removable element: entry i of a sequence, or key/value
// pair i (Content[2i], Content[2i+1]) of a mapping.
type candidate struct {
	parent *yaml.Node
	i      int
}

func (c candidate) remove() (undo func()) {
	saved := append([]*yaml.Node(nil), c.parent.Content...)
	w := 1
	if c.parent.Kind == yaml.MappingNode {
		w = 2
	}
	start := c.i * w
	c.parent.Content = append(append([]*yaml.Node(nil), saved[:start]...), saved[start+w:]...)
	return func() { c.parent.Content = saved }
}

// candidates lists the removable elements in pre-order (a whole policy
// before its rules), skipping the document's required top-level keys and
// metadata.
func candidates(doc *yaml.Node) []candidate {
	root := doc.Content[0]
	var out []candidate
	var walk func(n *yaml.Node, top bool)
	parentIsSeq := false
	walk = func(n *yaml.Node, top bool) {
		switch n.Kind {
		case yaml.SequenceNode:
			for i, c := range n.Content {
				out = append(out, candidate{n, i})
				parentIsSeq = true
				walk(c, false)
			}
		case yaml.MappingNode:
			inSeq := parentIsSeq
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i].Value, n.Content[i+1]
				parentIsSeq = false
				if top && (k == "apiVersion" || k == "kind" || k == "metadata") {
					continue
				}
				if !top && (k == "apiVersion" || k == "kind" || k == "metadata" || k == "name") {
					// identities of objects and pods: never removable
					walk(v, false)
					continue
				}
				// The last key of a list element stays: emptying it to {}
				// would change its meaning (an empty selector or port rule
				// selects everything) rather than shrink it; removing the
				// whole element is a candidate of its own.
				if !(inSeq && len(n.Content) == 2) {
					out = append(out, candidate{n, i / 2})
				}
				walk(v, false)
			}
		}
	}
	walk(root, true)
	return out
}
