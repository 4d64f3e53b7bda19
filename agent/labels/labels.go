// Package labels implements Cilium-style labels: a key and value with a
// source ("k8s", "reserved", "cidr", ...). Pods get their Kubernetes labels
// with source k8s, plus the namespace they live in and their namespace's
// labels, exactly as Cilium derives them, so that policies written for
// Cilium select the same endpoints here.
package labels

import (
	"sort"
	"strings"
)

// Label sources.
const (
	SourceK8s      = "k8s"
	SourceReserved = "reserved"
	SourceCIDR     = "cidr"
	// SourceAny in a selector matches a label of any source.
	SourceAny = "any"
	// SourceUnspec is the source of a label written without one.
	SourceUnspec = "unspec"
	// SourceCilia marks labels the cilia agent derives itself (not from
	// Kubernetes labels), such as NamedPortsKey.
	SourceCilia = "cilia"
)

// Well-known label keys (Cilium's).
const (
	// PodNamespace is the key of the label carrying a pod's namespace.
	PodNamespace = "io.kubernetes.pod.namespace"
	// NamespaceLabelsPrefix prefixes the keys of a pod's namespace labels.
	NamespaceLabelsPrefix = "io.cilium.k8s.namespace.labels."
	// PolicyCluster is the key of the label carrying a pod's cluster name.
	PolicyCluster = "io.cilium.k8s.policy.cluster"
	// ClusterName is the cluster name every pod is labelled with.
	ClusterName = "default"
	// NamedPortsKey (source cilia) carries a pod's named ports, so that
	// pods naming their ports differently get different identities.
	NamedPortsKey = "named-ports"
)

// Label is one label.
type Label struct {
	Source string
	Key    string
	Value  string
}

// String formats l as "source:key=value" ("source:key" when the value is
// empty).
func (l Label) String() string {
	s := l.Source + ":" + l.Key
	if l.Value != "" {
		s += "=" + l.Value
	}
	return s
}

// Parse reads "source:key=value", "source:key", "key=value" or "key"
// (source unspec). A leading '$' means source reserved ("$host").
func Parse(s string) Label {
	var l Label
	switch {
	case strings.HasPrefix(s, "$"):
		l.Source, s = SourceReserved, s[1:]
	default:
		if src, rest, ok := strings.Cut(s, ":"); ok {
			l.Source, s = src, rest
		} else {
			l.Source = SourceUnspec
		}
	}
	l.Key, l.Value, _ = strings.Cut(s, "=")
	return l
}

// SplitKey splits a selector key "source:key" into its source and key; a
// key written without a source selects any source (Cilium's
// ParseSelectLabel).
func SplitKey(k string) (source, key string) {
	if strings.HasPrefix(k, "$") {
		return SourceReserved, k[1:]
	}
	if src, rest, ok := strings.Cut(k, ":"); ok {
		return src, rest
	}
	return SourceAny, k
}

// Labels is a set of labels keyed by "source:key".
type Labels map[string]Label

// New returns a set of ls.
func New(ls ...Label) Labels {
	out := make(Labels, len(ls))
	for _, l := range ls {
		out.Add(l)
	}
	return out
}

// Add adds l, replacing a label of the same source and key.
func (ls Labels) Add(l Label) { ls[l.Source+":"+l.Key] = l }

// Get returns the value of the label with source and key. Source "any"
// matches a label of any source (the first in sorted order, to be
// deterministic).
func (ls Labels) Get(source, key string) (string, bool) {
	if source != SourceAny {
		l, ok := ls[source+":"+key]
		return l.Value, ok
	}
	found, value := false, ""
	for _, id := range ls.sortedKeys() {
		if l := ls[id]; l.Key == key {
			if !found {
				found, value = true, l.Value
			}
		}
	}
	return value, found
}

// Has reports whether a label with source and key exists (source "any":
// of any source).
func (ls Labels) Has(source, key string) bool {
	_, ok := ls.Get(source, key)
	return ok
}

// HasSource reports whether any label has the given source.
func (ls Labels) HasSource(source string) bool {
	for _, l := range ls {
		if l.Source == source {
			return true
		}
	}
	return false
}

func (ls Labels) sortedKeys() []string {
	keys := make([]string, 0, len(ls))
	for k := range ls {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Sorted returns the labels in canonical order.
func (ls Labels) Sorted() []Label {
	out := make([]Label, 0, len(ls))
	for _, k := range ls.sortedKeys() {
		out = append(out, ls[k])
	}
	return out
}

// String is the canonical form: the sorted labels joined by ";". Two sets
// with the same labels have the same string; identities are keyed by it.
func (ls Labels) String() string {
	parts := make([]string, 0, len(ls))
	for _, l := range ls.Sorted() {
		parts = append(parts, l.String())
	}
	return strings.Join(parts, ";")
}

// ForPod returns the security-relevant labels of a pod, as Cilium derives
// them: every pod label with source k8s, the namespace as
// k8s:io.kubernetes.pod.namespace, every namespace label as
// k8s:io.cilium.k8s.namespace.labels.<key>, and the cluster name as
// k8s:io.cilium.k8s.policy.cluster.
func ForPod(namespace string, podLabels, namespaceLabels map[string]string) Labels {
	ls := make(Labels, len(podLabels)+len(namespaceLabels)+2)
	for k, v := range podLabels {
		ls.Add(Label{Source: SourceK8s, Key: k, Value: v})
	}
	for k, v := range namespaceLabels {
		ls.Add(Label{Source: SourceK8s, Key: NamespaceLabelsPrefix + k, Value: v})
	}
	ls.Add(Label{Source: SourceK8s, Key: PodNamespace, Value: namespace})
	ls.Add(Label{Source: SourceK8s, Key: PolicyCluster, Value: ClusterName})
	return ls
}

// Reserved returns the label set of a reserved identity ("reserved:host").
func Reserved(name string) Labels {
	return New(Label{Source: SourceReserved, Key: name})
}
