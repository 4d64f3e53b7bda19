package load

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// cnp is a valid CiliumNetworkPolicy header for inline tests (lines 1-4).
const cnp = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: test
`

// TestDiagnostics checks single behaviours on small inputs: each case
// must produce exactly the listed errors and warnings (notes are not
// checked unless listed).
func TestDiagnostics(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  []want
		notes []want
	}{
		{
			name: "valid L3 policy",
			input: cnp + `spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
`,
		},
		{
			name: "misspelt field with suggestion",
			input: cnp + `spec:
  endpointSelector:
    matchLabel: {app: web}
  ingress: [{}]
`,
			want: []want{{Warning, 7, "spec.endpointSelector.matchLabel",
				`unknown field "matchLabel"; the API server drops it, so the selector spec.endpointSelector ended up as {} and selects every endpoint in the policy's namespace (did you mean "matchLabels"?)`}},
		},
		{
			name: "unknown field outside selectors",
			input: cnp + `spec:
  endpointSelector: {}
  ingress:
  - fromEntities: [world]
    toPort: []
`,
			want: []want{{Warning, 9, "spec.ingress[0].toPort", `unknown field "toPort"; the API server drops it, so it has no effect (did you mean "toPorts"?)`}},
		},
		{
			name: "bare yes is a boolean to kubectl",
			input: cnp + `spec:
  endpointSelector: {matchLabels: {canary: on}}
  ingress: [{}]
`,
			want: []want{{Error, 6, "spec.endpointSelector.matchLabels.canary", `must be a string, not the boolean true (kubectl reads a bare on as a boolean); write it in quotes: "on"`}},
		},
		{
			name: "octal port",
			input: cnp + `spec:
  endpointSelector: {}
  egress:
  - toPorts: [{ports: [{port: "010", protocol: TCP}]}]
`,
			want: []want{{Warning, 8, "spec.egress[0].toPorts[0].ports[0].port", `port "010" has a leading zero, so Cilium reads it as the octal number 8`}},
		},
		{
			name: "CIDR with host bits",
			input: cnp + `spec:
  endpointSelector: {}
  egress:
  - toCIDR: [10.1.2.3/8]
`,
			want: []want{{Warning, 8, "spec.egress[0].toCIDR[0]", "10.1.2.3/8 has bits set after the /8 prefix, so it means 10.0.0.0/8"}},
		},
		{
			name: "clusterwide policy with a namespace",
			input: `apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata:
  name: ccnp
  namespace: kube-system
spec:
  endpointSelector: {}
  ingress: [{fromEntities: [cluster]}]
`,
			want: []want{{Warning, 5, "metadata.namespace", "metadata.namespace is ignored: CiliumClusterwideNetworkPolicy is cluster-scoped"}},
		},
		{
			name:  "miscased kind",
			input: "apiVersion: cilium.io/v2\nkind: ciliumNetworkPolicy\nmetadata: {name: x}\n",
			want:  []want{{Error, 2, "kind", `unknown kind "ciliumNetworkPolicy": kinds are case-sensitive; write "CiliumNetworkPolicy"`}},
		},
		{
			name:  "miscased kind key",
			input: "apiVersion: v1\nKind: Pod\n",
			want:  []want{{Error, 2, "kind", `kind is not set: the key is written "Kind"`}},
		},
		{
			name:  "not a map",
			input: "- a\n- b\n",
			want:  []want{{Error, 1, "", "expected a Kubernetes object (a map with apiVersion, kind and metadata), not a list"}},
		},
		{
			name:  "YAML syntax error after a good document",
			input: "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n---\nkind: [\n",
			want:  []want{{Error, 5, "", "invalid YAML: did not find expected node content"}},
			notes: []want{{Note, 1, "", "skipped Pod p: not a policy object"}},
		},
		{
			name:  "NetworkPolicy served in a removed version",
			input: "apiVersion: extensions/v1beta1\nkind: NetworkPolicy\nmetadata: {name: old}\nspec: {podSelector: {}}\n",
			want:  []want{{Error, 1, "apiVersion", `NetworkPolicy is served as networking.k8s.io/v1, not "extensions/v1beta1"`}},
		},
		{
			name: "NetworkPolicy rules that policyTypes ignores",
			input: `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: egress-only}
spec:
  podSelector: {}
  policyTypes: [Egress]
  ingress:
  - from: [{podSelector: {}}]
`,
			want: []want{{Warning, 7, "spec.ingress", "the ingress rules have no effect: policyTypes does not include Ingress"}},
		},
		{
			name:  "NetworkPolicy without spec",
			input: "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: nospec}\n",
			want:  []want{{Warning, 1, "spec", "selects every pod in its namespace and denies all their ingress"}},
		},
		{
			name: "NetworkPolicy unknown field",
			input: `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: typo}
spec:
  podSelector: {}
  ingres: []
`,
			want: []want{{Warning, 6, "spec.ingres", `unknown field "ingres"; the API server drops it, so it has no effect (did you mean "ingress"?)`}},
		},
		{
			name: "specs list empty",
			input: cnp + `specs: []
`,
			want: []want{{Warning, 5, "specs", "specs is empty, so the policy has no rules"}},
		},
		{
			name: "invalid name",
			input: `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: Allow_All
spec:
  endpointSelector: {}
  ingress: [{}]
`,
			want: []want{{Error, 4, "metadata.name", `invalid name "Allow_All"`}},
		},
		{
			name: "merge keys and anchors",
			input: cnp + `spec:
  endpointSelector: &web
    matchLabels: {app: web}
  ingress:
  - fromEndpoints:
    - <<: *web
      matchExpressions: [{key: env, operator: Exists}]
`,
		},
		{
			name: "Kafka rule checks",
			input: cnp + `spec:
  endpointSelector: {}
  ingress:
  - toPorts:
    - ports: [{port: "9092", protocol: TCP}]
      rules:
        kafka:
        - role: publish
`,
			want: []want{
				{Warning, 11, "spec.ingress[0].toPorts[0].rules.kafka", "Kafka rules were removed in Cilium 1.20"},
				{Error, 12, "spec.ingress[0].toPorts[0].rules.kafka[0].role", `unsupported Kafka role "publish": must be produce or consume`},
			},
		},
		{
			name: "host policy with L7 on ingress",
			input: `apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: host-l7}
spec:
  nodeSelector: {}
  ingress:
  - toPorts:
    - ports: [{port: "80", protocol: TCP}]
      rules: {http: [{method: GET}]}
`,
			want: []want{{Error, 9, "spec.ingress[0].toPorts[0].rules", "L7 rules are not supported on host ingress"}},
		},
		{
			name: "HTTP rule with a bad regular expression",
			input: cnp + `spec:
  endpointSelector: {}
  ingress:
  - toPorts:
    - ports: [{port: "80", protocol: TCP}]
      rules: {http: [{method: GET, path: "/(unclosed"}]}
`,
			want: []want{{Error, 10, "spec.ingress[0].toPorts[0].rules.http[0].path", `invalid regular expression "/(unclosed"`}},
		},
		{
			name: "port without number",
			input: cnp + `spec:
  endpointSelector: {}
  ingress:
  - toPorts: [{ports: [{protocol: TCP}]}]
`,
			want: []want{{Error, 8, "spec.ingress[0].toPorts[0].ports[0]", `port is required (write port: "0" to match every port)`}},
		},
		{
			name: "L7 rule with no protocol",
			input: cnp + `spec:
  endpointSelector: {}
  ingress:
  - toPorts:
    - ports: [{port: "80"}]
      rules: {http: [{method: GET}]}
`,
			want: []want{{Error, 9, "spec.ingress[0].toPorts[0].ports[0]", "L7 rules only apply to TCP: add protocol: TCP (no protocol means ANY)"}},
		},
		{
			name: "mis-indented label under a non-empty selector",
			input: cnp + `spec:
  endpointSelector:
    matchLabels: {app: web}
    tier: frontend
  ingress: [{}]
`,
			want: []want{{Warning, 8, "spec.endpointSelector.tier",
				"the API server drops it, so it has no effect on the selector; to match the label tier=frontend, indent it under matchLabels"}},
		},
		{
			name: "null item in a list",
			input: cnp + `spec:
  endpointSelector: {}
  egress:
  -
`,
			want: []want{{Error, 8, "spec.egress[0]", "must be a map of fields, not an empty item (null)"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Bytes("test.yaml", []byte(tt.input))
			var problems []Diagnostic
			for _, d := range r.Diagnostics {
				if d.Severity != Note {
					problems = append(problems, d)
				}
			}
			checkExactly(t, problems, tt.want)
			checkContains(t, bySeverity(r.Diagnostics, Note), tt.notes)
		})
	}
}

