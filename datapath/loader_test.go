package datapath_test

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/ciliaproject/cilia/datapath"
	"github.com/ciliaproject/cilia/datapath/dropreason"
	"github.com/ciliaproject/cilia/datapath/events"
	"github.com/ciliaproject/cilia/datapath/internal/netnstest"
	"github.com/ciliaproject/cilia/datapath/maps"
	"github.com/ciliaproject/cilia/datapath/testrun"
)

// testPod is one pod of the real-traffic topology with its loaded programs.
type testPod struct {
	*netnstest.Pod
	ep       *datapath.Endpoint
	id       uint16
	identity uint32
	revision uint32
	flags    uint32
	node     *datapath.Node
}

// writeState writes the pod's enforcement flags with the next revision.
func (p *testPod) writeState(t *testing.T) {
	t.Helper()
	if err := p.ep.SetEnforcement(p.flags&maps.PolicyIngressEnforced != 0, p.flags&maps.PolicyEgressEnforced != 0); err != nil {
		t.Fatalf("write ep_policy of endpoint %d: %v", p.id, err)
	}
}

// allow installs policy entries for (identity, dir, proto, ports) and bumps
// the revision.
func (p *testPod) allow(t *testing.T, identity uint32, dir maps.Direction, proto uint8, ports maps.PortRange, ruleID uint32) {
	t.Helper()
	keys, err := maps.PolicyKeys(identity, dir, proto, ports)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		v := maps.PolicyEntry{Prefixlen: uint8(k.Prefixlen), RuleID: ruleID}
		if err := p.ep.PutPolicy(k, v); err != nil {
			t.Fatalf("write policy entry %+v: %v", k, err)
		}
	}
	p.writeState(t)
}

// twoPods builds a node (the test's fresh netns) with two pods, loads and
// attaches the datapath for both, and registers them in the node maps.
func twoPods(t *testing.T, settings datapath.Settings) (*datapath.Node, *events.Reader, *testPod, *testPod) {
	t.Helper()
	testrun.RequirePrivileges(t)
	nodeNS := testrun.FreshNetns(t)
	// Forwarding off, so only the datapath can deliver. A new netns takes
	// the IPv4 setting from the initial one (devconf_inherit_init_net),
	// where dockerd, for one, turns it on: set it here, then check.
	for _, sysctl := range []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"} {
		if err := os.WriteFile(sysctl, []byte("0"), 0o644); err != nil {
			t.Fatalf("node netns: turn off %s: %v", sysctl, err)
		}
		if b, err := os.ReadFile(sysctl); err != nil || strings.TrimSpace(string(b)) != "0" {
			t.Fatalf("node netns: %s = %q (%v), want 0: only the datapath may deliver", sysctl, b, err)
		}
	}

	node, err := datapath.NewNode(datapath.NodeOptions{})
	if err != nil {
		t.Fatalf("NewNode: %v", err)
	}
	t.Cleanup(func() { node.Close() })
	rd, err := events.NewReader(node.Maps[datapath.MapEvents])
	if err != nil {
		t.Fatalf("events reader: %v", err)
	}
	t.Cleanup(func() { rd.Close() })

	var pods []*testPod
	for i := 1; i <= 2; i++ {
		spec := netnstest.PodSpec{
			HostIfName: fmt.Sprintf("lxc%d", i),
			IPv4:       netip.AddrFrom4([4]byte{10, 200, 0, byte(i)}),
			IPv6:       netip.MustParseAddr(fmt.Sprintf("fd00:200::%d", i)),
			MAC:        net.HardwareAddr{0x02, 0, 0, 0, 0, byte(i)},
			HostMAC:    net.HardwareAddr{0x02, 0, 0, 0xff, 0, byte(i)},
		}
		np := netnstest.AddPod(t, nodeNS, spec)
		p := &testPod{Pod: np, id: uint16(i), identity: 1000 + uint32(i), node: node}
		p.ep, err = node.LoadEndpoint(datapath.EndpointConfig{
			ID: p.id, Identity: p.identity, Ifindex: uint32(np.HostIfindex), IPv4: spec.IPv4, IPv6: spec.IPv6,
		}, settings)
		if err != nil {
			t.Fatalf("LoadEndpoint %d: %v", i, err)
		}
		t.Cleanup(func() { p.ep.Close() })

		info := maps.EndpointInfo{Ifindex: uint32(np.HostIfindex), EndpointID: p.id, Identity: p.identity}
		copy(info.MAC[:], spec.MAC)
		copy(info.NodeMAC[:], spec.HostMAC)
		for _, a := range []netip.Addr{spec.IPv4, spec.IPv6} {
			ek := maps.NewAddrKey(a)
			if err := node.Maps[datapath.MapEndpoints].Put(&ek, &info); err != nil {
				t.Fatalf("endpoints map: %v", err)
			}
			if err := node.SetIPCache(netip.PrefixFrom(a, a.BitLen()), maps.IPCacheEntry{Identity: p.identity}); err != nil {
				t.Fatalf("ipcache: %v", err)
			}
		}
		p.writeState(t)
		if err := p.ep.Attach(np.HostIfindex, ""); err != nil {
			t.Fatalf("Attach endpoint %d: %v", i, err)
		}
		t.Cleanup(func() { p.ep.Detach() })
		pods = append(pods, p)
	}
	return node, rd, pods[0], pods[1]
}

