package load

import (
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// checkMetadata checks metadata as the API server does and returns the
// name and the namespace (defaulted to "default" for namespaced kinds,
// as kubectl does without --namespace; "" for clusterwide policies).
func checkMetadata(w *walker, kind Kind, obj map[string]any) (name, namespace string) {
	meta, ok := obj["metadata"].(map[string]any)
	if !ok {
		w.diag(Error, "metadata.name", nil, "metadata.name is required")
		return "", defaultNamespace(kind)
	}
	name, _ = meta["name"].(string)
	switch {
	case name == "":
		msg := "metadata.name is required"
		if _, ok := meta["generateName"]; ok {
			msg += " (generateName only works with kubectl create; a policy file needs a name)"
		}
		w.diag(Error, "metadata.name", nil, "%s", msg)
	default:
		if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
			w.diag(Error, "metadata.name", nil, "invalid name %q: %s", name, strings.Join(errs, "; "))
		}
	}
	namespace, _ = meta["namespace"].(string)
	switch {
	case kind == KindCCNP && namespace != "":
		w.diag(Warning, "metadata.namespace", nil,
			"metadata.namespace is ignored: CiliumClusterwideNetworkPolicy is cluster-scoped, so the API server clears it")
		namespace = ""
	case kind == KindCCNP:
	case namespace == "":
		namespace = "default"
	default:
		if errs := validation.IsDNS1123Label(namespace); len(errs) > 0 {
			w.diag(Error, "metadata.namespace", nil, "invalid namespace %q: %s", namespace, strings.Join(errs, "; "))
		}
	}
	checkMetadataLabels(w, meta)
	return name, namespace
}

// defaultNamespace is the namespace of an object written without one.
func defaultNamespace(kind Kind) string {
	if kind == KindCCNP {
		return ""
	}
	return "default"
}

// checkMetadataLabels checks the syntax of metadata.labels and the keys
// of metadata.annotations.
func checkMetadataLabels(w *walker, meta map[string]any) {
	labels, _ := meta["labels"].(map[string]any)
	for _, k := range sortedKeys(labels) {
		p := childPath("metadata.labels", k)
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			w.diag(Error, p, nil, "invalid label key %q: %s", k, strings.Join(errs, "; "))
		}
		if v, ok := labels[k].(string); ok {
			if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
				w.diag(Error, p, nil, "invalid label value %q: %s", v, strings.Join(errs, "; "))
			}
		}
	}
	annotations, _ := meta["annotations"].(map[string]any)
	for _, k := range sortedKeys(annotations) {
		if errs := validation.IsQualifiedName(strings.ToLower(k)); len(errs) > 0 {
			w.diag(Error, childPath("metadata.annotations", k), nil, "invalid annotation key %q: %s", k, strings.Join(errs, "; "))
		}
	}
}

// sortedKeys returns the keys of m in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
