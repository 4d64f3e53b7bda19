package service

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/ciliaproject/cilia/datapath/maps"
)

const testM = 251

var (
	node1 = Node{Name: "node-1", IPv4: netip.MustParseAddr("192.168.0.1"), IPv6: netip.MustParseAddr("fd00::1")}
	node2 = Node{Name: "node-2", IPv4: netip.MustParseAddr("192.168.0.2"), IPv6: netip.MustParseAddr("fd00::2")}
)

func testPod(name, node string, n byte, lbls map[string]string) Pod {
	return Pod{Namespace: "x", Name: name, Node: node, Labels: lbls,
		IPv4:  netip.AddrFrom4([4]byte{10, 244, 0, n}),
		IPv6:  netip.AddrFrom16([16]byte{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, n}),
		Ports: []NamedPort{{Name: "dns", Port: 5353, Proto: ProtoUDP}}}
}

// webService is a dual-stack NodePort service with a numeric and a named
// target port, Maglev, affinity and externalTrafficPolicy Local.
func webService() Service {
	return Service{Namespace: "x", Name: "web", Type: NodePort,
		ClusterIPs: []netip.Addr{netip.MustParseAddr("10.96.0.10"), netip.MustParseAddr("fd00:96::10")},
		Ports: []Port{{Name: "http", Port: 80, TargetPort: 8080, Proto: ProtoTCP, NodePort: 30080},
			{Name: "dns", Port: 53, TargetPortName: "dns", Proto: ProtoUDP}},
		Selector: map[string]string{"app": "web"}, SessionAffinity: true, AffinityTimeout: 60,
		ExternalTrafficPolicyLocal: true, Algorithm: Maglev}
}

