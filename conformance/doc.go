// Package conformance is the conformance suite (DESIGN.md §1–3, §8,
// docs/conformance.md): scenario files run against a target, every probe a
// Ginkgo spec, with a truth-table diff for each failing probe, a
// conformance-report.yaml and JUnit.
//
// The suite runs from this package's test:
//
//	make conformance TARGET=testrun FOCUS=... FEATURES=... SCENARIOS=DIR
//
// which is go test ./conformance/ -args -target=... (see docs/conformance.md
// for every flag). Without -target, `go test ./conformance/` only checks
// that the scenarios load and plan, and runs nothing.
//
// Subpackages: features (feature names and profiles), scenario (the scenario
// loader), target (the Target interface and its implementations), suite (the
// Ginkgo spec tree and checks), report (the conformance report).
package conformance
