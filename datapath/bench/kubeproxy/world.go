package kubeproxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ciliaproject/cilia/datapath"
	"github.com/ciliaproject/cilia/datapath/bench"
	"github.com/ciliaproject/cilia/datapath/testrun"
	"github.com/ciliaproject/cilia/sim/topology"
	"github.com/ciliaproject/cilia/sim/traffic"
)

// Datapath names.
const (
	IPTables = "iptables"
	EBPF     = "eBPF"
)

// Addresses of a world: one node, a client pod and the backend pods, the
// pods in ClusterCIDR, service addresses from ServiceBase on.
var (
	ClusterCIDR  = netip.MustParsePrefix("10.0.0.0/16")
	ServiceCIDR  = netip.MustParsePrefix("10.96.0.0/16")
	nodeAddr     = netip.MustParseAddr("192.168.50.10")
	clientAddr   = netip.MustParseAddr("10.0.1.10")
	backendAddrs = []netip.Addr{netip.MustParseAddr("10.0.1.20"), netip.MustParseAddr("10.0.1.21"),
		netip.MustParseAddr("10.0.1.22"), netip.MustParseAddr("10.0.1.23")}
	// ServicePort is every service's port, BackendPort every backend's
	// (targetPort).
	ServicePort = uint16(80)
	BackendPort = uint16(8080)
)

// Identities of the eBPF world's endpoints.
const (
	clientIdentity  = 1000
	backendIdentity = 1001
)

// Services returns n TCP services default/svc-<i>:http with cluster IPs
// from ServiceCIDR (the first address after the network one on) and the
// first backends backend pods (at most 4) as endpoints, on BackendPort.
func Services(n, backends int) ([]Service, error) {
	if n >= 1<<(32-ServiceCIDR.Bits())-2 {
		return nil, fmt.Errorf("make %d services: %s has no room for them", n, ServiceCIDR)
	}
	if backends < 1 || backends > len(backendAddrs) {
		return nil, fmt.Errorf("make services: %d backends per service, want 1..%d", backends, len(backendAddrs))
	}
	eps := make([]netip.AddrPort, backends)
	for i := range eps {
		eps[i] = netip.AddrPortFrom(backendAddrs[i], BackendPort)
	}
	out := make([]Service, n)
	vip := ServiceCIDR.Addr()
	for i := range out {
		vip = vip.Next()
		out[i] = Service{Namespace: "default", Name: fmt.Sprintf("svc-%d", i), PortName: "http",
			ClusterIP: vip, Port: ServicePort, Endpoints: eps}
	}
	return out, nil
}

// world is one simulated node (its own netns topology: fabric, node, a
// client pod and backend pods, each backend serving TCP on BackendPort)
// whose services go through one datapath: kube-proxy's iptables rules in
// the node's netns, or cilia's programs attached with tcx to the pods'
// host-side veths.
type world struct {
	name     string
	topo     *topology.Topology
	servers  []*traffic.Server
	backends map[string]netip.Addr // server name -> address
	client   *dialer
	// eBPF world only.
	h *testrun.Harness
	// loaded is how many services the eBPF maps hold (services are added
	// in order, the maps keep the earlier ones).
	loaded int
}

// newWorld builds a world for the named datapath with nBackends backend
// pods. On error, what was made is removed.
func newWorld(ctx context.Context, name string, nBackends int, timeout time.Duration) (_ *world, err error) {
	w := &world{name: name, backends: map[string]netip.Addr{}}
	defer func() {
		if err != nil {
			err = errors.Join(err, w.Close())
		}
	}()
	spec := topology.Spec{Mode: topology.Native, Nodes: []topology.NodeSpec{{Name: "node", IPv4: nodeAddr}},
		Pods: []topology.PodSpec{{Key: "default/client", IPv4: clientAddr}}}
	for i := range nBackends {
		spec.Pods = append(spec.Pods, topology.PodSpec{Key: fmt.Sprintf("default/backend-%d", i), IPv4: backendAddrs[i]})
	}
	if w.topo, err = topology.Build(ctx, spec); err != nil {
		return w, fmt.Errorf("build %s world: %w", name, err)
	}
	for i := range nBackends {
		p := w.topo.Pods[fmt.Sprintf("default/backend-%d", i)]
		srv, err := traffic.Serve(topology.NetnsPath(p.Netns), "backend-"+fmt.Sprint(i), []netip.Addr{p.IPv4},
			[]traffic.Port{{Proto: traffic.TCP, Port: BackendPort}})
		if err != nil {
			return w, fmt.Errorf("build %s world: %w", name, err)
		}
		w.servers = append(w.servers, srv)
		w.backends[srv.Name()] = p.IPv4
	}
	client := w.topo.Pods["default/client"]
	// A wide ephemeral port range: every sample is a new connection.
	err = topology.Do(client.Netns, func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_local_port_range", []byte("10000 65000"), 0o644)
	})
	if err != nil {
		return w, fmt.Errorf("build %s world: set the client's port range: %w", name, err)
	}
	if w.client, err = newDialer(client.Netns, timeout); err != nil {
		return w, fmt.Errorf("build %s world: %w", name, err)
	}
	if name == EBPF {
		if err := w.loadEBPF(); err != nil {
			return w, fmt.Errorf("build %s world: %w", name, err)
		}
	}
	return w, nil
}

