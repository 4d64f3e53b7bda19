package exec

import (
	"context"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ciliaproject/cilia/conformance/features"
	"github.com/ciliaproject/cilia/conformance/scenario"
	"github.com/ciliaproject/cilia/conformance/target"
	dptestrun "github.com/ciliaproject/cilia/datapath/testrun"
)

// TestAcceptanceCiliaDriver is the protocol's end-to-end test: it builds
// bin/cilia, and runs every scenario of fixtures/scenarios through
// TARGET=exec:<bin> driver (the reference agent on testrun behind the
// protocol), checking each observation against the probe's expectation
// as the suite does: the verdict, and the drop reason when the probe
// gives one. Probes needing features the driver does not declare are
// skipped, as the suite skips them.
func TestAcceptanceCiliaDriver(t *testing.T) {
	dptestrun.RequirePrivileges(t)
	if testing.Short() {
		t.Skip("-short: skipping the exec target's full run over fixtures/scenarios")
	}
	start := time.Now()
	bin := filepath.Join(t.TempDir(), "cilia")
	build := osexec.Command("go", "build", "-o", bin, "./cmd/cilia")
	build.Dir = filepath.Join("..", "..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/cilia: %v\n%s", err, out)
	}
	t.Logf("built %s in %s", bin, time.Since(start).Round(time.Millisecond))
	Quiet = true
	t.Cleanup(func() { Quiet = false })

	scs, err := scenario.LoadDir(filepath.Join("..", "..", "..", "fixtures", "scenarios"))
	if err != nil {
		t.Fatal(err)
	}
	sel := "exec:" + bin + " driver --target testrun"
	probe, err := target.New(sel)
	if err != nil {
		t.Fatal(err)
	}
	supported := probe.Features()
	if err := probe.Close(); err != nil {
		t.Fatal(err)
	}
	policy, _ := features.ProfileFeatures("policy")
	if missing := supported.Missing(policy); len(missing) > 0 {
		t.Fatalf("cilia driver does not declare the policy profile's features %v", missing)
	}
	checkReasons := supported.Has(features.DropReasons)
	ctx := context.Background()
	var ran, skipped int
	for _, sc := range scs {
		if missing := supported.Missing(sc.Metadata.Features); len(missing) > 0 {
			skipped += len(sc.Probes())
			continue
		}
		tg, err := target.New(sel)
		if err != nil {
			t.Fatalf("%s: %v", sc.Metadata.Name, err)
		}
		func() {
			defer func() {
				if err := tg.Close(); err != nil {
					t.Errorf("%s: close: %v", sc.Metadata.Name, err)
				}
			}()
			if err := tg.Setup(ctx, sc); err != nil {
				t.Errorf("%s: %v", sc.Metadata.Name, err)
				return
			}
			for _, st := range sc.Steps {
				if st.Index > 0 || len(st.Apply)+len(st.Delete)+len(st.SetLabels)+len(st.AddPods)+len(st.DeletePods) > 0 {
					if err := tg.Step(ctx, st); err != nil {
						t.Errorf("%s: %v", sc.Metadata.Name, err)
						return
					}
				}
				for _, p := range st.Probes {
					if len(supported.Missing(p.Features)) > 0 {
						skipped++
						continue
					}
					ran++
					obs, err := tg.Probe(ctx, p)
					if err != nil {
						t.Errorf("%s: %v", sc.Metadata.Name, err)
						continue
					}
					want := target.Allowed
					if p.Expect.Verdict == scenario.Deny {
						want = target.Denied
					}
					if obs.Verdict != want {
						t.Errorf("%s (%s:%d): %s: observed %s, want %s", sc.Metadata.Name, sc.File, p.Line, p.ID, obs.Verdict, want)
						continue
					}
					if checkReasons && p.Expect.DropReason != "" && obs.DropReason != p.Expect.DropReason {
						t.Errorf("%s (%s:%d): %s: drop reason %q, want %q", sc.Metadata.Name, sc.File, p.Line, p.ID, obs.DropReason, p.Expect.DropReason)
					}
				}
			}
		}()
	}
	if ran == 0 {
		t.Fatal("no probe ran")
	}
	t.Logf("%d scenarios, %d probes through %s (%d skipped as unsupported) in %s",
		len(scs), ran, strings.TrimPrefix(sel, "exec:"), skipped, time.Since(start).Round(time.Millisecond))
}
