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
//
// # What is checked, and how severe it is
//
// Objects are read the way kubectl apply reads them and checked the way
// the API server and Cilium 1.20 check them:
//
//   - YAML scalars follow kubectl's YAML 1.1 reading (a bare yes is a
//     boolean, 0755 is octal); duplicate keys are Errors (kubectl rejects
//     them); merge keys and aliases are expanded.
//   - CNP and CCNP are checked against the CRD schema embedded in
//     Cilium's module (types, enums, patterns, formats, bounds, required
//     fields, oneOf/anyOf), with metadata checked as ObjectMeta;
//     NetworkPolicy against its Go types. A value of the wrong type or
//     outside the schema is an Error. A field that is not in the schema
//     is a Warning: the API server prunes it (with kubectl's default
//     --validate=strict the request fails instead). So is a list or map
//     field written without a value in a custom resource: null is pruned.
//   - Then Cilium's own validation (Rule.Sanitize and
//     CiliumNetworkPolicy.Parse) and Kubernetes' NetworkPolicy
//     validation are reproduced with field paths (cilium.go, knp.go).
//     Tests cross-check every accepted rule with the real Rule.Sanitize.
//   - Warnings also flag what is accepted but certainly not meant: a
//     label selector that lost a mis-indented label and now selects
//     everything, label keys such as "k8s.io.kubernetes.pod.namespace"
//     (a '.' where Cilium's source separator ':' belongs) that match
//     nothing, CIDRs with host bits, ports with a leading zero (octal to
//     Cilium), a namespace on a cluster-scoped policy, NetworkPolicy
//     rules that policyTypes disables.
//   - Notes name skipped objects of other kinds and, via
//     Policy.Unenforced, the features cilia does not enforce yet.
//
// Decisions where Cilium 1.20 and older documents disagree: a lowercase
// "apiversion" key leaves the object without apiVersion, as it does for
// kubectl (an Error, not a guess); fromRequires/toRequires, removed in
// Cilium 1.19, are Errors (the CRD only allows an empty list); Kafka
// and generic L7 rules (rules.kafka, rules.l7proto), removed in Cilium
// 1.20, are still read as Cilium 1.19 defined them (cilia's conformance
// suite has Kafka scenarios), with a Warning that Cilium 1.20 rejects
// them; they are in Policy.Kafka and Policy.L7Proto.
//
// Field paths are described in path.go.
package load

import (
	"fmt"
	"strings"

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
	// ("spec" or "specs[2]"). They are as written: not passed through
	// Rule.Sanitize, so label keys keep the source prefix they were
	// written with ("k8s:app" or "app"), protocols and named ports keep
	// their case, and no namespace label has been added.
	Rules     ciliumapi.Rules
	RulePaths []string

	// Kafka holds the Kafka rules (rules.kafka) of a CNP/CCNP, keyed by
	// the path of their port rule ("spec.ingress[0].toPorts[1]"). Cilium
	// 1.20 removed Kafka rules from its API, so they cannot be in Rules;
	// cilia reads them as Cilium 1.19 defined them.
	Kafka map[string][]KafkaRule
	// L7Proto holds the generic L7 rules (rules.l7proto with rules.l7)
	// of a CNP/CCNP, keyed like Kafka. Cilium 1.20 removed them too.
	L7Proto map[string]L7ProtoRule

	// KNP is set for a NetworkPolicy.
	KNP *networkingv1.NetworkPolicy

	// Positions maps field paths (as in Diagnostic.Path) to where they
	// are written (the key of a field, the start of a list item), for
	// every field of the object; "" is the object itself.
	Positions map[string]Position

	// unenforced are the notes about features cilia does not enforce.
	unenforced []Diagnostic
}

// KafkaRule is one Kafka rule of a port rule, with the fields of
// Cilium 1.19's pkg/policy/api/kafka.PortRule.
type KafkaRule struct {
	Role       string `json:"role,omitempty"`
	APIKey     string `json:"apiKey,omitempty"`
	APIVersion string `json:"apiVersion,omitempty"`
	ClientID   string `json:"clientID,omitempty"`
	Topic      string `json:"topic,omitempty"`
}

// L7ProtoRule is the generic L7 part of a port rule: the protocol
// (rules.l7proto) and its key-value rules (rules.l7).
type L7ProtoRule struct {
	Proto string
	Rules []map[string]string
}

// Unenforced returns the notes, one per field, naming each feature the
// policy uses that cilia parses but does not enforce yet (L7 rules,
// toFQDNs, host policies, ...). The same notes are among the
// diagnostics that Node, Bytes and File return; an agent applying the
// policy can log them from here.
func (p *Policy) Unenforced() []Diagnostic {
	return p.unenforced
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
// "a.b[0].c" → "a.b[0]" → "a.b" → "a" → "", and
// `a.matchLabels["k8s:app"]` → "a.matchLabels". A quoted key never
// contains `["` (its quotes are escaped), so the last `["` starts it.
func parentPath(path string) string {
	if strings.HasSuffix(path, `"]`) {
		if i := strings.LastIndex(path, `["`); i >= 0 {
			return path[:i]
		}
	}
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
	// Invalid counts the policy objects rejected with an Error (and
	// objects whose kind could not be read); Skipped counts the objects
	// of other kinds (Pods, Services, ...), each noted.
	Invalid, Skipped int
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