func newTestManager(t *testing.T) (*Manager, map[string]*fakeDatapath) {
	t.Helper()
	m, err := NewManager(Options{MaglevSize: testM})
	if err != nil {
		t.Fatal(err)
	}
	dps := map[string]*fakeDatapath{"node-1": newFakeDatapath(testM), "node-2": newFakeDatapath(testM)}
	must(t, m.AddNode(node1, dps["node-1"]))
	must(t, m.AddNode(node2, dps["node-2"]))
	return m, dps
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var web = map[string]string{"app": "web"}

// lbChange is one step of a backend-change sequence.
type lbChange struct {
	name string
	do   func(m *Manager) error
	// want is, per node, "frontend scope: count+terminating" for the
	// frontends checked (see summary).
	want map[string][]string
}

// summary describes the checked frontends of a node's maps: the IPv4
// cluster IP's http port, node-1's node port (both scopes) and the IPv6
// cluster IP's dns port, each "addr/proto scope count+terminating".
func summary(t *testing.T, f *fakeDatapath) []string {
	t.Helper()
	var out []string
	for _, fe := range []struct {
		addr  string
		proto uint8
		scope uint8
	}{
		{"10.96.0.10:80", ProtoTCP, maps.LBScopeInternal},
		{"192.168.0.1:30080", ProtoTCP, maps.LBScopeInternal},
		{"192.168.0.1:30080", ProtoTCP, maps.LBScopeExternal},
		{"[fd00:96::10]:53", ProtoUDP, maps.LBScopeInternal},
	} {
		ap := netip.MustParseAddrPort(fe.addr)
		fam, addr := maps.AddrBytes(ap.Addr())
		k := maps.LBKey{Addr: addr, DPortNet: maps.HostToNet16(ap.Port()), Proto: fe.proto, Family: fam, Scope: fe.scope}
		v, ok := f.tables.Services[k]
		s := "absent"
		if ok {
			s = fmt.Sprintf("%d+%d", v.Count, v.Terminating)
		}
		out = append(out, fmt.Sprintf("%s/%s %d %s", fe.addr, ProtoName(fe.proto), fe.scope, s))
	}
	return out
}

func want(clusterHTTP, np1Int, np1Ext, dns6 string) []string {
	return []string{"10.96.0.10:80/TCP 0 " + clusterHTTP, "192.168.0.1:30080/TCP 0 " + np1Int,
		"192.168.0.1:30080/TCP 1 " + np1Ext, "[fd00:96::10]:53/UDP 0 " + dns6}
}

// backendChanges is the sequence of backend changes the make-before-break
// tests walk through: add, remove, all removed, terminating, back, and
// the service's removal.
func backendChanges() []lbChange {
	return []lbChange{
		{"service before its pods", func(m *Manager) error { return m.UpsertService(webService()) },
			map[string][]string{"node-1": want("0+0", "0+0", "0+0", "0+0")}},
		{"add a (node-1)", func(m *Manager) error { return m.UpsertPod(testPod("a", "node-1", 1, web)) },
			map[string][]string{"node-1": want("1+0", "1+0", "1+0", "1+0"), "node-2": want("1+0", "1+0", "0+0", "1+0")}},
		{"add b (node-1), c (node-2)", func(m *Manager) error {
			return errors.Join(m.UpsertPod(testPod("b", "node-1", 2, web)), m.UpsertPod(testPod("c", "node-2", 3, web)))
		}, map[string][]string{"node-1": want("3+0", "3+0", "2+0", "3+0"), "node-2": want("3+0", "3+0", "1+0", "3+0")}},
		{"pod of another app", func(m *Manager) error {
			return m.UpsertPod(testPod("o", "node-1", 9, map[string]string{"app": "other"}))
		},
			map[string][]string{"node-1": want("3+0", "3+0", "2+0", "3+0")}},
		{"remove a", func(m *Manager) error { return m.DeletePod("x/a") },
			map[string][]string{"node-1": want("2+0", "2+0", "1+0", "2+0"), "node-2": want("2+0", "2+0", "1+0", "2+0")}},
		{"b terminating", func(m *Manager) error { return m.SetPodTerminating("x/b", true) },
			map[string][]string{"node-1": want("1+1", "1+1", "0+1", "1+1"), "node-2": want("1+1", "1+1", "1+0", "1+1")}},
		{"c terminating too", func(m *Manager) error { return m.SetPodTerminating("x/c", true) },
			map[string][]string{"node-1": want("0+2", "0+2", "0+1", "0+2")}},
		{"all removed", func(m *Manager) error { return errors.Join(m.DeletePod("x/b"), m.DeletePod("x/c")) },
			map[string][]string{"node-1": want("0+0", "0+0", "0+0", "0+0"), "node-2": want("0+0", "0+0", "0+0", "0+0")}},
		{"back", func(m *Manager) error {
			return errors.Join(m.UpsertPod(testPod("a", "node-1", 1, web)), m.UpsertPod(testPod("c", "node-2", 3, web)))
		}, map[string][]string{"node-1": want("2+0", "2+0", "1+0", "2+0")}},
		{"a relabeled away", func(m *Manager) error {
			return m.UpsertPod(testPod("a", "node-1", 1, map[string]string{"app": "gone"}))
		},
			map[string][]string{"node-1": want("1+0", "1+0", "0+0", "1+0")}},
		{"a back, random algorithm", func(m *Manager) error {
			s := webService()
			s.Algorithm = Random
			return errors.Join(m.UpsertPod(testPod("a", "node-1", 1, web)), m.UpsertService(s))
		}, map[string][]string{"node-1": want("2+0", "2+0", "1+0", "2+0")}},
		{"maglev again, a replaced by d", func(m *Manager) error {
			return errors.Join(m.UpsertService(webService()), m.DeletePod("x/a"), m.UpsertPod(testPod("d", "node-1", 4, web)))
		}, map[string][]string{"node-1": want("2+0", "2+0", "1+0", "2+0")}},
		{"service deleted", func(m *Manager) error { return m.DeleteService("x", "web") },
			map[string][]string{"node-1": want("absent", "absent", "absent", "absent")}},
	}
}

// TestMakeBeforeBreak walks through the backend changes and checks the
// invariant after every datapath call on both nodes, and the counts after
// every step.
func TestMakeBeforeBreak(t *testing.T) {
	m, dps := newTestManager(t)
	for _, st := range backendChanges() {
		must(t, st.do(m))
		for node, w := range st.want {
			if got := summary(t, dps[node]); !slices.Equal(got, w) {
				t.Errorf("%s: %s:\n got %q\nwant %q", st.name, node, got, w)
			}
		}
		for node, dp := range dps {
			if len(dp.violations) > 0 {
				t.Fatalf("%s: %s: make-before-break violated:\n%s", st.name, node, strings.Join(dp.violations, "\n"))
			}
			if len(dp.calls) == 0 {
				t.Fatalf("%s: %s: no datapath calls", st.name, node)
			}
		}
	}
	for node, dp := range dps {
		if n := len(dp.tables.Services) + len(dp.tables.Backends) + len(dp.tables.RevNat) + len(dp.tables.Maglev); n != 0 {
			t.Errorf("%s: %d entries left after the service was deleted: %+v", node, n, dp.tables)
		}
	}
}

// TestMakeBeforeBreakOrderMatters reorders the sync phases and checks
// that TestMakeBeforeBreak's invariant catches each reordering: the test
// above fails if the writes are reordered.
func TestMakeBeforeBreakOrderMatters(t *testing.T) {
	orig := slices.Clone(syncPhases)
	defer func() { syncPhases = orig }()
	idx := func(name string) int {
		for i, p := range orig {
			if p.name == name {
				return i
			}
		}
		t.Fatalf("no phase %q", name)
		return -1
	}
	// move returns the phases with phase `what` moved just before phase
	// `before`.
	move := func(what, before string) []syncPhase {
		p := orig[idx(what)]
		out := slices.Delete(slices.Clone(orig), idx(what), idx(what)+1)
		at := slices.IndexFunc(out, func(q syncPhase) bool { return q.name == before })
		return slices.Insert(out, at, p)
	}
	moveAfter := func(what, after string) []syncPhase {
		p := orig[idx(what)]
		out := slices.Delete(slices.Clone(orig), idx(what), idx(what)+1)
		at := slices.IndexFunc(out, func(q syncPhase) bool { return q.name == after })
		return slices.Insert(out, at+1, p)
	}
	tests := []struct {
		name   string
		phases []syncPhase
	}{
		{"backends after slots", moveAfter("put backends", "put slots")},
		{"backends after maglev tables", moveAfter("put backends", "put maglev")},
		{"service entries before slots", move("put service entries", "put slots")},
		{"rev-nat after service entries", moveAfter("put rev-nat", "put service entries")},
		{"maglev after service entries", moveAfter("put maglev", "put service entries")},
		{"stale slots deleted before the service entries shrink", move("delete slots", "put service entries")},
		{"slots deleted before their service entry", move("delete slots", "delete service entries")},
		{"rev-nat deleted before the service entries", move("delete rev-nat", "delete service entries")},
		{"maglev deleted before the service entries", move("delete maglev", "put service entries")},
		{"backends deleted before the slots", move("delete backends", "delete slots")},
		{"backends deleted before the maglev tables", move("delete backends", "delete maglev")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			syncPhases = tt.phases
			defer func() { syncPhases = orig }()
			m, dps := newTestManager(t)
			caught := false
			for _, st := range backendChanges() {
				must(t, st.do(m))
				for _, dp := range dps {
					caught = caught || len(dp.violations) > 0
				}
			}
			if !caught {
				t.Errorf("reordered phases %v: no violation", names(tt.phases))
			}
		})
	}
}

