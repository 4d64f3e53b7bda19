package load

import (
	"fmt"
	"strconv"
)

// Field paths name a field the way Diagnostic.Path and Policy.Positions
// do, relative to the object:
//
//	metadata.name
//	spec.ingress[0].fromEndpoints[1].matchLabels.app
//	spec.ingress[0].fromEndpoints[0].matchLabels["k8s:io.kubernetes.pod.namespace"]
//	specs[2].egress[0].toPorts[0].ports[1].port
//
// A field or map key is appended with a dot when it consists only of
// letters, digits, '_', '-' and '/'; any other key (one with a dot, a
// colon, a space, a bracket, a quote, or the empty key) is written in
// brackets as a Go-quoted string. List items are appended as [index].

// childPath returns the path of the field or map key key inside the
// object at path.
func childPath(path, key string) string {
	if !isPlainKey(key) {
		return path + "[" + strconv.Quote(key) + "]"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// itemPath returns the path of item i of the list at path.
func itemPath(path string, i int) string {
	return fmt.Sprintf("%s[%d]", path, i)
}

// isPlainKey reports whether key can follow a dot in a field path.
func isPlainKey(key string) bool {
	if key == "" {
		return false
	}
	for _, r := range key {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case r == '_', r == '-', r == '/':
		default:
			return false
		}
	}
	return true
}

// lastElement returns the last field name of path without list
// indexes: "spec.ingress[0].fromEndpoints[1]" → "fromEndpoints".
func lastElement(path string) string {
	for {
		parent := parentPath(path)
		if len(path) > 0 && path[len(path)-1] == ']' && path[len(parent):len(parent)+2] != `["` {
			path = parent // strip an index
			continue
		}
		if parent == "" {
			return path
		}
		rest := path[len(parent):]
		if rest[0] == '.' {
			return rest[1:]
		}
		if s, err := strconv.Unquote(rest[1 : len(rest)-1]); err == nil {
			return s
		}
		return rest
	}
}