// TestRealTrafficPodToPod sends real TCP traffic between two pods whose
// host-side veths carry the datapath on tcx: local delivery is the
// programs' bpf_redirect to the peer's host-side veth (the node namespace
// has no routes to the pods and forwarding off, so nothing else could
// deliver), and ingress policy of the destination decides.
func TestRealTrafficPodToPod(t *testing.T) {
	node, rd, pod1, pod2 := twoPods(t, datapath.Settings{TraceLevel: datapath.TraceEveryPacket})

	const port = 8080
	for _, fam := range []struct {
		name string
		addr func(p *testPod) netip.Addr
	}{
		{"IPv4", func(p *testPod) netip.Addr { return p.Spec.IPv4 }},
		{"IPv6", func(p *testPod) netip.Addr { return p.Spec.IPv6 }},
	} {
		netnstest.Listen(t, pod2.NS, netip.AddrPortFrom(fam.addr(pod2), port), "hello from pod2 "+fam.name)
	}
	dial := func(dst netip.Addr, timeout time.Duration) (string, error) {
		return netnstest.Dial(pod1.NS, netip.AddrPortFrom(dst, port), timeout)
	}

	// 1. No enforcement: both families connect, and the programs traced
	// the redirect into pod2 on pod1's from_container.
	rd.Drain()
	for _, dst := range []netip.Addr{pod2.Spec.IPv4, pod2.Spec.IPv6} {
		got, err := dial(dst, 3*time.Second)
		if err != nil {
			t.Fatalf("no enforcement: dial %s: %v (events: %v)", dst, err, drain(t, rd))
		}
		if !strings.HasPrefix(got, "hello from pod2") {
			t.Fatalf("no enforcement: dial %s: got %q", dst, got)
		}
	}
	evs := drain(t, rd)
	if !hasEvent(evs, func(e events.Event) bool {
		return !e.IsDrop() && e.EndpointID == pod1.id && e.Direction == maps.Egress &&
			e.ObservationPoint == events.ObsToEndpoint && e.Ifindex == uint32(pod2.HostIfindex) &&
			e.SrcIdentity == pod1.identity && e.DstIdentity == pod2.identity
	}) {
		t.Errorf("no trace of pod1's from_container redirecting to pod2's veth (ifindex %d): %v", pod2.HostIfindex, evs)
	}
	if !hasEvent(evs, func(e events.Event) bool {
		return !e.IsDrop() && e.EndpointID == pod2.id && e.Direction == maps.Ingress &&
			e.ObservationPoint == events.ObsToEndpoint && e.SrcIdentity == pod1.identity
	}) {
		t.Errorf("no trace of pod2's to_container (it must run on the redirected packet): %v", evs)
	}

	// 2. Ingress enforcement on pod2 without any entry: new connections
	// time out, every SYN is a POLICY_DENIED drop in events and metrics.
	before := metric(t, node, dropreason.PolicyDenied, maps.Ingress)
	pod2.flags = maps.PolicyIngressEnforced
	pod2.writeState(t)
	for _, dst := range []netip.Addr{pod2.Spec.IPv4, pod2.Spec.IPv6} {
		if got, err := dial(dst, time.Second); err == nil {
			t.Fatalf("ingress enforced without allow: dial %s succeeded (%q)", dst, got)
		} else if !isTimeout(err) {
			t.Fatalf("ingress enforced without allow: dial %s: want a timeout, got %v", dst, err)
		}
	}
	evs = drain(t, rd)
	for _, fam := range []uint8{maps.FamilyIPv4, maps.FamilyIPv6} {
		if !hasEvent(evs, func(e events.Event) bool {
			return e.IsDrop() && e.Reason == dropreason.PolicyDenied && e.EndpointID == pod2.id &&
				e.Direction == maps.Ingress && e.SrcIdentity == pod1.identity &&
				e.DstIdentity == pod2.identity && e.Ifindex == uint32(pod2.HostIfindex) &&
				e.ObservationPoint == events.ObsToEndpoint && ipVersion(e.Data) == fam
		}) {
			t.Errorf("no DROP POLICY_DENIED event of pod2 ingress for IPv%d: %v", fam, evs)
		}
	}
	after := metric(t, node, dropreason.PolicyDenied, maps.Ingress)
	if after.Packets < before.Packets+2 || after.Bytes <= before.Bytes {
		t.Errorf("metrics POLICY_DENIED/ingress: before %+v after %+v, want at least 2 more packets", before, after)
	}

	// 3. An allow entry for pod1's identity on TCP/8080 (and a revision
	// bump): connections work again; another port stays denied.
	pod2.allow(t, pod1.identity, maps.Ingress, 6, maps.PortRange{Lo: port, Hi: port}, 42)
	for _, dst := range []netip.Addr{pod2.Spec.IPv4, pod2.Spec.IPv6} {
		got, err := dial(dst, 3*time.Second)
		if err != nil {
			t.Fatalf("after allow: dial %s: %v (events: %v)", dst, err, drain(t, rd))
		}
		if !strings.HasPrefix(got, "hello from pod2") {
			t.Fatalf("after allow: dial %s: got %q", dst, got)
		}
	}
	evs = drain(t, rd)
	if !hasEvent(evs, func(e events.Event) bool {
		return !e.IsDrop() && e.EndpointID == pod2.id && e.Direction == maps.Ingress &&
			e.RuleID == 42 && e.PolicyMatch == events.MatchL3|events.MatchL4
	}) {
		t.Errorf("no trace of pod2 ingress allowed by rule 42 (L3L4): %v", evs)
	}
	if _, err := netnstest.Dial(pod1.NS, netip.AddrPortFrom(pod2.Spec.IPv4, port+1), time.Second); !isTimeout(err) {
		t.Errorf("port %d is not allowed: want a timeout, got %v", port+1, err)
	}

	// 4. Control: without the programs on pod1's veth nothing delivers
	// (the node has no route to the pods and does not forward), so the
	// successes above were the datapath's redirect.
	if err := pod1.ep.Detach(); err != nil {
		t.Fatalf("Detach pod1: %v", err)
	}
	if _, err := dial(pod2.Spec.IPv4, time.Second); !isTimeout(err) {
		t.Errorf("pod1 detached: want a timeout, got %v", err)
	}
}

