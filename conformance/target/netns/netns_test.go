package netns

import (
	"testing"

	"github.com/ciliaproject/cilia/conformance/scenario"
	"github.com/ciliaproject/cilia/conformance/target/targettest"
	dptestrun "github.com/ciliaproject/cilia/datapath/testrun"
	"github.com/ciliaproject/cilia/sim/topology"
)

// TestTargetProbes runs every probe of the testrun target's
// testdata/mixed.yaml (two nodes, an
// external, every protocol, both families, a relabel step) through the
// target with real sockets, in both routing modes.
func TestTargetProbes(t *testing.T) {
	dptestrun.RequirePrivileges(t)
	for _, mode := range []topology.Mode{topology.Tunnel, topology.Native} {
		t.Run(string(mode), func(t *testing.T) {
			tg := NewWithMode(mode)
			targettest.Probes(t, tg, "../testrun/testdata/mixed.yaml", targettest.Options{
				// An ICMP echo is answered by the pod's kernel: nobody
				// reports the source it saw.
				NoSourceSeen: func(p scenario.Probe) bool { return p.Protocol == scenario.ICMP },
				NetnsPrefix: func() string {
					if c := tg.Cluster(); c != nil {
						return c.Topology.Prefix
					}
					return ""
				},
			})
		})
	}
}
