package scenario

import (
	"fmt"
	"regexp"
	"strings"
)

var (
	dnsLabelRE     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	dnsSubdomainRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	labelNameRE    = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)
	portNameRE     = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)
	dropReasonRE   = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)
	httpMethodRE   = regexp.MustCompile(`^[A-Z]+$`)
)

// checkDNSLabel validates a name that must be an RFC 1123 label
// (namespaces, externals), at most max characters.
func checkDNSLabel(s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("%q is longer than %d characters", s, max)
	}
	if !dnsLabelRE.MatchString(s) {
		return fmt.Errorf("%q is not a valid name: use lowercase letters, digits and '-', starting and ending with a letter or digit", s)
	}
	return nil
}

// checkDNSSubdomain validates an RFC 1123 subdomain (pods, services,
// nodes, policies).
func checkDNSSubdomain(s string) error {
	if len(s) > 253 {
		return fmt.Errorf("%q is longer than 253 characters", s)
	}
	if !dnsSubdomainRE.MatchString(s) {
		return fmt.Errorf("%q is not a valid name: use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit", s)
	}
	return nil
}

// checkLabelKey validates a Kubernetes label key: an optional DNS
// subdomain prefix and "/", then a name of at most 63 characters.
func checkLabelKey(k string) error {
	name := k
	if prefix, rest, ok := strings.Cut(k, "/"); ok {
		if prefix == "" || checkDNSSubdomain(prefix) != nil {
			return fmt.Errorf("label key %q has an invalid prefix %q", k, prefix)
		}
		name = rest
	}
	if name == "" || len(name) > 63 || !labelNameRE.MatchString(name) {
		return fmt.Errorf("invalid label key %q: the name part must be 1-63 characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit", k)
	}
	return nil
}

// checkLabelValue validates a Kubernetes label value.
func checkLabelValue(k, v string) error {
	if v == "" {
		return nil
	}
	if len(v) > 63 || !labelNameRE.MatchString(v) {
		return fmt.Errorf("invalid value %q for label %q: at most 63 characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit", v, k)
	}
	return nil
}

// checkPortName validates an IANA service name as Kubernetes requires for
// port names: at most 15 characters, lowercase letters, digits and '-', at
// least one letter, no "--".
func checkPortName(s string) error {
	if len(s) > 15 || !portNameRE.MatchString(s) || strings.Contains(s, "--") ||
		strings.IndexFunc(s, func(r rune) bool { return r >= 'a' && r <= 'z' }) < 0 {
		return fmt.Errorf("invalid port name %q: at most 15 lowercase letters, digits and '-', with at least one letter and no \"--\"", s)
	}
	return nil
}

// splitKey splits "namespace/name".
func splitKey(s string) (ns, name string, ok bool) {
	ns, name, ok = strings.Cut(s, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return "", "", false
	}
	return ns, name, true
}

// checkKey validates a "namespace/name" reference to a pod or service.
func checkKey(s, what string) (ns, name string, err error) {
	ns, name, ok := splitKey(s)
	if !ok {
		return "", "", fmt.Errorf("%s name %q must be \"namespace/name\"", what, s)
	}
	if err := checkDNSLabel(ns, 63); err != nil {
		return "", "", fmt.Errorf("namespace %v", err)
	}
	if err := checkDNSSubdomain(name); err != nil {
		return "", "", fmt.Errorf("%s %v", what, err)
	}
	return ns, name, nil
}
