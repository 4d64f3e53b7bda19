package load

import (
	"fmt"
	"strings"

	slimv1 "github.com/cilium/cilium/pkg/k8s/slim/k8s/apis/meta/v1"
	"github.com/cilium/cilium/pkg/labels"
	"k8s.io/apimachinery/pkg/api/validate/content"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// selectorFlavor says which label keys a selector accepts.
type selectorFlavor int

const (
	// ciliumKeys: a Kubernetes label key with an optional Cilium source
	// prefix ("k8s:app", "any:app", "reserved:host"), as Cilium's
	// EndpointSelector.Sanitize validates it.
	ciliumKeys selectorFlavor = iota
	// kubernetesKeys: a Kubernetes label key (a qualified name).
	kubernetesKeys
)

// requirement is one matchExpressions term, from either selector type.
type requirement struct {
	key, operator string
	values        []string
}

// checkSelector checks the label keys, values and expressions of a
// selector the way Cilium (ciliumKeys) or Kubernetes (kubernetesKeys)
// validates them; the operator itself was checked against the schema
// for Cilium's CRD, and is checked here for NetworkPolicy.
func checkSelector(w *walker, path string, flavor selectorFlavor, matchLabels map[string]string, reqs []requirement) {
	for _, k := range sortedKeys(matchLabels) {
		p := childPath(path+".matchLabels", k)
		checkLabelKey(w, p, flavor, k)
		for _, msg := range content.IsLabelValue(matchLabels[k]) {
			w.diag(Error, p, nil, "invalid label value %q: %s", matchLabels[k], msg)
		}
	}
	for i, r := range reqs {
		p := itemPath(path+".matchExpressions", i)
		checkRequirement(w, p, flavor, r)
	}
}

// checkRequirement checks one matchExpressions term.
func checkRequirement(w *walker, path string, flavor selectorFlavor, r requirement) {
	switch r.operator {
	case "In", "NotIn":
		if len(r.values) == 0 {
			w.diag(Error, path+".values", nil, "values must not be empty when operator is %s", r.operator)
		}
	case "Exists", "DoesNotExist":
		if len(r.values) > 0 {
			w.diag(Error, path+".values", nil, "values must be empty when operator is %s", r.operator)
		}
	default:
		msg := fmt.Sprintf("unsupported operator %q: must be one of In, NotIn, Exists, DoesNotExist", r.operator)
		for _, op := range []string{"In", "NotIn", "Exists", "DoesNotExist"} {
			if strings.EqualFold(op, r.operator) {
				msg += fmt.Sprintf(" (operators are case-sensitive: write %q)", op)
			}
		}
		w.diag(Error, path+".operator", nil, "%s", msg)
	}
	checkLabelKey(w, path+".key", flavor, r.key)
	for i, v := range r.values {
		for _, msg := range content.IsLabelValue(v) {
			w.diag(Error, itemPath(path+".values", i), nil, "invalid label value %q: %s", v, msg)
		}
	}
}

// checkLabelKey checks a label key of a selector, and warns about keys
// that are Cilium label names written with '.' instead of ':' after the
// source ("k8s.io.kubernetes.pod.namespace", "reserved.init"): Cilium
// reads them as plain label names that no endpoint carries, so the
// selector silently matches nothing.
func checkLabelKey(w *walker, path string, flavor selectorFlavor, key string) {
	var errs []string
	if flavor == ciliumKeys {
		errs = labels.IsValidCiliumLabelKey(key)
	} else {
		errs = content.IsLabelKey(key)
		if len(errs) > 0 && strings.Contains(key, ":") {
			errs = []string{"Cilium source prefixes such as k8s: are not allowed in a NetworkPolicy"}
		}
	}
	if len(errs) > 0 {
		w.diag(Error, path, nil, "invalid label key %q: %s", key, strings.Join(errs, "; "))
	}
	if len(errs) == 0 && flavor == ciliumKeys {
		if meant, ok := misplacedSource(key); ok {
			w.diag(Warning, path, nil, "label key %q has no source prefix, so Cilium matches a label literally named %q, "+
				"which no endpoint carries; did you mean %q?", key, key, meant)
		}
	}
}

// reservedNames are the names of Cilium's reserved identities.
var reservedNames = map[string]bool{
	"host": true, "world": true, "world-ipv4": true, "world-ipv6": true, "remote-node": true, "health": true,
	"init": true, "ingress": true, "unmanaged": true, "kube-apiserver": true, "none": true,
}

// misplacedSource recognises a Cilium label key whose source is
// separated by '.' instead of ':' and returns the key meant.
func misplacedSource(key string) (string, bool) {
	if strings.Contains(key, ":") {
		return "", false
	}
	src, rest, ok := strings.Cut(key, ".")
	if !ok {
		return "", false
	}
	switch src {
	case "reserved":
		if reservedNames[rest] {
			return "reserved:" + rest, true
		}
	case "k8s", "any":
		if strings.HasPrefix(rest, "io.kubernetes.") || strings.HasPrefix(rest, "io.cilium.") {
			return src + ":" + rest, true
		}
	}
	return "", false
}

// ciliumSelector checks a Cilium selector (nil means not written).
func ciliumSelector(w *walker, path string, ls *slimv1.LabelSelector) {
	if ls == nil {
		return
	}
	reqs := make([]requirement, len(ls.MatchExpressions))
	for i, e := range ls.MatchExpressions {
		reqs[i] = requirement{key: e.Key, operator: string(e.Operator), values: e.Values}
	}
	checkSelector(w, path, ciliumKeys, ls.MatchLabels, reqs)
}

// kubernetesSelector checks a NetworkPolicy selector.
func kubernetesSelector(w *walker, path string, ls *metav1.LabelSelector) {
	if ls == nil {
		return
	}
	reqs := make([]requirement, len(ls.MatchExpressions))
	for i, e := range ls.MatchExpressions {
		reqs[i] = requirement{key: e.Key, operator: string(e.Operator), values: e.Values}
	}
	checkSelector(w, path, kubernetesKeys, ls.MatchLabels, reqs)
}
