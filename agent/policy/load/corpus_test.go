package load

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// want is an expected diagnostic: severity, line, path and a substring
// of the message.
type want struct {
	sev  Severity
	line int
	path string
	msg  string
}

func (w want) String() string {
	return fmt.Sprintf("%d: %s: %s: ...%s...", w.line, w.sev, w.path, w.msg)
}

// matches reports whether d is the expected diagnostic.
func (w want) matches(d Diagnostic) bool {
	return d.Severity == w.sev && d.Line == w.line && d.Path == w.path && strings.Contains(d.Message, w.msg)
}

// corpusFile is what loading one corpus file must produce.
type corpusFile struct {
	// problems are all its errors and warnings (a file not listed has
	// none).
	problems []want
	// notes are some of its notes (skipped objects, unenforced features).
	notes []want
	// policies and skipped count its valid policies and skipped objects.
	policies, skipped int
}

// corpus lists what Cilium's example policies must produce: most are
// valid; the quirky ones are listed with what kubectl, the API server
// and Cilium 1.20 do with them.
var corpus = map[string]corpusFile{
	// The CRD has no field "auth" (it is "authentication" with a mode):
	// the API server drops it, leaving a plain toEndpoints rule.
	"auth/auth.yaml": {policies: 1, problems: []want{
		{Warning, 13, "spec.egress[0].auth", `unknown field "auth"; the API server drops it, so it has no effect (did you mean "authentication"?)`},
	}},
	// An old copy of l3/cidr/cidr.yaml with toCIDR and toCIDRSet in one
	// rule, which Cilium's Rule.Sanitize rejects.
	"cidr.yaml": {problems: []want{
		{Error, 12, "spec.egress[0].toCIDRSet", "cannot combine toCIDRSet with toCIDR in one rule"},
	}},
	// A description at the top level instead of in spec is pruned.
	"getting-started/kafka.yaml": {policies: 1, problems: []want{
		{Warning, 3, "description", `unknown field "description"; the API server drops it, so it has no effect (description belongs in spec)`},
		{Warning, 19, "spec.ingress[0].toPorts[0].rules.kafka", "Kafka rules were removed in Cilium 1.20"},
	}, notes: []want{
		{Note, 19, "spec.ingress[0].toPorts[0].rules.kafka", "not enforced by cilia yet: L7 Kafka rules"},
	}},
	"getting-started/dns-matchname.yaml": {policies: 1, notes: []want{
		{Note, 11, "specs[0].egress[0].toFQDNs", "not enforced by cilia yet: DNS-based egress rules (toFQDNs)"},
		{Note, 25, "specs[1].egress[0].toPorts[0].rules.dns", "not enforced by cilia yet: L7 DNS rules"},
	}},
	"getting-started/l7-policy.yaml": {policies: 1, notes: []want{
		{Note, 18, "spec.ingress[0].toPorts[0].rules.http", "not enforced by cilia yet: L7 HTTP rules"},
	}},
	"host/allow-extended-protocols.yaml": {policies: 1, notes: []want{
		{Note, 7, "spec.nodeSelector", "not enforced by cilia yet: host policies (nodeSelector)"},
		{Note, 23, "spec.egress[0].toPorts[0].ports[5].protocol", "not enforced by cilia yet: IP protocol VRRP"},
	}},
	"host/lock-down-dev-vms.yaml": {policies: 1, problems: []want{
		{Warning, 3, "description", `unknown field "description"`},
	}},
	"host/lock-down-gke.yaml": {policies: 1, problems: []want{
		{Warning, 3, "description", `unknown field "description"`},
	}},
	"host/lock-down-ingress.yaml": {policies: 1, problems: []want{
		{Warning, 3, "description", `unknown field "description"`},
	}},
	// metadata has no description either.
	"kubernetes/clustermesh/cross-cluster-policy.yaml": {policies: 1, problems: []want{
		{Warning, 5, "metadata.description", `unknown field "description"; the API server drops it, so it has no effect (description belongs in spec)`},
	}},
	"kubernetes/clusterwide/wildcard-from-endpoints.yaml": {policies: 1, problems: []want{
		{Warning, 3, "description", `unknown field "description"`},
	}},
	// Six objects of other kinds.
	"kubernetes/namespace/demo-pods.yaml": {skipped: 6, notes: []want{
		{Note, 1, "", "skipped Namespace ns1: not a policy object"},
		{Note, 6, "", "skipped Namespace ns2: not a policy object"},
		{Note, 11, "", "skipped Deployment ns1/leia-deployment: not a policy object"},
		{Note, 31, "", "skipped Service ns1/leia: not a policy object"},
		{Note, 43, "", "skipped Pod ns2/luke-pod: not a policy object"},
		{Note, 55, "", "skipped Pod ns2/vader-pod: not a policy object"},
	}},
	"kubernetes/serviceaccount/demo-pods.yaml": {skipped: 7, notes: []want{
		{Note, 1, "", "skipped ServiceAccount leia: not a policy object"},
		{Note, 16, "", "skipped Deployment leia-deployment: not a policy object"},
		{Note, 55, "", "skipped Pod vader-pod: not a policy object"},
	}},
	// "egress:" without a value is pruned, leaving a rule without any
	// section, which the API server (anyOf) and Cilium reject. Upstream
	// later fixed it to "egress: [{}]".
	"l3/egress-default-deny/egress-default-deny.yaml": {problems: []want{
		{Error, 5, "spec", "must have at least one of ingress, ingressDeny, egress, egressDeny (egress is written without a value"},
		{Warning, 9, "spec.egress", `to deny all egress, write "egress: [{}]"`},
	}},
	// The lower-case apiversion key: kubectl looks up "apiVersion"
	// case-sensitively, finds none, and rejects the object.
	"l3/entities/from_nodes.yaml": {problems: []want{
		{Error, 1, "apiVersion", `apiVersion is not set: the key is written "apiversion", and keys are case-sensitive, so kubectl rejects the object`},
	}},
	"l3/entities/customnodes.yaml": {policies: 1, notes: []want{
		{Note, 10, "spec.ingress[0].fromNodes", "not enforced by cilia yet: node selectors (fromNodes)"},
	}},
	"l3/fqdn/fqdn.yaml": {policies: 1, notes: []want{
		{Note, 14, "spec.egress[1].toFQDNs", "not enforced by cilia yet: DNS-based egress rules (toFQDNs)"},
	}},
	"l3/host/host-policy.yaml": {policies: 1, problems: []want{
		{Warning, 3, "description", `unknown field "description"`},
	}, notes: []want{
		{Note, 7, "spec.nodeSelector", "not enforced by cilia yet: host policies (nodeSelector)"},
	}},
	// "- fromEndpoints:" without a value: the rule ends up as {} and
	// allows nothing, the opposite of its name. Upstream later fixed it
	// to "fromEndpoints: [{}]".
	"l3/ingress-allow-all/ingress-allow-all.yaml": {policies: 1, problems: []want{
		{Warning, 10, "spec.ingress[0].fromEndpoints", "so this rule ended up as {}, which allows nothing"},
	}},
	// Operators are case-sensitive: the CRD enum rejects "in".
	"l3/match-expressions/and-statement.yaml": {problems: []want{
		{Error, 11, "spec.ingress[0].fromEndpoints[0].matchExpressions[0].operator", `unsupported value "in": must be one of In, NotIn, Exists, DoesNotExist (values are case-sensitive: write "In")`},
		{Error, 15, "spec.ingress[0].fromEndpoints[0].matchExpressions[1].operator", `unsupported value "in"`},
	}},
	"l3/match-expressions/or-statement.yaml": {problems: []want{
		{Error, 11, "spec.ingress[0].fromEndpoints[0].matchExpressions[0].operator", `unsupported value "in"`},
		{Error, 16, "spec.ingress[0].fromEndpoints[1].matchExpressions[0].operator", `unsupported value "in"`},
	}},
	// fromRequires was removed in Cilium 1.19: the CRD allows only [].
	"l3/requires/requires.yaml": {problems: []want{
		{Warning, 3, "description", `unknown field "description"`},
		{Error, 11, "specs[0].ingress[0].fromRequires", "fromRequires was removed in Cilium 1.19"},
	}},
	"requires.yaml": {problems: []want{
		{Error, 10, "specs[0].ingress[0].fromRequires", "fromRequires was removed in Cilium 1.19"},
	}},
	"l3/service/service.yaml": {policies: 1, notes: []want{
		{Note, 10, "spec.egress[0].toServices", "not enforced by cilia yet: service-based egress rules (toServices)"},
	}},
	"l4/envoy_forward_proxy.yaml": {policies: 1, notes: []want{
		{Note, 23, "spec.egress[0].toPorts[0].listener", "not enforced by cilia yet: redirection to an Envoy listener (listener)"},
	}},
	"l4/envoy_forward_proxy_cec.yaml": {skipped: 1, notes: []want{
		{Note, 1, "", "skipped CiliumClusterwideEnvoyConfig forward-proxy-redirect: not a policy object"},
	}},
	"l4/envoy_listener_redirect_cec.yaml": {skipped: 1},
	// "reserved.init" is not "reserved:init": the selector matches
	// nothing. Upstream later fixed it.
	"l4/init.yaml": {policies: 1, problems: []want{
		{Warning, 8, `specs[0].endpointSelector.matchLabels["reserved.init"]`, `did you mean "reserved:init"?`},
	}},
	// The mis-indented matchLabels: "role: frontend" is a sibling of an
	// empty matchLabels, the API server drops it, and the selector ends
	// up selecting every endpoint.
	"l4/l3_l4_combined.yaml": {policies: 1, problems: []want{
		{Warning, 12, "spec.ingress[0].fromEndpoints[0].role", `unknown field "role"; the API server drops it, so the selector spec.ingress[0].fromEndpoints[0] ended up as {} and selects every endpoint in the policy's namespace; to match the label role=frontend, indent it under matchLabels`},
	}},
	"multi_rule.yaml": {policies: 1, problems: []want{
		{Warning, 12, "spec.ingress[0].fromEndpoints[0].role", "ended up as {} and selects every endpoint"},
	}},
	"l4/l4_sni.yaml": {policies: 1, notes: []want{
		{Note, 14, "spec.egress[0].toPorts[0].serverNames", "not enforced by cilia yet: TLS server name (SNI) matching"},
	}},
	"l7/dns/dns-visibility.yaml": {policies: 1, problems: []want{
		{Warning, 12, `spec.egress[0].toEndpoints[0].matchLabels["k8s.io.kubernetes.pod.namespace"]`, `did you mean "k8s:io.kubernetes.pod.namespace"?`},
	}, notes: []want{
		{Note, 19, "spec.egress[0].toPorts[0].rules.dns", "not enforced by cilia yet: L7 DNS rules"},
		{Note, 21, "spec.egress[1].toFQDNs", "not enforced by cilia yet: DNS-based egress rules (toFQDNs)"},
	}},
	// "HTTP" is not "http": pruned, leaving rules without any L7 kind,
	// which the CRD's oneOf rejects.
	"l7/http/http.yaml": {problems: []want{
		{Error, 14, "spec.ingress[0].toPorts[0].rules", "must have one of http, kafka, dns, l7proto"},
		{Warning, 15, "spec.ingress[0].toPorts[0].rules.HTTP", `(did you mean "http"? field names are case-sensitive)`},
	}},
	"l7/http/l7_multi.yaml": {policies: 1, notes: []want{
		{Note, 18, "specs[0].ingress[0].toPorts[0].rules.http", "not enforced by cilia yet: L7 HTTP rules"},
		{Note, 30, "specs[1].egress[0].toPorts[0].rules.http", "not enforced by cilia yet: L7 HTTP rules"},
	}},
	"l7/http/simple/l7.yaml": {policies: 1, problems: []want{
		{Warning, 3, "description", `unknown field "description"`},
	}},
	"l7/kafka/kafka-Role.yaml": {policies: 1, problems: []want{
		{Warning, 3, "description", `unknown field "description"`},
		{Warning, 19, "spec.ingress[0].toPorts[0].rules.kafka", "Kafka rules were removed in Cilium 1.20"},
		{Warning, 20, "spec.ingress[0].toPorts[0].rules.kafka[0].Role", `(did you mean "role"? field names are case-sensitive)`},
		{Warning, 22, "spec.ingress[0].toPorts[0].rules.kafka[1].Role", `unknown field "Role"`},
	}},
	"l7/kafka/kafka-role.yaml": {policies: 1, problems: []want{
		{Warning, 19, "spec.ingress[0].toPorts[0].rules.kafka", "Kafka rules were removed in Cilium 1.20"},
	}, notes: []want{
		{Note, 19, "spec.ingress[0].toPorts[0].rules.kafka", "not enforced by cilia yet: L7 Kafka rules"},
	}},
	"l7/kafka/kafka.yaml": {policies: 1, problems: []want{
		{Warning, 3, "description", `unknown field "description"`},
		{Warning, 19, "spec.ingress[0].toPorts[0].rules.kafka", "Kafka rules were removed in Cilium 1.20"},
	}},
	"l7.yaml": {policies: 1, problems: []want{
		{Warning, 3, "description", `unknown field "description"`},
	}, notes: []want{
		{Note, 19, "spec.ingress[0].toPorts[0].rules.http", "not enforced by cilia yet: L7 HTTP rules"},
	}},
}

