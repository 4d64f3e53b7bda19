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

var nodeMapNames = []string{MapIPCache, MapIPCacheHosts, MapEndpoints, MapEndpointPolicy, MapCT4, MapCT6, MapFrag, MapEvents, MapMetrics}

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
	if opts.PinDir != "" {
		if err := ensureBPFFS(opts.PinDir); err != nil {
			return nil, err
		}
	}
	n := &Node{spec: spec, opts: opts, Maps: map[string]*ebpf.Map{}}
	for _, name := range nodeMapNames {
		ms := spec.Maps[name].Copy()
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
	if err := setSettings(spec, cfg, s); err != nil {
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
		repl[name] = m
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

func setSettings(spec *ebpf.CollectionSpec, cfg EndpointConfig, s Settings) error {
	var v6 [16]byte
	if cfg.IPv6.IsValid() {
		v6 = cfg.IPv6.As16()
	}
	var v4 uint32 // network order in memory
	if cfg.IPv4.IsValid() {
		a := cfg.IPv4.As4()
		v4 = uint32(a[0]) | uint32(a[1])<<8 | uint32(a[2])<<16 | uint32(a[3])<<24
	}
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
	}
	hz, err := KernelHZ()
	if err != nil {
		return err
	}
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
			return fmt.Errorf("set %s: no such variable in lxc.o", name)
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
func (e *Endpoint) Attach(ifindex int, pinDir string) (err error) {
	made := len(e.links)
	defer func() {
		if err != nil {
			for _, l := range e.links[made:] {
				l.Close()
			}
			e.links = e.links[:made]
		}
	}()
	for _, a := range []struct {
		prog   *ebpf.Program
		attach ebpf.AttachType
		name   string
	}{
		{e.FromContainer, ebpf.AttachTCXIngress, "from_container"},
		{e.ToContainer, ebpf.AttachTCXEgress, "to_container"},
	} {
		pin := ""
		if pinDir != "" {
			pin = filepath.Join(pinDir, fmt.Sprintf("%s_%d", a.name, e.Config.ID))
			if l, err := link.LoadPinnedLink(pin, nil); err == nil {
				if err := l.Update(a.prog); err != nil {
					l.Close()
					return fmt.Errorf("update pinned link %s: %w", pin, privilegeError(err))
				}
				e.links = append(e.links, l)
				continue
			} else if !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("load pinned link %s: %w", pin, err)
			}
		}
		l, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: a.prog, Attach: a.attach})
		if err != nil {
			return fmt.Errorf("attach %s to ifindex %d: %w", a.name, ifindex, privilegeError(err))
		}
		e.links = append(e.links, l)
		if pin != "" {
			if err := l.Pin(pin); err != nil {
				return fmt.Errorf("pin link %s: %w", a.name, err)
			}
		}
	}
	return nil
}

// Detach removes the endpoint's tcx links (and their pins).
func (e *Endpoint) Detach() error {
	var errs []error
	for _, l := range e.links {
		errs = append(errs, l.Unpin(), l.Close())
	}
	e.links = nil
	return errors.Join(errs...)
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