// TestPolicyFields checks the fields of loaded policies: kind, name,
// namespace defaulting, rule paths, positions and the Kafka rules.
func TestPolicyFields(t *testing.T) {
	input := `# comment
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: kafka
specs:
- endpointSelector:
    matchLabels:
      "k8s:io.kubernetes.pod.namespace": team-a
  ingress:
  - toPorts:
    - ports: [{port: "9092", protocol: TCP}]
      rules:
        kafka:
        - {role: produce, topic: deathstar-plans}
---
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: everyone}
spec:
  endpointSelector: {}
  egress: [{toEntities: [world]}]
`
	r := Bytes("p.yaml", []byte(input))
	if len(r.Policies) != 2 {
		t.Fatalf("got %d policies, want 2: %v", len(r.Policies), r.Diagnostics)
	}
	p, c := r.Policies[0], r.Policies[1]
	if p.Ref() != "CiliumNetworkPolicy default/kafka" || c.Ref() != "CiliumClusterwideNetworkPolicy everyone" {
		t.Errorf("refs %q and %q", p.Ref(), c.Ref())
	}
	if p.Line != 2 || c.Line != 17 {
		t.Errorf("lines %d and %d, want 2 and 17", p.Line, c.Line)
	}
	if len(p.Rules) != 1 || p.RulePaths[0] != "specs[0]" || c.RulePaths[0] != "spec" {
		t.Errorf("rule paths %v and %v", p.RulePaths, c.RulePaths)
	}
	key := `specs[0].endpointSelector.matchLabels["k8s:io.kubernetes.pod.namespace"]`
	if pos := p.Positions[key]; pos != (Position{9, 7}) {
		t.Errorf("position of %s = %v, want 9:7", key, pos)
	}
	if pos := p.Position("specs[0].ingress[0].toPorts[0].ports[0].endPort"); pos.Line != 12 {
		t.Errorf("position of an unwritten field = %v, want its port's line 12", pos)
	}
	kafka := p.Kafka["specs[0].ingress[0].toPorts[0]"]
	if len(kafka) != 1 || kafka[0] != (KafkaRule{Role: "produce", Topic: "deathstar-plans"}) {
		t.Errorf("Kafka rules %+v", p.Kafka)
	}
	if rules := p.Rules[0].Ingress[0].ToPorts[0].Rules; rules != nil && !rules.IsEmpty() {
		t.Errorf("upstream L7 rules should be empty, got %+v", rules)
	}
	u := p.Unenforced()
	if len(u) != 1 || u[0].Message != "not enforced by cilia yet: L7 Kafka rules" || u[0].Line != 14 {
		t.Errorf("unenforced %v", u)
	}
}

