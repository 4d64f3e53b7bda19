package scenario

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/ciliaproject/cilia/internal/editdistance"
)

// decoder walks a scenario's YAML nodes and collects problems instead of
// stopping at the first one.
type decoder struct {
	file  string
	probs []Problem
}

// loc is where a value was written: its node and its field path.
type loc struct {
	n    *yaml.Node
	path string
}

// at returns the location of n under path.
func at(n *yaml.Node, path string) loc { return loc{n: n, path: path} }

// errorf records a problem at l.
func (d *decoder) errorf(l loc, format string, args ...any) {
	p := Problem{File: d.file, Path: l.path, Message: fmt.Sprintf(format, args...)}
	if l.n != nil {
		p.Line, p.Column = l.n.Line, l.n.Column
	}
	d.probs = append(d.probs, p)
}

// err returns the collected problems as a *ValidationError, or nil.
func (d *decoder) err() error {
	if len(d.probs) == 0 {
		return nil
	}
	ps := append([]Problem(nil), d.probs...)
	sortProblems(ps)
	return &ValidationError{Problems: ps}
}

// field joins a field name to a path.
func field(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// index joins a list index to a path.
func index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// document parses data as exactly one YAML document and returns its root
// node (aliases resolved lazily by the helpers below).
func (d *decoder) document(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			d.errorf(loc{}, "empty file: expected a Scenario")
			return nil
		}
		d.yamlError(err)
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		d.errorf(at(&extra, ""), "a file holds one scenario; found a second YAML document")
	} else if !errors.Is(err, io.EOF) {
		d.yamlError(err)
	}
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		return doc.Content[0]
	}
	return &doc
}

// yamlError records a YAML syntax error with the line it names.
func (d *decoder) yamlError(err error) {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		d.probs = append(d.probs, Problem{File: d.file, Line: line, Message: "invalid YAML: " + m[2]})
		return
	}
	d.errorf(loc{}, "invalid YAML: %s", strings.TrimPrefix(msg, "yaml: "))
}

// resolve follows aliases.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// isNull reports whether n is absent or an explicit null.
func isNull(n *yaml.Node) bool {
	n = resolve(n)
	return n == nil || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// describe names what n is, for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	n = resolve(n)
	if n == nil {
		return "nothing"
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "null"
		case "!!bool":
			return fmt.Sprintf("a boolean (%s)", n.Value)
		case "!!int":
			return fmt.Sprintf("an integer (%s)", n.Value)
		case "!!float":
			return fmt.Sprintf("a number (%s)", n.Value)
		case "!!str":
			return fmt.Sprintf("the string %q", n.Value)
		}
		return fmt.Sprintf("a %s value", n.ShortTag())
	}
	return "an unexpected YAML node"
}

// fieldSet is a decoded mapping whose keys have been checked against the
// known fields.
type fieldSet struct {
	d    *decoder
	node *yaml.Node
	path string
	vals map[string]*yaml.Node
}

// fields checks that n is a mapping whose keys are all known, without
// duplicates, and returns its fields. Merge keys (<<) are expanded; keys
// written explicitly take precedence. ok is false when n is not a mapping.
func (d *decoder) fields(n *yaml.Node, path string, known ...string) (*fieldSet, bool) {
	n = resolve(n)
	if n == nil || n.Kind != yaml.MappingNode {
		d.errorf(at(n, path), "expected a mapping, got %s", describe(n))
		return &fieldSet{d: d, node: n, path: path, vals: map[string]*yaml.Node{}}, false
	}
	fs := &fieldSet{d: d, node: n, path: path, vals: map[string]*yaml.Node{}}
	keyAt := map[string]*yaml.Node{}
	for _, kv := range mergedPairs(n) {
		k, v := kv[0], kv[1]
		name, ok := d.key(k, path)
		if !ok {
			continue
		}
		if prev, dup := keyAt[name]; dup {
			if kv[2] == nil { // explicit key written twice
				d.errorf(at(k, field(path, name)), "duplicate field %q (first at line %d)", name, prev.Line)
			}
			continue
		}
		keyAt[name] = k
		if !contains(known, name) {
			d.errorf(at(k, field(path, name)), "unknown field %q%s", name, suggest(name, known, "known fields"))
			continue
		}
		fs.vals[name] = v
	}
	return fs, true
}

