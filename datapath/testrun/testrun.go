// Package testrun pushes packets through the datapath's programs with
// BPF_PROG_TEST_RUN and reports what happened: the return code, the packet
// as it left the program, the trace and drop events it emitted, and the
// state of the maps. Multi-packet exchanges (a TCP handshake, a request and
// its reply) between endpoints and external hosts are one call each.
package testrun

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/ciliaproject/cilia/datapath"
	"github.com/ciliaproject/cilia/datapath/events"
	"github.com/ciliaproject/cilia/datapath/maps"
)

// tc return codes (linux/pkt_cls.h).
const (
	ActOK       = 0
	ActShot     = 2
	ActRedirect = 7
)

// Options configure a Harness.
type Options struct {
	// Node configures the node maps; Node.Config is the node-wide
	// configuration (node addresses, uplink and tunnel ifindex) every
	// program of the harness is loaded with.
	Node     datapath.NodeOptions
	Settings datapath.Settings
}

// Harness owns a node's maps, its endpoints' programs and an events reader.
type Harness struct {
	Node      *datapath.Node
	settings  datapath.Settings
	events    *events.Reader
	endpoints []*Endpoint
	closers   []interface{ Close() error }
}

// New creates a harness with fresh node maps (not pinned unless
// opts.Node.PinDir says so).
func New(opts Options) (*Harness, error) {
	node, err := datapath.NewNode(opts.Node)
	if err != nil {
		return nil, err
	}
	rd, err := events.NewReader(node.Maps[datapath.MapEvents])
	if err != nil {
		node.Close()
		return nil, err
	}
	return &Harness{Node: node, settings: opts.Settings, events: rd}, nil
}

// Close releases every program and map of the harness.
func (h *Harness) Close() error {
	for _, ep := range h.endpoints {
		ep.Close()
	}
	for i := len(h.closers) - 1; i >= 0; i-- {
		h.closers[i].Close()
	}
	h.events.Close()
	return h.Node.Close()
}

// EndpointSpec describes an endpoint to add.
type EndpointSpec struct {
	ID       uint16
	Identity uint32
	IPv4     netip.Addr
	IPv6     netip.Addr
	// Ifindex of the host side of its veth; 0 picks 1000+ID.
	Ifindex uint32
	// MAC of the endpoint and of the host side of its veth; nil picks
	// 02:00:00:00:<id> and 02:00:00:ff:<id>.
	MAC, NodeMAC net.HardwareAddr
}

// Endpoint is an endpoint of the harness with its loaded programs.
type Endpoint struct {
	*datapath.Endpoint
	Spec EndpointSpec
	h    *Harness
}

// AddEndpoint loads the endpoint's programs and registers it in the
// endpoints map, the ipcache (its addresses map to its identity) and the
// policy state (no enforcement: allow all until SetEnforcement).
func (h *Harness) AddEndpoint(spec EndpointSpec) (*Endpoint, error) {
	if spec.Ifindex == 0 {
		spec.Ifindex = 1000 + uint32(spec.ID)
	}
	if spec.MAC == nil {
		spec.MAC = net.HardwareAddr{0x02, 0, 0, 0, byte(spec.ID >> 8), byte(spec.ID)}
	}
	if spec.NodeMAC == nil {
		spec.NodeMAC = net.HardwareAddr{0x02, 0, 0, 0xff, byte(spec.ID >> 8), byte(spec.ID)}
	}
	dep, err := h.Node.LoadEndpoint(datapath.EndpointConfig{
		ID: spec.ID, Identity: spec.Identity, Ifindex: spec.Ifindex, IPv4: spec.IPv4, IPv6: spec.IPv6,
	}, h.settings)
	if err != nil {
		return nil, err
	}
	ep := &Endpoint{Endpoint: dep, Spec: spec, h: h}
	h.endpoints = append(h.endpoints, ep)
	info := maps.EndpointInfo{Ifindex: spec.Ifindex, EndpointID: spec.ID, Identity: spec.Identity}
	copy(info.MAC[:], spec.MAC)
	copy(info.NodeMAC[:], spec.NodeMAC)
	for _, a := range []netip.Addr{spec.IPv4, spec.IPv6} {
		if !a.IsValid() {
			continue
		}
		key := maps.NewAddrKey(a)
		if err := h.Node.Maps[datapath.MapEndpoints].Put(&key, &info); err != nil {
			return nil, maps.WrapUpdateError("endpoints", err)
		}
		if err := h.SetIdentity(netip.PrefixFrom(a, a.BitLen()), spec.Identity); err != nil {
			return nil, err
		}
	}
	return ep, nil
}

