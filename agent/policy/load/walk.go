package load

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ciliaproject/cilia/internal/editdistance"
)

// walker checks a YAML object against a schema the way the API server
// decodes it, and builds the value the server would store: unknown
// fields are pruned (with a Warning), nulls are pruned (a custom
// resource drops them; for a built-in type null is the zero value),
// values of the wrong type are Errors. It records the position of every
// field it visits.
type walker struct {
	file  string
	kind  Kind
	crd   bool // a custom resource (CNP, CCNP), not a built-in type (NetworkPolicy)
	diags []Diagnostic
	pos   map[string]Position
	// ignoreRoot are top-level keys already reported by classification.
	ignoreRoot map[string]bool
	// depth and visited guard against recursive aliases and alias bombs.
	depth, visited int
	tooBig         bool
}

// Limits of a walk: how deep values nest and how many values one object
// may expand to (aliases can make a small file expand enormously).
const (
	maxDepth   = 100
	maxVisited = 1_000_000
)

// enter counts a value and reports whether the walk may go into it.
func (w *walker) enter(path string, n *yaml.Node) bool {
	w.depth++
	w.visited++
	if w.depth <= maxDepth && w.visited <= maxVisited {
		return true
	}
	if !w.tooBig {
		w.tooBig = true
		w.diag(Error, path, n, "the object nests too deeply or expands to too many values (a recursive or repeated YAML alias?)")
	}
	return false
}

// leave undoes enter's depth count.
func (w *walker) leave() { w.depth-- }

// outcome of walking one value.
type outcome int

const (
	kept        outcome = iota // the value is stored
	droppedNull                // null: pruned (as if the field were not written)
	invalid                    // wrong type or value: an Error was reported
)

// diag records a diagnostic located at node n (or at path's recorded
// position when n is nil).
func (w *walker) diag(sev Severity, path string, n *yaml.Node, format string, args ...any) {
	d := Diagnostic{File: w.file, Path: path, Severity: sev, Message: fmt.Sprintf(format, args...)}
	if n != nil {
		d.Line, d.Column = n.Line, n.Column
	} else if p, ok := w.position(path); ok {
		d.Line, d.Column = p.Line, p.Column
	}
	w.diags = append(w.diags, d)
}

// position returns the recorded position of path or of its nearest
// recorded parent.
func (w *walker) position(path string) (Position, bool) {
	for {
		if p, ok := w.pos[path]; ok {
			return p, true
		}
		if path == "" {
			return Position{}, false
		}
		path = parentPath(path)
	}
}

// hasErrors reports whether an Error was recorded.
func (w *walker) hasErrors() bool {
	for _, d := range w.diags {
		if d.Severity == Error {
			return true
		}
	}
	return false
}

// walk checks the value n at path against s.
func (w *walker) walk(path string, n *yaml.Node, s *schema) (any, outcome) {
	n = resolveAlias(n)
	if n == nil {
		return nil, droppedNull
	}
	if !w.enter(path, n) {
		w.leave()
		return nil, invalid
	}
	defer w.leave()
	if n.Kind == yaml.ScalarNode {
		if _, null := scalarValue(n).(nullValue); null {
			if s.Nullable {
				return nil, kept
			}
			return nil, droppedNull
		}
	}
	if s.acceptsAnything() {
		return w.anyValue(path, n), kept
	}
	if s.IntOrString {
		return w.intOrString(path, n, s)
	}
	switch s.Type {
	case "object":
		return w.object(path, n, s)
	case "array":
		return w.array(path, n, s)
	case "string":
		return w.str(path, n, s)
	case "integer", "number":
		return w.number(path, n, s)
	case "boolean":
		if n.Kind == yaml.ScalarNode {
			if b, ok := scalarValue(n).(bool); ok {
				return b, kept
			}
		}
		w.typeError(path, n, "a boolean (true or false)")
		return nil, invalid
	}
	return w.anyValue(path, n), kept
}