// loadEBPF loads cilia's datapath on the node: the node maps (the agent's
// default trace level), an endpoint per pod with its addresses in the
// ipcache, no policy enforcement (as in the iptables world), and the
// programs attached with tcx to the host side of every pod's veth.
func (w *world) loadEBPF() error {
	n := w.topo.Nodes[0]
	h, err := testrun.New(testrun.Options{
		Node:     datapath.NodeOptions{Config: datapath.NodeConfig{IPv4: n.IPv4, UplinkIfindex: uint32(n.Uplink.Ifindex)}},
		Settings: datapath.Settings{TraceLevel: datapath.TraceConnectionEvents},
	})
	if err != nil {
		return err
	}
	w.h = h
	id := uint16(1)
	for _, key := range w.podKeys() {
		pod := w.topo.Pods[key]
		identity := uint32(backendIdentity)
		if pod.IPv4 == clientAddr {
			identity = clientIdentity
		}
		ep, err := h.AddEndpoint(testrun.EndpointSpec{ID: id, Identity: identity, IPv4: pod.IPv4,
			Ifindex: uint32(pod.HostVeth.Ifindex), MAC: pod.Eth0.MAC, NodeMAC: pod.HostVeth.MAC})
		if err != nil {
			return fmt.Errorf("load endpoint of %s: %w", key, err)
		}
		id++
		if err := topology.Do(n.Netns, func() error { return ep.Attach(pod.HostVeth.Ifindex, "") }); err != nil {
			return fmt.Errorf("attach endpoint of %s: %w", key, err)
		}
	}
	return nil
}

// podKeys returns the client's key, then the backends'.
func (w *world) podKeys() []string {
	keys := []string{"default/client"}
	for i := range len(w.servers) {
		keys = append(keys, fmt.Sprintf("default/backend-%d", i))
	}
	return keys
}

// nodeNetns is the name of the node's netns.
func (w *world) nodeNetns() string { return w.topo.Nodes[0].Netns }

// load installs services (the whole list; the eBPF world adds those its
// maps lack, the iptables world restores the whole table as kube-proxy
// does) and returns how long that took.
func (w *world) load(services []Service) (time.Duration, error) {
	start := time.Now()
	if w.h == nil {
		// The whole nat table is replaced (no --noflush): this node's
		// nat table holds nothing else, and iptables-nft 1.8.9 with
		// --noflush takes minutes for 10k services (docs/benchmarks.md).
		if err := Restore(w.nodeNetns(), Rules(services, ClusterCIDR), false); err != nil {
			return 0, err
		}
		return time.Since(start), nil
	}
	if len(services) < w.loaded {
		return 0, fmt.Errorf("load %d services: the maps hold %d already (sizes must grow)", len(services), w.loaded)
	}
	for i := w.loaded; i < len(services); i++ {
		if err := bench.PutClusterIP(w.h.Node, eBPFService(services[i], i)); err != nil {
			return 0, err
		}
		w.loaded = i + 1
	}
	return time.Since(start), nil
}

// eBPFService is service number i as the agent would program it: rev_nat_id
// i+1, backend ids of its own (kube-proxy too has a KUBE-SEP chain per
// service and endpoint).
func eBPFService(s Service, i int) bench.ClusterIP {
	c := bench.ClusterIP{Frontend: netip.AddrPortFrom(s.ClusterIP, s.Port), RevNatID: uint32(i + 1),
		Backends: s.Endpoints}
	for j := range s.Endpoints {
		c.BackendIDs = append(c.BackendIDs, uint32(i*len(s.Endpoints)+j+1))
	}
	return c
}

// drainEvents discards the datapath's events (eBPF world), so that the
// ring buffer never fills and every run takes the path a node's takes.
func (w *world) drainEvents() error {
	if w.h == nil {
		return nil
	}
	_, err := w.h.DrainEvents()
	return err
}

// Close removes everything the world made: the rules (iptables world),
// the programs and maps (eBPF world), the servers and the netns.
func (w *world) Close() error {
	var errs []error
	if w.client != nil {
		errs = append(errs, w.client.Close())
	}
	for _, s := range w.servers {
		errs = append(errs, s.Close())
	}
	if w.h != nil {
		errs = append(errs, w.h.Close())
	}
	if w.topo != nil {
		if w.name == IPTables && len(w.topo.Nodes) > 0 {
			errs = append(errs, Flush(w.nodeNetns()))
		}
		errs = append(errs, w.topo.Close())
	}
	return errors.Join(errs...)
}

