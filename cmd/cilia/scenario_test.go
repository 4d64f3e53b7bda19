package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const scenarioDocs = "../../conformance/scenario/testdata/docs"

func TestScenarioValidate(t *testing.T) {
	var out bytes.Buffer
	if err := runScenarioValidate(&out, []string{scenarioDocs}); err != nil {
		t.Fatalf("validate: %v\n%s", err, out.String())
	}
	want := "6 valid scenario(s), 9 step(s), 25 probe(s)\n" +
		"features: ipv6, l7-http, l7-kafka, lb-clusterip, lb-maglev, lb-nodeport, policy-knp, policy-l3, policy-l4, policy-named-ports, policy-udp\n"
	if out.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), want)
	}
}

func TestScenarioValidateProblems(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	src := "apiVersion: conformance.cilia.dev/v1alpha1\nkind: Scenario\nmetadata: {name: star-wars, colour: red}\n"
	if err := os.WriteFile(bad, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	dup := filepath.Join(dir, "dup.yaml")
	data, err := os.ReadFile(filepath.Join(scenarioDocs, "star-wars.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dup, data, 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err = runScenarioValidate(&out, []string{scenarioDocs, bad, dup})
	if err == nil || err.Error() != "3 problem(s) in 2 of 8 file(s)" {
		t.Errorf("err = %v", err)
	}
	want := []string{
		bad + ":1:1: the scenario has no probes: add probes, a matrix or steps",
		bad + `:3:29: metadata.colour: unknown field "colour" (known fields: description, features, name, source)`,
		dup + `:5:9: metadata.name: duplicate scenario name "l4-ingress-from-empire-only" (also in ` + scenarioDocs + "/star-wars.yaml:5)",
		"7 valid scenario(s), 10 step(s), 30 probe(s)",
	}
	got := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(got) < len(want) || strings.Join(got[:len(want)], "\n") != strings.Join(want, "\n") {
		t.Errorf("output:\n%s\nwant it to start with:\n%s", out.String(), strings.Join(want, "\n"))
	}
}

func TestScenarioValidateArgs(t *testing.T) {
	var out bytes.Buffer
	if err := runScenarioValidate(&out, []string{"does-not-exist.yaml"}); err == nil {
		t.Errorf("a missing file must fail")
	}
	if err := runScenarioValidate(&out, []string{t.TempDir()}); err == nil || !strings.Contains(err.Error(), "no *.yaml or *.yml files") {
		t.Errorf("an empty directory: %v", err)
	}
}

func TestScenarioProbes(t *testing.T) {
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"scenario", "probes", filepath.Join(scenarioDocs, "steps.yaml")})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	want := "step 0: x/b -> x/a http=80/TCP  allow\n" +
		"step 1: x/b -> x/a http=80/TCP  deny\n" +
		"step 2: x/c -> x/a http=80/TCP  allow\n" +
		"step 3: x/c -> x/a http=80/TCP  deny\n"
	if out.String() != want {
		t.Errorf("output:\n%q\nwant:\n%q", out.String(), want)
	}
}