// anyValue converts n to a plain value without checks, recording
// positions.
func (w *walker) anyValue(path string, n *yaml.Node) any {
	n = resolveAlias(n)
	if !w.enter(path, n) {
		w.leave()
		return nil
	}
	defer w.leave()
	switch n.Kind {
	case yaml.MappingNode:
		pairs, problems := mappingPairs(n)
		w.reportProblems(path, problems)
		m := make(map[string]any, len(pairs))
		for _, p := range pairs {
			cp := childPath(path, p.key)
			w.pos[cp] = Position{p.keyN.Line, p.keyN.Column}
			m[p.key] = w.anyValue(cp, p.value)
		}
		return m
	case yaml.SequenceNode:
		l := make([]any, len(n.Content))
		for i, item := range n.Content {
			ip := itemPath(path, i)
			w.pos[ip] = Position{item.Line, item.Column}
			l[i] = w.anyValue(ip, item)
		}
		return l
	case yaml.ScalarNode:
		v := scalarValue(n)
		if _, null := v.(nullValue); null {
			return nil
		}
		return v
	}
	return nil
}

// reportProblems reports duplicate keys and the like as Errors.
func (w *walker) reportProblems(path string, problems []nodeProblem) {
	for _, p := range problems {
		key := p.node.Value
		w.diag(Error, childPath(path, key), p.node, "%s", p.message)
	}
}

// object checks a map against an object schema.
func (w *walker) object(path string, n *yaml.Node, s *schema) (any, outcome) {
	if n.Kind != yaml.MappingNode {
		w.typeError(path, n, "a map of fields")
		return nil, invalid
	}
	pairs, problems := mappingPairs(n)
	w.reportProblems(path, problems)
	out := make(map[string]any, len(pairs))
	written := map[string]bool{} // fields with a value, valid or not
	var unknown, nulls []pair
	for _, p := range pairs {
		cp := childPath(path, p.key)
		w.pos[cp] = Position{p.keyN.Line, p.keyN.Column}
		if path == "" && w.ignoreRoot[p.key] {
			continue
		}
		ps := s.Properties[p.key]
		if ps == nil {
			ps = s.Additional
		}
		if ps == nil {
			if s.PreserveUnknown {
				out[p.key] = w.anyValue(cp, p.value)
			} else {
				unknown = append(unknown, p)
			}
			continue
		}
		if msg, removed := removedFields[p.key]; removed && w.crd && s.Additional == nil && isNonEmptyList(p.value) {
			w.diag(Error, cp, p.keyN, "%s", msg)
			written[p.key] = true
			continue
		}
		v, o := w.walk(cp, p.value, ps)
		switch o {
		case kept:
			out[p.key] = v
			written[p.key] = true
		case invalid:
			written[p.key] = true
		case droppedNull:
			if s.Additional != nil && !ps.Nullable {
				// a map value that is null, e.g. a label written "app:"
				w.typeError(cp, p.value, describeWant(ps))
				continue
			}
			nulls = append(nulls, p)
		}
	}
	w.reportUnknown(path, s, out, unknown)
	w.reportNulls(s, path, out, nulls, unknown)
	if path != "" { // the root's required fields are checked with the metadata
		w.checkRequired(path, s, written, nulls)
	}
	return out, kept
}

// removedFields are fields whose CRD schema only allows an empty list
// because Cilium removed the feature.
var removedFields = map[string]string{
	"fromRequires": "fromRequires was removed in Cilium 1.19 (deprecated since 1.17): the API server only accepts an empty list; " +
		"put the required labels into each fromEndpoints selector instead",
	"toRequires": "toRequires was removed in Cilium 1.19 (deprecated since 1.17): the API server only accepts an empty list; " +
		"put the required labels into each toEndpoints selector instead",
}

// isNonEmptyList reports whether n is a list with items.
func isNonEmptyList(n *yaml.Node) bool {
	n = resolveAlias(n)
	return n.Kind == yaml.SequenceNode && len(n.Content) > 0
}

