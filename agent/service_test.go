package agent

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/ciliaproject/cilia/agent/service"
	"github.com/ciliaproject/cilia/datapath/maps"
)

// loggingDatapath is a MemoryDatapath that logs backend deletions and
// endpoint removals, in order.
type loggingDatapath struct {
	*MemoryDatapath
	log *[]string
}

func (l loggingDatapath) DeleteLBBackend(id uint32) error {
	b := l.LB.Backends[id]
	*l.log = append(*l.log, "delete backend "+maps.AddrFromBytes(b.Family, b.Addr).String())
	return l.MemoryDatapath.DeleteLBBackend(id)
}

func (l loggingDatapath) AddEndpoint(spec EndpointSpec) (EndpointDatapath, error) {
	ep, err := l.MemoryDatapath.AddEndpoint(spec)
	return loggingEndpoint{ep, spec.IPv4.String(), l.log}, err
}

type loggingEndpoint struct {
	EndpointDatapath
	addr string
	log  *[]string
}

func (e loggingEndpoint) Close() error {
	*e.log = append(*e.log, "close endpoint "+e.addr)
	return e.EndpointDatapath.Close()
}

// frontendCounts returns "count+terminating [backend addresses]" of a
// frontend's entry in a node's maps, or "absent".
func frontendCounts(t *testing.T, dp *MemoryDatapath, frontend string, proto uint8, scope uint8) string {
	t.Helper()
	ap := netip.MustParseAddrPort(frontend)
	fam, addr := maps.AddrBytes(ap.Addr())
	k := maps.LBKey{Addr: addr, DPortNet: maps.HostToNet16(ap.Port()), Proto: proto, Family: fam, Scope: scope}
	tabs, err := dp.LBTables()
	must(t, err)
	v, ok := tabs.Services[k]
	if !ok {
		return "absent"
	}
	var bs []string
	for i := 1; i <= int(v.Count)+int(v.Terminating); i++ {
		k.Slot = uint16(i)
		slot, ok := tabs.Services[k]
		if !ok {
			t.Fatalf("%s: slot %d missing", frontend, i)
		}
		b, ok := tabs.Backends[slot.BackendID]
		if !ok {
			t.Fatalf("%s: slot %d: backend %d missing", frontend, i, slot.BackendID)
		}
		bs = append(bs, netip.AddrPortFrom(maps.AddrFromBytes(b.Family, b.Addr), maps.NetToHost16(b.PortNet)).String())
	}
	return fmt.Sprintf("%d+%d [%s]", v.Count, v.Terminating, strings.Join(bs, " "))
}

// TestServices drives services through the agent: pods added, relabeled,
// terminating and deleted change the backends on every node, and a pod
// leaves the services before its endpoint goes.
func TestServices(t *testing.T) {
	a, dps := testCluster(t)
	must(t, a.UpsertService(service.Service{Namespace: "x", Name: "web", Type: service.NodePort,
		ClusterIPs: []netip.Addr{netip.MustParseAddr("10.96.0.10")},
		Ports:      []service.Port{{Name: "http", Port: 80, TargetPortName: "http", Proto: service.ProtoTCP, NodePort: 30080}},
		Selector:   map[string]string{"tier": "web"}, ExternalTrafficPolicyLocal: true, Algorithm: service.Maglev}))
	// testCluster's pods x/a (10.244.1.11, node-1), x/b (.12, node-1), x/c
	// (.13, node-2) name port http 8011, 8012, 8013.
	steps := []struct {
		name string
		do   func() error
		// want: node -> [cluster IP internal, node-1's node port external]
		want map[string][2]string
	}{
		{"no pod selected", func() error { return nil },
			map[string][2]string{"node-1": {"0+0 []", "0+0 []"}}},
		{"a and c join", func() error {
			return errors.Join(a.SetPodLabels("x/a", map[string]string{"pod": "a", "tier": "web"}),
				a.SetPodLabels("x/c", map[string]string{"pod": "c", "tier": "web"}))
		}, map[string][2]string{
			"node-1": {"2+0 [10.244.1.11:8011 10.244.1.13:8013]", "1+0 [10.244.1.11:8011]"},
			"node-2": {"2+0 [10.244.1.11:8011 10.244.1.13:8013]", "1+0 [10.244.1.13:8013]"},
		}},
		{"a terminating", func() error { return a.SetPodTerminating("x/a", true) },
			map[string][2]string{"node-1": {"1+1 [10.244.1.13:8013 10.244.1.11:8011]", "0+1 [10.244.1.11:8011]"}}},
		{"a relabeled keeps terminating", func() error {
			return a.SetPodLabels("x/a", map[string]string{"pod": "a", "tier": "web", "v": "2"})
		}, map[string][2]string{"node-1": {"1+1 [10.244.1.13:8013 10.244.1.11:8011]", "0+1 [10.244.1.11:8011]"}}},
		{"a back to active", func() error { return a.SetPodTerminating("x/a", false) },
			map[string][2]string{"node-1": {"2+0 [10.244.1.11:8011 10.244.1.13:8013]", "1+0 [10.244.1.11:8011]"}}},
		{"a deleted", func() error { return a.DeletePod("x/a") },
			map[string][2]string{"node-1": {"1+0 [10.244.1.13:8013]", "0+0 []"}, "node-2": {"1+0 [10.244.1.13:8013]", "1+0 [10.244.1.13:8013]"}}},
		{"service deleted", func() error { return a.DeleteService("x", "web") },
			map[string][2]string{"node-1": {"absent", "absent"}, "node-2": {"absent", "absent"}}},
	}
	for _, st := range steps {
		must(t, st.do())
		for node, w := range st.want {
			got := [2]string{frontendCounts(t, dps[node], "10.96.0.10:80", 6, maps.LBScopeInternal),
				frontendCounts(t, dps[node], "192.168.0.11:30080", 6, maps.LBScopeExternal)}
			if got != w {
				t.Errorf("%s: %s: got %q, want %q", st.name, node, got, w)
			}
		}
	}
	for node, dp := range dps {
		if n := len(dp.LB.Services) + len(dp.LB.Backends) + len(dp.LB.RevNat) + len(dp.LB.Maglev); n != 0 {
			t.Errorf("%s: %d load-balancing entries left", node, n)
		}
	}
	if err := a.DeleteService("x", "web"); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete again: %v, want ErrNotFound", err)
	}
	if err := a.SetPodTerminating("x/nope", true); !errors.Is(err, ErrNotFound) {
		t.Errorf("terminate unknown pod: %v, want ErrNotFound", err)
	}
}

