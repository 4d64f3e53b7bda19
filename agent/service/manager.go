package service

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"sync"

	"github.com/ciliaproject/cilia/datapath/maps"
)

// Errors of the Manager.
var (
	// ErrNotFound is returned for an unknown service, pod or node.
	ErrNotFound = errors.New("not found")
	// ErrConflict is returned for a service frontend (address, port,
	// protocol) that another service already has.
	ErrConflict = errors.New("frontend conflict")
	// ErrInvalid is returned for a malformed service.
	ErrInvalid = errors.New("invalid service")
)

// Options configure a Manager.
type Options struct {
	// MaglevSize is the Maglev table size M of every node (0:
	// DefaultMaglevSize; else a prime <= maps.LBMaglevMax). It must equal
	// the nodes' datapath setting (lb_maglev_size).
	MaglevSize int
}

// Manager owns the desired load-balancing state of a cluster (services,
// the pods that back them, the nodes whose addresses are NodePort
// frontends) and keeps every node's Datapath in step with it, writing only
// what changed, make-before-break: at no point can a datapath reader find a
// service entry whose slots are not all written, a slot or Maglev entry
// naming a backend that does not exist, or a service entry whose rev-NAT
// entry or Maglev table is missing. Backend ids (one per backend address,
// port and protocol) and rev_nat_ids (one per frontend address, port and
// protocol) are allocated cluster-wide, so every node's maps agree on
// them. A change recomputes the frontends of the services it touches and
// diffs every node's desired maps against what the node holds: linear in
// the number of map entries (BenchmarkManagerPodChange). It is safe for
// concurrent use; operations are serialized.
type Manager struct {
	mu       sync.Mutex
	builder  *MaglevBuilder
	services map[string]*Service
	pods     map[string]*Pod
	nodes    []*nodeState
	// fronts are each service's frontends (services whose frontends
	// collide with an earlier service's lose those frontends).
	fronts map[string][]Frontend
	// owners maps each frontend to the service that has it.
	owners     map[frontendKey]string
	backendIDs *idAllocator[backendKey]
	revNatIDs  *idAllocator[frontendKey]
	// tables caches each Maglev frontend's table with the backend ids it
	// was built from.
	tables map[frontendKey]*maglevTable
}

type maglevTable struct {
	ids   []uint32
	table []uint32
}

type nodeState struct {
	node Node
	dp   Datapath // nil: a node known for its addresses only
	cur  nodeMaps // what the node's maps hold (every write that succeeded)
}

// nodeMaps is one node's load-balancing map content.
type nodeMaps struct {
	services map[maps.LBKey]maps.LBService
	backends map[uint32]maps.LBBackend
	revnat   map[uint32]maps.LBRevNat
	maglev   map[uint32][]uint32
}

func newNodeMaps() nodeMaps {
	return nodeMaps{services: map[maps.LBKey]maps.LBService{}, backends: map[uint32]maps.LBBackend{},
		revnat: map[uint32]maps.LBRevNat{}, maglev: map[uint32][]uint32{}}
}

// NewManager returns a manager with no nodes, services or pods.
func NewManager(opts Options) (*Manager, error) {
	b, err := NewMaglevBuilder(opts.MaglevSize)
	if err != nil {
		return nil, fmt.Errorf("new service manager: %w", err)
	}
	return &Manager{builder: b, services: map[string]*Service{}, pods: map[string]*Pod{},
		fronts: map[string][]Frontend{}, owners: map[frontendKey]string{},
		backendIDs: newIDAllocator[backendKey]("backend", math.MaxUint32),
		revNatIDs:  newIDAllocator[frontendKey]("rev_nat", math.MaxUint32),
		tables:     map[frontendKey]*maglevTable{}}, nil
}

// MaglevSize returns the Maglev table size M.
func (m *Manager) MaglevSize() int { return m.builder.Size() }