// checkRequired checks required fields and the oneOf/anyOf constraints
// of an object after pruning.
func (w *walker) checkRequired(path string, s *schema, written map[string]bool, nulls []pair) {
	for _, r := range s.Required {
		if !written[r] {
			w.diag(Error, childPath(path, r), nil, "%s is required%s", r, nullHint(r, nulls))
		}
	}
	if len(s.OneOf) > 0 {
		var present []string
		for _, set := range s.OneOf {
			if hasAll(written, set) {
				present = append(present, strings.Join(set, "+"))
			}
		}
		switch {
		case len(present) == 0:
			w.diag(Error, path, nil, "must have one of %s%s", joinSets(s.OneOf, ", "), nullHintSets(s.OneOf, nulls))
		case len(present) > 1:
			second := present[1]
			w.diag(Error, childPath(path, strings.Split(second, "+")[0]), nil,
				"cannot have both %s and %s", present[0], second)
		}
	}
	if len(s.AnyOf) > 0 {
		ok := false
		for _, set := range s.AnyOf {
			if hasAll(written, set) {
				ok = true
			}
		}
		if !ok {
			w.diag(Error, path, nil, "must have at least one of %s%s", joinSets(s.AnyOf, ", "), nullHintSets(s.AnyOf, nulls))
		}
	}
}

// hasAll reports whether every field of set is written.
func hasAll(written map[string]bool, set []string) bool {
	for _, k := range set {
		if !written[k] {
			return false
		}
	}
	return true
}

// joinSets formats sets of field names: "a, b, c" (a set of several
// fields as "x+y").
func joinSets(sets [][]string, sep string) string {
	parts := make([]string, len(sets))
	for i, s := range sets {
		parts[i] = strings.Join(s, "+")
	}
	return strings.Join(parts, sep)
}

// nullHint explains that a required field was written without a value.
func nullHint(field string, nulls []pair) string {
	for _, p := range nulls {
		if p.key == field {
			return fmt.Sprintf(" (%s is written without a value, which counts as not written)", field)
		}
	}
	return ""
}

// nullHintSets is nullHint for the fields of oneOf/anyOf sets.
func nullHintSets(sets [][]string, nulls []pair) string {
	for _, set := range sets {
		for _, f := range set {
			if h := nullHint(f, nulls); h != "" {
				return h
			}
		}
	}
	return ""
}

// reportUnknown warns about fields that are not in the schema: the API
// server prunes them. In a label selector, a key that is not a field is
// usually a label meant for matchLabels (a mis-indented matchLabels),
// and dropping it changes what the selector selects: the warning says
// what the selector ended up as.
func (w *walker) reportUnknown(path string, s *schema, out map[string]any, unknown []pair) {
	for _, p := range unknown {
		cp := childPath(path, p.key)
		msg := fmt.Sprintf("unknown field %q; the API server drops it, so ", p.key)
		if s.isSelector() {
			msg += w.selectorEndedUp(path, out)
		} else {
			msg += "it has no effect"
		}
		if hint := suggestField(p.key, s, path, w.kind); hint != "" {
			msg += " " + hint
		} else if v := resolveAlias(p.value); s.isSelector() && v.Kind == yaml.ScalarNode {
			msg += fmt.Sprintf("; to match the label %s=%s, indent it under matchLabels", p.key, v.Value)
		}
		w.diag(Warning, cp, p.keyN, "%s", msg)
	}
}

// selectorEndedUp says what a selector with unknown keys ended up as
// once the API server dropped them.
func (w *walker) selectorEndedUp(path string, out map[string]any) string {
	ml, _ := out["matchLabels"].(map[string]any)
	me, _ := out["matchExpressions"].([]any)
	if len(ml) == 0 && len(me) == 0 {
		return fmt.Sprintf("the selector %s ended up as {} and selects %s", path, w.selectsAll(path))
	}
	return "it has no effect on the selector"
}

// selectsAll says what an empty selector at path selects.
func (w *walker) selectsAll(path string) string {
	inNamespace := " in the policy's namespace"
	if w.kind == KindCCNP {
		inNamespace = " in the cluster"
	}
	switch lastElement(path) {
	case "endpointSelector", "fromEndpoints", "toEndpoints":
		return "every endpoint" + inNamespace
	case "nodeSelector", "fromNodes", "toNodes":
		return "every node"
	case "podSelector":
		return "every pod" + inNamespace
	case "namespaceSelector":
		return "every namespace"
	case "cidrGroupSelector":
		return "every CIDR group"
	case "selector":
		return "every service"
	}
	return "everything"
}