// TestServiceBackendGoesBeforeEndpoint checks DeletePod's order: the pod
// stops being a backend before its endpoint is removed.
func TestServiceBackendGoesBeforeEndpoint(t *testing.T) {
	var log []string
	a := NewWithOptions(Options{MaglevSize: 251})
	dp := loggingDatapath{NewMemoryDatapath(), &log}
	must(t, a.AddNode(Node{Name: "node-1", IPv4: netip.MustParseAddr("192.168.0.11")}, dp))
	must(t, a.SetNamespace("x", map[string]string{"kubernetes.io/metadata.name": "x"}))
	must(t, a.AddPod(Pod{Namespace: "x", Name: "a", Node: "node-1", Labels: map[string]string{"app": "web"},
		IPv4: netip.MustParseAddr("10.244.1.1")}))
	must(t, a.UpsertService(service.Service{Namespace: "x", Name: "web", ClusterIPs: []netip.Addr{netip.MustParseAddr("10.96.0.1")},
		Ports: []service.Port{{Port: 80, Proto: service.ProtoTCP}}, Selector: map[string]string{"app": "web"},
		Algorithm: service.Maglev}))
	fs, err := a.DescribeServices("node-1")
	must(t, err)
	if len(fs) != 1 || len(fs[0].Backends) != 1 || fs[0].Backends[0].Pod != "x/a" || fs[0].MaglevSize != 251 ||
		fs[0].Backends[0].MaglevEntries != 251 || len(fs[0].Problems) != 0 {
		t.Fatalf("describe: %+v", fs)
	}
	must(t, a.DeletePod("x/a"))
	if want := []string{"delete backend 10.244.1.1", "close endpoint 10.244.1.1"}; !slices.Equal(log, want) {
		t.Fatalf("order %q, want %q", log, want)
	}
	if _, err := a.DescribeServices("node-9"); !errors.Is(err, ErrNotFound) {
		t.Errorf("describe unknown node: %v", err)
	}
}

func TestServiceOptions(t *testing.T) {
	tests := []struct {
		size int
		want int
		err  bool
	}{{0, 16381, false}, {251, 251, false}, {250, 0, true}, {16411, 0, true}}
	for _, tt := range tests {
		a := NewWithOptions(Options{MaglevSize: tt.size})
		err := a.AddNode(Node{Name: "n"}, NewMemoryDatapath())
		if (err != nil) != tt.err || (err != nil && !errors.Is(err, service.ErrMaglevSize)) {
			t.Errorf("MaglevSize %d: AddNode: %v, want error %v", tt.size, err, tt.err)
		}
		if !tt.err && a.MaglevSize() != tt.want {
			t.Errorf("MaglevSize %d: M = %d, want %d", tt.size, a.MaglevSize(), tt.want)
		}
	}
}