// AddNode adds a node: its addresses become NodePort frontends (on every
// node) and, when dp is not nil, its maps are programmed with every
// service.
func (m *Manager) AddNode(n Node, dp Datapath) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, ns := range m.nodes {
		if ns.node.Name == n.Name {
			return fmt.Errorf("add node %s: already exists", n.Name)
		}
	}
	m.nodes = append(m.nodes, &nodeState{node: n, dp: dp, cur: newNodeMaps()})
	m.refresh(nil)
	return m.sync()
}

// UpsertService creates or replaces a service.
func (m *Manager) UpsertService(s Service) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := validate(&s); err != nil {
		return fmt.Errorf("upsert service %s: %w", s.Key(), err)
	}
	svc := cloneService(&s)
	fronts := Frontends(svc, m.podList(), m.nodeList())
	for _, f := range fronts {
		if other, ok := m.owners[f.key()]; ok && other != svc.Key() {
			return fmt.Errorf("upsert service %s: %s is a frontend of %s: %w", svc.Key(), frontendString(f.Addr, f.Proto), other, ErrConflict)
		}
	}
	m.services[svc.Key()] = svc
	m.setFronts(svc.Key(), fronts)
	return m.sync()
}

// DeleteService removes a service.
func (m *Manager) DeleteService(namespace, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	key := namespace + "/" + name
	if _, ok := m.services[key]; !ok {
		return fmt.Errorf("delete service %s: %w", key, ErrNotFound)
	}
	delete(m.services, key)
	m.setFronts(key, nil)
	return m.sync()
}

// UpsertPod adds or replaces a pod (labels, addresses, ports,
// terminating): the services of its namespace update their backends.
func (m *Manager) UpsertPod(p Pod) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	pod := p
	pod.Labels = cloneLabels(p.Labels)
	pod.Ports = slices.Clone(p.Ports)
	old := m.pods[p.Key()]
	m.pods[p.Key()] = &pod
	m.refresh(func(s *Service) bool { return s.Selects(&pod) || old != nil && s.Selects(old) })
	return m.sync()
}

// DeletePod removes a pod from the backends of every service.
func (m *Manager) DeletePod(key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.pods[key]
	if !ok {
		return fmt.Errorf("delete pod %s: %w", key, ErrNotFound)
	}
	delete(m.pods, key)
	m.refresh(func(s *Service) bool { return s.Selects(p) })
	return m.sync()
}

// SetPodTerminating marks a pod terminating (or not): a terminating
// backend is used only when its frontend has no active one.
func (m *Manager) SetPodTerminating(key string, terminating bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.pods[key]
	if !ok {
		return fmt.Errorf("set pod %s terminating: %w", key, ErrNotFound)
	}
	if p.Terminating == terminating {
		return nil
	}
	p.Terminating = terminating
	m.refresh(func(s *Service) bool { return s.Selects(p) })
	return m.sync()
}

// Frontends returns a service's frontends with their backends.
func (m *Manager) Frontends(namespace, name string) ([]Frontend, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	key := namespace + "/" + name
	if _, ok := m.services[key]; !ok {
		return nil, fmt.Errorf("frontends of service %s: %w", key, ErrNotFound)
	}
	return slices.Clone(m.fronts[key]), nil
}

// refresh recomputes the frontends of the services which (nil: all).
func (m *Manager) refresh(which func(*Service) bool) {
	var pods []*Pod
	var nodes []Node
	for _, key := range sortedKeys(m.services) {
		s := m.services[key]
		if which != nil && !which(s) {
			continue
		}
		if pods == nil {
			pods, nodes = m.podList(), m.nodeList()
		}
		m.setFronts(key, Frontends(s, pods, nodes))
	}
}

