package service

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/ciliaproject/cilia/datapath/maps"
)

// nullDatapath accepts every write.
type nullDatapath struct{}

func (nullDatapath) PutLBBackend(uint32, maps.LBBackend) error     { return nil }
func (nullDatapath) DeleteLBBackend(uint32) error                  { return nil }
func (nullDatapath) PutLBService(maps.LBKey, maps.LBService) error { return nil }
func (nullDatapath) DeleteLBService(maps.LBKey) error              { return nil }
func (nullDatapath) PutLBRevNat(uint32, maps.LBRevNat) error       { return nil }
func (nullDatapath) DeleteLBRevNat(uint32) error                   { return nil }
func (nullDatapath) PutLBMaglev(uint32, []uint32) error            { return nil }
func (nullDatapath) DeleteLBMaglev(uint32) error                   { return nil }

// BenchmarkManagerPodChange measures one backend change (a pod's
// terminating flag toggled) with N ClusterIP services of 3 backends each
// in the pod's namespace, on 2 nodes: the manager recomputes the
// namespace's services and diffs every node's maps.
func BenchmarkManagerPodChange(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			m, err := NewManager(Options{})
			if err != nil {
				b.Fatal(err)
			}
			for _, nd := range []Node{node1, node2} {
				if err := m.AddNode(nd, nullDatapath{}); err != nil {
					b.Fatal(err)
				}
			}
			for i := range n {
				app := map[string]string{"app": fmt.Sprint(i)}
				for j := range 3 {
					p := Pod{Namespace: "x", Name: fmt.Sprintf("p%d-%d", i, j), Node: "node-1", Labels: app,
						IPv4: netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), byte(j + 1)})}
					if err := m.UpsertPod(p); err != nil {
						b.Fatal(err)
					}
				}
				s := Service{Namespace: "x", Name: fmt.Sprint(i), Selector: app,
					ClusterIPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)})},
					Ports:      []Port{{Port: 80, Proto: ProtoTCP}}}
				if err := m.UpsertService(s); err != nil {
					b.Fatal(err)
				}
			}
			term := false
			for b.Loop() {
				term = !term
				if err := m.SetPodTerminating("x/p0-0", term); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