// TestRealTrafficEgressPolicy checks egress enforcement of the sender on
// real traffic: the SYN is dropped in from_container before any redirect.
func TestRealTrafficEgressPolicy(t *testing.T) {
	node, rd, pod1, pod2 := twoPods(t, datapath.Settings{TraceLevel: datapath.TraceDropsOnly})
	addr := netip.AddrPortFrom(pod2.Spec.IPv4, 9090)
	netnstest.Listen(t, pod2.NS, addr, "ok")

	pod1.flags = maps.PolicyEgressEnforced
	pod1.writeState(t)
	if _, err := netnstest.Dial(pod1.NS, addr, time.Second); !isTimeout(err) {
		t.Fatalf("egress enforced without allow: want a timeout, got %v", err)
	}
	evs := drain(t, rd)
	if !hasEvent(evs, func(e events.Event) bool {
		return e.IsDrop() && e.Reason == dropreason.PolicyDenied && e.EndpointID == pod1.id &&
			e.Direction == maps.Egress && e.SrcIdentity == pod1.identity && e.DstIdentity == pod2.identity &&
			e.ObservationPoint == events.ObsFromEndpoint
	}) {
		t.Errorf("no egress POLICY_DENIED drop of pod1: %v", evs)
	}
	if m := metric(t, node, dropreason.PolicyDenied, maps.Egress); m.Packets == 0 {
		t.Errorf("metrics: no POLICY_DENIED/egress packets")
	}

	pod1.allow(t, pod2.identity, maps.Egress, 0, maps.PortRange{}, 7)
	if got, err := netnstest.Dial(pod1.NS, addr, 3*time.Second); err != nil || got != "ok" {
		t.Fatalf("egress allowed: got %q, %v (events %v)", got, err, drain(t, rd))
	}
}