// TestNodeEmbedded loads a policy embedded in a larger document, as the
// scenario loader does: positions are the embedding file's lines and
// paths are relative to the object.
func TestNodeEmbedded(t *testing.T) {
	input := `apiVersion: conformance.cilia.dev/v1alpha1
kind: Scenario
metadata: {name: s}
policies:
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: np, namespace: x}
  spec:
    podSelector: {}
    ingress:
    - ports:
      - port: 70000
`
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(input), &doc); err != nil {
		t.Fatal(err)
	}
	policies := doc.Content[0].Content[7]
	p, diags := Node("scenario.yaml", policies.Content[0])
	if p != nil {
		t.Errorf("an invalid policy was returned")
	}
	if len(diags) != 1 || diags[0].Line != 12 || diags[0].Path != "spec.ingress[0].ports[0].port" ||
		!strings.Contains(diags[0].Message, "invalid port 70000") {
		t.Errorf("diagnostics %v", diags)
	}
	p, diags = Node("scenario.yaml", &doc)
	if p != nil || len(diags) != 1 || diags[0].Severity != Note || diags[0].Message != "skipped Scenario s: not a policy object" {
		t.Errorf("scenario object: %v %v", p, diags)
	}
}

// TestNamespaces checks namespace defaulting.
func TestNamespaces(t *testing.T) {
	tests := []struct {
		input, namespace string
	}{
		{"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a}\nspec: {podSelector: {}}\n", "default"},
		{"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a, namespace: prod}\nspec: {podSelector: {}}\n", "prod"},
		{cnp + "spec: {endpointSelector: {}, ingress: [{}]}\n", "default"},
		{"apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata: {name: a}\nspec: {endpointSelector: {}, ingress: [{}]}\n", ""},
	}
	for _, tt := range tests {
		r := Bytes("ns.yaml", []byte(tt.input))
		if len(r.Policies) != 1 {
			t.Errorf("%q: no policy: %v", tt.input, r.Diagnostics)
			continue
		}
		p := r.Policies[0]
		if p.Namespace != tt.namespace {
			t.Errorf("%q: namespace %q, want %q", tt.input, p.Namespace, tt.namespace)
		}
		if p.KNP != nil && p.KNP.Namespace != tt.namespace {
			t.Errorf("%q: KNP namespace %q, want %q", tt.input, p.KNP.Namespace, tt.namespace)
		}
	}
}

