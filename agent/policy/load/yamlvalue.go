package load

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
	sigsyaml "sigs.k8s.io/yaml"
)

// Scalars are read the way kubectl reads them, not the way YAML 1.2
// would: kubectl converts YAML to JSON with sigs.k8s.io/yaml, which
// follows YAML 1.1, so a bare yes, no, on, off, y or n is a boolean,
// 0755 is the octal number 493 and 1_000 is 1000. This matters: a
// label value written as a bare yes is the boolean true, and the API
// server rejects it where a string is required. Quoted and block
// scalars are always strings.

// nullValue marks a YAML null (a key with no value, ~, null).
type nullValue struct{}

// scalarValue returns the value of a scalar node as kubectl reads it:
// nullValue{}, bool, int64, float64 or string.
func scalarValue(n *yaml.Node) any {
	if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
		return n.Value
	}
	if n.Style&yaml.TaggedStyle != 0 && n.ShortTag() == "!!str" {
		return n.Value
	}
	return resolvePlain(n.Value)
}

// resolvePlain resolves a plain (unquoted) scalar with kubectl's YAML
// library; values that are obviously strings or small decimal numbers
// take a fast path.
func resolvePlain(s string) any {
	if isObviousString(s) {
		return s
	}
	if isSmallDecimal(s) {
		v, _ := strconv.ParseInt(s, 10, 64)
		return v
	}
	j, err := sigsyaml.YAMLToJSON([]byte(s))
	if err != nil {
		return s
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return s
	}
	switch v := v.(type) {
	case nil:
		return nullValue{}
	case bool, string:
		return v
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i
		}
		f, err := v.Float64()
		if err != nil {
			return s
		}
		return f
	default: // a plain scalar that reads as a flow collection: keep the text
		return s
	}
}

// yaml11Words are the plain scalars YAML 1.1 reads as booleans or null.
var yaml11Words = map[string]bool{
	"y": true, "Y": true, "yes": true, "Yes": true, "YES": true,
	"n": true, "N": true, "no": true, "No": true, "NO": true,
	"true": true, "True": true, "TRUE": true, "false": true, "False": true, "FALSE": true,
	"on": true, "On": true, "ON": true, "off": true, "Off": true, "OFF": true,
	"null": true, "Null": true, "NULL": true,
}

// isObviousString reports whether a plain scalar is certainly a string:
// it starts with a letter, holds only letters, digits and -_./: and is
// not a YAML 1.1 boolean or null word.
func isObviousString(s string) bool {
	if s == "" || yaml11Words[s] {
		return false
	}
	c := s[0]
	if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
		return false
	}
	if (c == 'i' || c == 'I' || c == 'n' || c == 'N') && len(s) <= 4 {
		return false // leave .inf/.nan look-alikes to the library
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-', c == '_', c == '.', c == '/', c == ':':
		default:
			return false
		}
	}
	return true
}

// isSmallDecimal reports whether s is a decimal integer without sign or
// leading zero that fits an int64 comfortably.
func isSmallDecimal(s string) bool {
	if s == "" || len(s) > 15 || (s[0] == '0' && len(s) > 1) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// keyString returns a mapping key as kubectl turns it into a JSON
// object key: strings as they are, numbers and booleans formatted.
func keyString(n *yaml.Node) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		return "", false
	}
	switch v := scalarValue(n).(type) {
	case string:
		return v, true
	case bool:
		return strconv.FormatBool(v), true
	case int64:
		return strconv.FormatInt(v, 10), true
	case float64:
		s := strconv.FormatFloat(v, 'g', -1, 32)
		switch {
		case math.IsInf(v, 1):
			s = ".inf"
		case math.IsInf(v, -1):
			s = "-.inf"
		case math.IsNaN(v):
			s = ".nan"
		}
		return s, true
	}
	return "", false // null keys are not supported by kubectl either
}

// resolveAlias follows aliases to the node they refer to.
func resolveAlias(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// pair is one key-value entry of a mapping.
type pair struct {
	key   string
	keyN  *yaml.Node
	value *yaml.Node
}

// mappingPairs returns the entries of a mapping node in order, with
// merge keys (<<: *anchor) expanded: a merged entry comes after the
// written ones and never overrides them. Problems (a duplicate key, a
// key that is not a string) are returned as messages with the node
// they concern.
func mappingPairs(n *yaml.Node) ([]pair, []nodeProblem) {
	var problems []nodeProblem
	pairs := mergedMappingPairs(n, &problems, 0)
	return pairs, problems
}

// maxMergeDepth bounds merge keys inside merged mappings.
const maxMergeDepth = 20

// mergedMappingPairs is mappingPairs at a depth of merge keys.
func mergedMappingPairs(n *yaml.Node, problems *[]nodeProblem, depth int) []pair {
	var (
		pairs  []pair
		merged []pair
		seen   = map[string]*yaml.Node{}
	)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merged = append(merged, mergeSource(v, problems, depth)...)
			continue
		}
		key, ok := keyString(resolveAlias(k))
		if !ok {
			*problems = append(*problems, nodeProblem{k, "a key must be a string"})
			continue
		}
		if first, dup := seen[key]; dup {
			*problems = append(*problems, nodeProblem{k, fmt.Sprintf(
				"duplicate key %q (first written at line %d); kubectl rejects the object", key, first.Line)})
			continue
		}
		seen[key] = k
		pairs = append(pairs, pair{key: key, keyN: k, value: v})
	}
	for _, p := range merged {
		if _, dup := seen[p.key]; !dup {
			seen[p.key] = p.keyN
			pairs = append(pairs, p)
		}
	}
	return pairs
}

// mergeSource returns the entries a merge key (<<) brings in: those of
// one mapping or of a list of mappings, earlier ones first.
func mergeSource(v *yaml.Node, problems *[]nodeProblem, depth int) []pair {
	v = resolveAlias(v)
	if depth > maxMergeDepth {
		*problems = append(*problems, nodeProblem{v, "merge keys (<<) nest too deeply (a recursive alias?)"})
		return nil
	}
	switch v.Kind {
	case yaml.MappingNode:
		return mergedMappingPairs(v, problems, depth+1)
	case yaml.SequenceNode:
		var out []pair
		seen := map[string]bool{}
		for _, item := range v.Content {
			for _, p := range mergeSource(item, problems, depth+1) {
				if !seen[p.key] {
					seen[p.key] = true
					out = append(out, p)
				}
			}
		}
		return out
	}
	*problems = append(*problems, nodeProblem{v, "a merge key (<<) needs a map or a list of maps"})
	return nil
}

// nodeProblem is a problem with the YAML structure at a node.
type nodeProblem struct {
	node    *yaml.Node
	message string
}

// describeValue names the YAML type of a value for messages:
// "a string", "a number", "a list", ...
func describeValue(n *yaml.Node) string {
	n = resolveAlias(n)
	switch n.Kind {
	case yaml.MappingNode:
		return "a map"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch v := scalarValue(n).(type) {
		case nullValue:
			return "null"
		case bool:
			return fmt.Sprintf("the boolean %v", v)
		case int64:
			return fmt.Sprintf("the number %d", v)
		case float64:
			return fmt.Sprintf("the number %s", strconv.FormatFloat(v, 'g', -1, 64))
		case string:
			return fmt.Sprintf("the string %q", shorten(v))
		}
	}
	return "an unsupported value"
}

// shorten cuts long values for messages.
func shorten(s string) string {
	if len(s) > 60 {
		return s[:57] + "..."
	}
	return strings.ReplaceAll(s, "\n", " ")
}
