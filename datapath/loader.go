package datapath

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"

	"github.com/ciliaproject/cilia/datapath/maps"
)

// ErrMissingCapability is returned (wrapped, with the capabilities named)
// when the kernel refuses to load or attach for lack of privileges.
var ErrMissingCapability = errors.New("missing capability")

// Trace levels (config.h TRACE_*): how many forwarding decisions emit a
// trace event. Drops are always reported.
const (
	TraceEveryPacket      uint8 = 0
	TraceConnectionEvents uint8 = 1
	TraceDropsOnly        uint8 = 2
)

// Names of the node-wide maps shared by every endpoint's programs.
const (
	MapIPCache        = "cilia_ipcache"
	MapIPCacheHosts   = "cilia_ipc_hosts"
	MapEndpoints      = "cilia_endpoints"
	MapEndpointPolicy = "cilia_ep_policy"
	MapCT4            = "cilia_ct4"
	MapCT6            = "cilia_ct6"
	MapFrag           = "cilia_frag"
	MapEvents         = "cilia_events"
	MapMetrics        = "cilia_metrics"
	// MapPolicy is the per-endpoint policy map; pinned as cilia_policy_<id>.
	MapPolicy = "cilia_policy"
)

var nodeMapNames = []string{MapIPCache, MapIPCacheHosts, MapEndpoints, MapEndpointPolicy, MapCT4, MapCT6, MapFrag, MapEvents, MapMetrics,
	MapLBServices, MapLBBackends, MapLBRevNat, MapLBMaglev, MapLBAffinity}

// MapSNAT is the node's NodePort SNAT state (snat.h), used by host.o only:
// node-wide like the others, so that it outlives a reload of the host
// programs and, pinned, an agent restart.
const MapSNAT = "cilia_snat"

// hostMapNames are the node-wide maps that only host.o has.
var hostMapNames = []string{MapSNAT}

// Settings are the runtime settings of the programs (volatile consts).
type Settings struct {
	TraceLevel uint8
	// CaptureLen is how many bytes of packet head events carry (<= 128;
	// 0 means 128).
	CaptureLen uint32
	// Conntrack lifetimes in seconds; 0 keeps Cilium's defaults (TCP
	// 21600, SYN 60, close 10, other 60). The loader converts them to
	// jiffies, the datapath's clock, with the kernel's HZ.
	CTLifetimeTCP, CTLifetimeTCPSyn, CTLifetimeTCPClose, CTLifetimeNonTCP uint32
}

// NodeOptions configure the node-wide maps.
type NodeOptions struct {
	// PinDir, when set, pins the maps there (a directory in bpffs, e.g.
	// /sys/fs/bpf/cilia) and reuses maps already pinned, so their content
	// survives an agent restart.
	PinDir string
	// CTMaxEntries overrides the size of each conntrack map (IPv4, IPv6).
	CTMaxEntries uint32
	// CTMapType overrides the conntrack map type (tests use ebpf.Hash to
	// see insertion failures, which an LRU map hides by evicting).
	CTMapType ebpf.MapType
	// PolicyMaxEntries overrides the per-endpoint policy map size.
	PolicyMaxEntries uint32
	// IPCacheMaxEntries overrides the size of each ipcache map (hosts and
	// prefixes).
	IPCacheMaxEntries uint32
	// LBServicesMaxEntries and LBBackendsMaxEntries override the sizes of
	// the load-balancing services map (one entry per frontend and scope
	// plus one per backend slot) and backends map.
	LBServicesMaxEntries, LBBackendsMaxEntries uint32
	// Config is the node-wide configuration every program of the node is
	// loaded with (endpoints, host, overlay).
	Config NodeConfig
}

