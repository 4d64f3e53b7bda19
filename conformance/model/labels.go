package model

import (
	"slices"
	"strings"

	slimv1 "github.com/cilium/cilium/pkg/k8s/slim/k8s/apis/meta/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Label sources, as Cilium writes them before a colon ("k8s:app").
// https://docs.cilium.io/en/stable/security/policy/language/#endpoints-based
const (
	sourceK8s      = "k8s"
	sourceReserved = "reserved"
	sourceAny      = "any"
)

// Label keys Cilium gives every pod (docs.cilium.io "Kubernetes" >
// "Namespaces" and "Cluster" of the policy language page).
const (
	keyPodNamespace    = "io.kubernetes.pod.namespace"
	keyNamespaceLabels = "io.cilium.k8s.namespace.labels."
	keyPolicyCluster   = "io.cilium.k8s.policy.cluster"
	// clusterName is the name of the one cluster a scenario describes.
	clusterName = "default"
)

// label is one label with its source: pods' labels come from k8s, the
// nodes' and the world's are reserved.
type label struct {
	source, key, value string
}

// labelSet is what a selector is matched against.
type labelSet []label

// lookup returns the values of key among the labels whose source source
// accepts ("any" accepts every source).
func (ls labelSet) lookup(source, key string) []string {
	var out []string
	for _, l := range ls {
		if l.key == key && (source == sourceAny || source == l.source) {
			out = append(out, l.value)
		}
	}
	return out
}

// k8sLabels turns plain Kubernetes labels into a labelSet of source k8s.
func k8sLabels(m map[string]string) labelSet {
	var out labelSet
	for k, v := range m {
		out = append(out, label{sourceK8s, k, v})
	}
	return out
}

// requirement is one term of a label selector: "key op values", key
// carrying its source.
type requirement struct {
	source, key string
	op          string // In, NotIn, Exists, DoesNotExist
	values      []string
}

// selector is a label selector: every requirement must hold. A selector
// with no requirement selects everything.
type selector []requirement

// splitSource splits a Cilium selector key "source:key" into its parts; a
// key written without a source matches labels of any source.
// https://docs.cilium.io/en/stable/security/policy/language/#endpoints-based
// ("k8s:" and "reserved:" prefixes; no prefix means any source)
func splitSource(key string) (string, string) {
	if src, k, ok := strings.Cut(key, ":"); ok {
		return src, k
	}
	return sourceAny, key
}

// fromCiliumSelector converts a Cilium EndpointSelector's label selector,
// keys keeping their source prefixes.
func fromCiliumSelector(ls *slimv1.LabelSelector) selector {
	if ls == nil {
		return nil
	}
	var sel selector
	for _, k := range sortedKeys(ls.MatchLabels) {
		src, key := splitSource(k)
		sel = append(sel, requirement{src, key, "In", []string{ls.MatchLabels[k]}})
	}
	for _, e := range ls.MatchExpressions {
		src, key := splitSource(e.Key)
		sel = append(sel, requirement{src, key, string(e.Operator), e.Values})
	}
	return sel
}

// fromK8sSelector converts a Kubernetes label selector (NetworkPolicy):
// its keys have no source, they match the pod's (or namespace's) own labels.
func fromK8sSelector(ls *metav1.LabelSelector) selector {
	if ls == nil {
		return nil
	}
	var sel selector
	for _, k := range sortedKeys(ls.MatchLabels) {
		sel = append(sel, requirement{sourceK8s, k, "In", []string{ls.MatchLabels[k]}})
	}
	for _, e := range ls.MatchExpressions {
		sel = append(sel, requirement{sourceK8s, e.Key, string(e.Operator), e.Values})
	}
	return sel
}

// labelSelectorMatches implements Kubernetes label selectors: matchLabels
// and matchExpressions are ANDed; In needs the key with one of the values,
// NotIn the key absent or with another value, Exists the key, DoesNotExist
// its absence.
// https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors
// https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#resources-that-support-set-based-requirements
func labelSelectorMatches(sel selector, labels labelSet) bool {
	for _, r := range sel {
		if !requirementHolds(r, labels) {
			return false
		}
	}
	return true
}

// requirementHolds evaluates one requirement of a selector (see
// labelSelectorMatches). An unknown operator never holds.
func requirementHolds(r requirement, labels labelSet) bool {
	values := labels.lookup(r.source, r.key)
	anyIn := slices.ContainsFunc(values, func(v string) bool { return slices.Contains(r.values, v) })
	switch r.op {
	case "In":
		return anyIn
	case "NotIn":
		return !anyIn
	case "Exists":
		return len(values) > 0
	case "DoesNotExist":
		return len(values) == 0
	}
	return false
}

// names reports whether the selector has a requirement on key (of source
// k8s or any), e.g. whether it constrains the namespace.
func (sel selector) names(key string) bool {
	return slices.ContainsFunc(sel, func(r requirement) bool {
		return r.key == key && (r.source == sourceK8s || r.source == sourceAny)
	})
}

// namesPrefix is names for every key starting with prefix.
func (sel selector) namesPrefix(prefix string) bool {
	return slices.ContainsFunc(sel, func(r requirement) bool {
		return strings.HasPrefix(r.key, prefix) && (r.source == sourceK8s || r.source == sourceAny)
	})
}

// namesReserved reports whether the selector names a reserved label
// ("reserved:host"), i.e. selects Cilium's reserved entities.
func (sel selector) namesReserved() bool {
	return slices.ContainsFunc(sel, func(r requirement) bool { return r.source == sourceReserved })
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