func names(ps []syncPhase) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.name
	}
	return out
}

// TestIDsClusterWide checks that every node's maps agree on backend ids
// and rev_nat_ids, and that a Maglev frontend's table (identical on every
// node) names only its active backends.
func TestIDsClusterWide(t *testing.T) {
	m, dps := newTestManager(t)
	must(t, m.UpsertService(webService()))
	for i, n := range []string{"node-1", "node-1", "node-2"} {
		must(t, m.UpsertPod(testPod(fmt.Sprintf("p%d", i), n, byte(10+i), web)))
	}
	must(t, m.SetPodTerminating("x/p0", true))
	t1, t2 := dps["node-1"].tables, dps["node-2"].tables
	// 3 pods, each 4 backends: http/TCP and dns/UDP in both families.
	if len(t1.Backends) != 12 {
		t.Fatalf("node-1 has %d backends, want 12", len(t1.Backends))
	}
	for id, b := range t1.Backends {
		if t2.Backends[id] != b {
			t.Errorf("backend %d: node-1 %+v, node-2 %+v", id, b, t2.Backends[id])
		}
	}
	for id, r := range t1.RevNat {
		if t2.RevNat[id] != r {
			t.Errorf("rev-nat %d: node-1 %+v, node-2 %+v", id, r, t2.RevNat[id])
		}
	}
	// Frontends: 2 ports x 2 cluster IPs + http node port x 4 node
	// addresses = 8 rev-nat entries, all Maglev.
	if len(t1.RevNat) != 8 || len(t1.Maglev) != 8 {
		t.Fatalf("node-1: %d rev-nat entries, %d maglev tables, want 8 and 8", len(t1.RevNat), len(t1.Maglev))
	}
	term := map[uint32]bool{}
	for id, b := range t1.Backends {
		term[id] = b.Flags&maps.LBBackendFlagTerminating != 0
	}
	for id, tab := range t1.Maglev {
		if !slices.Equal(tab, t2.Maglev[id]) {
			t.Errorf("maglev table %d differs between the nodes", id)
		}
		shares := MaglevShares(tab)
		if len(shares) != 2 {
			t.Errorf("maglev table %d names %d backends, want the 2 active ones", id, len(shares))
		}
		for b := range shares {
			if term[b] {
				t.Errorf("maglev table %d names terminating backend %d", id, b)
			}
		}
	}
}