// suggestField proposes the field a user probably meant.
func suggestField(key string, s *schema, path string, kind Kind) string {
	names := make([]string, 0, len(s.Properties))
	for n := range s.Properties {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if strings.EqualFold(n, key) {
			return fmt.Sprintf("(did you mean %q? field names are case-sensitive)", n)
		}
	}
	for _, n := range names {
		if len(key) > 3 && (editdistance.Levenshtein(strings.ToLower(n), strings.ToLower(key)) <= 2 || strings.HasPrefix(n, key)) {
			return fmt.Sprintf("(did you mean %q?)", n)
		}
	}
	if (path == "" || path == "metadata") && (kind == KindCNP || kind == KindCCNP) && ruleFields[key] {
		return fmt.Sprintf("(%s belongs in spec)", key)
	}
	return ""
}

// ruleFields are the fields of a Cilium rule (spec), for hints.
var ruleFields = map[string]bool{
	"description": true, "endpointSelector": true, "nodeSelector": true, "ingress": true, "ingressDeny": true,
	"egress": true, "egressDeny": true, "labels": true, "enableDefaultDeny": true, "log": true,
}

// reportNulls warns about list and map fields written without a value
// in a custom resource: the API server prunes nulls, so the field counts
// as not written, which is never what the author meant.
func (w *walker) reportNulls(s *schema, path string, out map[string]any, nulls, unknown []pair) {
	if !w.crd {
		return
	}
	for _, p := range nulls {
		ps := s.Properties[p.key]
		if ps == nil || (ps.Type != "array" && ps.Type != "object") {
			continue
		}
		if s.isSelector() {
			// {matchLabels: null} is {}, as the author most likely meant;
			// with unknown keys beside it (a mis-indented matchLabels),
			// reportUnknown explains what the selector ended up as.
			continue
		}
		cp := childPath(path, p.key)
		msg := fmt.Sprintf("%s is written without a value (null); the API server drops it, as if it were not written", p.key)
		if len(out) == 0 && slices.Contains(ruleSections, lastElement(path)) {
			msg = fmt.Sprintf("%s is written without a value (null); the API server drops it, so this rule ended up as {}, "+
				"which allows nothing (it only puts the selected endpoints in default deny)", p.key)
		}
		if hint := nullFieldHint(p.key); hint != "" {
			msg += "; " + hint
		}
		w.diag(Warning, cp, p.keyN, "%s", msg)
	}
}

// nullFieldHint says what a field written without a value was probably
// meant to be.
func nullFieldHint(field string) string {
	switch field {
	case "ingress", "egress":
		return fmt.Sprintf("to deny all %s, write \"%s: [{}]\"", field, field)
	case "fromEndpoints", "toEndpoints":
		return fmt.Sprintf("to select every endpoint, write \"%s: [{}]\"", field)
	case "endpointSelector", "nodeSelector":
		return fmt.Sprintf("to select everything, write \"%s: {}\"", field)
	}
	return ""
}

// array checks a list.
func (w *walker) array(path string, n *yaml.Node, s *schema) (any, outcome) {
	if n.Kind != yaml.SequenceNode {
		w.typeError(path, n, "a list")
		return nil, invalid
	}
	if s.MaxItems != nil && len(n.Content) > *s.MaxItems {
		w.diag(Error, path, n, "must have at most %d items, not %d", *s.MaxItems, len(n.Content))
	}
	out := make([]any, 0, len(n.Content))
	for i, item := range n.Content {
		ip := itemPath(path, i)
		w.pos[ip] = Position{item.Line, item.Column}
		v, o := w.walk(ip, item, s.Items)
		switch o {
		case kept:
			out = append(out, v)
		case droppedNull:
			w.diag(Error, ip, item, "must be %s, not an empty item (null)", describeWant(s.Items))
			out = append(out, nil)
		default:
			out = append(out, nil)
		}
	}
	return out, kept
}