// setFronts replaces a service's frontends (nil: removes them). A
// frontend another service already has stays that service's.
func (m *Manager) setFronts(key string, fronts []Frontend) {
	for _, f := range m.fronts[key] {
		if m.owners[f.key()] == key {
			delete(m.owners, f.key())
		}
	}
	if fronts == nil {
		delete(m.fronts, key)
		return
	}
	kept := fronts[:0]
	for _, f := range fronts {
		if other, taken := m.owners[f.key()]; taken && other != key {
			continue
		}
		m.owners[f.key()] = key
		kept = append(kept, f)
	}
	m.fronts[key] = kept
}

func (m *Manager) podList() []*Pod {
	out := make([]*Pod, 0, len(m.pods))
	for _, p := range m.pods {
		out = append(out, p)
	}
	return out
}

func (m *Manager) nodeList() []Node {
	out := make([]Node, len(m.nodes))
	for i, ns := range m.nodes {
		out[i] = ns.node
	}
	return out
}

// desired computes every programmed node's map content, allocating ids
// as needed.
func (m *Manager) desired() (map[*nodeState]nodeMaps, error) {
	want := map[*nodeState]nodeMaps{}
	for _, ns := range m.nodes {
		if ns.dp != nil {
			want[ns] = newNodeMaps()
		}
	}
	usedTables := map[frontendKey]bool{}
	for _, svcKey := range sortedKeys(m.fronts) {
		svc := m.services[svcKey]
		for fi := range m.fronts[svcKey] {
			f := &m.fronts[svcKey][fi]
			fk := f.key()
			rid, err := m.revNatIDs.get(fk)
			if err != nil {
				return nil, err
			}
			ids := make([]uint32, len(f.Backends))
			for i, b := range f.Backends {
				if ids[i], err = m.backendIDs.get(b.key()); err != nil {
					return nil, err
				}
			}
			var table []uint32
			if f.Flags&maps.LBFlagMaglev != 0 {
				usable := len(Usable(f.Backends))
				if usable > 0 {
					table = m.maglevTable(fk, f.Backends[:usable], ids[:usable])
					usedTables[fk] = true
				}
			}
			fam, addr := maps.AddrBytes(f.Addr.Addr())
			revnat := maps.LBRevNat{Addr: addr, PortNet: maps.HostToNet16(f.Addr.Port()), Family: fam}
			for ns, w := range want {
				w.revnat[rid] = revnat
				if table != nil {
					w.maglev[rid] = table
				}
				scopes := []uint8{maps.LBScopeInternal}
				if f.External {
					scopes = append(scopes, maps.LBScopeExternal)
				}
				for _, scope := range scopes {
					local := svc.ExternalTrafficPolicyLocal
					bs := f.ScopeBackends(scope, local, ns.node.Name)
					key := maps.LBKey{Addr: addr, DPortNet: maps.HostToNet16(f.Addr.Port()), Proto: f.Proto,
						Family: fam, Scope: scope}
					active := ActiveCount(bs)
					entry := maps.LBService{Count: uint16(active), Terminating: uint16(len(bs) - active),
						RevNatID: rid, Flags: f.ScopeFlags(scope, local)}
					if svc.SessionAffinity {
						entry.AffinityTimeout = cmp.Or(svc.AffinityTimeout, DefaultAffinityTimeout)
					}
					w.services[key] = entry
					for i, b := range bs {
						id, _ := m.backendIDs.lookup(b.key())
						key.Slot = uint16(i + 1)
						w.services[key] = maps.LBService{BackendID: id}
						w.backends[id] = backendEntry(b)
					}
				}
			}
		}
	}
	for fk := range m.tables {
		if !usedTables[fk] {
			delete(m.tables, fk)
		}
	}
	return want, nil
}