// NodeConfig is the node-wide configuration of the programs (config.h
// node_ipv4, node_ipv6, uplink_ifindex, tunnel_ifindex).
type NodeConfig struct {
	// IPv4 is the node's IPv4 address, the underlay address tunnels use;
	// IPv6 its IPv6 address. Either may be the zero Addr (none).
	IPv4, IPv6 netip.Addr
	// UplinkIfindex is the ifindex of the node's uplink (where the host
	// programs attach).
	UplinkIfindex uint32
	// TunnelIfindex is the ifindex of the node's VXLAN device in
	// collect_md mode; 0 selects native routing (never encapsulate).
	TunnelIfindex uint32
	// MaglevSize is the Maglev table size M of the load balancer (config.h
	// lb_maglev_size): a prime <= maps.LBMaglevMax; 0 means
	// DefaultMaglevSize (16381).
	MaglevSize uint32
}

// Node holds the node-wide maps and loads endpoint programs that share them.
type Node struct {
	spec *ebpf.CollectionSpec
	opts NodeOptions
	// Maps are the node-wide maps by name (Map* constants).
	Maps map[string]*ebpf.Map
}

// NewNode creates (or, with PinDir, opens) the node-wide maps.
func NewNode(opts NodeOptions) (*Node, error) {
	if _, err := opts.Config.maglevSize(); err != nil {
		return nil, fmt.Errorf("create node: %w", err)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("remove memlock limit: %w", privilegeError(err))
	}
	spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(_LxcBytes))
	if err != nil {
		return nil, fmt.Errorf("load lxc spec: %w", err)
	}
	for _, ct := range []string{MapCT4, MapCT6} {
		if opts.CTMaxEntries != 0 {
			spec.Maps[ct].MaxEntries = opts.CTMaxEntries
		}
		if opts.CTMapType != ebpf.UnspecifiedMap {
			spec.Maps[ct].Type = opts.CTMapType
		}
	}
	if opts.PolicyMaxEntries != 0 {
		spec.Maps[MapPolicy].MaxEntries = opts.PolicyMaxEntries
	}
	if opts.IPCacheMaxEntries != 0 {
		spec.Maps[MapIPCache].MaxEntries = opts.IPCacheMaxEntries
		spec.Maps[MapIPCacheHosts].MaxEntries = opts.IPCacheMaxEntries
	}
	if opts.LBServicesMaxEntries != 0 {
		spec.Maps[MapLBServices].MaxEntries = opts.LBServicesMaxEntries
	}
	if opts.LBBackendsMaxEntries != 0 {
		spec.Maps[MapLBBackends].MaxEntries = opts.LBBackendsMaxEntries
	}
	if opts.PinDir != "" {
		if err := ensureBPFFS(opts.PinDir); err != nil {
			return nil, err
		}
	}
	hostSpec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(_HostBytes))
	if err != nil {
		return nil, fmt.Errorf("load host spec: %w", err)
	}
	n := &Node{spec: spec, opts: opts, Maps: map[string]*ebpf.Map{}}
	specs := map[string]*ebpf.MapSpec{}
	for _, name := range nodeMapNames {
		specs[name] = spec.Maps[name]
	}
	for _, name := range hostMapNames {
		specs[name] = hostSpec.Maps[name]
	}
	for _, name := range append(nodeMapNames[:len(nodeMapNames):len(nodeMapNames)], hostMapNames...) {
		ms := specs[name].Copy()
		mopts := ebpf.MapOptions{}
		if opts.PinDir != "" {
			ms.Pinning = ebpf.PinByName
			mopts.PinPath = opts.PinDir
		}
		m, err := ebpf.NewMapWithOptions(ms, mopts)
		if err != nil {
			n.Close()
			return nil, fmt.Errorf("create map %s: %w", name, privilegeError(err))
		}
		n.Maps[name] = m
	}
	return n, nil
}

// Close releases the node's map handles. Pinned maps stay in bpffs.
func (n *Node) Close() error {
	for _, m := range n.Maps {
		m.Close()
	}
	return nil
}

// Unpin removes the node's maps from bpffs.
func (n *Node) Unpin() error {
	var errs []error
	for _, m := range n.Maps {
		errs = append(errs, m.Unpin())
	}
	return errors.Join(errs...)
}

