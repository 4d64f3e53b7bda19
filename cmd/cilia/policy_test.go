package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const (
	validPolicies   = "../../fixtures/policies/valid"
	invalidPolicies = "../../fixtures/policies/invalid"
)

// warningPolicy loads with one warning (a field the API server drops).
const warningPolicy = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: typo
spec:
  endpointSelector: {}
  ingress:
  - fromEntities: [cluster]
    toPort: []
`

// runCilia runs the cilia root command in-process and returns what it
// printed and whether it failed.
func runCilia(t *testing.T, stdin string, args ...string) (stdout, stderr string, failed bool) {
	t.Helper()
	root := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), errOut.String(), err != nil
}

// writeFile writes a file in a temporary directory and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// diagnosticLine is the text format of a diagnostic.
var diagnosticLine = regexp.MustCompile(`^[^:]+:\d+:\d+: (error|warning|note): (\S+: )?.+$`)

func TestPolicyValidate(t *testing.T) {
	warn := writeFile(t, "typo.yaml", warningPolicy)
	tests := []struct {
		name       string
		args       []string
		stdin      string
		wantFail   bool
		wantOut    []string // substrings of stdout
		notOut     []string // substrings stdout must not have
		wantStderr string
	}{
		{
			name:    "valid fixtures",
			args:    []string{"policy", "validate", validPolicies},
			wantOut: []string{"cnp-l3-ingress.yaml: 1 CiliumNetworkPolicy valid\n", "multi-document.yaml: 1 CiliumNetworkPolicy valid, 1 NetworkPolicy valid, 2 skipped, 2 notes\n", "total: "},
			notOut:  []string{": error: ", ": warning: "},
		},
		{
			name:     "invalid file",
			args:     []string{"policy", "validate", filepath.Join(invalidPolicies, "except-outside-cidr.yaml")},
			wantFail: true,
			wantOut: []string{
				filepath.Join(invalidPolicies, "except-outside-cidr.yaml") + ":15:9: error: spec.egress[0].toCIDRSet[0].except[1]: except 192.168.0.0/16 is not inside cidr 10.0.0.0/8\n",
				"except-outside-cidr.yaml: 1 invalid, 1 error\n",
			},
			wantStderr: "Error: validate policies: 1 of 1 files have errors\n",
		},
		{
			name:    "warning passes without --strict",
			args:    []string{"policy", "validate", warn},
			wantOut: []string{":9:5: warning: spec.ingress[0].toPort: unknown field \"toPort\"", "typo.yaml: 1 CiliumNetworkPolicy valid, 1 warning\n"},
		},
		{
			name:       "warning fails with --strict",
			args:       []string{"policy", "validate", "--strict", warn},
			wantFail:   true,
			wantStderr: "Error: validate policies: 1 of 1 files have errors or warnings\n",
		},
		{
			name:    "standard input",
			args:    []string{"policy", "validate", "-"},
			stdin:   warningPolicy,
			wantOut: []string{"<stdin>:9:5: warning: ", "<stdin>: 1 CiliumNetworkPolicy valid, 1 warning\n"},
		},
		{
			name:     "quiet prints only failures",
			args:     []string{"policy", "validate", "--quiet", warn, filepath.Join(invalidPolicies, "entity-unknown.yaml")},
			wantFail: true,
			wantOut:  []string{"entity-unknown.yaml:12:7: error: spec.egress[0].toEntities[0]: unsupported value \"internet\""},
			notOut:   []string{"warning", "total"},
		},
		{
			name:       "missing file",
			args:       []string{"policy", "validate", "does-not-exist.yaml"},
			wantFail:   true,
			wantStderr: "does-not-exist.yaml: no such file or directory",
		},
		{
			name:       "unknown output format",
			args:       []string{"policy", "validate", "-o", "xml", warn},
			wantFail:   true,
			wantStderr: `unknown output format "xml"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, failed := runCilia(t, tt.stdin, tt.args...)
			if failed != tt.wantFail {
				t.Errorf("failed = %v, want %v\nstdout:\n%s\nstderr:\n%s", failed, tt.wantFail, out, errOut)
			}
			for _, s := range tt.wantOut {
				if !strings.Contains(out, s) {
					t.Errorf("stdout lacks %q:\n%s", s, out)
				}
			}
			for _, s := range tt.notOut {
				if strings.Contains(out, s) {
					t.Errorf("stdout has %q:\n%s", s, out)
				}
			}
			if !strings.Contains(errOut, tt.wantStderr) {
				t.Errorf("stderr lacks %q:\n%s", tt.wantStderr, errOut)
			}
		})
	}
}

