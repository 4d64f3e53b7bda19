package topology_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/ciliaproject/cilia/datapath/testrun"
	"github.com/ciliaproject/cilia/sim/topology"
)

// ip parses an address.
var ip = netip.MustParseAddr

// twoByTwo is 2 nodes × 2 pods + 1 external, dual stack.
func twoByTwo(mode topology.Mode) topology.Spec {
	return topology.Spec{
		Mode: mode,
		Nodes: []topology.NodeSpec{
			{Name: "node-a", IPv4: ip("192.168.0.11"), IPv6: ip("fd00:0:0:1::11")},
			{Name: "node-b", IPv4: ip("192.168.0.12"), IPv6: ip("fd00:0:0:1::12")},
		},
		Pods: []topology.PodSpec{
			{Key: "default/a0", Node: "node-a", IPv4: ip("10.0.1.10"), IPv6: ip("fd00::1:10")},
			{Key: "default/a1", Node: "node-a", IPv4: ip("10.0.1.11"), IPv6: ip("fd00::1:11")},
			{Key: "default/b0", Node: "node-b", IPv4: ip("10.0.2.10"), IPv6: ip("fd00::2:10")},
			{Key: "default/b1", Node: "node-b", IPv4: ip("10.0.2.11"), IPv6: ip("fd00::2:11")},
		},
		Externals: []topology.ExternalSpec{
			{Name: "internet", IPv4: ip("203.0.113.7"), IPv6: ip("2001:db8::7")},
		},
	}
}

// build builds s and closes it when the test ends, failing unless Close
// left nothing of the run behind.
func build(t *testing.T, s topology.Spec) *topology.Topology {
	t.Helper()
	topo, err := topology.Build(context.Background(), s)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	t.Cleanup(func() {
		if err := topo.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		if left := runNetns(t, topo.Prefix); len(left) > 0 {
			t.Errorf("close left netns behind: %v", left)
		}
	})
	return topo
}

// runNetns lists the netns of the run with this prefix.
func runNetns(t *testing.T, prefix string) []string {
	t.Helper()
	runs, err := topology.Runs()
	if err != nil {
		t.Fatalf("list runs: %v", err)
	}
	return runs[prefix]
}

// endpoint is something that sends or answers: a netns and an address.
type endpoint struct {
	netns string
	addr  netip.Addr
}

// at returns the endpoint of the node, pod or external called name, for
// the family of v6.
func at(t *testing.T, topo *topology.Topology, name string, v6 bool) endpoint {
	t.Helper()
	pick := func(v4a, v6a netip.Addr) netip.Addr {
		if v6 {
			return v6a
		}
		return v4a
	}
	if n := topo.Node(name); n != nil {
		return endpoint{n.Netns, pick(n.IPv4, n.IPv6)}
	}
	if p := topo.Pods[name]; p != nil {
		return endpoint{p.Netns, pick(p.IPv4, p.IPv6)}
	}
	for _, e := range topo.Externals {
		if e.Name == name {
			return endpoint{e.Netns, pick(e.IPv4, e.IPv6)}
		}
	}
	t.Fatalf("no endpoint %s", name)
	return endpoint{}
}

