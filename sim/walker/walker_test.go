package walker_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/ciliaproject/cilia/conformance/scenario"
	dptestrun "github.com/ciliaproject/cilia/datapath/testrun"
	"github.com/ciliaproject/cilia/sim/cluster"
	"github.com/ciliaproject/cilia/sim/topology"
	"github.com/ciliaproject/cilia/sim/walker"
)

// newCluster builds testdata/two-nodes.yaml in mode and closes it when the
// test ends.
func newCluster(t *testing.T, mode topology.Mode) *cluster.Cluster {
	t.Helper()
	dptestrun.RequirePrivileges(t)
	sc, err := scenario.Load("testdata/two-nodes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := cluster.New(context.Background(), sc, cluster.Options{Mode: mode})
	if err != nil {
		t.Fatalf("build cluster: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close cluster: %v", err)
		}
	})
	return c
}

// hooks renders a walk's hops as "node:hook" (fabric hops as "fabric").
func hooks(w *walker.Walk) string {
	var out []string
	for _, h := range w.Hops {
		if h.Node == "" {
			out = append(out, string(h.Hook))
			continue
		}
		out = append(out, h.Node+":"+string(h.Hook))
	}
	return strings.Join(out, " ")
}

// frameFrom crafts a TCP SYN (or a reply) between two addresses with the
// MACs of the sending pod.
func podFrame(c *cluster.Cluster, pod string, src, dst netip.AddrPort, flags dptestrun.TCPFlags) []byte {
	f := dptestrun.TCP(src, dst, flags, nil)
	p := c.Topology.Pods[pod]
	copy(f[0:6], p.HostVeth.MAC)
	copy(f[6:12], p.Eth0.MAC)
	return f
}

func TestWalkPaths(t *testing.T) {
	for _, mode := range []topology.Mode{topology.Tunnel, topology.Native} {
		t.Run(string(mode), func(t *testing.T) {
			c := newCluster(t, mode)
			st := c.State()
			client, _ := st.Pod("x/client")
			server, _ := st.Pod("x/server")
			crossNode := "n1:from-container n1:vxlan-encap n1:stack n1:to-netdev fabric n2:from-netdev n2:vxlan-decap n2:from-overlay n2:to-container"
			if mode == topology.Native {
				crossNode = "n1:from-container n1:stack n1:to-netdev fabric n2:from-netdev n2:to-container"
			}
			tests := []struct {
				name    string
				entry   string
				frame   func() []byte
				hooks   string
				outcome walker.Outcome
				at      string
				reason  string
			}{
				{"pod to pod across nodes, allowed", "pod:x/client", func() []byte {
					return podFrame(c, "x/client", netip.AddrPortFrom(client.IPv4, 40000), netip.AddrPortFrom(server.IPv4, 80), dptestrun.SYN)
				}, crossNode, walker.Delivered, "pod x/server", ""},
				{"pod to pod across nodes, IPv6", "pod:x/client", func() []byte {
					return podFrame(c, "x/client", netip.AddrPortFrom(client.IPv6, 40000), netip.AddrPortFrom(server.IPv6, 80), dptestrun.SYN)
				}, crossNode, walker.Delivered, "pod x/server", ""},
				{"pod to pod across nodes, denied port", "pod:x/client", func() []byte {
					return podFrame(c, "x/client", netip.AddrPortFrom(client.IPv4, 40001), netip.AddrPortFrom(server.IPv4, 81), dptestrun.SYN)
				}, crossNode, walker.Dropped, "", "POLICY_DENIED"},
				{"world to pod", "fabric", func() []byte {
					return dptestrun.TCP(netip.MustParseAddrPort("203.0.113.7:5555"), netip.AddrPortFrom(server.IPv4, 80), dptestrun.SYN, nil)
				}, "fabric n2:from-netdev n2:to-container", walker.Dropped, "", "POLICY_DENIED"},
				{"remote node to pod", "host:n1", func() []byte {
					n1 := c.Topology.Node("n1")
					return dptestrun.TCP(netip.AddrPortFrom(n1.IPv4, 5555), netip.AddrPortFrom(server.IPv4, 80), dptestrun.SYN, nil)
				}, "n1:stack n1:to-netdev fabric n2:from-netdev n2:to-container", walker.Delivered, "pod x/server", ""},
				{"pod to world", "pod:x/client", func() []byte {
					return podFrame(c, "x/client", netip.AddrPortFrom(client.IPv4, 40002), netip.MustParseAddrPort("203.0.113.7:443"), dptestrun.SYN)
				}, "n1:from-container n1:stack n1:to-netdev fabric", walker.LeftCluster, "external world", ""},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					entry, err := c.Walker.ParseEntry(tt.entry)
					if err != nil {
						t.Fatal(err)
					}
					w, err := c.Walker.Walk(entry, tt.frame())
					if err != nil {
						t.Fatalf("walk: %v", err)
					}
					if got := hooks(w); got != tt.hooks {
						t.Errorf("hops\n got %s\nwant %s\n%s", got, tt.hooks, w)
					}
					if w.Outcome != tt.outcome || (tt.at != "" && w.At != tt.at) {
						t.Errorf("outcome %s at %q, want %s at %q\n%s", w.Outcome, w.At, tt.outcome, tt.at, w)
					}
					if tt.reason != "" && (w.Drop == nil || w.Drop.Reason.String() != tt.reason) {
						t.Errorf("drop %v, want reason %s\n%s", w.Drop, tt.reason, w)
					}
				})
			}
		})
	}
}

// TestOverlayCarriesIdentity checks the packet on the fabric: VXLAN to the
// server's node with the client's identity in the VNI, and that the
// receiving node takes the identity from the VNI.
func TestOverlayCarriesIdentity(t *testing.T) {
	c := newCluster(t, topology.Tunnel)
	st := c.State()
	client, _ := st.Pod("x/client")
	server, _ := st.Pod("x/server")
	w, err := c.Walker.Walk(walker.Entry{Node: "n1", Hook: walker.FromContainer, Pod: "x/client"},
		podFrame(c, "x/client", netip.AddrPortFrom(client.IPv4, 40000), netip.AddrPortFrom(server.IPv4, 80), dptestrun.SYN))
	if err != nil {
		t.Fatal(err)
	}
	var fabric *walker.Hop
	for i := range w.Hops {
		if w.Hops[i].Hook == walker.Fabric {
			fabric = &w.Hops[i]
		}
	}
	if fabric == nil {
		t.Fatalf("no fabric hop:\n%s", w)
	}
	src, dst := dptestrun.FrameAddrs(fabric.Packet)
	n1, n2 := c.Topology.Node("n1"), c.Topology.Node("n2")
	if src != n1.IPv4 || dst != n2.IPv4 {
		t.Errorf("outer addresses %s -> %s, want %s -> %s", src, dst, n1.IPv4, n2.IPv4)
	}
	vni, ok := walker.VNI(fabric.Packet)
	ident, err := c.Agent.PodIdentity("x/client")
	if err != nil {
		t.Fatal(err)
	}
	id := ident.ID
	if !ok || vni != uint32(id) {
		t.Errorf("VNI %d (vxlan %v), want the client's identity %d", vni, ok, id)
	}
	// The receiving programs report the VNI's identity as the source.
	last := w.Hops[len(w.Hops)-1]
	if len(last.Events) == 0 || last.Events[0].SrcIdentity != uint32(id) {
		t.Errorf("to_container events %v, want source identity %d", last.Events, id)
	}
	if got, _ := dptestrun.FrameAddrs(w.Packet); got != client.IPv4 {
		t.Errorf("delivered packet from %s, want %s", got, client.IPv4)
	}
}
