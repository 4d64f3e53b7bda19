package differential

import (
	"context"
	"os"
	"testing"

	"github.com/ciliaproject/cilia/conformance/scenario"
)

// TestRunFile runs the scenario file named by $DIFFERENTIAL_FILE through
// the oracle and testrun and logs every probe's observations (a helper for
// checking a regression by hand; skipped without the variable).
func TestRunFile(t *testing.T) {
	f := os.Getenv("DIFFERENTIAL_FILE")
	if f == "" {
		t.Skip()
	}
	sc, err := scenario.Load(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range []string{Oracle, Implementation} {
		obs, err := Run(context.Background(), tg, sc)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range sc.Probes() {
			t.Logf("%s %s: %s %s", tg, p.ID, obs[p.ID].Verdict, obs[p.ID].DropReason)
		}
	}
}
