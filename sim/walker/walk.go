// Package walker moves a packet through a simulated cluster hop by hop: it
// runs each hook's BPF program with BPF_PROG_TEST_RUN inside the node's
// network namespace, reads the trace and drop events the program emitted
// to learn the verdict and the next device, and continues at the next hook
// (the peer veth, the VXLAN device and the remote node's uplink, the
// stack's route for TC_ACT_OK) until the packet is delivered, dropped, or
// leaves the cluster. The packet at every hop is the on-wire packet, outer
// headers included on the fabric.
package walker

import (
	"fmt"
	"strings"

	"github.com/ciliaproject/cilia/datapath/events"
)

// Hook is a place a packet passes: a BPF program's attach point, or a step
// the kernel takes between programs.
type Hook string

// Hooks. The first five run BPF programs; the others are kernel steps the
// walker performs the way the kernel would.
const (
	// FromContainer is tc ingress of a pod's host-side veth (the pod sends).
	FromContainer Hook = "from-container"
	// ToContainer is tc egress of a pod's host-side veth (into the pod).
	ToContainer Hook = "to-container"
	// FromNetdev is tc ingress of a node's uplink (from the fabric).
	FromNetdev Hook = "from-netdev"
	// ToNetdev is tc egress of a node's uplink (to the fabric).
	ToNetdev Hook = "to-netdev"
	// FromOverlay is tc ingress of a node's VXLAN device (decapsulated).
	FromOverlay Hook = "from-overlay"
	// Stack is the node's IP stack routing a packet (a route lookup in
	// the node's network namespace).
	Stack Hook = "stack"
	// Encap is the VXLAN device encapsulating with the tunnel key the
	// program set.
	Encap Hook = "vxlan-encap"
	// Decap is the kernel's VXLAN receive path stripping the outer headers.
	Decap Hook = "vxlan-decap"
	// Fabric is the wire between nodes, the fabric router and externals.
	Fabric Hook = "fabric"
)

// IsProgram reports whether h runs a BPF program.
func (h Hook) IsProgram() bool {
	switch h {
	case FromContainer, ToContainer, FromNetdev, ToNetdev, FromOverlay:
		return true
	}
	return false
}

// Entry is where a packet enters the cluster: a pod's from_container (the
// pod sent it), a node's uplink (it came from the fabric), or a node's
// stack (the node itself sent it).
type Entry struct {
	Node string
	Hook Hook
	// Pod is the pod ("namespace/name") for FromContainer and ToContainer.
	Pod string
}

// String renders an entry the way --at accepts it: "pod:ns/name",
// "node:NAME" (uplink ingress) or "host:NAME" (the node's stack).
func (e Entry) String() string {
	switch e.Hook {
	case FromContainer:
		return "pod:" + e.Pod
	case Stack:
		return "host:" + e.Node
	}
	return "node:" + e.Node
}

// Hop is one step of a walk.
type Hop struct {
	Node string
	Hook Hook
	// Device is the interface the hook belongs to ("lxc1a2b", "eth0",
	// "cilia_vxlan"), empty for the fabric.
	Device string
	// Program is the BPF program run ("from_container"), empty for
	// kernel steps.
	Program string
	// Code is the program's tc return code (0 OK, 2 SHOT, 7 REDIRECT);
	// -1 for kernel steps.
	Code int
	// Packet is the packet as it arrived at this hop (an Ethernet frame,
	// outer headers included between nodes).
	Packet []byte
	// Events are the trace and drop events the program emitted.
	Events []events.Event
	// Note says what a kernel step did ("route via 192.168.0.12 dev eth0").
	Note string
}

// Outcome is how a walk ended.
type Outcome string

// Outcomes.
const (
	// Delivered: into a pod, or to the destination node's own stack.
	Delivered Outcome = "delivered"
	// Dropped: a program returned TC_ACT_SHOT (Walk.Drop says why) or
	// the kernel had no route.
	Dropped Outcome = "dropped"
	// LeftCluster: the packet left towards an external host (or an
	// address no node, pod or external owns).
	LeftCluster Outcome = "left-cluster"
	// ToProxy: a program handed the packet to the L7 proxy.
	ToProxy Outcome = "to-proxy"
)

// Walk is the journey of one packet.
type Walk struct {
	Entry   Entry
	Hops    []Hop
	Outcome Outcome
	// At names where the walk ended: "pod ns/name", "node NAME",
	// "external NAME", or the hop that dropped it.
	At string
	// Packet is the packet as delivered (after rewrites, encapsulation
	// and decapsulation); nil when dropped.
	Packet []byte
	// Drop is the drop event when a program dropped the packet.
	Drop *events.Event
	// DropNode is the node whose program dropped the packet.
	DropNode string
}

// Events returns the events of every hop in order.
func (w *Walk) Events() []events.Event {
	var out []events.Event
	for _, h := range w.Hops {
		out = append(out, h.Events...)
	}
	return out
}

// String summarises the walk for test failures and debugging.
func (w *Walk) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s -> %s (%s)", w.Entry, w.Outcome, w.At)
	for _, h := range w.Hops {
		fmt.Fprintf(&b, "\n  %s %s %s", h.Node, h.Hook, h.Device)
		if h.Program != "" {
			fmt.Fprintf(&b, " %s=%d", h.Program, h.Code)
		}
		if h.Note != "" {
			fmt.Fprintf(&b, " [%s]", h.Note)
		}
		for _, e := range h.Events {
			fmt.Fprintf(&b, " {%v}", e)
		}
	}
	return b.String()
}