// TestIDReuse checks that a freed backend id is reused only after every
// node's maps dropped it, and a returning backend keeps its id while any
// node still holds it.
func TestIDReuse(t *testing.T) {
	m, dps := newTestManager(t)
	m.backendIDs.max = 3
	svc := Service{Namespace: "x", Name: "v4", ClusterIPs: []netip.Addr{netip.MustParseAddr("10.96.0.1")},
		Ports: []Port{{Name: "http", Port: 80, Proto: ProtoTCP}}, Selector: web}
	must(t, m.UpsertService(svc))
	pod := func(name string, n byte) Pod {
		p := testPod(name, "node-1", n, web)
		p.IPv6 = netip.Addr{}
		return p
	}
	must(t, m.UpsertPod(pod("a", 1)))
	must(t, m.UpsertPod(pod("b", 2)))
	idA, _ := m.backendIDs.lookup(backendKey{netip.MustParseAddrPort("10.244.0.1:80"), ProtoTCP})
	// node-2 fails to delete backends: a's id stays in its maps.
	dps["node-2"].fail["DeleteLBBackend"] = true
	if err := m.DeletePod("x/a"); !errors.Is(err, errInjected) {
		t.Fatalf("delete a: %v, want the injected failure", err)
	}
	if _, ok := dps["node-2"].tables.Backends[idA]; !ok {
		t.Fatalf("node-2 lost backend %d", idA)
	}
	// While node-2 fails, every sync reports it (and still programs the
	// rest).
	injected := func(err error) {
		t.Helper()
		if !errors.Is(err, errInjected) {
			t.Fatalf("got %v, want the injected failure", err)
		}
	}
	injected(m.UpsertPod(pod("c", 3)))
	idC, _ := m.backendIDs.lookup(backendKey{netip.MustParseAddrPort("10.244.0.3:80"), ProtoTCP})
	if idC == idA {
		t.Fatalf("c got id %d, which node-2 still holds", idC)
	}
	// The id space (3) is full: a, b, c.
	if err := m.UpsertPod(pod("d", 4)); !errors.Is(err, ErrIDsExhausted) {
		t.Fatalf("add d: %v, want ErrIDsExhausted", err)
	}
	injected(m.DeletePod("x/d"))
	// a returns while node-2 still holds its id: it gets it back.
	// (node-2 has nothing left to delete: its sync succeeds.)
	must(t, m.UpsertPod(pod("a", 1)))
	if id, _ := m.backendIDs.lookup(backendKey{netip.MustParseAddrPort("10.244.0.1:80"), ProtoTCP}); id != idA {
		t.Fatalf("a returned with id %d, want %d", id, idA)
	}
	// node-2 recovers; a goes again and its id is freed everywhere: d may
	// take it.
	dps["node-2"].fail["DeleteLBBackend"] = false
	must(t, m.DeletePod("x/a"))
	for n, dp := range dps {
		if _, ok := dp.tables.Backends[idA]; ok {
			t.Fatalf("%s still holds backend %d", n, idA)
		}
	}
	must(t, m.UpsertPod(pod("d", 4)))
	if id, _ := m.backendIDs.lookup(backendKey{netip.MustParseAddrPort("10.244.0.4:80"), ProtoTCP}); id != idA {
		t.Fatalf("d got id %d, want the freed %d", id, idA)
	}
}

func TestIDAllocatorRoundRobin(t *testing.T) {
	a := newIDAllocator[string]("test", 4)
	got := []uint32{}
	for _, k := range []string{"a", "b", "c"} {
		id, err := a.get(k)
		must(t, err)
		got = append(got, id)
	}
	a.releaseUnless(func(k string, _ uint32) bool { return k != "a" })
	for _, k := range []string{"d", "e", "b"} {
		id, err := a.get(k)
		must(t, err)
		got = append(got, id)
	}
	// a's id 1 is reused only after the counter went round (d took 4).
	if want := []uint32{1, 2, 3, 4, 1, 2}; !slices.Equal(got, want) {
		t.Fatalf("ids %v, want %v", got, want)
	}
	if _, err := a.get("f"); !errors.Is(err, ErrIDsExhausted) {
		t.Fatalf("fifth key: %v, want ErrIDsExhausted", err)
	}
}