// exchange sends a UDP datagram from src to dst (an echo server on
// dst.addr in dst.netns) and waits for the echo. It returns the source
// address the client used and the one the server saw.
func exchange(src, dst endpoint, timeout time.Duration) (local, seen netip.Addr, err error) {
	var srv *net.UDPConn
	err = topology.Do(dst.netns, func() (err error) {
		srv, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst.addr, 0)))
		return err
	})
	if err != nil {
		return local, seen, fmt.Errorf("listen on %s in %s: %w", dst.addr, dst.netns, err)
	}
	defer srv.Close()
	seenCh := make(chan netip.Addr, 1)
	go func() {
		buf := make([]byte, 1500)
		n, from, err := srv.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		seenCh <- from.Addr().Unmap()
		_, _ = srv.WriteToUDPAddrPort(buf[:n], from)
	}()
	var cl *net.UDPConn
	err = topology.Do(src.netns, func() (err error) {
		cl, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(srv.LocalAddr().(*net.UDPAddr).AddrPort()))
		return err
	})
	if err != nil {
		return local, seen, fmt.Errorf("dial from %s: %w", src.netns, err)
	}
	defer cl.Close()
	if err := cl.SetDeadline(time.Now().Add(timeout)); err != nil {
		return local, seen, err
	}
	payload := []byte("ping " + src.addr.String() + " -> " + dst.addr.String())
	if _, err := cl.Write(payload); err != nil {
		return local, seen, fmt.Errorf("send: %w", err)
	}
	buf := make([]byte, 1500)
	n, err := cl.Read(buf)
	if err != nil {
		return local, seen, fmt.Errorf("receive echo: %w", err)
	}
	if string(buf[:n]) != string(payload) {
		return local, seen, fmt.Errorf("echo %q, want %q", buf[:n], payload)
	}
	local = cl.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
	select {
	case seen = <-seenCh:
	case <-time.After(timeout):
		return local, seen, errors.New("the server did not report the datagram")
	}
	return local, seen, nil
}

// TestBuildTraffic builds 2 nodes × 2 pods + 1 external in both modes and
// checks with real UDP traffic (plain kernel routing, no BPF) that every
// kind of path works in both families, with the sender's own address as
// the source all the way.
func TestBuildTraffic(t *testing.T) {
	testrun.RequirePrivileges(t)
	paths := []struct{ name, from, to string }{
		{"pod to pod, same node", "default/a0", "default/a1"},
		{"pod to pod, across nodes", "default/a0", "default/b0"},
		{"pod to external", "default/b1", "internet"},
		{"external to pod", "internet", "default/a1"},
		{"node to its own pod", "node-a", "default/a0"},
		{"node to a pod of another node", "node-a", "default/b1"},
		{"pod to its node", "default/b0", "node-b"},
		{"pod to another node", "default/a0", "node-b"},
		{"node to node", "node-b", "node-a"},
		{"external to node", "internet", "node-b"},
	}
	for _, mode := range []topology.Mode{topology.Tunnel, topology.Native} {
		t.Run(string(mode), func(t *testing.T) {
			topo := build(t, twoByTwo(mode))
			checkStructure(t, topo, twoByTwo(mode))
			for _, p := range paths {
				for _, v6 := range []bool{false, true} {
					fam := "IPv4"
					if v6 {
						fam = "IPv6"
					}
					t.Run(p.name+"/"+fam, func(t *testing.T) {
						src, dst := at(t, topo, p.from, v6), at(t, topo, p.to, v6)
						local, seen, err := exchange(src, dst, 2*time.Second)
						if err != nil {
							t.Fatalf("%s (%s) -> %s (%s): %v", p.from, src.addr, p.to, dst.addr, err)
						}
						if local != src.addr || seen != src.addr {
							t.Errorf("%s -> %s: client sent from %s, server saw %s, want %s", p.from, p.to, local, seen, src.addr)
						}
					})
				}
			}
		})
	}
}