// EndpointConfig describes the endpoint whose veth the programs serve.
type EndpointConfig struct {
	ID       uint16
	Identity uint32
	// Ifindex is the host side of the endpoint's veth.
	Ifindex uint32
	IPv4    netip.Addr
	IPv6    netip.Addr
}

// Endpoint is one endpoint's loaded programs and its policy map.
type Endpoint struct {
	Config        EndpointConfig
	FromContainer *ebpf.Program
	ToContainer   *ebpf.Program
	// Policy is the endpoint's policy map (maps.PolicyKey ->
	// maps.PolicyEntry). Write it with PutPolicy/DeletePolicy, which keep
	// the prefix lengths the datapath probes up to date.
	Policy *ebpf.Map
	links  []link.Link
	node   *Node
	policy policyState
}

// LoadEndpoint loads from_container and to_container configured for cfg,
// sharing the node's maps, with a policy map of the endpoint's own (pinned
// as cilia_policy_<id> when the node pins).
func (n *Node) LoadEndpoint(cfg EndpointConfig, s Settings) (*Endpoint, error) {
	spec := n.spec.Copy()
	if err := setSettings(spec, n.opts.Config, cfg, s); err != nil {
		return nil, err
	}
	ps := spec.Maps[MapPolicy].Copy()
	ps.Name = MapPolicy
	mopts := ebpf.MapOptions{}
	if n.opts.PinDir != "" {
		ps.Name = fmt.Sprintf("%s_%d", MapPolicy, cfg.ID)
		ps.Pinning = ebpf.PinByName
		mopts.PinPath = n.opts.PinDir
	}
	policy, err := ebpf.NewMapWithOptions(ps, mopts)
	if err != nil {
		return nil, fmt.Errorf("create policy map of endpoint %d: %w", cfg.ID, privilegeError(err))
	}
	repl := map[string]*ebpf.Map{MapPolicy: policy}
	for name, m := range n.Maps {
		if _, ok := spec.Maps[name]; ok { // not the maps only host.o has
			repl[name] = m
		}
	}
	var objs lxcPrograms
	if err := spec.LoadAndAssign(&objs, &ebpf.CollectionOptions{MapReplacements: repl}); err != nil {
		policy.Close()
		return nil, fmt.Errorf("load programs of endpoint %d: %w", cfg.ID, privilegeError(err))
	}
	ep := &Endpoint{Config: cfg, FromContainer: objs.FromContainer, ToContainer: objs.ToContainer, Policy: policy, node: n}
	if err := ep.loadPolicyState(); err != nil {
		ep.Close()
		return nil, err
	}
	return ep, nil
}

// addrVars returns an IPv4 address as a __be32 (network order in memory)
// and an IPv6 address as 16 bytes; zero for an invalid Addr.
func addrVars(v4a, v6a netip.Addr) (v4 uint32, v6 [16]byte) {
	if v6a.IsValid() {
		v6 = v6a.As16()
	}
	if v4a.IsValid() {
		a := v4a.Unmap().As4()
		v4 = uint32(a[0]) | uint32(a[1])<<8 | uint32(a[2])<<16 | uint32(a[3])<<24
	}
	return v4, v6
}

