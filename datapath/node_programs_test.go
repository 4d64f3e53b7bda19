package datapath_test

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"

	"github.com/ciliaproject/cilia/datapath"
	"github.com/ciliaproject/cilia/datapath/testrun"
)

// TestHostOverlayAttach loads the uplink and overlay programs, attaches
// them to a dummy uplink and a collect_md VXLAN device, and detaches them
// again; the host's links are pinned and their pins removed on Detach.
func TestHostOverlayAttach(t *testing.T) {
	testrun.RequirePrivileges(t)
	testrun.FreshNetns(t)
	// A veth end as the uplink: this kernel may have no dummy driver.
	uplink := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "uplink0"}, PeerName: "uplink0p"}
	vxlan := &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "cilia_vxlan"}, FlowBased: true, Port: 8472}
	for _, l := range []netlink.Link{uplink, vxlan} {
		if err := netlink.LinkAdd(l); err != nil {
			t.Fatalf("add %s: %v", l.Attrs().Name, err)
		}
	}
	upIdx, err := datapath.LinkByName("uplink0")
	if err != nil {
		t.Fatal(err)
	}
	vxIdx, err := datapath.LinkByName("cilia_vxlan")
	if err != nil {
		t.Fatal(err)
	}
	node, err := datapath.NewNode(datapath.NodeOptions{IPCacheMaxEntries: 1024, Config: datapath.NodeConfig{
		IPv4: netip.MustParseAddr("192.168.0.1"), UplinkIfindex: uint32(upIdx), TunnelIfindex: uint32(vxIdx),
	}})
	if err != nil {
		t.Fatalf("NewNode: %v", err)
	}
	defer node.Close()
	host, err := node.LoadHost(datapath.Settings{})
	if err != nil {
		t.Fatalf("LoadHost: %v", err)
	}
	defer host.Close()
	ov, err := node.LoadOverlay(datapath.Settings{})
	if err != nil {
		t.Fatalf("LoadOverlay: %v", err)
	}
	defer ov.Close()

	pinDir := tempPinDir(t)
	if err := host.Attach(upIdx, pinDir); err != nil {
		t.Fatalf("Host.Attach: %v", err)
	}
	if err := ov.Attach(vxIdx, ""); err != nil {
		t.Fatalf("Overlay.Attach: %v", err)
	}
	assertAttached(t, upIdx, map[ebpf.AttachType]ebpf.ProgramID{
		ebpf.AttachTCXIngress: progID(t, host.FromNetdev), ebpf.AttachTCXEgress: progID(t, host.ToNetdev),
	})
	assertAttached(t, vxIdx, map[ebpf.AttachType]ebpf.ProgramID{ebpf.AttachTCXIngress: progID(t, ov.FromOverlay)})
	pins := []string{filepath.Join(pinDir, fmt.Sprintf("from_netdev_%d", upIdx)), filepath.Join(pinDir, fmt.Sprintf("to_netdev_%d", upIdx))}
	for _, p := range pins {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("link pin %s: %v", p, err)
		}
	}

	if err := host.Detach(); err != nil {
		t.Fatalf("Host.Detach: %v", err)
	}
	if err := ov.Detach(); err != nil {
		t.Fatalf("Overlay.Detach: %v", err)
	}
	assertAttached(t, upIdx, nil)
	assertAttached(t, vxIdx, nil)
	for _, p := range pins {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("link pin %s after Detach: %v, want it gone", p, err)
		}
	}
}

// TestTunnelShimNeedsOverlay: the shim's jump map takes from_overlay.
func TestTunnelShimNeedsOverlay(t *testing.T) {
	testrun.RequirePrivileges(t)
	node, err := datapath.NewNode(datapath.NodeOptions{IPCacheMaxEntries: 1024})
	if err != nil {
		t.Fatalf("NewNode: %v", err)
	}
	defer node.Close()
	ov, err := node.LoadOverlay(datapath.Settings{})
	if err != nil {
		t.Fatalf("LoadOverlay: %v", err)
	}
	defer ov.Close()
	shim, err := ov.Shim()
	if err != nil {
		t.Fatalf("Shim: %v", err)
	}
	defer shim.Close()
	var id uint32
	if err := shim.Jump.Lookup(uint32(0), &id); err != nil {
		t.Fatalf("jump map slot 0: %v", err)
	}
	if want := uint32(progID(t, ov.FromOverlay)); id != want {
		t.Errorf("jump map slot 0 holds program %d, want from_overlay %d", id, want)
	}
}

func progID(t *testing.T, p *ebpf.Program) ebpf.ProgramID {
	t.Helper()
	info, err := p.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := info.ID()
	return id
}

// TestHostSharesSNATMap checks that the node's SNAT state is node-wide:
// every load of the host programs uses the node's cilia_snat, so
// translations outlive a reload of the programs.
func TestHostSharesSNATMap(t *testing.T) {
	testrun.RequirePrivileges(t)
	node, err := datapath.NewNode(datapath.NodeOptions{IPCacheMaxEntries: 1024})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	snat := node.Maps[datapath.MapSNAT]
	if snat == nil {
		t.Fatalf("node has no %s map", datapath.MapSNAT)
	}
	info, err := snat.Info()
	if err != nil {
		t.Fatal(err)
	}
	want, ok := info.ID()
	if !ok {
		t.Fatal("map info has no ID")
	}
	for i := range 2 {
		h, err := node.LoadHost(datapath.Settings{})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range []*ebpf.Program{h.FromNetdev, h.ToNetdev} {
			pi, err := p.Info()
			if err != nil {
				t.Fatal(err)
			}
			ids, ok := pi.MapIDs()
			if !ok {
				t.Fatal("program info has no map IDs")
			}
			found := false
			for _, id := range ids {
				found = found || id == want
			}
			if !found {
				t.Errorf("load %d: program %s does not use the node's %s (map %d; uses %v)", i+1, pi.Name, datapath.MapSNAT, want, ids)
			}
		}
		h.Close()
	}
}