// checkStructure checks names, links and devices of a built topology.
func checkStructure(t *testing.T, topo *topology.Topology, s topology.Spec) {
	t.Helper()
	want := []string{topo.Prefix + "-f"}
	for i := range s.Nodes {
		want = append(want, fmt.Sprintf("%s-n%d", topo.Prefix, i))
	}
	for i := range s.Pods {
		want = append(want, fmt.Sprintf("%s-p%d", topo.Prefix, i))
	}
	for i := range s.Externals {
		want = append(want, fmt.Sprintf("%s-x%d", topo.Prefix, i))
	}
	slices.Sort(want)
	if got := runNetns(t, topo.Prefix); !slices.Equal(got, want) {
		t.Errorf("netns %v, want %v", got, want)
	}
	if topo.Fabric.Netns != topo.Prefix+"-f" || topo.Fabric.GatewayV4 != topology.GatewayV4 || topo.Fabric.GatewayV6 != topology.GatewayV6 {
		t.Errorf("fabric %+v", topo.Fabric)
	}
	macs := map[string]string{}
	checkLink := func(what string, l topology.Link, name string, netnsName string) {
		t.Helper()
		if l.Ifindex <= 0 || l.Name == "" || len(l.MAC) != 6 || l.MAC[0] != 0x02 {
			t.Errorf("%s: link %+v: want an index and a locally administered unicast MAC", what, l)
			return
		}
		if name != "" && l.Name != name {
			t.Errorf("%s: name %s, want %s", what, l.Name, name)
		}
		if o, dup := macs[l.MAC.String()]; dup {
			t.Errorf("%s: MAC %s is also %s's", what, l.MAC, o)
		}
		macs[l.MAC.String()] = what
		// The link is what the kernel says, in the right netns.
		err := topology.Do(netnsName, func() error {
			kl, err := netlink.LinkByIndex(l.Ifindex)
			if err != nil {
				return err
			}
			if a := kl.Attrs(); a.Name != l.Name || a.HardwareAddr.String() != l.MAC.String() {
				return fmt.Errorf("kernel has %s %s at index %d", a.Name, a.HardwareAddr, l.Ifindex)
			}
			if kl.Attrs().OperState != netlink.OperUp && kl.Type() != "bridge" && kl.Type() != "vxlan" {
				return fmt.Errorf("%s is %s, want up", l.Name, kl.Attrs().OperState)
			}
			return nil
		})
		if err != nil {
			t.Errorf("%s: %v", what, err)
		}
	}
	checkLink("bridge", topo.Fabric.Bridge, "br0", topo.Fabric.Netns)
	for i, n := range topo.Nodes {
		if n.Name != s.Nodes[i].Name || n.IPv4 != s.Nodes[i].IPv4 || n.IPv6 != s.Nodes[i].IPv6 {
			t.Errorf("node %d: %+v, want %+v", i, n, s.Nodes[i])
		}
		checkLink("uplink of "+n.Name, n.Uplink, "eth0", n.Netns)
		err := topology.Do(n.Netns, func() error {
			l, err := netlink.LinkByName(topology.VXLANName)
			if topo.Mode == topology.Native {
				if err == nil {
					return fmt.Errorf("native mode, but %s exists", topology.VXLANName)
				}
				return nil
			}
			if err != nil {
				return err
			}
			vx, ok := l.(*netlink.Vxlan)
			if !ok || !vx.FlowBased || vx.Port != topology.VXLANPort {
				return fmt.Errorf("%s is %T %+v, want a flow-based VXLAN on port %d", topology.VXLANName, l, l, topology.VXLANPort)
			}
			return nil
		})
		if err != nil {
			t.Errorf("node %s: %v", n.Name, err)
		}
		if topo.Mode == topology.Tunnel {
			checkLink("VXLAN of "+n.Name, n.Tunnel, topology.VXLANName, n.Netns)
		} else if n.Tunnel.Name != "" || n.Tunnel.Ifindex != 0 || n.Tunnel.MAC != nil {
			t.Errorf("node %s: native mode, tunnel %+v", n.Name, n.Tunnel)
		}
	}
	for _, ps := range s.Pods {
		p := topo.Pods[ps.Key]
		if p == nil {
			t.Errorf("no pod %s", ps.Key)
			continue
		}
		if p.Node != ps.Node || p.IPv4 != ps.IPv4 || p.IPv6 != ps.IPv6 {
			t.Errorf("pod %+v, want %+v", p, ps)
		}
		checkLink("eth0 of "+p.Key, p.Eth0, "eth0", p.Netns)
		checkLink("host veth of "+p.Key, p.HostVeth, "", topo.Node(p.Node).Netns)
		if !strings.HasPrefix(p.HostVeth.Name, "lxc") || len(p.HostVeth.Name) > 15 {
			t.Errorf("pod %s: host veth %q", p.Key, p.HostVeth.Name)
		}
		wantMTU := 1500
		if topo.Mode == topology.Tunnel {
			wantMTU = topology.TunnelPodMTU
		}
		err := topology.Do(p.Netns, func() error {
			l, err := netlink.LinkByIndex(p.Eth0.Ifindex)
			if err != nil {
				return err
			}
			if l.Attrs().MTU != wantMTU {
				return fmt.Errorf("eth0 MTU %d, want %d", l.Attrs().MTU, wantMTU)
			}
			return nil
		})
		if err != nil {
			t.Errorf("pod %s: %v", p.Key, err)
		}
	}
	for _, e := range topo.Externals {
		checkLink("eth0 of "+e.Name, e.Eth0, "eth0", e.Netns)
	}
}