// setSettings sets the volatile consts of spec (config.h) for the node,
// the endpoint cfg (zero for the node-level programs) and s.
func setSettings(spec *ebpf.CollectionSpec, node NodeConfig, cfg EndpointConfig, s Settings) error {
	v4, v6 := addrVars(cfg.IPv4, cfg.IPv6)
	nodeV4, nodeV6 := addrVars(node.IPv4, node.IPv6)
	capLen := s.CaptureLen
	if capLen == 0 || capLen > maps.EventCaptureMax {
		capLen = maps.EventCaptureMax
	}
	vars := map[string]any{
		"endpoint_id":       cfg.ID,
		"endpoint_identity": cfg.Identity,
		"endpoint_ifindex":  cfg.Ifindex,
		"endpoint_ipv4":     v4,
		"endpoint_ipv6":     v6,
		"trace_level":       s.TraceLevel,
		"event_capture_len": capLen,
		"node_ipv4":         nodeV4,
		"node_ipv6":         nodeV6,
		"tunnel_ifindex":    node.TunnelIfindex,
		"uplink_ifindex":    node.UplinkIfindex,
	}
	hz, err := KernelHZ()
	if err != nil {
		return err
	}
	maglev, err := node.maglevSize()
	if err != nil {
		return err
	}
	vars["jiffies_hz"] = hz
	vars["lb_maglev_size"] = maglev
	for name, l := range map[string]struct{ set, def uint32 }{
		"ct_lifetime_tcp":       {s.CTLifetimeTCP, 21600},
		"ct_lifetime_tcp_syn":   {s.CTLifetimeTCPSyn, 60},
		"ct_lifetime_tcp_close": {s.CTLifetimeTCPClose, 10},
		"ct_lifetime_nontcp":    {s.CTLifetimeNonTCP, 60},
	} {
		secs := l.set
		if secs == 0 {
			secs = l.def
		}
		if uint64(secs)*uint64(hz) > 1<<32-1 {
			return fmt.Errorf("set %s: %d s is more than %d jiffies can hold", name, secs, uint32(1<<32-1))
		}
		vars[name] = secs * hz
	}
	for name, val := range vars {
		v, ok := spec.Variables[name]
		if !ok {
			return fmt.Errorf("set %s: no such variable in the object", name)
		}
		if err := v.Set(val); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
	}
	return nil
}

// Attach attaches from_container to tcx ingress and to_container to tcx
// egress of the interface ifindex (the host side of the endpoint's veth).
// With pinDir set the links are pinned there, so the programs stay
// attached when the agent exits; a link already pinned there by an earlier
// run is updated in place to the new program (no window without a program,
// no second program in the chain). On error, links made by this call are
// removed again.
func (e *Endpoint) Attach(ifindex int, pinDir string) error {
	return attachTCX(&e.links, ifindex, pinDir, []tcxAttachment{
		{e.FromContainer, ebpf.AttachTCXIngress, fmt.Sprintf("from_container_%d", e.Config.ID)},
		{e.ToContainer, ebpf.AttachTCXEgress, fmt.Sprintf("to_container_%d", e.Config.ID)},
	})
}

// tcxAttachment is one program to attach with attachTCX; pin is the name
// of its link's pin in the pin directory.
type tcxAttachment struct {
	prog   *ebpf.Program
	attach ebpf.AttachType
	pin    string
}

// attachTCX attaches each program to ifindex and appends the links to
// *links. With pinDir set the links are pinned there, and a link already
// pinned there is updated in place to the new program. On error, links
// made by this call are removed again.
func attachTCX(links *[]link.Link, ifindex int, pinDir string, as []tcxAttachment) (err error) {
	made := len(*links)
	defer func() {
		if err != nil {
			for _, l := range (*links)[made:] {
				l.Close()
			}
			*links = (*links)[:made]
		}
	}()
	for _, a := range as {
		pin := ""
		if pinDir != "" {
			pin = filepath.Join(pinDir, a.pin)
			if l, err := link.LoadPinnedLink(pin, nil); err == nil {
				if err := l.Update(a.prog); err != nil {
					l.Close()
					return fmt.Errorf("update pinned link %s: %w", pin, privilegeError(err))
				}
				*links = append(*links, l)
				continue
			} else if !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("load pinned link %s: %w", pin, err)
			}
		}
		l, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: a.prog, Attach: a.attach})
		if err != nil {
			return fmt.Errorf("attach %s to ifindex %d: %w", a.pin, ifindex, privilegeError(err))
		}
		*links = append(*links, l)
		if pin != "" {
			if err := l.Pin(pin); err != nil {
				return fmt.Errorf("pin link %s: %w", a.pin, err)
			}
		}
	}
	return nil
}

