package policy

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/ciliaproject/cilia/agent/identity"
	"github.com/ciliaproject/cilia/agent/labels"
)

// Operator is a label selector requirement's operator.
type Operator string

// Operators (Kubernetes' label selector operators).
const (
	OpIn           Operator = "In"
	OpNotIn        Operator = "NotIn"
	OpExists       Operator = "Exists"
	OpDoesNotExist Operator = "DoesNotExist"
)

// Requirement is one term of a label selector: a label (source and key)
// and a condition on its value. Source "any" matches a label of any
// source.
type Requirement struct {
	Source, Key string
	Op          Operator
	Values      []string // sorted
}

// matches reports whether ls satisfies the requirement (Kubernetes
// semantics: NotIn and DoesNotExist hold when the label is absent).
func (r Requirement) matches(ls labels.Labels) bool {
	v, ok := ls.Get(r.Source, r.Key)
	switch r.Op {
	case OpExists:
		return ok
	case OpDoesNotExist:
		return !ok
	case OpIn:
		return ok && containsString(r.Values, v)
	case OpNotIn:
		return !ok || !containsString(r.Values, v)
	}
	return false
}

func containsString(sorted []string, v string) bool {
	i := sort.SearchStrings(sorted, v)
	return i < len(sorted) && sorted[i] == v
}

func (r Requirement) String() string {
	k := r.Source + ":" + r.Key
	switch r.Op {
	case OpExists:
		return k
	case OpDoesNotExist:
		return "!" + k
	case OpIn:
		if len(r.Values) == 1 {
			return k + "=" + r.Values[0]
		}
	}
	return fmt.Sprintf("%s %s (%s)", k, strings.ToLower(string(r.Op)), strings.Join(r.Values, ","))
}

// Selector selects identities: by labels (all requirements must hold), by
// CIDR (CIDR identities inside Prefix and outside every Except), or all
// identities (the wildcard, identity 0 in the datapath).
type Selector struct {
	// Wildcard selects every identity, reserved ones included.
	Wildcard bool
	// Requirements of a label selector, sorted by their string form.
	Requirements []Requirement
	// Prefix and Except of a CIDR selector (Prefix valid).
	Prefix netip.Prefix
	Except []netip.Prefix
	key    string
}

// NewLabelSelector returns a label selector of reqs.
func NewLabelSelector(reqs ...Requirement) *Selector {
	s := &Selector{Requirements: reqs}
	for i := range s.Requirements {
		sort.Strings(s.Requirements[i].Values)
	}
	sort.Slice(s.Requirements, func(i, j int) bool {
		return s.Requirements[i].String() < s.Requirements[j].String()
	})
	s.key = s.computeKey()
	return s
}

// NewCIDRSelector returns a selector of the CIDR identities inside prefix
// and outside every except. A /0 prefix is a prefix like any other: it has
// its own CIDR identity in the ipcache, so 0.0.0.0/0 selects every IPv4
// address outside the cluster and no IPv6 one.
func NewCIDRSelector(prefix netip.Prefix, except []netip.Prefix) *Selector {
	s := &Selector{Prefix: prefix.Masked()}
	for _, e := range except {
		s.Except = append(s.Except, e.Masked())
	}
	sort.Slice(s.Except, func(i, j int) bool { return s.Except[i].String() < s.Except[j].String() })
	s.key = s.computeKey()
	return s
}

// WildcardSelector selects every identity.
func WildcardSelector() *Selector {
	s := &Selector{Wildcard: true}
	s.key = s.computeKey()
	return s
}

// Key is the canonical form of the selector: equal selectors have equal
// keys (the selector cache is keyed by it).
func (s *Selector) Key() string { return s.key }

// String is the readable form of the selector.
func (s *Selector) String() string { return s.key }

func (s *Selector) computeKey() string {
	switch {
	case s.Wildcard:
		return "*"
	case s.Prefix.IsValid():
		k := "cidr:" + s.Prefix.String()
		for _, e := range s.Except {
			k += " except " + e.String()
		}
		return k
	}
	parts := make([]string, len(s.Requirements))
	for i, r := range s.Requirements {
		parts[i] = r.String()
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// MatchesLabels reports whether a label selector holds for ls (false for
// CIDR selectors; true for the wildcard).
func (s *Selector) MatchesLabels(ls labels.Labels) bool {
	if s.Wildcard {
		return true
	}
	if s.Prefix.IsValid() {
		return false
	}
	for _, r := range s.Requirements {
		if !r.matches(ls) {
			return false
		}
	}
	return true
}

// Matches reports whether the selector selects id.
func (s *Selector) Matches(id *identity.Identity) bool {
	if s.Wildcard {
		return true
	}
	if !s.Prefix.IsValid() {
		return s.MatchesLabels(id.Labels)
	}
	if !id.IsCIDR() || id.Prefix.Addr().Is4() != s.Prefix.Addr().Is4() {
		return false
	}
	if !prefixContains(s.Prefix, id.Prefix) {
		return false
	}
	for _, e := range s.Except {
		if prefixContains(e, id.Prefix) {
			return false
		}
	}
	return true
}

// Prefixes returns the prefixes a CIDR selector needs CIDR identities for
// (its prefix and its excepts).
func (s *Selector) Prefixes() []netip.Prefix {
	if !s.Prefix.IsValid() {
		return nil
	}
	return append([]netip.Prefix{s.Prefix}, s.Except...)
}

// prefixContains reports whether outer contains inner entirely.
func prefixContains(outer, inner netip.Prefix) bool {
	return outer.Bits() <= inner.Bits() && outer.Contains(inner.Addr())
}