// TestAddDeletePod adds a pod to a built topology, checks it is reachable,
// deletes it and checks it is gone everywhere, and adds it again.
func TestAddDeletePod(t *testing.T) {
	testrun.RequirePrivileges(t)
	for _, mode := range []topology.Mode{topology.Tunnel, topology.Native} {
		t.Run(string(mode), func(t *testing.T) {
			topo := build(t, twoByTwo(mode))
			spec := topology.PodSpec{Key: "other/c0", Node: "node-b", IPv4: ip("10.0.2.20"), IPv6: ip("fd00::2:20")}
			before := len(runNetns(t, topo.Prefix))
			for i := range 2 { // add, delete, and again with the same key
				p, err := topo.AddPod(spec)
				if err != nil {
					t.Fatalf("round %d: add pod: %v", i, err)
				}
				if topo.Pods[spec.Key] != p || p.Node != "node-b" {
					t.Fatalf("round %d: pods[%s] = %+v", i, spec.Key, topo.Pods[spec.Key])
				}
				if kind, name, ok := topo.Owner(spec.IPv6); !ok || kind != "pod" || name != spec.Key {
					t.Errorf("round %d: owner of %s: %s %s %v", i, spec.IPv6, kind, name, ok)
				}
				for _, from := range []string{"default/a0", "default/b1", "internet", "node-a"} {
					for _, v6 := range []bool{false, true} {
						src := at(t, topo, from, v6)
						dst := at(t, topo, spec.Key, v6)
						if _, _, err := exchange(src, dst, 2*time.Second); err != nil {
							t.Errorf("round %d: %s -> new pod %s: %v", i, from, dst.addr, err)
						}
					}
				}
				node := topo.Node("node-b")
				if err := topo.DeletePod(spec.Key); err != nil {
					t.Fatalf("round %d: delete pod: %v", i, err)
				}
				if _, ok := topo.Pods[spec.Key]; ok {
					t.Errorf("round %d: pod still listed", i)
				}
				if _, err := os.Stat(topology.NetnsPath(p.Netns)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("round %d: netns %s: stat: %v, want not exist", i, p.Netns, err)
				}
				if _, _, ok := topo.Owner(spec.IPv4); ok {
					t.Errorf("round %d: %s still owned", i, spec.IPv4)
				}
				if got := len(runNetns(t, topo.Prefix)); got != before {
					t.Errorf("round %d: %d netns after delete, want %d", i, got, before)
				}
				err = topology.Do(node.Netns, func() error {
					if _, err := netlink.LinkByName(p.HostVeth.Name); err == nil {
						return fmt.Errorf("host veth %s still exists", p.HostVeth.Name)
					}
					return nil
				})
				if err != nil {
					t.Errorf("round %d: %v", i, err)
				}
				// No route to the pod is left on the other node or the fabric.
				for _, ns := range []string{topo.Node("node-a").Netns, topo.Fabric.Netns} {
					err := topology.Do(ns, func() error {
						for _, a := range []netip.Addr{spec.IPv4, spec.IPv6} {
							routes, err := netlink.RouteListFiltered(familyOf(a), &netlink.Route{Dst: hostNet(a)}, netlink.RT_FILTER_DST)
							if err != nil {
								return err
							}
							if len(routes) > 0 {
								return fmt.Errorf("route to %s left: %v", a, routes)
							}
						}
						return nil
					})
					if err != nil {
						t.Errorf("round %d: %s: %v", i, ns, err)
					}
				}
				if _, _, err := exchange(at(t, topo, "default/a0", false), endpoint{topo.Fabric.Netns, topology.GatewayV4}, time.Second); err != nil {
					t.Errorf("round %d: the fabric is not reachable after delete: %v", i, err)
				}
			}
		})
	}
}