// maglevTable returns fk's table for backends with ids, rebuilt only when
// the ids changed (a rebuilt table is a new slice: the old one may still
// be a node's current content).
func (m *Manager) maglevTable(fk frontendKey, bs []Backend, ids []uint32) []uint32 {
	if t, ok := m.tables[fk]; ok && slices.Equal(t.ids, ids) {
		return t.table
	}
	// Frontends with the same backends (a service's node ports, cluster
	// IPs of one family) share one table.
	for _, t := range m.tables {
		if slices.Equal(t.ids, ids) {
			m.tables[fk] = t
			return t.table
		}
	}
	t := &maglevTable{ids: slices.Clone(ids), table: m.builder.Build(maglevBackends(bs, ids), nil)}
	m.tables[fk] = t
	return t.table
}

func backendEntry(b Backend) maps.LBBackend {
	fam, addr := maps.AddrBytes(b.Addr.Addr())
	e := maps.LBBackend{Addr: addr, PortNet: maps.HostToNet16(b.Addr.Port()), Proto: b.Proto, Family: fam}
	if b.Terminating {
		e.Flags = maps.LBBackendFlagTerminating
	}
	return e
}

// sync brings every programmed node's maps to the desired state, then
// releases the ids no node holds any more.
func (m *Manager) sync() error {
	want, err := m.desired()
	if err != nil {
		return fmt.Errorf("sync services: %w", err)
	}
	var errs []error
	for _, ns := range m.nodes {
		if ns.dp == nil {
			continue
		}
		s := &nodeSync{dp: ns.dp, cur: &ns.cur, want: want[ns]}
		for _, ph := range syncPhases {
			if err := ph.run(s); err != nil {
				errs = append(errs, fmt.Errorf("sync services of node %s: %s: %w", ns.node.Name, ph.name, err))
				break
			}
		}
	}
	m.releaseIDs(want)
	return errors.Join(errs...)
}

// releaseIDs frees the ids that neither the desired state nor any node's
// maps hold.
func (m *Manager) releaseIDs(want map[*nodeState]nodeMaps) {
	backends, revnats := map[uint32]bool{}, map[uint32]bool{}
	for _, svcFronts := range m.fronts {
		for _, f := range svcFronts {
			if id, ok := m.revNatIDs.lookup(f.key()); ok {
				revnats[id] = true
			}
			for _, b := range f.Backends {
				if id, ok := m.backendIDs.lookup(b.key()); ok {
					backends[id] = true
				}
			}
		}
	}
	for _, ns := range m.nodes {
		for id := range ns.cur.backends {
			backends[id] = true
		}
		for id := range ns.cur.revnat {
			revnats[id] = true
		}
		for id := range ns.cur.maglev {
			revnats[id] = true
		}
		for k, v := range ns.cur.services {
			if k.Slot == 0 {
				revnats[v.RevNatID] = true
			} else {
				backends[v.BackendID] = true
			}
		}
	}
	m.backendIDs.releaseUnless(func(_ backendKey, id uint32) bool { return backends[id] })
	m.revNatIDs.releaseUnless(func(_ frontendKey, id uint32) bool { return revnats[id] })
}

// nodeSync is one node's sync: each successful write updates cur.
type nodeSync struct {
	dp   Datapath
	cur  *nodeMaps
	want nodeMaps
}

// syncPhase is one step of a node's make-before-break sync.
type syncPhase struct {
	name string
	run  func(*nodeSync) error
}

// syncPhases is the make-before-break order: whatever a new entry refers
// to is written before it, whatever refers to a stale entry is removed
// before it.
//  1. backends (new ones, changed flags): slots and tables name them;
//  2. rev-NAT entries and 3. Maglev tables: service entries name them;
//  4. backend slots (slot >= 1), new and changed: a service entry's count
//     reaches them;
//  5. service entries (slot 0): counts, flags, rev_nat_id;
//  6. service entries of frontends (or scopes) that are gone, then
//  7. their slots and the slots beyond a shrunk service's count;
//  8. rev-NAT entries and 9. Maglev tables no service entry needs;
//  10. backends no slot or table names.
var syncPhases = []syncPhase{
	{"put backends", (*nodeSync).putBackends},
	{"put rev-nat", (*nodeSync).putRevNat},
	{"put maglev", (*nodeSync).putMaglev},
	{"put slots", func(s *nodeSync) error { return s.putServices(false) }},
	{"put service entries", func(s *nodeSync) error { return s.putServices(true) }},
	{"delete service entries", func(s *nodeSync) error { return s.deleteServices(true) }},
	{"delete slots", func(s *nodeSync) error { return s.deleteServices(false) }},
	{"delete rev-nat", (*nodeSync).deleteRevNat},
	{"delete maglev", (*nodeSync).deleteMaglev},
	{"delete backends", (*nodeSync).deleteBackends},
}