// sample is one connection: how long connect() took, and who answered.
type sample struct {
	connect    time.Duration
	backend    string
	sourceSeen netip.Addr
}

// dialer makes connections from a client netns on an OS thread that stays
// in it.
type dialer struct {
	reqs    chan dialReq
	done    chan error
	timeout time.Duration
}

type dialReq struct {
	dst   netip.AddrPort
	reply chan dialResult
}

type dialResult struct {
	s   sample
	err error
}

// newDialer starts a dialer in the named netns.
func newDialer(netnsName string, timeout time.Duration) (*dialer, error) {
	d := &dialer{reqs: make(chan dialReq), done: make(chan error, 1), timeout: timeout}
	started := make(chan error, 1)
	go func() {
		d.done <- topology.Do(netnsName, func() error {
			started <- nil
			for r := range d.reqs {
				s, err := d.dial(r.dst)
				r.reply <- dialResult{s, err}
			}
			return nil
		})
	}()
	select {
	case err := <-started:
		return d, err
	case err := <-d.done:
		return nil, fmt.Errorf("start dialer in %s: %w", netnsName, err)
	}
}

// Dial makes one connection to dst.
func (d *dialer) Dial(dst netip.AddrPort) (sample, error) {
	reply := make(chan dialResult, 1)
	d.reqs <- dialReq{dst: dst, reply: reply}
	r := <-reply
	return r.s, r.err
}

// Close stops the dialer.
func (d *dialer) Close() error {
	close(d.reqs)
	return <-d.done
}

// dial connects to dst with a blocking connect() (timed: it returns once
// the SYN-ACK is in and the ACK sent), then sends an HTTP request and reads
// the server's reply (untimed), which names the server and the source
// address it saw. It closes with an RST (SO_LINGER 0) after the server's
// FIN, so that no side keeps the connection in TIME_WAIT.
func (d *dialer) dial(dst netip.AddrPort) (sample, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return sample{}, fmt.Errorf("open tcp socket: %w", err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(d.timeout.Nanoseconds())
	for _, opt := range []int{unix.SO_SNDTIMEO, unix.SO_RCVTIMEO} {
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, opt, &tv); err != nil {
			return sample{}, fmt.Errorf("set socket timeout: %w", err)
		}
	}
	sa := &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}
	start := time.Now()
	err = unix.Connect(fd, sa)
	elapsed := time.Since(start)
	if err != nil {
		return sample{}, fmt.Errorf("connect to %s: %w", dst, err)
	}
	if err := unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0}); err != nil {
		return sample{}, fmt.Errorf("set SO_LINGER: %w", err)
	}
	if _, err := unix.Write(fd, []byte("GET / HTTP/1.0\r\n\r\n")); err != nil {
		return sample{}, fmt.Errorf("send request to %s: %w", dst, err)
	}
	var buf bytes.Buffer
	chunk := make([]byte, 4096)
	for {
		n, err := unix.Read(fd, chunk)
		if err != nil {
			return sample{}, fmt.Errorf("read reply from %s: %w", dst, err)
		}
		if n == 0 {
			break
		}
		buf.Write(chunk[:n])
	}
	resp, err := http.ReadResponse(bufio.NewReader(&buf), nil)
	if err != nil {
		return sample{}, fmt.Errorf("read reply from %s: %w", dst, err)
	}
	defer resp.Body.Close()
	var reply traffic.HTTPReply
	if err := json.NewDecoder(resp.Body).Decode(&reply); err != nil {
		return sample{}, fmt.Errorf("decode reply from %s: %w", dst, err)
	}
	src, err := netip.ParseAddr(reply.SourceSeen)
	if err != nil {
		return sample{}, fmt.Errorf("reply from %s: source seen %q: %w", dst, reply.SourceSeen, err)
	}
	return sample{connect: elapsed, backend: reply.Name, sourceSeen: src}, nil
}

// check makes one connection to dst and fails unless a backend answered
// and saw the client's own address (a ClusterIP connection from a pod is
// not SNATed).
func (w *world) check(dst netip.AddrPort) (sample, error) {
	s, err := w.client.Dial(dst)
	if err != nil {
		return s, fmt.Errorf("%s: %w", w.name, err)
	}
	if _, ok := w.backends[s.backend]; !ok {
		return s, fmt.Errorf("%s: connection to %s answered by %q, not a backend", w.name, dst, s.backend)
	}
	if s.sourceSeen != clientAddr {
		return s, fmt.Errorf("%s: connection to %s: the backend saw source %s, want the client's %s",
			w.name, dst, s.sourceSeen, clientAddr)
	}
	return s, nil
}