// TestAddPodErrors checks that bad pods are refused with ErrInvalidSpec
// and leave nothing behind, and that DeletePod of an unknown pod fails.
func TestAddPodErrors(t *testing.T) {
	testrun.RequirePrivileges(t)
	topo := build(t, twoByTwo(topology.Native))
	before := runNetns(t, topo.Prefix)
	cases := []struct {
		name string
		spec topology.PodSpec
	}{
		{"duplicate key", topology.PodSpec{Key: "default/a0", Node: "node-a", IPv4: ip("10.0.9.1")}},
		{"duplicate address", topology.PodSpec{Key: "x/dup", Node: "node-a", IPv4: ip("10.0.2.10")}},
		{"node address", topology.PodSpec{Key: "x/node", Node: "node-a", IPv4: ip("192.168.0.12")}},
		{"unknown node", topology.PodSpec{Key: "x/nonode", Node: "node-z", IPv4: ip("10.0.9.2")}},
		{"IPv6 in the IPv4 field", topology.PodSpec{Key: "x/fam", Node: "node-a", IPv4: ip("fd00::9:1")}},
		{"no address", topology.PodSpec{Key: "x/none", Node: "node-a"}},
		{"pod gateway", topology.PodSpec{Key: "x/gw", Node: "node-a", IPv4: topology.PodGatewayV4}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := topo.AddPod(c.spec); !errors.Is(err, topology.ErrInvalidSpec) {
				t.Errorf("add pod: %v, want %v", err, topology.ErrInvalidSpec)
			}
			if got := runNetns(t, topo.Prefix); !slices.Equal(got, before) {
				t.Errorf("netns %v, want %v", got, before)
			}
		})
	}
	if err := topo.DeletePod("nobody/here"); !errors.Is(err, topology.ErrNotFound) {
		t.Errorf("delete unknown pod: %v, want %v", err, topology.ErrNotFound)
	}
}

// TestOwner checks who owns which address.
func TestOwner(t *testing.T) {
	testrun.RequirePrivileges(t)
	topo := build(t, twoByTwo(topology.Native))
	cases := []struct {
		addr       string
		kind, name string
	}{
		{"192.168.0.11", "node", "node-a"},
		{"fd00:0:0:1::12", "node", "node-b"},
		{"10.0.2.11", "pod", "default/b1"},
		{"fd00::1:10", "pod", "default/a0"},
		{"::ffff:10.0.1.11", "pod", "default/a1"},
		{"203.0.113.7", "external", "internet"},
		{"2001:db8::7", "external", "internet"},
		{"100.64.0.1", "fabric", "fabric"},
		{"fd00:fab::1", "fabric", "fabric"},
		{"10.0.3.1", "", ""},
		{"fd00::3:1", "", ""},
	}
	for _, c := range cases {
		kind, name, ok := topo.Owner(ip(c.addr))
		if kind != c.kind || name != c.name || ok != (c.kind != "") {
			t.Errorf("owner of %s: %q %q %v, want %q %q", c.addr, kind, name, ok, c.kind, c.name)
		}
	}
	if _, _, ok := topo.Owner(netip.Addr{}); ok {
		t.Errorf("the invalid address has an owner")
	}
}