// TestEmptyDocuments checks that empty documents are ignored.
func TestEmptyDocuments(t *testing.T) {
	r := Bytes("e.yaml", []byte("---\n# nothing\n---\n---\n"))
	if len(r.Diagnostics) != 0 || len(r.Policies) != 0 || r.Invalid != 0 || r.Skipped != 0 {
		t.Errorf("got %+v", r)
	}
}

// TestPaths checks the field path helpers.
func TestPaths(t *testing.T) {
	tests := []struct {
		parent, key, path, last string
	}{
		{"", "spec", "spec", "spec"},
		{"spec", "ingress", "spec.ingress", "ingress"},
		{"spec.ingress[0].fromEndpoints[1].matchLabels", "app", "spec.ingress[0].fromEndpoints[1].matchLabels.app", "app"},
		{"m.matchLabels", "k8s:io.kubernetes.pod.namespace", `m.matchLabels["k8s:io.kubernetes.pod.namespace"]`, "k8s:io.kubernetes.pod.namespace"},
		{"m.matchLabels", "node-role.kubernetes.io/control-plane", `m.matchLabels["node-role.kubernetes.io/control-plane"]`, "node-role.kubernetes.io/control-plane"},
		{"m", `a["b`, `m["a[\"b"]`, `a["b`},
		{"m", "", `m[""]`, ""},
	}
	for _, tt := range tests {
		got := childPath(tt.parent, tt.key)
		if got != tt.path {
			t.Errorf("childPath(%q, %q) = %q, want %q", tt.parent, tt.key, got, tt.path)
		}
		if p := parentPath(got); p != tt.parent {
			t.Errorf("parentPath(%q) = %q, want %q", got, p, tt.parent)
		}
		if l := lastElement(got); l != tt.last {
			t.Errorf("lastElement(%q) = %q, want %q", got, l, tt.last)
		}
	}
	if got := lastElement("spec.ingress[0].fromEndpoints[12]"); got != "fromEndpoints" {
		t.Errorf("lastElement of an item = %q", got)
	}
}

// TestScalars checks that scalars are read as kubectl reads them.
func TestScalars(t *testing.T) {
	tests := []struct {
		text string
		want any
	}{
		{"80", int64(80)}, {"0x50", int64(80)}, {"0755", int64(493)}, {"1_000", int64(1000)},
		{"yes", true}, {"Off", false}, {"y", true}, {"true", true},
		{"~", nullValue{}}, {"null", nullValue{}}, {"", nullValue{}},
		{"1.5", 1.5}, {"eighty", "eighty"}, {"10.0.0.0/8", "10.0.0.0/8"}, {"k8s:app", "k8s:app"},
		{"2001:db8::/32", "2001:db8::/32"}, {"TCP", "TCP"},
	}
	for _, tt := range tests {
		if got := resolvePlain(tt.text); got != tt.want {
			t.Errorf("resolvePlain(%q) = %#v, want %#v", tt.text, got, tt.want)
		}
	}
}

// TestSchemas checks that the CRD schemas load and carry cilia's
// extensions.
func TestSchemas(t *testing.T) {
	for _, k := range []Kind{KindCNP, KindCCNP, KindKNP} {
		s, err := schemaFor(k)
		if err != nil || s == nil || s.Properties["metadata"] == nil || s.Properties["spec"] == nil {
			t.Fatalf("schema of %s: %v", k, err)
		}
	}
	s, _ := schemaFor(KindCNP)
	rules := s.Properties["spec"].Properties["ingress"].Items.Properties["toPorts"].Items.Properties["rules"]
	if rules.Properties["kafka"] == nil || len(rules.OneOf) != 4 {
		t.Errorf("rules schema lacks the Kafka extension: %+v", rules)
	}
}