func drain(t *testing.T, rd *events.Reader) []events.Event {
	t.Helper()
	evs, err := rd.Drain()
	if err != nil {
		t.Fatalf("drain events: %v", err)
	}
	return evs
}

func hasEvent(evs []events.Event, pred func(events.Event) bool) bool {
	for _, e := range evs {
		if pred(e) {
			return true
		}
	}
	return false
}

// ipVersion returns 4 or 6 from the IP header behind the Ethernet header of
// an event's captured data.
func ipVersion(data []byte) uint8 {
	if len(data) < 15 {
		return 0
	}
	return data[14] >> 4
}

func metric(t *testing.T, node *datapath.Node, reason dropreason.Reason, dir maps.Direction) maps.MetricsValue {
	t.Helper()
	m, err := events.ReadMetrics(node.Maps[datapath.MapMetrics])
	if err != nil {
		t.Fatal(err)
	}
	return m[events.MetricKey{Reason: reason, Direction: dir}]
}

func isTimeout(err error) bool {
	var ne net.Error
	return err != nil && (errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded))
}

// TestPinnedMapsSurviveRestart: a node with a PinDir reopens the maps a
// previous node pinned, content included.
func TestPinnedMapsSurviveRestart(t *testing.T) {
	testrun.RequirePrivileges(t)
	pinDir := tempPinDir(t)

	node, err := datapath.NewNode(datapath.NodeOptions{PinDir: pinDir})
	if err != nil {
		t.Fatalf("NewNode: %v", err)
	}
	for _, name := range []string{datapath.MapIPCache, datapath.MapIPCacheHosts, datapath.MapEndpoints, datapath.MapEndpointPolicy,
		datapath.MapCT4, datapath.MapCT6, datapath.MapFrag, datapath.MapEvents, datapath.MapMetrics} {
		if _, err := os.Stat(filepath.Join(pinDir, name)); err != nil {
			t.Errorf("map %s not pinned: %v", name, err)
		}
	}
	prefix := netip.MustParsePrefix("10.99.0.0/16")
	key := maps.NewIPCacheKey(prefix)
	val := maps.IPCacheEntry{Identity: 4242}
	if err := node.Maps[datapath.MapIPCache].Put(&key, &val); err != nil {
		t.Fatal(err)
	}
	ep, err := node.LoadEndpoint(datapath.EndpointConfig{ID: 7, Identity: 1007, Ifindex: 1}, datapath.Settings{})
	if err != nil {
		t.Fatalf("LoadEndpoint: %v", err)
	}
	pk, _ := maps.PolicyKeys(0, maps.Ingress, 6, maps.PortRange{Lo: 80, Hi: 80})
	pv := maps.PolicyEntry{Prefixlen: uint8(pk[0].Prefixlen), RuleID: 9}
	if err := ep.PutPolicy(pk[0], pv); err != nil {
		t.Fatal(err)
	}
	if err := ep.SetEnforcement(true, false); err != nil {
		t.Fatal(err)
	}
	wantState := ep.PolicyState()
	ep.Close()
	node.Close()

	node2, err := datapath.NewNode(datapath.NodeOptions{PinDir: pinDir})
	if err != nil {
		t.Fatalf("NewNode after restart: %v", err)
	}
	defer node2.Close()
	var got maps.IPCacheEntry
	if err := node2.Maps[datapath.MapIPCache].Lookup(&key, &got); err != nil {
		t.Fatalf("ipcache entry lost across restart: %v", err)
	}
	if got.Identity != 4242 {
		t.Errorf("ipcache identity after restart = %d, want 4242", got.Identity)
	}
	ep2, err := node2.LoadEndpoint(datapath.EndpointConfig{ID: 7, Identity: 1007, Ifindex: 1}, datapath.Settings{})
	if err != nil {
		t.Fatalf("LoadEndpoint after restart: %v", err)
	}
	defer ep2.Close()
	var gotPV maps.PolicyEntry
	if err := ep2.Policy.Lookup(&pk[0], &gotPV); err != nil || gotPV != pv {
		t.Errorf("endpoint policy entry after restart: %+v, %v; want %+v", gotPV, err, pv)
	}
	// The policy state (revision, enforcement, the prefix lengths the
	// datapath probes) is rebuilt from the pinned maps.
	if got := ep2.PolicyState(); got != wantState || got.PrefixLengths != maps.PolicyPrefixBit(maps.PolicyPrefixFull) {
		t.Errorf("policy state after restart = %+v, want %+v with only the /64 bit", got, wantState)
	}

	// A node without PinDir does not see them.
	node3, err := datapath.NewNode(datapath.NodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer node3.Close()
	if err := node3.Maps[datapath.MapIPCache].Lookup(&key, &got); !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Errorf("unpinned node sees the pinned entry: %v", err)
	}
}