// TestCorpus loads every file of Cilium's example policies: the files
// not listed in corpus must load without an Error or a Warning, the
// listed ones must produce exactly the listed errors and warnings (and
// at least the listed notes), and Cilium's own Rule.Sanitize must accept
// every policy loaded.
func TestCorpus(t *testing.T) {
	enableCiliumFeatures(t)
	dir := corpusDir(t)
	files := yamlFiles(t, dir)
	if len(files) != 82 {
		t.Errorf("found %d files in the corpus %s, want 82", len(files), dir)
	}
	seen := map[string]bool{}
	for _, f := range files {
		f := filepath.ToSlash(f)
		seen[f] = true
		t.Run(f, func(t *testing.T) {
			r, err := File(filepath.Join(dir, f))
			if err != nil {
				t.Fatal(err)
			}
			exp, listed := corpus[f]
			var problems []Diagnostic
			for _, d := range r.Diagnostics {
				if d.Severity != Note {
					problems = append(problems, d)
				}
			}
			checkExactly(t, problems, exp.problems)
			checkContains(t, bySeverity(r.Diagnostics, Note), exp.notes)
			if listed && len(r.Policies) != exp.policies {
				t.Errorf("loaded %d policies, want %d", len(r.Policies), exp.policies)
			}
			if !listed && len(r.Policies) == 0 {
				t.Errorf("loaded no policy")
			}
			if r.Skipped != exp.skipped {
				t.Errorf("skipped %d objects, want %d", r.Skipped, exp.skipped)
			}
			for _, p := range r.Policies {
				sanitizeAll(t, p)
			}
		})
	}
	for f := range corpus {
		if !seen[f] {
			t.Errorf("corpus expectation for %s, which is not in the corpus", f)
		}
	}
}

// checkExactly checks that got holds exactly the expected diagnostics.
func checkExactly(t *testing.T, got []Diagnostic, exp []want) {
	t.Helper()
	used := make([]bool, len(got))
	for _, w := range exp {
		found := false
		for i, d := range got {
			if !used[i] && w.matches(d) {
				used[i], found = true, true
				break
			}
		}
		if !found {
			t.Errorf("missing %s", w)
		}
	}
	for i, d := range got {
		if !used[i] {
			t.Errorf("unexpected %s", d)
		}
	}
}

// checkContains checks that got holds every expected diagnostic.
func checkContains(t *testing.T, got []Diagnostic, exp []want) {
	t.Helper()
	for _, w := range exp {
		found := false
		for _, d := range got {
			found = found || w.matches(d)
		}
		if !found {
			t.Errorf("missing %s in:\n%s", w, joinDiagnostics(got))
		}
	}
}
