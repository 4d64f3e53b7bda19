// Package features names the capabilities a conformance target can support
// (DESIGN.md §2). Features are Ginkgo labels and report keys; profiles group
// them for the report.
package features

import (
	"fmt"
	"sort"
	"strings"
)

// Feature is one capability, e.g. "policy-l4".
type Feature string

// The policy profile.
const (
	PolicyKNP         Feature = "policy-knp"
	PolicyL3          Feature = "policy-l3"
	PolicyL4          Feature = "policy-l4"
	PolicyPortRange   Feature = "policy-port-range"
	PolicyNamedPorts  Feature = "policy-named-ports"
	PolicyCIDR        Feature = "policy-cidr"
	PolicyEntities    Feature = "policy-entities"
	PolicyDeny        Feature = "policy-deny"
	PolicyClusterwide Feature = "policy-clusterwide"
	PolicyDefaultDeny Feature = "policy-default-deny"
	PolicyICMP        Feature = "policy-icmp"
	PolicyUDP         Feature = "policy-udp"
	PolicySCTP        Feature = "policy-sctp"
	IPv6              Feature = "ipv6"
)

// The loadbalancing profile.
const (
	LBClusterIP  Feature = "lb-clusterip"
	LBNodePort   Feature = "lb-nodeport"
	LBExternalIP Feature = "lb-externalip"
	LBAffinity   Feature = "lb-affinity"
	LBMaglev     Feature = "lb-maglev"
	LBDSR        Feature = "lb-dsr"
	LBETPLocal   Feature = "lb-etp-local"
	LBNoBackends Feature = "lb-no-backends"
	LBHairpin    Feature = "lb-hairpin"
)

// The l7, robustness and observability profiles.
const (
	L7HTTP           Feature = "l7-http"
	L7Kafka          Feature = "l7-kafka"
	MalformedPackets Feature = "malformed-packets"
	Fragments        Feature = "fragments"
	Spoofing         Feature = "spoofing"
	DropReasons      Feature = "drop-reasons"
	Flows            Feature = "flows"
)

// Profile is a named group of features reported together.
type Profile struct {
	Name     string
	Features []Feature
}

// Profiles lists every profile in report order.
var Profiles = []Profile{
	{"policy", []Feature{PolicyKNP, PolicyL3, PolicyL4, PolicyPortRange, PolicyNamedPorts, PolicyCIDR,
		PolicyEntities, PolicyDeny, PolicyClusterwide, PolicyDefaultDeny, PolicyICMP, PolicyUDP, PolicySCTP, IPv6}},
	{"loadbalancing", []Feature{LBClusterIP, LBNodePort, LBExternalIP, LBAffinity, LBMaglev, LBDSR,
		LBETPLocal, LBNoBackends, LBHairpin}},
	{"l7", []Feature{L7HTTP, L7Kafka}},
	{"robustness", []Feature{MalformedPackets, Fragments, Spoofing}},
	{"observability", []Feature{DropReasons, Flows}},
}

// Known reports whether f is a feature of some profile.
func Known(f Feature) bool {
	_, ok := ProfileOf(f)
	return ok
}

// ProfileOf returns the name of the profile f belongs to.
func ProfileOf(f Feature) (string, bool) {
	for _, p := range Profiles {
		for _, pf := range p.Features {
			if pf == f {
				return p.Name, true
			}
		}
	}
	return "", false
}

// ProfileFeatures returns the features of the named profile.
func ProfileFeatures(name string) ([]Feature, bool) {
	for _, p := range Profiles {
		if p.Name == name {
			return p.Features, true
		}
	}
	return nil, false
}

// Set is a set of features.
type Set map[Feature]struct{}

// NewSet returns a set of fs.
func NewSet(fs ...Feature) Set {
	s := make(Set, len(fs))
	for _, f := range fs {
		s[f] = struct{}{}
	}
	return s
}

// Has reports whether f is in s.
func (s Set) Has(f Feature) bool {
	_, ok := s[f]
	return ok
}

// Missing returns the features of need that s lacks, sorted.
func (s Set) Missing(need []Feature) []Feature {
	var out []Feature
	for _, f := range need {
		if !s.Has(f) {
			out = append(out, f)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Sorted returns the features of s in lexical order.
func (s Set) Sorted() []Feature {
	out := make([]Feature, 0, len(s))
	for f := range s {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Intersect returns the features in both s and o.
func (s Set) Intersect(o Set) Set {
	out := Set{}
	for f := range s {
		if o.Has(f) {
			out[f] = struct{}{}
		}
	}
	return out
}

// Parse reads a comma-separated list of features and profile names (a
// profile stands for all its features), as given to FEATURES=. Unknown
// names are an error.
func Parse(list string) (Set, error) {
	s := Set{}
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if fs, ok := ProfileFeatures(name); ok {
			for _, f := range fs {
				s[f] = struct{}{}
			}
			continue
		}
		if !Known(Feature(name)) {
			return nil, fmt.Errorf("parse features: unknown feature or profile %q", name)
		}
		s[Feature(name)] = struct{}{}
	}
	return s, nil
}