// Each phase collects the entries to write or remove, then sorts only
// those (for a deterministic order): a change costs a pass over the maps
// but no sort of all of them.

func (s *nodeSync) putBackends() error {
	for _, id := range changedIDs(s.want.backends, s.cur.backends, func(a, b maps.LBBackend) bool { return a == b }) {
		if err := s.dp.PutLBBackend(id, s.want.backends[id]); err != nil {
			return err
		}
		s.cur.backends[id] = s.want.backends[id]
	}
	return nil
}

func (s *nodeSync) putRevNat() error {
	for _, id := range changedIDs(s.want.revnat, s.cur.revnat, func(a, b maps.LBRevNat) bool { return a == b }) {
		if err := s.dp.PutLBRevNat(id, s.want.revnat[id]); err != nil {
			return err
		}
		s.cur.revnat[id] = s.want.revnat[id]
	}
	return nil
}

func (s *nodeSync) putMaglev() error {
	same := func(a, b []uint32) bool { return len(a) > 0 && len(b) > 0 && &a[0] == &b[0] || slices.Equal(a, b) }
	for _, id := range changedIDs(s.want.maglev, s.cur.maglev, same) {
		if err := s.dp.PutLBMaglev(id, s.want.maglev[id]); err != nil {
			return err
		}
		s.cur.maglev[id] = s.want.maglev[id]
	}
	return nil
}