// Endpoints returns the endpoints added so far.
func (h *Harness) Endpoints() []*Endpoint { return h.endpoints }

// EndpointByIfindex returns the endpoint whose host-side veth is ifindex.
func (h *Harness) EndpointByIfindex(ifindex uint32) *Endpoint {
	for _, ep := range h.endpoints {
		if ep.Spec.Ifindex == ifindex {
			return ep
		}
	}
	return nil
}

// EndpointByAddr returns the endpoint that owns addr.
func (h *Harness) EndpointByAddr(addr netip.Addr) *Endpoint {
	addr = addr.Unmap()
	for _, ep := range h.endpoints {
		if ep.Spec.IPv4 == addr || ep.Spec.IPv6 == addr {
			return ep
		}
	}
	return nil
}

// SetIdentity maps prefix to identity in the ipcache.
func (h *Harness) SetIdentity(prefix netip.Prefix, identity uint32) error {
	return h.Node.SetIPCache(prefix, maps.IPCacheEntry{Identity: identity})
}

// DeleteIdentity removes prefix from the ipcache.
func (h *Harness) DeleteIdentity(prefix netip.Prefix) error {
	return h.Node.DeleteIPCache(prefix)
}

// LookupCT returns the conntrack entry of key, if any.
func (h *Harness) LookupCT(key maps.Tuple) (maps.CTEntry, bool, error) {
	return h.Node.LookupCT(key)
}

// UpdateCT overwrites the conntrack entry of key (to age it, for example).
func (h *Harness) UpdateCT(key maps.Tuple, e maps.CTEntry) error {
	return h.Node.UpdateCT(key, e)
}

// CTEntries returns every conntrack entry.
func (h *Harness) CTEntries() (map[maps.Tuple]maps.CTEntry, error) {
	return h.Node.CTEntries()
}

// Metrics returns the metrics counters summed over CPUs.
func (h *Harness) Metrics() (map[events.MetricKey]maps.MetricsValue, error) {
	return events.ReadMetrics(h.Node.Maps[datapath.MapMetrics])
}

// Result is what one program run did to one packet.
type Result struct {
	Program string // "from_container" or "to_container"
	Code    int    // tc return code (ActOK, ActShot, ActRedirect)
	Packet  []byte // the packet as the program left it
	Mark    uint32 // skb->mark after the run
	Events  []events.Event
}

// Dropped reports whether the program dropped the packet.
func (r Result) Dropped() bool { return r.Code == ActShot }

// Drop returns the drop event of the run, if it emitted one.
func (r Result) Drop() (events.Event, bool) {
	for _, e := range r.Events {
		if e.IsDrop() {
			return e, true
		}
	}
	return events.Event{}, false
}

// Trace returns the trace event of the run, if it emitted one.
func (r Result) Trace() (events.Event, bool) {
	for _, e := range r.Events {
		if !e.IsDrop() {
			return e, true
		}
	}
	return events.Event{}, false
}

// String summarises the result for test failures.
func (r Result) String() string {
	return fmt.Sprintf("%s -> %d %v", r.Program, r.Code, r.Events)
}

// skbContext is the head of struct __sk_buff that BPF_PROG_TEST_RUN
// accepts in ctx_in, up to cb: len, pkt_type and everything between mark
// and priority, and between ifindex and cb, must be zero; mark, priority,
// ingress_ifindex, ifindex and cb are kept.
type skbContext struct {
	Len, PktType, Mark                uint32
	QueueMapping, Protocol            uint32
	VlanPresent, VlanTCI, VlanProto   uint32
	Priority, IngressIfindex, Ifindex uint32
	TCIndex                           uint32
	CB                                [5]uint32
}

// RunContext is the skb state a run starts with.
type RunContext struct {
	// Mark is skb->mark on entry.
	Mark uint32
	// CB is skb->cb (the tunnel shim reads its key there).
	CB [5]uint32
	// IngressIfindex is skb->ingress_ifindex; Ifindex is skb->ifindex,
	// which must be 0 or 1 or an interface of the current netns (the kernel
	// looks it up).
	IngressIfindex, Ifindex uint32
}

// encode lays out the skbContext of in as bytes, without reflection (the
// walker runs a program per hop of every packet).
func (in RunContext) encode() []byte {
	var b [unsafe.Sizeof(skbContext{})]byte
	put := func(off uintptr, v uint32) { binary.NativeEndian.PutUint32(b[off:], v) }
	var c skbContext
	put(unsafe.Offsetof(c.Mark), in.Mark)
	put(unsafe.Offsetof(c.IngressIfindex), in.IngressIfindex)
	put(unsafe.Offsetof(c.Ifindex), in.Ifindex)
	for i, v := range in.CB {
		put(unsafe.Offsetof(c.CB)+uintptr(4*i), v)
	}
	return b[:]
}