// str checks a string.
func (w *walker) str(path string, n *yaml.Node, s *schema) (any, outcome) {
	v, ok := any(nil), false
	if n.Kind == yaml.ScalarNode {
		v = scalarValue(n)
		_, ok = v.(string)
	}
	if !ok {
		w.typeError(path, n, "a string")
		return nil, invalid
	}
	str := v.(string)
	if !w.checkString(path, n, s, str) {
		return nil, invalid
	}
	return str, kept
}

// checkString checks a string against enum, pattern, length and format.
func (w *walker) checkString(path string, n *yaml.Node, s *schema, v string) bool {
	if len(s.Enum) > 0 && !slices.Contains(s.Enum, v) {
		msg := fmt.Sprintf("unsupported value %q: must be one of %s", v, strings.Join(s.Enum, ", "))
		for _, e := range s.Enum {
			if strings.EqualFold(e, v) {
				msg += fmt.Sprintf(" (values are case-sensitive: write %q)", e)
				break
			}
		}
		if hint := enumHint(lastElement(path), v); hint != "" {
			msg += "; " + hint
		}
		w.diag(Error, path, n, "%s", msg)
		return false
	}
	if s.MaxLength != nil && len(v) > *s.MaxLength {
		w.diag(Error, path, n, "%q is too long: at most %d characters", shorten(v), *s.MaxLength)
		return false
	}
	if s.MinLength != nil && len(v) < *s.MinLength {
		w.diag(Error, path, n, "must not be empty")
		return false
	}
	if s.Pattern != nil && !s.Pattern.MatchString(v) {
		w.diag(Error, path, n, "invalid value %q: %s", shorten(v), patternMeaning(path, s))
		return false
	}
	switch s.Format {
	case "cidr":
		if _, err := netip.ParsePrefix(v); err != nil {
			msg := fmt.Sprintf("invalid CIDR %q", v)
			if a, err := netip.ParseAddr(v); err == nil {
				msg += fmt.Sprintf(": an address needs a prefix length (%s/%d)", v, a.BitLen())
			} else {
				msg += ": write an address and a prefix length, e.g. 10.0.0.0/8 or 2001:db8::/32"
			}
			w.diag(Error, path, n, "%s", msg)
			return false
		}
	case "date-time":
		if _, err := time.Parse(time.RFC3339, v); err != nil {
			w.diag(Error, path, n, "invalid date-time %q: want RFC 3339, e.g. 2024-01-02T15:04:05Z", v)
			return false
		}
	}
	return true
}

// enumHint adds field-specific advice to an unsupported enum value.
func enumHint(field, v string) string {
	switch field {
	case "protocol":
		if strings.EqualFold(v, "ICMP") || strings.EqualFold(v, "ICMPv6") {
			return "ICMP is matched with icmps (fields: type, family), not with toPorts"
		}
	case "toEntities", "fromEntities":
		if v == "world-ipv4" || v == "world-ipv6" {
			return "Cilium's CRD does not accept it; use world or a toCIDR rule"
		}
	}
	return ""
}

// patternMeaning says in words what a CRD pattern requires.
func patternMeaning(path string, s *schema) string {
	switch field := lastElement(path); {
	case lastElement(parentPath(path)) == "matchLabels":
		return "a label value has at most 63 characters: letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
	case field == "port":
		return "must be a port number (0-65535) or a port name"
	case field == "type":
		return "must be an ICMP type number (0-255) or an ICMP type name such as EchoRequest"
	case field == "matchName":
		return "must be a DNS name: letters, digits, '-', '_' and '.'"
	case field == "matchPattern", lastElement(parentPath(path)) == "serverNames":
		return "must be a DNS name pattern: letters, digits, '-', '_', '.' and '*'"
	case field == "cidrGroupRef":
		return "must be the name of a CiliumCIDRGroup (a lowercase DNS subdomain)"
	case field == "value":
		return "must be printable characters"
	}
	return fmt.Sprintf("must match %s", s.Pattern)
}