// putServices writes the service entries (slot0) or the backend slots
// that are new or changed.
func (s *nodeSync) putServices(slot0 bool) error {
	var keys []maps.LBKey
	for k, v := range s.want.services {
		if (k.Slot == 0) != slot0 {
			continue
		}
		if old, ok := s.cur.services[k]; !ok || old != v {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, compareLBKey)
	for _, k := range keys {
		v := s.want.services[k]
		if err := s.dp.PutLBService(k, v); err != nil {
			return err
		}
		s.cur.services[k] = v
	}
	return nil
}

// deleteServices removes the stale service entries (slot0) or slots.
func (s *nodeSync) deleteServices(slot0 bool) error {
	var keys []maps.LBKey
	for k := range s.cur.services {
		if (k.Slot == 0) != slot0 {
			continue
		}
		if _, keep := s.want.services[k]; !keep {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, compareLBKey)
	for _, k := range keys {
		if err := s.dp.DeleteLBService(k); err != nil {
			return err
		}
		delete(s.cur.services, k)
	}
	return nil
}

func (s *nodeSync) deleteRevNat() error {
	for _, id := range staleIDs(s.cur.revnat, s.want.revnat) {
		if err := s.dp.DeleteLBRevNat(id); err != nil {
			return err
		}
		delete(s.cur.revnat, id)
	}
	return nil
}

func (s *nodeSync) deleteMaglev() error {
	for _, id := range staleIDs(s.cur.maglev, s.want.maglev) {
		if err := s.dp.DeleteLBMaglev(id); err != nil {
			return err
		}
		delete(s.cur.maglev, id)
	}
	return nil
}

func (s *nodeSync) deleteBackends() error {
	for _, id := range staleIDs(s.cur.backends, s.want.backends) {
		if err := s.dp.DeleteLBBackend(id); err != nil {
			return err
		}
		delete(s.cur.backends, id)
	}
	return nil
}

// changedIDs returns, sorted, the ids whose want value cur lacks or holds
// differently.
func changedIDs[V any](want, cur map[uint32]V, same func(a, b V) bool) []uint32 {
	var out []uint32
	for id, v := range want {
		if old, ok := cur[id]; !ok || !same(old, v) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// staleIDs returns, sorted, the ids of cur that want lacks.
func staleIDs[V any](cur, want map[uint32]V) []uint32 {
	var out []uint32
	for id := range cur {
		if _, keep := want[id]; !keep {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// validate checks a service and fills its defaults.
func validate(s *Service) error {
	if s.Namespace == "" || s.Name == "" {
		return fmt.Errorf("%w: namespace and name are required", ErrInvalid)
	}
	switch s.Type {
	case "":
		s.Type = ClusterIP
	case ClusterIP, NodePort, LoadBalancer:
	default:
		return fmt.Errorf("%w: unknown type %q", ErrInvalid, s.Type)
	}
	switch s.Algorithm {
	case "":
		s.Algorithm = Random
	case Random, Maglev:
	default:
		return fmt.Errorf("%w: unknown algorithm %q", ErrInvalid, s.Algorithm)
	}
	switch s.Mode {
	case "":
		s.Mode = SNAT
	case SNAT, DSR:
	default:
		return fmt.Errorf("%w: unknown forwarding mode %q", ErrInvalid, s.Mode)
	}
	var v4, v6 int
	for _, a := range s.ClusterIPs {
		if a.Unmap().Is4() {
			v4++
		} else {
			v6++
		}
	}
	if v4 > 1 || v6 > 1 {
		return fmt.Errorf("%w: more than one cluster IP of a family", ErrInvalid)
	}
	for i, p := range s.Ports {
		if p.Port == 0 {
			return fmt.Errorf("%w: port %d: port 0", ErrInvalid, i)
		}
		switch p.Proto {
		case ProtoTCP, ProtoUDP, ProtoSCTP:
		default:
			return fmt.Errorf("%w: port %d: protocol %d is not TCP, UDP or SCTP", ErrInvalid, i, p.Proto)
		}
	}
	if s.AffinityTimeout == 0 {
		s.AffinityTimeout = DefaultAffinityTimeout
	}
	return nil
}

func cloneService(s *Service) *Service {
	c := *s
	c.ClusterIPs = slices.Clone(s.ClusterIPs)
	c.ExternalIPs = slices.Clone(s.ExternalIPs)
	c.LoadBalancerIPs = slices.Clone(s.LoadBalancerIPs)
	c.Ports = slices.Clone(s.Ports)
	c.Selector = cloneLabels(s.Selector)
	return &c
}

func cloneLabels(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sortedLBKeys(m map[maps.LBKey]maps.LBService) []maps.LBKey {
	out := make([]maps.LBKey, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.SortFunc(out, compareLBKey)
	return out
}

func compareLBKey(a, b maps.LBKey) int {
	return cmp.Or(cmp.Compare(a.Family, b.Family), bytes.Compare(a.Addr[:], b.Addr[:]),
		cmp.Compare(maps.NetToHost16(a.DPortNet), maps.NetToHost16(b.DPortNet)), cmp.Compare(a.Proto, b.Proto),
		cmp.Compare(a.Scope, b.Scope), cmp.Compare(a.Slot, b.Slot))
}

// ProtoName names a service protocol (TCP, UDP, SCTP; else its number).
func ProtoName(p uint8) string {
	switch p {
	case ProtoTCP:
		return "TCP"
	case ProtoUDP:
		return "UDP"
	case ProtoSCTP:
		return "SCTP"
	}
	return strconv.Itoa(int(p))
}

// frontendString formats a frontend as "addr:port/PROTO".
func frontendString(a netip.AddrPort, proto uint8) string {
	return a.String() + "/" + ProtoName(proto)
}