// mergedPairs returns the key/value pairs of a mapping with merge keys
// expanded: explicit pairs first (third element nil), then merged ones
// (third element non-nil).
func mergedPairs(n *yaml.Node) [][3]*yaml.Node {
	var explicit, merged [][3]*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			for _, m := range mergeSources(v) {
				for _, kv := range mergedPairs(m) {
					merged = append(merged, [3]*yaml.Node{kv[0], kv[1], k})
				}
			}
			continue
		}
		explicit = append(explicit, [3]*yaml.Node{k, v, nil})
	}
	return append(explicit, merged...)
}

// mergeSources returns the mappings a merge key's value names.
func mergeSources(v *yaml.Node) []*yaml.Node {
	v = resolve(v)
	switch v.Kind {
	case yaml.MappingNode:
		return []*yaml.Node{v}
	case yaml.SequenceNode:
		var out []*yaml.Node
		for _, e := range v.Content {
			if e = resolve(e); e.Kind == yaml.MappingNode {
				out = append(out, e)
			}
		}
		return out
	}
	return nil
}

// key returns a mapping key as a string.
func (d *decoder) key(k *yaml.Node, path string) (string, bool) {
	k = resolve(k)
	if k.Kind != yaml.ScalarNode || k.ShortTag() == "!!null" {
		d.errorf(at(k, path), "expected a field name, got %s", describe(k))
		return "", false
	}
	return k.Value, true
}

// has reports whether the field is present and not null.
func (fs *fieldSet) has(name string) bool { return !isNull(fs.vals[name]) }

// get returns the field's node, nil when absent or null.
func (fs *fieldSet) get(name string) *yaml.Node {
	if v := fs.vals[name]; !isNull(v) {
		return resolve(v)
	}
	return nil
}

// at returns the location of a field's value (the mapping itself when the
// field is absent).
func (fs *fieldSet) at(name string) loc {
	if v := fs.get(name); v != nil {
		return at(v, field(fs.path, name))
	}
	return at(fs.node, field(fs.path, name))
}

// require returns the field's node or records that it is missing.
func (fs *fieldSet) require(name string) *yaml.Node {
	v := fs.get(name)
	if v == nil {
		fs.d.errorf(at(fs.node, field(fs.path, name)), "required field is missing")
	}
	return v
}

// str returns the field as a string; "" and false when absent or invalid.
func (fs *fieldSet) str(name string) (string, bool) {
	v := fs.get(name)
	if v == nil {
		return "", false
	}
	return fs.d.str(v, field(fs.path, name))
}

// requireStr returns the required, non-empty string field.
func (fs *fieldSet) requireStr(name string) (string, bool) {
	v := fs.require(name)
	if v == nil {
		return "", false
	}
	s, ok := fs.d.str(v, field(fs.path, name))
	if ok && s == "" {
		fs.d.errorf(fs.at(name), "must not be empty")
		return "", false
	}
	return s, ok
}

// str decodes a string scalar. Other scalars are refused with a hint to
// quote them: Kubernetes refuses them too (a label value true is a
// boolean, not the string "true").
func (d *decoder) str(n *yaml.Node, path string) (string, bool) {
	n = resolve(n)
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" {
		return n.Value, true
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() != "!!null" {
		d.errorf(at(n, path), "expected a string, got %s; quote it (%q) if a string is meant", describe(n), n.Value)
		return "", false
	}
	d.errorf(at(n, path), "expected a string, got %s", describe(n))
	return "", false
}

// integer decodes an integer scalar.
func (d *decoder) integer(n *yaml.Node, path string) (int64, bool) {
	n = resolve(n)
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!int" {
		var v int64
		if err := n.Decode(&v); err == nil {
			return v, true
		}
		d.errorf(at(n, path), "integer %s is out of range", n.Value)
		return 0, false
	}
	d.errorf(at(n, path), "expected an integer, got %s", describe(n))
	return 0, false
}