// number checks an integer or a number.
func (w *walker) number(path string, n *yaml.Node, s *schema) (any, outcome) {
	var f float64
	var isInt bool
	var v any
	if n.Kind == yaml.ScalarNode {
		v = scalarValue(n)
		switch x := v.(type) {
		case int64:
			f, isInt = float64(x), true
		case float64:
			f = x
			isInt = x == math.Trunc(x) && !math.IsInf(x, 0)
			if isInt {
				v = int64(x)
			}
		default:
			v = nil
		}
	}
	if v == nil || (s.Type == "integer" && !isInt) {
		w.typeError(path, n, describeWant(s))
		return nil, invalid
	}
	if s.Minimum != nil && f < *s.Minimum || s.Maximum != nil && f > *s.Maximum {
		w.diag(Error, path, n, "%s is out of range: %s", n.Value, rangeText(s))
		return nil, invalid
	}
	if s.Format == "int32" && (f < math.MinInt32 || f > math.MaxInt32) {
		w.diag(Error, path, n, "%s does not fit a 32-bit integer", n.Value)
		return nil, invalid
	}
	return v, kept
}

// rangeText describes a schema's numeric bounds.
func rangeText(s *schema) string {
	switch {
	case s.Minimum != nil && s.Maximum != nil:
		return fmt.Sprintf("must be between %s and %s", fmtNum(*s.Minimum), fmtNum(*s.Maximum))
	case s.Minimum != nil:
		return fmt.Sprintf("must be at least %s", fmtNum(*s.Minimum))
	default:
		return fmt.Sprintf("must be at most %s", fmtNum(*s.Maximum))
	}
}

// fmtNum formats a bound.
func fmtNum(f float64) string {
	return strconv.FormatFloat(f, 'f', -1, 64)
}

// intOrString checks a value that may be an integer or a string.
func (w *walker) intOrString(path string, n *yaml.Node, s *schema) (any, outcome) {
	if n.Kind == yaml.ScalarNode {
		switch v := scalarValue(n).(type) {
		case int64:
			return v, kept
		case float64:
			if v == math.Trunc(v) {
				return int64(v), kept
			}
		case string:
			if !w.checkString(path, n, s, v) {
				return nil, invalid
			}
			return v, kept
		}
	}
	w.typeError(path, n, "an integer or a string")
	return nil, invalid
}

// describeWant names what a schema wants, for messages.
func describeWant(s *schema) string {
	if s.IntOrString {
		return "an integer or a string"
	}
	switch s.Type {
	case "object":
		return "a map of fields"
	case "array":
		return "a list"
	case "string":
		return "a string"
	case "integer":
		return "an integer"
	case "number":
		return "a number"
	case "boolean":
		return "a boolean (true or false)"
	}
	return "a value"
}

// typeError reports a value of the wrong type, with advice on how to
// write the right one.
func (w *walker) typeError(path string, n *yaml.Node, want string) {
	n = resolveAlias(n)
	got := describeValue(n)
	msg := fmt.Sprintf("must be %s, not %s", want, got)
	if n.Kind == yaml.ScalarNode {
		v := scalarValue(n)
		switch {
		case want == "a string" || strings.HasPrefix(want, "an integer or"):
			if b, isBool := v.(bool); isBool && !strings.EqualFold(n.Value, strconv.FormatBool(b)) {
				msg += fmt.Sprintf(" (kubectl reads a bare %s as a boolean)", n.Value)
			}
			if _, isNull := v.(nullValue); !isNull {
				msg += fmt.Sprintf("; write it in quotes: \"%s\"", n.Value)
			}
		case want == "a list":
			if _, isNull := v.(nullValue); !isNull {
				msg += fmt.Sprintf("; write a list, e.g. [%s] or the item on its own line after \"- \"", n.Value)
			}
		case want == "an integer":
			if s, ok := v.(string); ok {
				if _, err := strconv.ParseInt(s, 10, 64); err == nil {
					msg += fmt.Sprintf("; write it without quotes: %s", s)
				}
			}
		}
	}
	w.diag(Error, path, n, "%s", msg)
}
