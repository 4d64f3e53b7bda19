package agent

import (
	"net/netip"
	"testing"
)

func TestTunnelEndpoints(t *testing.T) {
	n1, n2 := netip.MustParseAddr("192.168.0.11"), netip.MustParseAddr("192.168.0.12")
	pod1, pod2 := netip.MustParsePrefix("10.244.1.10/32"), netip.MustParsePrefix("10.244.2.10/32")
	tests := []struct {
		name   string
		tunnel bool
		// want[node][prefix] is the tunnel endpoint that node's ipcache
		// holds for prefix (absent: none).
		want map[string]map[netip.Prefix]netip.Addr
	}{
		{"native routing", false, map[string]map[netip.Prefix]netip.Addr{"n1": {}, "n2": {}}},
		{"tunnel", true, map[string]map[netip.Prefix]netip.Addr{"n1": {pod2: n2}, "n2": {pod1: n1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := NewWithOptions(Options{Tunnel: tt.tunnel})
			dps := map[string]*MemoryDatapath{"n1": NewMemoryDatapath(), "n2": NewMemoryDatapath()}
			must(t, a.AddNode(Node{Name: "n1", IPv4: n1}, dps["n1"]))
			must(t, a.AddNode(Node{Name: "n2", IPv4: n2}, dps["n2"]))
			must(t, a.SetNamespace("x", nil))
			must(t, a.AddPod(Pod{Namespace: "x", Name: "a", Node: "n1", IPv4: pod1.Addr()}))
			must(t, a.AddPod(Pod{Namespace: "x", Name: "b", Node: "n2", IPv4: pod2.Addr()}))
			for node, want := range tt.want {
				got := dps[node].Tunnels
				if len(got) != len(want) {
					t.Errorf("%s: tunnel endpoints %v, want %v", node, got, want)
				}
				for p, tep := range want {
					if got[p] != tep {
						t.Errorf("%s: tunnel endpoint of %s = %v, want %v", node, p, got[p], tep)
					}
				}
			}
			// The pod leaves: its entry, tunnel endpoint included, goes.
			must(t, a.DeletePod("x/b"))
			if tep, ok := dps["n1"].Tunnels[pod2]; ok {
				t.Errorf("n1 still has tunnel endpoint %v for a deleted pod", tep)
			}
		})
	}
}