// TestPinnedLinksStayAttached: links attached with a pinDir keep the
// programs on the interface after the Endpoint (and the node) are closed;
// Detach removes them and their pins.
func TestPinnedLinksStayAttached(t *testing.T) {
	testrun.RequirePrivileges(t)
	nodeNS := testrun.FreshNetns(t)
	pinDir := tempPinDir(t)
	pod := netnstest.AddPod(t, nodeNS, netnstest.PodSpec{
		HostIfName: "lxc7", IPv4: netip.MustParseAddr("10.200.0.7"),
		MAC: net.HardwareAddr{2, 0, 0, 0, 0, 7}, HostMAC: net.HardwareAddr{2, 0, 0, 0xff, 0, 7},
	})

	node, err := datapath.NewNode(datapath.NodeOptions{PinDir: pinDir})
	if err != nil {
		t.Fatalf("NewNode: %v", err)
	}
	defer node.Close()
	ep, err := node.LoadEndpoint(datapath.EndpointConfig{ID: 7, Identity: 1007, Ifindex: uint32(pod.HostIfindex),
		IPv4: pod.Spec.IPv4}, datapath.Settings{})
	if err != nil {
		t.Fatalf("LoadEndpoint: %v", err)
	}
	progIDs := map[ebpf.AttachType]ebpf.ProgramID{}
	for at, p := range map[ebpf.AttachType]*ebpf.Program{
		ebpf.AttachTCXIngress: ep.FromContainer, ebpf.AttachTCXEgress: ep.ToContainer,
	} {
		info, err := p.Info()
		if err != nil {
			t.Fatal(err)
		}
		id, _ := info.ID()
		progIDs[at] = id
	}
	if err := ep.Attach(pod.HostIfindex, pinDir); err != nil {
		t.Fatalf("Attach: %v", err)
	}
	pins := []string{filepath.Join(pinDir, "from_container_7"), filepath.Join(pinDir, "to_container_7")}
	for _, p := range pins {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("link pin %s: %v", p, err)
		}
	}
	assertAttached(t, pod.HostIfindex, progIDs)

	// The agent exits: every handle closed, the pins keep the links.
	if err := ep.Close(); err != nil {
		t.Fatalf("Endpoint.Close: %v", err)
	}
	node.Close()
	assertAttached(t, pod.HostIfindex, progIDs)

	// A restarted agent finds the links through their pins.
	for _, p := range pins {
		l, err := link.LoadPinnedLink(p, nil)
		if err != nil {
			t.Errorf("load pinned link %s: %v", p, err)
			continue
		}
		l.Close()
	}

	if err := ep.Detach(); err != nil {
		t.Fatalf("Detach: %v", err)
	}
	// With every fd closed, the pin held the last reference; the kernel
	// releases a link whose last reference was a bpffs pin from a work
	// queue (bpf_link_put -> schedule_work), so the detach is
	// asynchronous here: wait for it.
	waitDetached(t, pod.HostIfindex, 2*time.Second)
	assertAttached(t, pod.HostIfindex, nil)
	for _, p := range pins {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("link pin %s still there after Detach: %v", p, err)
		}
	}
}