// list decodes a sequence.
func (d *decoder) list(n *yaml.Node, path string) ([]*yaml.Node, bool) {
	n = resolve(n)
	if n.Kind != yaml.SequenceNode {
		d.errorf(at(n, path), "expected a list, got %s", describe(n))
		return nil, false
	}
	out := make([]*yaml.Node, len(n.Content))
	for i, e := range n.Content {
		out[i] = resolve(e)
	}
	return out, true
}

// strList decodes a list of strings with their locations.
func (d *decoder) strList(n *yaml.Node, path string) ([]string, []loc) {
	items, _ := d.list(n, path)
	var out []string
	var locs []loc
	for i, e := range items {
		if s, ok := d.str(e, index(path, i)); ok {
			out = append(out, s)
			locs = append(locs, at(e, index(path, i)))
		}
	}
	return out, locs
}

// strMap decodes a mapping of strings to strings (labels, selectors,
// headers, annotations). It never returns nil.
func (d *decoder) strMap(n *yaml.Node, path string) map[string]string {
	out := map[string]string{}
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		d.errorf(at(n, path), "expected a mapping, got %s", describe(n))
		return out
	}
	seen := map[string]int{}
	for _, kv := range mergedPairs(n) {
		k, ok := d.key(kv[0], path)
		if !ok {
			continue
		}
		if line, dup := seen[k]; dup {
			if kv[2] == nil {
				d.errorf(at(kv[0], path), "duplicate key %q (first at line %d)", k, line)
			}
			continue
		}
		seen[k] = kv[0].Line
		if v, ok := d.str(kv[1], fmt.Sprintf("%s[%q]", path, k)); ok {
			out[k] = v
		}
	}
	return out
}

// addr decodes an IP address of the given family ("" for either).
func (d *decoder) addr(n *yaml.Node, path string, fam Family) (netip.Addr, bool) {
	s, ok := d.str(n, path)
	if !ok {
		return netip.Addr{}, false
	}
	a, err := parseAddr(s)
	if err != nil {
		d.errorf(at(n, path), "%v", err)
		return netip.Addr{}, false
	}
	if fam != "" && familyOf(a) != fam {
		d.errorf(at(n, path), "expected an %s address, got %s", familyName(fam), a)
		return netip.Addr{}, false
	}
	return a, true
}

// parseAddr parses a plain IPv4 or IPv6 address (no zone, no IPv4-mapped
// IPv6 form).
func parseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("invalid IP address %q", s)
	}
	if a.Is4In6() {
		return netip.Addr{}, fmt.Errorf("invalid IP address %q: write IPv4-mapped addresses as plain IPv4", s)
	}
	return a, nil
}

// familyOf returns the family of a.
func familyOf(a netip.Addr) Family {
	if a.Is4() {
		return IPv4
	}
	return IPv6
}

// familyName is "IPv4" or "IPv6".
func familyName(f Family) string {
	if f == IPv6 {
		return "IPv6"
	}
	return "IPv4"
}

// contains reports whether s is in list.
func contains[T comparable](list []T, s T) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// suggest returns " (did you mean "x"?)" for the candidate closest to s
// when one is close, else " (<what>: a, b, c)" listing them all (at most
// 12), or "" when there are none.
func suggest(s string, candidates []string, what string) string {
	best, bestD := "", 1<<30
	for _, c := range candidates {
		if dist := editdistance.Levenshtein(strings.ToLower(s), strings.ToLower(c)); dist < bestD {
			best, bestD = c, dist
		}
	}
	if best != "" && bestD <= maxTypo(s) {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	if len(candidates) == 0 {
		return ""
	}
	list := append([]string(nil), candidates...)
	sort.Strings(list)
	more := ""
	if len(list) > 12 {
		list, more = list[:12], ", ..."
	}
	return fmt.Sprintf(" (%s: %s%s)", what, strings.Join(list, ", "), more)
}

// maxTypo is how many edits still count as a typo of s.
func maxTypo(s string) int {
	switch {
	case len(s) <= 3:
		return 1
	case len(s) <= 8:
		return 2
	}
	return 3
}
