// Package load reads policy objects from YAML as users write them:
// CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy and
// networking.k8s.io/v1 NetworkPolicy. It validates them with diagnostics
// that name the file, line and field path, warns on fields the Kubernetes
// API server would silently prune, notes non-policy objects it skips, and
// names each feature cilia parses but does not enforce yet.
//
// Cilium's rules are decoded into the upstream types of
// github.com/cilium/cilium/pkg/policy/api; NetworkPolicy into
// k8s.io/api/networking/v1. Semantics (selectors, resolution) live in
// agent/policy, not here.
package load

import (
	"fmt"

	ciliumapi "github.com/cilium/cilium/pkg/policy/api"
	networkingv1 "k8s.io/api/networking/v1"
)

// Kind is a policy object kind.
type Kind string

// Policy kinds.
const (
	KindCNP  Kind = "CiliumNetworkPolicy"
	KindCCNP Kind = "CiliumClusterwideNetworkPolicy"
	KindKNP  Kind = "NetworkPolicy"
)

// Severity of a Diagnostic.
type Severity string

// Severities. An Error makes the object invalid. A Warning is a field the
// API server would silently ignore or a likely mistake (Strict turns
// warnings into errors). A Note is information: a skipped non-policy
// object, a feature cilia does not enforce yet.
const (
	Error   Severity = "error"
	Warning Severity = "warning"
	Note    Severity = "note"
)

// Diagnostic is one finding about the input.
type Diagnostic struct {
	File     string
	Line     int    // 1-based; 0 when unknown
	Column   int    // 1-based; 0 when unknown
	Path     string // field path, e.g. spec.ingress[0].toPorts[0].ports[1].port
	Severity Severity
	Message  string
}

// String formats the diagnostic as "file:line:col: severity: path: message"
// (parts that are unknown are left out).
func (d Diagnostic) String() string {
	loc := d.File
	if d.Line > 0 {
		loc = fmt.Sprintf("%s:%d", loc, d.Line)
		if d.Column > 0 {
			loc = fmt.Sprintf("%s:%d", loc, d.Column)
		}
	}
	s := fmt.Sprintf("%s: %s: ", loc, d.Severity)
	if d.Path != "" {
		s += d.Path + ": "
	}
	return s + d.Message
}

// Position is a place in a file.
type Position struct {
	Line, Column int
}

// Policy is one valid policy object.
type Policy struct {
	Kind       Kind
	APIVersion string
	// Namespace is "" for clusterwide policies; namespaced kinds written
	// without one get "default", as kubectl would give them.
	Namespace string
	Name      string
	File      string
	Line      int // line of the object's first key

	// Rules are the Cilium rules of a CNP/CCNP: spec (if present) first,
	// then specs in order. RulePaths[i] is the field path of Rules[i]
	// ("spec" or "specs[2]").
	Rules     ciliumapi.Rules
	RulePaths []string

	// KNP is set for a NetworkPolicy.
	KNP *networkingv1.NetworkPolicy

	// Positions maps field paths (as in Diagnostic.Path) to where they
	// are written, for every field of the object.
	Positions map[string]Position
}

// Position returns where the field at path is written, or the nearest
// enclosing field that is written (paths of defaulted fields fall back to
// their parent), or the object's start.
func (p *Policy) Position(path string) Position {
	for path != "" {
		if pos, ok := p.Positions[path]; ok {
			return pos
		}
		path = parentPath(path)
	}
	return Position{Line: p.Line}
}

// Ref returns "Kind namespace/name" (or "Kind name" when clusterwide).
func (p *Policy) Ref() string {
	if p.Namespace == "" {
		return fmt.Sprintf("%s %s", p.Kind, p.Name)
	}
	return fmt.Sprintf("%s %s/%s", p.Kind, p.Namespace, p.Name)
}

// parentPath strips the last element of a field path:
// "a.b[0].c" → "a.b[0]" → "a.b" → "a" → "".
func parentPath(path string) string {
	for i := len(path) - 1; i >= 0; i-- {
		switch path[i] {
		case '.':
			return path[:i]
		case '[':
			return path[:i]
		}
	}
	return ""
}

// Result is what loading a file (or a stream of YAML documents) found.
type Result struct {
	// Policies are the valid policy objects, in file order.
	Policies []*Policy
	// Diagnostics are every error, warning and note, in file order.
	Diagnostics []Diagnostic
}

// HasErrors reports whether any diagnostic is an Error (or, with strict,
// a Warning).
func (r Result) HasErrors(strict bool) bool {
	for _, d := range r.Diagnostics {
		if d.Severity == Error || (strict && d.Severity == Warning) {
			return true
		}
	}
	return false
}