// detachLinks unpins and closes links.
func detachLinks(links []link.Link) error {
	var errs []error
	for _, l := range links {
		errs = append(errs, l.Unpin(), l.Close())
	}
	return errors.Join(errs...)
}

// Detach removes the endpoint's tcx links (and their pins).
func (e *Endpoint) Detach() error {
	err := detachLinks(e.links)
	e.links = nil
	return err
}

// Close releases the endpoint's programs and policy map handle. Attached
// links are closed too (a pinned link stays attached).
func (e *Endpoint) Close() error {
	for _, l := range e.links {
		l.Close()
	}
	e.FromContainer.Close()
	e.ToContainer.Close()
	return e.Policy.Close()
}

// LinkByName returns the ifindex of the named interface in the current
// network namespace.
func LinkByName(name string) (int, error) {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return 0, fmt.Errorf("look up interface %s: %w", name, err)
	}
	return ifc.Index, nil
}

// ensureBPFFS makes sure dir is on a bpffs, mounting /sys/fs/bpf if needed.
func ensureBPFFS(dir string) error {
	var st syscall.Statfs_t
	const bpfFSMagic = 0xcafe4a11
	if err := syscall.Statfs("/sys/fs/bpf", &st); err != nil || st.Type != bpfFSMagic {
		if err := os.MkdirAll("/sys/fs/bpf", 0o755); err != nil {
			return fmt.Errorf("create /sys/fs/bpf: %w", err)
		}
		if err := syscall.Mount("bpf", "/sys/fs/bpf", "bpf", 0, ""); err != nil {
			return fmt.Errorf("mount bpffs at /sys/fs/bpf: %w", privilegeError(err))
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create pin dir %s: %w", dir, err)
	}
	if err := syscall.Statfs(dir, &st); err != nil {
		return fmt.Errorf("stat pin dir %s: %w", dir, err)
	}
	if st.Type != bpfFSMagic {
		return fmt.Errorf("pin dir %s is not on a bpffs", dir)
	}
	return nil
}

// Capabilities the datapath needs, with their numbers (linux/capability.h).
var requiredCaps = []struct {
	name string
	bit  uint
	alt  uint // an alternative that also grants it (CAP_SYS_ADMIN), 0 for none
}{
	{"CAP_BPF", 39, 21},
	{"CAP_NET_ADMIN", 12, 0},
	{"CAP_PERFMON", 38, 21},
}

// MissingCapabilities returns the capabilities the datapath needs that the
// current process does not have in its effective set.
func MissingCapabilities() ([]string, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return nil, fmt.Errorf("read capabilities: %w", err)
	}
	defer f.Close()
	var eff uint64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			eff, err = strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return nil, fmt.Errorf("parse CapEff: %w", err)
			}
		}
	}
	var missing []string
	for _, c := range requiredCaps {
		has := eff&(1<<c.bit) != 0 || (c.alt != 0 && eff&(1<<c.alt) != 0)
		if !has {
			missing = append(missing, c.name)
		}
	}
	return missing, nil
}

// privilegeError wraps EPERM/EACCES with ErrMissingCapability and the names
// of the capabilities the process lacks. The verifier also answers EACCES
// when it rejects a program: a verifier error, or a refusal while every
// capability is present, is returned unchanged.
func privilegeError(err error) error {
	if !errors.Is(err, syscall.EPERM) && !errors.Is(err, syscall.EACCES) {
		return err
	}
	var verr *ebpf.VerifierError
	if errors.As(err, &verr) {
		return err
	}
	missing, cerr := MissingCapabilities()
	if cerr != nil || len(missing) == 0 {
		return err
	}
	return fmt.Errorf("%w: %s (run as root or grant them): %w", ErrMissingCapability, strings.Join(missing, ", "), err)
}