// TestDetachWhileOpen: Detach of a live endpoint (its link fds still open)
// detaches at once and removes the pins.
func TestDetachWhileOpen(t *testing.T) {
	testrun.RequirePrivileges(t)
	nodeNS := testrun.FreshNetns(t)
	pinDir := tempPinDir(t)
	pod := netnstest.AddPod(t, nodeNS, netnstest.PodSpec{
		HostIfName: "lxc9", IPv4: netip.MustParseAddr("10.200.0.9"),
		MAC: net.HardwareAddr{2, 0, 0, 0, 0, 9}, HostMAC: net.HardwareAddr{2, 0, 0, 0xff, 0, 9},
	})
	node, err := datapath.NewNode(datapath.NodeOptions{PinDir: pinDir})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	ep, err := node.LoadEndpoint(datapath.EndpointConfig{ID: 9, Ifindex: uint32(pod.HostIfindex)}, datapath.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	defer ep.Close()
	if err := ep.Attach(pod.HostIfindex, pinDir); err != nil {
		t.Fatal(err)
	}
	if n := attachedCount(t, pod.HostIfindex); n != 2 {
		t.Fatalf("%d programs attached, want 2", n)
	}
	if err := ep.Detach(); err != nil {
		t.Fatalf("Detach: %v", err)
	}
	if n := attachedCount(t, pod.HostIfindex); n != 0 {
		t.Errorf("%d programs still attached right after Detach", n)
	}
	for _, name := range []string{"from_container_9", "to_container_9"} {
		if _, err := os.Stat(filepath.Join(pinDir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("pin %s after Detach: %v", name, err)
		}
	}
	// Detach twice is harmless.
	if err := ep.Detach(); err != nil {
		t.Errorf("second Detach: %v", err)
	}
}

// TestReattachAfterRestart: an agent that restarts and attaches an
// endpoint again with the same pinDir must end up with exactly its new
// programs attached, once per direction (regression: Attach used to create
// a second tcx link beside the pinned one, whose old program, first in the
// chain, kept deciding, and then failed to pin with EEXIST).
func TestReattachAfterRestart(t *testing.T) {
	testrun.RequirePrivileges(t)
	nodeNS := testrun.FreshNetns(t)
	pinDir := tempPinDir(t)
	pod := netnstest.AddPod(t, nodeNS, netnstest.PodSpec{
		HostIfName: "lxc10", IPv4: netip.MustParseAddr("10.200.0.10"),
		MAC: net.HardwareAddr{2, 0, 0, 0, 0, 10}, HostMAC: net.HardwareAddr{2, 0, 0, 0xff, 0, 10},
	})
	node, err := datapath.NewNode(datapath.NodeOptions{PinDir: pinDir})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	cfg := datapath.EndpointConfig{ID: 10, Ifindex: uint32(pod.HostIfindex)}
	old, err := node.LoadEndpoint(cfg, datapath.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Attach(pod.HostIfindex, pinDir); err != nil {
		t.Fatal(err)
	}
	old.Close() // the agent exits; the pinned links stay

	ep, err := node.LoadEndpoint(cfg, datapath.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	defer ep.Close()
	t.Cleanup(func() { ep.Detach() })
	err = ep.Attach(pod.HostIfindex, pinDir)
	want := map[ebpf.AttachType]ebpf.ProgramID{}
	for at, p := range map[ebpf.AttachType]*ebpf.Program{
		ebpf.AttachTCXIngress: ep.FromContainer, ebpf.AttachTCXEgress: ep.ToContainer,
	} {
		info, ierr := p.Info()
		if ierr != nil {
			t.Fatal(ierr)
		}
		want[at], _ = info.ID()
	}
	if err != nil {
		t.Errorf("Attach after restart: %v", err)
	}
	assertAttached(t, pod.HostIfindex, want)
}

// TestUnpinnedAttachEndsWithClose: without a pinDir, closing the endpoint
// detaches its programs.
func TestUnpinnedAttachEndsWithClose(t *testing.T) {
	testrun.RequirePrivileges(t)
	nodeNS := testrun.FreshNetns(t)
	pod := netnstest.AddPod(t, nodeNS, netnstest.PodSpec{
		HostIfName: "lxc8", IPv4: netip.MustParseAddr("10.200.0.8"),
		MAC: net.HardwareAddr{2, 0, 0, 0, 0, 8}, HostMAC: net.HardwareAddr{2, 0, 0, 0xff, 0, 8},
	})
	node, err := datapath.NewNode(datapath.NodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	ep, err := node.LoadEndpoint(datapath.EndpointConfig{ID: 8, Ifindex: uint32(pod.HostIfindex)}, datapath.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ep.Attach(pod.HostIfindex, ""); err != nil {
		t.Fatal(err)
	}
	if n := attachedCount(t, pod.HostIfindex); n != 2 {
		t.Fatalf("%d programs attached, want 2", n)
	}
	ep.Close()
	if n := attachedCount(t, pod.HostIfindex); n != 0 {
		t.Fatalf("%d programs still attached after Close without pins", n)
	}
}

func waitDetached(t *testing.T, ifindex int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for attachedCount(t, ifindex) != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
}

func attachedCount(t *testing.T, ifindex int) int {
	t.Helper()
	n := 0
	for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
		res, err := link.QueryPrograms(link.QueryOptions{Target: ifindex, Attach: at})
		if err != nil {
			t.Fatalf("query tcx programs of ifindex %d: %v", ifindex, err)
		}
		n += len(res.Programs)
	}
	return n
}

// assertAttached checks that exactly the programs in want (none when nil)
// are attached per tcx direction on ifindex, through links.
func assertAttached(t *testing.T, ifindex int, want map[ebpf.AttachType]ebpf.ProgramID) {
	t.Helper()
	for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
		res, err := link.QueryPrograms(link.QueryOptions{Target: ifindex, Attach: at})
		if err != nil {
			t.Fatalf("query %s programs of ifindex %d: %v", at, ifindex, err)
		}
		id, ok := want[at]
		switch {
		case !ok && len(res.Programs) != 0:
			t.Errorf("%s of ifindex %d: %d programs attached, want none", at, ifindex, len(res.Programs))
		case ok && (len(res.Programs) != 1 || res.Programs[0].ID != id):
			t.Errorf("%s of ifindex %d: attached %+v, want program %d", at, ifindex, res.Programs, id)
		case ok:
			if _, viaLink := res.Programs[0].LinkID(); !viaLink {
				t.Errorf("%s of ifindex %d: program %d is not attached through a link", at, ifindex, id)
			}
		}
	}
}

// tempPinDir returns a fresh directory in /sys/fs/bpf, removed (with
// whatever is pinned in it) when the test ends.
func tempPinDir(t *testing.T) string {
	t.Helper()
	if err := os.MkdirAll("/sys/fs/bpf", 0o755); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("/sys/fs/bpf", "cilia-test-")
	if err != nil {
		t.Fatalf("create pin dir: %v (is /sys/fs/bpf a bpffs?)", err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove pin dir: %v", err)
		}
	})
	return dir
}

// Privileges. The child test runs NewNode in a re-executed test binary
// whose capabilities setpriv dropped; it reports through its exit status.
const privChildEnv = "CILIA_TEST_PRIV_CHILD_EXPECT"

func TestMissingCapabilitiesChild(t *testing.T) {
	expect, ok := os.LookupEnv(privChildEnv)
	if !ok {
		t.Skip("only runs re-executed by TestNewNodeWithoutCapabilities")
	}
	want := strings.Split(expect, ",")
	missing, err := datapath.MissingCapabilities()
	if err != nil {
		t.Fatalf("MissingCapabilities: %v", err)
	}
	if strings.Join(missing, ",") != expect {
		t.Errorf("MissingCapabilities() = %v, want %v", missing, want)
	}
	node, err := datapath.NewNode(datapath.NodeOptions{})
	if err == nil {
		node.Close()
		t.Fatalf("NewNode without %v succeeded", want)
	}
	if !errors.Is(err, datapath.ErrMissingCapability) {
		t.Fatalf("NewNode error %q is not ErrMissingCapability", err)
	}
	if !strings.Contains(err.Error(), strings.Join(want, ", ")) {
		t.Errorf("NewNode error %q does not name %v", err, want)
	}
	for _, c := range []string{"CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"} {
		named := strings.Contains(err.Error(), c)
		if wanted := strings.Contains(expect, c); named != wanted {
			t.Errorf("NewNode error %q: names %s = %v, want %v", err, c, named, wanted)
		}
	}
	t.Logf("NewNode: %v", err)
}

func TestNewNodeWithoutCapabilities(t *testing.T) {
	if os.Getenv(privChildEnv) != "" {
		t.Skip("child process")
	}
	if os.Getenv(testrun.SkipPrivilegedEnv) == "1" {
		t.Skipf("%s=1: dropping capabilities needs a privileged parent", testrun.SkipPrivilegedEnv)
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skipf("setpriv (util-linux) not found: %v", err)
	}
	missing, err := datapath.MissingCapabilities()
	if err != nil || len(missing) != 0 {
		t.Skipf("needs a fully privileged parent to drop from (missing %v, %v)", missing, err)
	}
	for _, tc := range []struct {
		name string
		drop string // setpriv capability list
		want string
	}{
		{"all", "-all", "CAP_BPF,CAP_NET_ADMIN,CAP_PERFMON"},
		{"bpf-sysadmin-perfmon", "-bpf,-sys_admin,-perfmon", "CAP_BPF,CAP_PERFMON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(setpriv, "--inh-caps="+tc.drop, "--bounding-set="+tc.drop, "--",
				os.Args[0], "-test.run=^TestMissingCapabilitiesChild$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), privChildEnv+"="+tc.want)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			if err != nil || !strings.Contains(out.String(), "--- PASS: TestMissingCapabilitiesChild") {
				t.Fatalf("child without %s: %v\n%s", tc.drop, err, out.String())
			}
			t.Logf("child:\n%s", out.String())
		})
	}
}
