// Package netnstest builds small network topologies for datapath tests: a
// "node" network namespace and "pod" namespaces, each pod connected to the
// node by a veth pair wired the way Cilium wires an endpoint:
//
//   - the pod side (eth0) carries the pod's /32 and /128 addresses;
//   - the pod's default routes point at link-local next hops (169.254.1.1 and
//     fe80::1, "onlink") with permanent neighbour entries resolving them to
//     the MAC of the host side of the veth, so the pod never needs ARP or ND
//     answers from the node;
//   - the host side (lxc<N>) lives in the node namespace, without addresses.
//
// Everything is removed when the test ends (closing a namespace handle
// destroys the namespace and the veths in it).
package netnstest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Gateway addresses the pods route through (Cilium's IPv4 one; fe80::1 for
// IPv6 as a link-local next hop on eth0).
var (
	GatewayV4 = netip.MustParseAddr("169.254.1.1")
	GatewayV6 = netip.MustParseAddr("fe80::1")
)

// PodSpec describes a pod to create.
type PodSpec struct {
	// Name of the host-side veth in the node namespace (e.g. "lxc1").
	HostIfName string
	IPv4, IPv6 netip.Addr
	// MAC of the pod's eth0 and of the host side of the veth.
	MAC, HostMAC net.HardwareAddr
}

// Pod is a pod namespace connected to the node.
type Pod struct {
	Spec PodSpec
	// NS is the pod's network namespace (closed when the test ends).
	NS netns.NsHandle
	// HostIfindex is the ifindex of the host side of the veth, in the
	// node namespace.
	HostIfindex int
	// Ifindex is the ifindex of eth0 in the pod namespace.
	Ifindex int
}

// NewNetns creates a network namespace without moving the calling thread
// into it; it is closed (and destroyed) when the test ends.
func NewNetns(t testing.TB) netns.NsHandle {
	t.Helper()
	type result struct {
		ns  netns.NsHandle
		err error
	}
	ch := make(chan result)
	go func() {
		// The thread is left locked on purpose: it is in the new
		// namespace and the runtime discards it when the goroutine ends.
		runtime.LockOSThread()
		ns, err := netns.New()
		ch <- result{ns, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("create netns: %v", r.err)
	}
	t.Cleanup(func() { r.ns.Close() })
	return r.ns
}

// Do runs fn on a fresh OS thread that is in ns (sockets fn opens stay in
// ns for their lifetime) and returns its error. The thread is discarded
// afterwards, so the caller's namespace is never touched.
func Do(ns netns.NsHandle, fn func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the thread dies with the goroutine.
		if err := netns.Set(ns); err != nil {
			ch <- fmt.Errorf("enter netns: %w", err)
			return
		}
		ch <- fn()
	}()
	return <-ch
}

// AddPod creates a pod namespace connected to the node namespace nodeNS.
func AddPod(t testing.TB, nodeNS netns.NsHandle, spec PodSpec) *Pod {
	t.Helper()
	podNS := NewNetns(t)
	node, err := netlink.NewHandleAt(nodeNS)
	if err != nil {
		t.Fatalf("netlink handle in node netns: %v", err)
	}
	defer node.Close()
	pod, err := netlink.NewHandleAt(podNS)
	if err != nil {
		t.Fatalf("netlink handle in pod netns: %v", err)
	}
	defer pod.Close()

	veth := &netlink.Veth{
		LinkAttrs:        netlink.LinkAttrs{Name: spec.HostIfName, HardwareAddr: spec.HostMAC},
		PeerName:         "eth0",
		PeerHardwareAddr: spec.MAC,
		PeerNamespace:    netlink.NsFd(int(podNS)),
	}
	if err := node.LinkAdd(veth); err != nil {
		t.Fatalf("create veth %s: %v", spec.HostIfName, err)
	}
	host, err := node.LinkByName(spec.HostIfName)
	if err != nil {
		t.Fatalf("look up %s: %v", spec.HostIfName, err)
	}
	if err := node.LinkSetUp(host); err != nil {
		t.Fatalf("set %s up: %v", spec.HostIfName, err)
	}

	lo, err := pod.LinkByName("lo")
	if err != nil {
		t.Fatalf("look up pod lo: %v", err)
	}
	if err := pod.LinkSetUp(lo); err != nil {
		t.Fatalf("set pod lo up: %v", err)
	}
	eth0, err := pod.LinkByName("eth0")
	if err != nil {
		t.Fatalf("look up pod eth0: %v", err)
	}
	for _, a := range []netip.Addr{spec.IPv4, spec.IPv6} {
		if !a.IsValid() {
			continue
		}
		addr := &netlink.Addr{IPNet: prefixNet(netip.PrefixFrom(a, a.BitLen()))}
		if a.Is6() {
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := pod.AddrAdd(eth0, addr); err != nil {
			t.Fatalf("add %s to pod eth0: %v", a, err)
		}
	}
	if err := pod.LinkSetUp(eth0); err != nil {
		t.Fatalf("set pod eth0 up: %v", err)
	}
	for _, gw := range []struct {
		use    bool
		gw     netip.Addr
		family int
	}{
		{spec.IPv4.IsValid(), GatewayV4, netlink.FAMILY_V4},
		{spec.IPv6.IsValid(), GatewayV6, netlink.FAMILY_V6},
	} {
		if !gw.use {
			continue
		}
		if err := pod.NeighSet(&netlink.Neigh{
			LinkIndex:    eth0.Attrs().Index,
			Family:       gw.family,
			State:        netlink.NUD_PERMANENT,
			IP:           net.IP(gw.gw.AsSlice()),
			HardwareAddr: spec.HostMAC,
		}); err != nil {
			t.Fatalf("add neighbour %s to pod: %v", gw.gw, err)
		}
		if err := pod.RouteAdd(&netlink.Route{
			LinkIndex: eth0.Attrs().Index,
			Family:    gw.family,
			Gw:        net.IP(gw.gw.AsSlice()),
			Flags:     int(netlink.FLAG_ONLINK),
		}); err != nil {
			t.Fatalf("add default route via %s to pod: %v", gw.gw, err)
		}
	}
	return &Pod{Spec: spec, NS: podNS, HostIfindex: host.Attrs().Index, Ifindex: eth0.Attrs().Index}
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// Listen opens a TCP listener on addr inside ns and serves every connection
// by writing reply and closing it. The listener is closed when the test
// ends.
func Listen(t testing.TB, ns netns.NsHandle, addr netip.AddrPort, reply string) {
	t.Helper()
	var ln net.Listener
	err := Do(ns, func() error {
		var err error
		ln, err = net.Listen("tcp", addr.String())
		return err
	})
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			c.Write([]byte(reply))
			c.Close()
		}
	}()
}

// Dial connects from inside ns to addr (within timeout) and returns what
// the peer sends before closing the connection.
func Dial(ns netns.NsHandle, addr netip.AddrPort, timeout time.Duration) (string, error) {
	var c net.Conn
	err := Do(ns, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, "tcp", addr.String())
		return err
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	got, err := io.ReadAll(c)
	return string(got), err
}