// skbSize is sizeof(struct __sk_buff): the kernel refuses a ctx_out buffer
// smaller than the whole struct.
var skbSize = sync.OnceValue(func() int {
	spec, err := btf.LoadKernelSpec()
	if err == nil {
		var s *btf.Struct
		if spec.TypeByName("__sk_buff", &s) == nil {
			return int(s.Size)
		}
	}
	return 192
})

// run runs prog on pkt from a zero skb context.
func (h *Harness) run(name string, prog *ebpf.Program, pkt []byte) (Result, error) {
	return h.Run(name, prog, pkt, RunContext{})
}

// Run runs prog (named name in the result) on pkt with the skb state in,
// and collects the events it emitted. The result's packet is as long as
// the kernel reports the packet after the run (a program may grow or
// shrink it); its mark is skb->mark after the run. It is the low-level
// step a packet walker builds on.
func (h *Harness) Run(name string, prog *ebpf.Program, pkt []byte, in RunContext) (Result, error) {
	ctxOut := make([]byte, skbSize())
	opts := &ebpf.RunOptions{
		Data:       pkt,
		DataOut:    make([]byte, len(pkt)+256),
		Context:    in.encode(),
		ContextOut: ctxOut,
	}
	ret, err := prog.Run(opts)
	if err != nil {
		return Result{}, fmt.Errorf("run %s: %w", name, err)
	}
	evs, err := h.events.Drain()
	if err != nil {
		return Result{}, err
	}
	// Run reslices DataOut to the length the kernel reports.
	return Result{Program: name, Code: int(ret), Packet: opts.DataOut, Mark: binary.NativeEndian.Uint32(ctxOut[8:]), Events: evs}, nil
}

// FromContainer runs the endpoint's from_container on pkt (the pod sends).
func (e *Endpoint) FromContainer(pkt []byte) (Result, error) {
	return e.h.run("from_container", e.Endpoint.FromContainer, pkt)
}

// ToContainer runs the endpoint's to_container on pkt (to the pod).
func (e *Endpoint) ToContainer(pkt []byte) (Result, error) {
	return e.h.run("to_container", e.Endpoint.ToContainer, pkt)
}

// Rule is one policy map entry set, written with PolicyKeys semantics.
type Rule struct {
	Direction maps.Direction
	Identity  uint32 // 0: any identity
	Protocol  uint8  // 0: any protocol (Ports must be any)
	Ports     maps.PortRange
	Deny      bool
	ProxyPort uint16
	RuleID    uint32
}

// AddRule writes the entries of r into the endpoint's policy map and bumps
// its policy revision.
func (e *Endpoint) AddRule(r Rule) error {
	keys, err := maps.PolicyKeys(r.Identity, r.Direction, r.Protocol, r.Ports)
	if err != nil {
		return err
	}
	for _, k := range keys {
		v := maps.PolicyEntry{ProxyPortNet: maps.HostToNet16(r.ProxyPort), Prefixlen: uint8(k.Prefixlen), RuleID: r.RuleID}
		if r.Deny {
			v.Flags = maps.PolicyFlagDeny
		}
		if err := e.PutPolicy(k, v); err != nil {
			return err
		}
	}
	return e.BumpPolicyRevision()
}

// DeleteRule removes the entries of r and bumps the policy revision.
func (e *Endpoint) DeleteRule(r Rule) error {
	keys, err := maps.PolicyKeys(r.Identity, r.Direction, r.Protocol, r.Ports)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := e.DeletePolicy(k); err != nil {
			return err
		}
	}
	return e.BumpPolicyRevision()
}

// RemoveEndpoint removes ep from the endpoints map and closes its
// programs and policy map. Its ipcache entries are left to the caller.
func (h *Harness) RemoveEndpoint(ep *Endpoint) error {
	for i, e := range h.endpoints {
		if e == ep {
			h.endpoints = append(h.endpoints[:i], h.endpoints[i+1:]...)
			break
		}
	}
	for _, a := range []netip.Addr{ep.Spec.IPv4, ep.Spec.IPv6} {
		if !a.IsValid() {
			continue
		}
		key := maps.NewAddrKey(a)
		if err := h.Node.Maps[datapath.MapEndpoints].Delete(&key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("remove endpoint %d: %w", ep.Spec.ID, err)
		}
	}
	if err := ep.SetEnforcement(false, false); err != nil {
		return fmt.Errorf("remove endpoint %d: %w", ep.Spec.ID, err)
	}
	return ep.Close()
}