// TestPolicyValidateFormat checks that every line before the summaries
// is a diagnostic in the documented format, and that --quiet prints only
// the failing ones.
func TestPolicyValidateFormat(t *testing.T) {
	out, _, failed := runCilia(t, "", "policy", "validate", invalidPolicies, validPolicies)
	if !failed {
		t.Fatal("validating the invalid fixtures succeeded")
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	var diags, summaries int
	for _, l := range lines {
		switch {
		case diagnosticLine.MatchString(l):
			if summaries > 0 {
				t.Errorf("diagnostic after the summaries: %q", l)
			}
			diags++
		case strings.Contains(l, ".yaml: ") || strings.HasPrefix(l, "total: "):
			summaries++
		default:
			t.Errorf("unexpected line %q", l)
		}
	}
	files, _ := filepath.Glob(filepath.Join(invalidPolicies, "*.yaml"))
	if diags < len(files) || !strings.HasPrefix(lines[len(lines)-1], "total: ") {
		t.Errorf("%d diagnostics for %d invalid files; last line %q", diags, len(files), lines[len(lines)-1])
	}

	quiet, _, _ := runCilia(t, "", "policy", "validate", "--quiet", invalidPolicies, validPolicies)
	qlines := strings.Split(strings.TrimSuffix(quiet, "\n"), "\n")
	if len(qlines) != len(files) {
		t.Errorf("--quiet printed %d lines for %d invalid files:\n%s", len(qlines), len(files), quiet)
	}
	for _, l := range qlines {
		if !strings.Contains(l, ": error: ") {
			t.Errorf("--quiet printed %q", l)
		}
	}
}

func TestPolicyValidateJSON(t *testing.T) {
	warn := writeFile(t, "typo.yaml", warningPolicy)
	bad := filepath.Join(invalidPolicies, "port-unquoted.yaml")
	for _, strict := range []bool{false, true} {
		args := []string{"policy", "validate", "-o", "json", warn, bad}
		if strict {
			args = append(args, "--strict")
		}
		out, _, failed := runCilia(t, "", args...)
		if !failed {
			t.Errorf("strict=%v: an invalid file passed", strict)
		}
		var rep jsonReport
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("output is not JSON: %v\n%s", err, out)
		}
		if rep.Valid || rep.Strict != strict || len(rep.Files) != 2 || rep.Errors != 1 || rep.Warnings != 1 {
			t.Errorf("strict=%v: report %+v", strict, rep)
			continue
		}
		typo, port := rep.Files[0], rep.Files[1]
		if typo.Valid == strict || len(typo.Policies) != 1 || typo.Policies[0].Name != "typo" || typo.Policies[0].Namespace != "default" {
			t.Errorf("strict=%v: %+v", strict, typo)
		}
		if port.Valid || port.Invalid != 1 || len(port.Diagnostics) != 1 {
			t.Errorf("strict=%v: %+v", strict, port)
			continue
		}
		d := port.Diagnostics[0]
		if d.Severity != "error" || d.Line != 13 || d.Column != 15 || d.Path != "spec.ingress[0].toPorts[0].ports[0].port" {
			t.Errorf("strict=%v: diagnostic %+v", strict, d)
		}
	}
}
