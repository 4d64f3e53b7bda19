package testrun

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/ciliaproject/cilia/datapath"
)

// LoadHost loads the node's uplink programs (from_netdev, to_netdev) with
// the harness's node configuration and settings; they are closed with the
// harness. Run them with FromNetdev and ToNetdev, or Run.
func (h *Harness) LoadHost() (*datapath.Host, error) {
	dh, err := h.Node.LoadHost(h.settings)
	if err != nil {
		return nil, err
	}
	h.closers = append(h.closers, dh)
	return dh, nil
}

// LoadOverlay loads from_overlay with the harness's node configuration and
// settings; it is closed with the harness. BPF_PROG_TEST_RUN gives it no
// tunnel key: run it through a tunnel shim (LoadTunnelShim, FromOverlay).
func (h *Harness) LoadOverlay() (*datapath.Overlay, error) {
	do, err := h.Node.LoadOverlay(h.settings)
	if err != nil {
		return nil, err
	}
	h.closers = append(h.closers, do)
	return do, nil
}

// LoadTunnelShim loads a tunnel shim in front of ov's from_overlay; it is
// closed with the harness.
func (h *Harness) LoadTunnelShim(ov *datapath.Overlay) (*datapath.TunnelShim, error) {
	shim, err := datapath.NewTunnelShim(ov)
	if err != nil {
		return nil, err
	}
	h.closers = append(h.closers, shim)
	return shim, nil
}

// FromNetdev runs host's from_netdev on pkt (a packet from the network).
func (h *Harness) FromNetdev(host *datapath.Host, pkt []byte) (Result, error) {
	return h.Run("from_netdev", host.FromNetdev, pkt, RunContext{})
}

// ToNetdev runs host's to_netdev on pkt (a packet leaving the node).
func (h *Harness) ToNetdev(host *datapath.Host, pkt []byte) (Result, error) {
	return h.Run("to_netdev", host.ToNetdev, pkt, RunContext{})
}

// TunnelKey is what the VXLAN device would hand from_overlay: the VNI and
// the outer addresses of the packet it decapsulated.
type TunnelKey struct {
	VNI uint32
	// Remote is the outer source (the sending node), Local the outer
	// destination (this node); IPv4 only.
	Remote, Local netip.Addr
}

// ShimContext returns the skb state with which the tunnel shim hands key
// to from_overlay (skb->cb, bpf/tunnel_shim.c); a nil key makes it hand no
// tunnel key at all.
func ShimContext(key *TunnelKey) RunContext {
	in := RunContext{}
	in.CB[0] = datapath.ShimNoKey
	if key != nil {
		in.CB[0] = key.VNI
		in.CB[1] = be32(key.Remote)
		in.CB[2] = be32(key.Local)
	}
	return in
}

// FromOverlay runs from_overlay through shim on the inner frame pkt as if
// the VXLAN device had decapsulated it with key (nil: no tunnel key).
func (h *Harness) FromOverlay(shim *datapath.TunnelShim, pkt []byte, key *TunnelKey) (Result, error) {
	return h.Run("from_overlay", shim.Program, pkt, ShimContext(key))
}

// be32 returns an IPv4 address as a __be32 would read on this host
// (network order in memory); 0 for anything else.
func be32(a netip.Addr) uint32 {
	if !a.Unmap().Is4() {
		return 0
	}
	b := a.Unmap().As4()
	return binary.NativeEndian.Uint32(b[:])
}

// ToContainerWith runs the endpoint's to_container on pkt with the skb
// state in (the mark a previous program left, for example).
func (e *Endpoint) ToContainerWith(pkt []byte, in RunContext) (Result, error) {
	return e.h.Run("to_container", e.Endpoint.ToContainer, pkt, in)
}

// Deliver continues the walk of a packet a node-level program (from_overlay,
// from_netdev) redirected to a local endpoint: the endpoint's
// to_container, with the mark r left. r itself is the first hop.
func (h *Harness) Deliver(r Result) (Path, error) {
	p := Path{Hops: []Result{r}}
	if r.Code != ActRedirect {
		return p, nil
	}
	to := h.EndpointByAddr(dstAddr(r.Packet))
	if t, ok := r.Trace(); ok {
		to = h.EndpointByIfindex(t.Ifindex)
	}
	if to == nil {
		return p, fmt.Errorf("deliver: redirect of %s to no endpoint", r.Program)
	}
	rr, err := to.ToContainerWith(r.Packet, RunContext{Mark: r.Mark})
	if err != nil {
		return p, err
	}
	p.Hops = append(p.Hops, rr)
	if rr.Code == ActOK && rr.Mark == 0 {
		p.Delivered, p.Packet = true, rr.Packet
	}
	return p, nil
}