func TestUpsertServiceErrors(t *testing.T) {
	m, _ := newTestManager(t)
	must(t, m.UpsertService(webService()))
	clash := webService()
	clash.Name = "clash"
	clash.ClusterIPs = []netip.Addr{netip.MustParseAddr("10.96.0.99")}
	tests := []struct {
		name string
		svc  Service
		want error
	}{
		{"same node port", clash, ErrConflict},
		{"no name", Service{Namespace: "x"}, ErrInvalid},
		{"bad type", Service{Namespace: "x", Name: "s", Type: "Headless"}, ErrInvalid},
		{"bad algorithm", Service{Namespace: "x", Name: "s", Algorithm: "ring"}, ErrInvalid},
		{"bad mode", Service{Namespace: "x", Name: "s", Mode: "tunnel"}, ErrInvalid},
		{"ICMP port", Service{Namespace: "x", Name: "s", Ports: []Port{{Port: 1, Proto: 1}}}, ErrInvalid},
		{"two v4 cluster IPs", Service{Namespace: "x", Name: "s", ClusterIPs: []netip.Addr{
			netip.MustParseAddr("10.96.0.1"), netip.MustParseAddr("10.96.0.2")}}, ErrInvalid},
	}
	for _, tt := range tests {
		if err := m.UpsertService(tt.svc); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	if err := m.DeleteService("x", "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete unknown: %v", err)
	}
	if err := m.SetPodTerminating("x/nope", true); !errors.Is(err, ErrNotFound) {
		t.Errorf("terminate unknown: %v", err)
	}
	if _, err := NewManager(Options{MaglevSize: 100}); !errors.Is(err, ErrMaglevSize) {
		t.Errorf("maglev size 100: %v", err)
	}
}

// TestDescribe reads a node's maps back.
func TestDescribe(t *testing.T) {
	m, dps := newTestManager(t)
	must(t, m.UpsertService(webService()))
	must(t, m.UpsertPod(testPod("a", "node-1", 1, web)))
	must(t, m.UpsertPod(testPod("b", "node-2", 2, web)))
	must(t, m.SetPodTerminating("x/b", true))
	fs := m.Describe(dps["node-1"].tables)
	var clusterHTTP, np1Ext *FrontendStatus
	for i := range fs {
		f := &fs[i]
		if len(f.Problems) > 0 {
			t.Errorf("%s %s: problems %v", f.Address, f.Scope, f.Problems)
		}
		switch {
		case f.Address.String() == "10.96.0.10:80" && f.Scope == "internal":
			clusterHTTP = f
		case f.Address.String() == "192.168.0.1:30080" && f.Scope == "external":
			np1Ext = f
		}
	}
	if clusterHTTP == nil || np1Ext == nil {
		t.Fatalf("frontends missing: %+v", fs)
	}
	if clusterHTTP.Service != "x/web" || clusterHTTP.Kind != KindClusterIP || clusterHTTP.Port != "http" ||
		!slices.Equal(clusterHTTP.Flags, []string{"affinity", "maglev"}) || clusterHTTP.AffinityTimeout != 60 ||
		clusterHTTP.MaglevSize != testM {
		t.Errorf("cluster IP frontend: %+v", clusterHTTP)
	}
	if len(clusterHTTP.Backends) != 2 {
		t.Fatalf("cluster IP backends: %+v", clusterHTTP.Backends)
	}
	a, b := clusterHTTP.Backends[0], clusterHTTP.Backends[1]
	if a.Pod != "x/a" || a.Node != "node-1" || a.Address.String() != "10.244.0.1:8080" || a.Terminating ||
		a.MaglevEntries != testM || a.MaglevShare != 100 {
		t.Errorf("backend a: %+v", a)
	}
	if b.Pod != "x/b" || !b.Terminating || b.MaglevEntries != 0 {
		t.Errorf("backend b: %+v", b)
	}
	if !slices.Equal(np1Ext.Flags, []string{"nodeport", "external", "local", "affinity"}) || len(np1Ext.Backends) != 1 ||
		np1Ext.Backends[0].Pod != "x/a" {
		t.Errorf("node port external frontend: %+v", np1Ext)
	}
	// A broken map is reported, not hidden.
	broken := dps["node-1"].tables
	for k := range broken.Services {
		if k.Slot == 1 {
			delete(broken.Services, k)
			break
		}
	}
	problems := 0
	for _, f := range m.Describe(broken) {
		problems += len(f.Problems)
	}
	if problems == 0 {
		t.Errorf("a missing slot is not reported")
	}
}
