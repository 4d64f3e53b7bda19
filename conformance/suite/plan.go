package suite

import (
	"fmt"
	"sort"
	"strings"

	"github.com/ciliaproject/cilia/conformance/features"
	"github.com/ciliaproject/cilia/conformance/scenario"
)

// plan is everything decided before the specs run: which scenarios, which
// features are tested, and for each probe what it needs.
type plan struct {
	cfg Config
	// targetName is what the target calls itself.
	targetName string
	// supported are the target's features, enabled those tested (supported
	// ∩ the -features filter).
	supported, enabled features.Set
	scenarios          []*scenarioPlan
	// warnings are printed with the summary (e.g. a target that failed to
	// close).
	warnings []string
}

type scenarioPlan struct {
	sc    *scenario.Scenario
	steps [][]*probePlan
}

type probePlan struct {
	probe scenario.Probe
	// step and index locate the probe in scenarioPlan.steps.
	step, index int
	// features are the scenario's and the probe's, sorted; missing those
	// of them not enabled.
	features, missing []features.Feature
	addrs             Addresses
	row, column       string
}

// newPlan checks scs and decides what runs. filter is the -features list.
func newPlan(cfg Config, scs []*scenario.Scenario, targetName string, supported features.Set) (*plan, error) {
	enabled := supported
	if strings.TrimSpace(cfg.Features) != "" {
		filter, err := features.Parse(cfg.Features)
		if err != nil {
			return nil, fmt.Errorf("plan conformance run: -features: %w", err)
		}
		enabled = supported.Intersect(filter)
	}
	p := &plan{cfg: cfg, targetName: targetName, supported: supported, enabled: enabled}
	byName := map[string]*scenario.Scenario{}
	for _, sc := range scs {
		name := sc.Metadata.Name
		if prev, dup := byName[name]; dup {
			return nil, fmt.Errorf("plan conformance run: scenario name %q is used by %s and %s", name, prev.File, sc.File)
		}
		byName[name] = sc
		sp := &scenarioPlan{sc: sc}
		ids := map[string]bool{}
		for si, st := range sc.Steps {
			var probes []*probePlan
			for pi, pr := range st.Probes {
				if ids[pr.ID] {
					return nil, fmt.Errorf("plan conformance run: %s: scenario %q has two probes %q", sc.File, name, pr.ID)
				}
				ids[pr.ID] = true
				fs := features.NewSet(sc.Metadata.Features...)
				for _, f := range pr.Features {
					fs[f] = struct{}{}
				}
				probes = append(probes, &probePlan{
					probe:    pr,
					step:     si,
					index:    pi,
					features: fs.Sorted(),
					missing:  enabled.Missing(fs.Sorted()),
					addrs:    addressesFor(sc, pr),
					row:      peerLabel(pr.From),
					column:   columnLabel(pr),
				})
			}
			sp.steps = append(sp.steps, probes)
		}
		p.scenarios = append(p.scenarios, sp)
	}
	sort.SliceStable(p.scenarios, func(i, j int) bool {
		return p.scenarios[i].sc.Metadata.Name < p.scenarios[j].sc.Metadata.Name
	})
	return p, nil
}

// runnable reports whether any probe of the scenario is tested.
func (sp *scenarioPlan) runnable() bool {
	for _, st := range sp.steps {
		for _, pp := range st {
			if len(pp.missing) == 0 {
				return true
			}
		}
	}
	return false
}

func (p *plan) probes() int {
	n := 0
	for _, sp := range p.scenarios {
		for _, st := range sp.steps {
			n += len(st)
		}
	}
	return n
}

// unsupportedMessage is the Skip message of a probe needing missing.
func unsupportedMessage(missing []features.Feature) string {
	names := make([]string, len(missing))
	for i, f := range missing {
		names[i] = string(f)
	}
	if len(names) == 1 {
		return "unsupported feature: " + names[0]
	}
	return "unsupported features: " + strings.Join(names, ", ")
}

// featureList prints fs comma-separated, "none" when empty.
func featureList(fs []features.Feature) string {
	if len(fs) == 0 {
		return "none"
	}
	names := make([]string, len(fs))
	for i, f := range fs {
		names[i] = string(f)
	}
	return strings.Join(names, ", ")
}