// TestConcurrentBuilds builds two topologies at once: their names differ
// and each works.
func TestConcurrentBuilds(t *testing.T) {
	testrun.RequirePrivileges(t)
	var wg sync.WaitGroup
	topos := make([]*topology.Topology, 2)
	errs := make([]error, 2)
	for i := range topos {
		wg.Go(func() { topos[i], errs[i] = topology.Build(context.Background(), twoByTwo(topology.Tunnel)) })
	}
	wg.Wait()
	for i, topo := range topos {
		if topo != nil {
			t.Cleanup(func() {
				if err := topo.Close(); err != nil {
					t.Errorf("close: %v", err)
				}
			})
		}
		if errs[i] != nil {
			t.Fatalf("build %d: %v", i, errs[i])
		}
	}
	if topos[0].Prefix == topos[1].Prefix {
		t.Fatalf("both builds have prefix %s", topos[0].Prefix)
	}
	names := map[string]bool{}
	for _, topo := range topos {
		for _, n := range runNetns(t, topo.Prefix) {
			if names[n] {
				t.Errorf("netns %s twice", n)
			}
			names[n] = true
		}
		if _, _, err := exchange(at(t, topo, "default/a0", true), at(t, topo, "default/b0", true), 2*time.Second); err != nil {
			t.Errorf("%s: %v", topo.Prefix, err)
		}
	}
	if len(names) != 2*8 {
		t.Errorf("%d netns, want 16", len(names))
	}
}

// TestClose checks that Close removes every netns, is idempotent, and
// that a closed topology refuses changes.
func TestClose(t *testing.T) {
	testrun.RequirePrivileges(t)
	topo, err := topology.Build(context.Background(), twoByTwo(topology.Tunnel))
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	t.Cleanup(func() { topo.Close() })
	if got := len(runNetns(t, topo.Prefix)); got != 8 {
		t.Fatalf("%d netns, want 8", got)
	}
	for i := range 2 {
		if err := topo.Close(); err != nil {
			t.Errorf("close %d: %v", i, err)
		}
	}
	if left := runNetns(t, topo.Prefix); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
	if _, err := topo.AddPod(topology.PodSpec{Key: "x/y", Node: "node-a", IPv4: ip("10.0.9.9")}); !errors.Is(err, topology.ErrClosed) {
		t.Errorf("add pod after close: %v, want %v", err, topology.ErrClosed)
	}
	if err := topo.DeletePod("default/a0"); !errors.Is(err, topology.ErrClosed) {
		t.Errorf("delete pod after close: %v, want %v", err, topology.ErrClosed)
	}
}

// TestClean leaves a run behind (no Close) and removes it with Clean,
// leaving another run alone.
func TestClean(t *testing.T) {
	testrun.RequirePrivileges(t)
	keep := build(t, twoByTwo(topology.Native))
	leftover, err := topology.Build(context.Background(), twoByTwo(topology.Native))
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	t.Cleanup(func() {
		// Close after Clean: nothing left to do, and no error.
		if err := leftover.Close(); err != nil {
			t.Errorf("close after clean: %v", err)
		}
	})
	want := runNetns(t, leftover.Prefix)
	keepNames := runNetns(t, keep.Prefix)
	if len(want) != 8 {
		t.Fatalf("leftover has %d netns, want 8", len(want))
	}
	var asked []string
	removed, err := topology.Clean(func(prefix string) bool {
		asked = append(asked, prefix)
		return prefix == leftover.Prefix
	})
	if err != nil {
		t.Fatalf("clean: %v", err)
	}
	if !slices.Equal(removed, want) {
		t.Errorf("removed %v, want %v", removed, want)
	}
	if !slices.Contains(asked, leftover.Prefix) || !slices.Contains(asked, keep.Prefix) {
		t.Errorf("clean asked about %v, want both %s and %s", asked, leftover.Prefix, keep.Prefix)
	}
	if left := runNetns(t, leftover.Prefix); len(left) > 0 {
		t.Errorf("clean left %v", left)
	}
	if got := runNetns(t, keep.Prefix); !slices.Equal(got, keepNames) {
		t.Errorf("clean touched another run: %v, want %v", got, keepNames)
	}
	if _, _, err := exchange(at(t, keep, "default/a0", false), at(t, keep, "default/b1", false), 2*time.Second); err != nil {
		t.Errorf("the run clean kept does not work: %v", err)
	}
}

