package datapath

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// loadNodeObject loads the collection in obj configured with the node's
// NodeConfig and s, sharing every node-wide map it uses, into objs.
func (n *Node) loadNodeObject(name string, obj []byte, s Settings, objs any) error {
	spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(obj))
	if err != nil {
		return fmt.Errorf("load %s spec: %w", name, err)
	}
	if err := setSettings(spec, n.opts.Config, EndpointConfig{}, s); err != nil {
		return err
	}
	repl := map[string]*ebpf.Map{}
	for mname, m := range n.Maps {
		ms, ok := spec.Maps[mname]
		if !ok {
			continue
		}
		// The node's maps were made from lxc.o's spec with NodeOptions'
		// overrides applied; make this object's spec agree. (Maps only
		// host.o has were made from its own spec.)
		if ns := n.spec.Maps[mname]; ns != nil {
			ms.Type, ms.MaxEntries, ms.Flags = ns.Type, ns.MaxEntries, ns.Flags
		}
		repl[mname] = m
	}
	if err := spec.LoadAndAssign(objs, &ebpf.CollectionOptions{MapReplacements: repl}); err != nil {
		return fmt.Errorf("load %s programs: %w", name, privilegeError(err))
	}
	return nil
}

// Host is the node's uplink programs (bpf/host.c).
type Host struct {
	// FromNetdev runs on tcx ingress of the uplink: packets from the
	// network.
	FromNetdev *ebpf.Program
	// ToNetdev runs on tcx egress of the uplink: packets leaving the node.
	ToNetdev *ebpf.Program
	links    []link.Link
}

// LoadHost loads from_netdev and to_netdev configured with the node's
// NodeConfig and s, sharing the node's maps.
func (n *Node) LoadHost(s Settings) (*Host, error) {
	var objs hostPrograms
	if err := n.loadNodeObject("host", _HostBytes, s, &objs); err != nil {
		return nil, err
	}
	return &Host{FromNetdev: objs.FromNetdev, ToNetdev: objs.ToNetdev}, nil
}

// Attach attaches from_netdev to tcx ingress and to_netdev to tcx egress of
// ifindex (the uplink). With pinDir set the links are pinned there as
// from_netdev_<ifindex> and to_netdev_<ifindex>, and links pinned by an
// earlier run are updated in place (see Endpoint.Attach).
func (h *Host) Attach(ifindex int, pinDir string) error {
	return attachTCX(&h.links, ifindex, pinDir, []tcxAttachment{
		{h.FromNetdev, ebpf.AttachTCXIngress, fmt.Sprintf("from_netdev_%d", ifindex)},
		{h.ToNetdev, ebpf.AttachTCXEgress, fmt.Sprintf("to_netdev_%d", ifindex)},
	})
}

// Detach removes the host's tcx links (and their pins).
func (h *Host) Detach() error {
	err := detachLinks(h.links)
	h.links = nil
	return err
}

// Close releases the programs. Attached links are closed too (a pinned
// link stays attached).
func (h *Host) Close() error {
	for _, l := range h.links {
		l.Close()
	}
	return errors.Join(h.FromNetdev.Close(), h.ToNetdev.Close())
}

// Overlay is the VXLAN device's program (bpf/overlay.c).
type Overlay struct {
	// FromOverlay runs on tcx ingress of the VXLAN device (collect_md):
	// decapsulated packets with their tunnel key.
	FromOverlay *ebpf.Program
	links       []link.Link
}

// LoadOverlay loads from_overlay configured with the node's NodeConfig and
// s, sharing the node's maps.
func (n *Node) LoadOverlay(s Settings) (*Overlay, error) {
	var objs overlayPrograms
	if err := n.loadNodeObject("overlay", _OverlayBytes, s, &objs); err != nil {
		return nil, err
	}
	return &Overlay{FromOverlay: objs.FromOverlay}, nil
}

// Attach attaches from_overlay to tcx ingress of ifindex (the VXLAN
// device). With pinDir set the link is pinned there as
// from_overlay_<ifindex>, and a link pinned by an earlier run is updated in
// place.
func (o *Overlay) Attach(ifindex int, pinDir string) error {
	return attachTCX(&o.links, ifindex, pinDir, []tcxAttachment{
		{o.FromOverlay, ebpf.AttachTCXIngress, fmt.Sprintf("from_overlay_%d", ifindex)},
	})
}

// Detach removes the overlay's tcx link (and its pin).
func (o *Overlay) Detach() error {
	err := detachLinks(o.links)
	o.links = nil
	return err
}

// Close releases the program. An attached link is closed too (a pinned
// link stays attached).
func (o *Overlay) Close() error {
	for _, l := range o.links {
		l.Close()
	}
	return o.FromOverlay.Close()
}

// Shim returns a TunnelShim in front of o's from_overlay (NewTunnelShim).
func (o *Overlay) Shim() (*TunnelShim, error) { return NewTunnelShim(o) }

// ShimNoKey in CB[0] tells the tunnel shim to set no tunnel key.
const ShimNoKey uint32 = 0xffffffff

// TunnelShim is the simulator's stand-in for the VXLAN device
// (bpf/tunnel_shim.c): never attached, only test-run. Run Program with
// skb->cb[0] = VNI, cb[1] = outer source IPv4 (network order), cb[2] =
// outer destination; it sets that tunnel key and tail-calls from_overlay,
// which then sees the key as if the device had decapsulated the packet.
// cb[0] = ShimNoKey runs from_overlay without a key.
type TunnelShim struct {
	Program *ebpf.Program
	// Jump is the program array whose slot 0 holds from_overlay.
	Jump *ebpf.Map
}

// NewTunnelShim loads the shim and puts ov's from_overlay in its jump map.
func NewTunnelShim(ov *Overlay) (*TunnelShim, error) {
	spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(_TunnelShimBytes))
	if err != nil {
		return nil, fmt.Errorf("load tunnel shim spec: %w", err)
	}
	var objs tunnelShimObjects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		return nil, fmt.Errorf("load tunnel shim: %w", privilegeError(err))
	}
	if err := objs.CiliaShimJmp.Put(uint32(0), ov.FromOverlay); err != nil {
		objs.Close()
		return nil, fmt.Errorf("put from_overlay into the shim's jump map: %w", err)
	}
	return &TunnelShim{Program: objs.TunnelShim, Jump: objs.CiliaShimJmp}, nil
}

// Close releases the shim's program and jump map.
func (s *TunnelShim) Close() error {
	return errors.Join(s.Program.Close(), s.Jump.Close())
}
