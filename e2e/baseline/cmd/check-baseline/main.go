// Command check-baseline checks a conformance run against a CNI that
// enforces no policy (package baseline): it exits 0 when every probe
// expecting allow passed and every probe expecting deny failed.
//
//	go run ./e2e/baseline/cmd/check-baseline -report reports/baseline-ptp-ginkgo.json -scenarios fixtures/scenarios
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/ciliaproject/cilia/e2e/baseline"
)

func main() {
	report := flag.String("report", "", "Ginkgo JSON report of the run (make conformance CONFORMANCE_JSON=...)")
	scenarios := flag.String("scenarios", "fixtures/scenarios", "the scenarios the run used")
	flag.Parse()
	res, err := baseline.Check(*report, *scenarios)
	if err != nil {
		fmt.Fprintln(os.Stderr, "check-baseline:", err)
		os.Exit(2)
	}
	fmt.Println("baseline:", res)
	for _, m := range res.Mismatches {
		fmt.Println("  " + m)
	}
	for _, u := range res.Unknown {
		fmt.Println("  no such probe in the scenarios: " + u)
	}
	if !res.OK() {
		fmt.Println("baseline: the run is NOT what a CNI without policy enforcement gives")
		os.Exit(1)
	}
	fmt.Println("baseline: every allow passed and every deny failed, as for a CNI without policy enforcement")
}