// TestBuildErrors checks that invalid specs fail with ErrInvalidSpec, and
// that a build failing halfway (a netns name taken, a cancelled context)
// removes what it made.
func TestBuildErrors(t *testing.T) {
	testrun.RequirePrivileges(t)
	ok := twoByTwo(topology.Native)
	mutate := func(f func(s *topology.Spec)) topology.Spec {
		s := twoByTwo(topology.Native)
		s.Nodes = slices.Clone(s.Nodes)
		s.Pods = slices.Clone(s.Pods)
		s.Externals = slices.Clone(s.Externals)
		f(&s)
		return s
	}
	invalid := []struct {
		name string
		spec topology.Spec
	}{
		{"bad mode", mutate(func(s *topology.Spec) { s.Mode = "bgp" })},
		{"duplicate node", mutate(func(s *topology.Spec) { s.Nodes[1].Name = "node-a" })},
		{"duplicate address", mutate(func(s *topology.Spec) { s.Externals[0].IPv4 = s.Pods[0].IPv4 })},
		{"gateway address", mutate(func(s *topology.Spec) { s.Nodes[0].IPv6 = topology.GatewayV6 })},
		{"unknown node", mutate(func(s *topology.Spec) { s.Pods[0].Node = "node-z" })},
		{"IPv6 pod on an IPv4 node", mutate(func(s *topology.Spec) { s.Nodes[0].IPv6 = netip.Addr{} })},
		{"node without address", mutate(func(s *topology.Spec) { s.Nodes[0] = topology.NodeSpec{Name: "node-a"} })},
		{"loopback", mutate(func(s *topology.Spec) { s.Externals[0].IPv4 = ip("127.0.0.2") })},
	}
	for _, c := range invalid {
		t.Run(c.name, func(t *testing.T) {
			c.spec.Prefix = topology.NewPrefix()
			topo, err := topology.Build(context.Background(), c.spec)
			if err == nil {
				topo.Close()
			}
			if !errors.Is(err, topology.ErrInvalidSpec) {
				t.Errorf("build: %v, want %v", err, topology.ErrInvalidSpec)
			}
			if left := runNetns(t, c.spec.Prefix); len(left) > 0 {
				t.Errorf("left behind: %v", left)
			}
		})
	}
	t.Run("netns taken", func(t *testing.T) {
		// A netns of the run's name exists: the build fails when it gets
		// there, removes what it made, and leaves the other netns alone.
		prefix := topology.NewPrefix()
		taken := prefix + "-p1"
		if err := topology.Do(mustNamed(t, taken), func() error { return nil }); err != nil {
			t.Fatal(err)
		}
		s := ok
		s.Prefix = prefix
		topo, err := topology.Build(context.Background(), s)
		if err == nil {
			topo.Close()
			t.Fatalf("build succeeded with %s taken", taken)
		}
		if !errors.Is(err, os.ErrExist) {
			t.Errorf("build: %v, want %v", err, os.ErrExist)
		}
		if left := runNetns(t, prefix); !slices.Equal(left, []string{taken}) {
			t.Errorf("netns left %v, want only %s", left, taken)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		s := ok
		s.Prefix = topology.NewPrefix()
		if _, err := topology.Build(ctx, s); !errors.Is(err, context.Canceled) {
			t.Errorf("build: %v, want %v", err, context.Canceled)
		}
		if left := runNetns(t, s.Prefix); len(left) > 0 {
			t.Errorf("left behind: %v", left)
		}
	})
}

// mustNamed makes an empty named netns, removed when the test ends.
func mustNamed(t *testing.T, name string) string {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		// This thread stays in the new netns and ends with the goroutine.
		runtime.LockOSThread()
		ns, err := netns.NewNamed(name)
		if err == nil {
			ns.Close()
		}
		done <- err
	}()
	if err := <-done; err != nil {
		t.Fatalf("create netns %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("delete netns %s: %v", name, err)
		}
	})
	return name
}

// TestDo checks that Do runs fn in the netns, returns its error, and
// restores the thread's netns.
func TestDo(t *testing.T) {
	testrun.RequirePrivileges(t)
	topo := build(t, topology.Spec{Mode: topology.Native, Nodes: []topology.NodeSpec{{Name: "n", IPv4: ip("192.168.0.1")}}})
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	sentinel := errors.New("from fn")
	err = topology.Do(topo.Nodes[0].Netns, func() error {
		cur, err := netns.Get()
		if err != nil {
			return err
		}
		defer cur.Close()
		if cur.Equal(orig) {
			return errors.New("fn runs in the original netns")
		}
		if _, err := netlink.LinkByName(topology.Eth0Name); err != nil {
			return fmt.Errorf("no eth0 in the node netns: %w", err)
		}
		return sentinel
	})
	if !errors.Is(err, sentinel) {
		t.Errorf("do: %v, want %v", err, sentinel)
	}
	cur, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer cur.Close()
	if !cur.Equal(orig) {
		t.Errorf("Do did not restore the netns")
	}
	if err := topology.Do(topo.Prefix+"-nothere", func() error { return nil }); err == nil {
		t.Errorf("do in a missing netns: no error")
	}
}

// TestBuildTime builds 3 nodes × 10 pods (and 2 externals) and reports
// how long it takes.
func TestBuildTime(t *testing.T) {
	testrun.RequirePrivileges(t)
	for _, mode := range []topology.Mode{topology.Tunnel, topology.Native} {
		s := topology.Spec{Mode: mode}
		for i := range 3 {
			s.Nodes = append(s.Nodes, topology.NodeSpec{Name: fmt.Sprintf("node-%d", i),
				IPv4: netip.AddrFrom4([4]byte{192, 168, 0, byte(10 + i)}), IPv6: ip(fmt.Sprintf("fd00:0:0:1::%d", 10+i))})
		}
		for i := range 10 {
			s.Pods = append(s.Pods, topology.PodSpec{Key: fmt.Sprintf("default/p%d", i), Node: fmt.Sprintf("node-%d", i%3),
				IPv4: netip.AddrFrom4([4]byte{10, 0, byte(i % 3), byte(10 + i)}), IPv6: ip(fmt.Sprintf("fd00::%d:%d", i%3, 10+i))})
		}
		s.Externals = []topology.ExternalSpec{{Name: "world", IPv4: ip("203.0.113.7"), IPv6: ip("2001:db8::7")}}
		start := time.Now()
		topo, err := topology.Build(context.Background(), s)
		took := time.Since(start)
		if err != nil {
			t.Fatalf("build: %v", err)
		}
		start = time.Now()
		if err := topo.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		t.Logf("%s: build 3 nodes + 10 pods + 1 external: %v; close: %v", mode, took, time.Since(start))
		if took > 3*time.Second {
			t.Errorf("%s: build took %v, want well under 2s", mode, took)
		}
	}
}

func familyOf(a netip.Addr) int {
	if a.Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

func hostNet(a netip.Addr) *net.IPNet {
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(a.BitLen(), a.BitLen())}
}

// TestPrefix checks the format of prefixes and PrefixPID.
func TestPrefix(t *testing.T) {
	a, b := topology.NewPrefix(), topology.NewPrefix()
	if a == b {
		t.Errorf("two prefixes %s", a)
	}
	for _, p := range []string{a, b} {
		if pid, ok := topology.PrefixPID(p); !ok || pid != os.Getpid() {
			t.Errorf("PrefixPID(%s) = %d %v, want %d", p, pid, ok, os.Getpid())
		}
	}
	for _, bad := range []string{"cilia-12", "cilia-x-1", "cilia-12-x", "other-12-1", "cilia--1", "cilia-0-1"} {
		if pid, ok := topology.PrefixPID(bad); ok {
			t.Errorf("PrefixPID(%s) = %d, want not a prefix", bad, pid)
		}
	}
	if got := topology.NetnsPath("cilia-1-2-f"); got != "/var/run/netns/cilia-1-2-f" {
		t.Errorf("NetnsPath = %s", got)
	}
}
