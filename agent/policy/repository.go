package policy

import (
	"fmt"
	"net/netip"
	"sort"
	"sync"

	"github.com/ciliaproject/cilia/agent/policy/load"
)

// PolicyRef names a policy object: its kind, namespace ("" when
// clusterwide) and name.
type PolicyRef struct {
	Kind      load.Kind
	Namespace string
	Name      string
}

// String formats the reference as "Kind namespace/name".
func (r PolicyRef) String() string {
	if r.Namespace == "" {
		return fmt.Sprintf("%s %s", r.Kind, r.Name)
	}
	return fmt.Sprintf("%s %s/%s", r.Kind, r.Namespace, r.Name)
}

// RefOf returns the reference of a loaded policy.
func RefOf(p *load.Policy) PolicyRef {
	return PolicyRef{Kind: p.Kind, Namespace: p.Namespace, Name: p.Name}
}

type storedPolicy struct {
	src   *load.Policy
	rules []*Rule
}

// Repository holds the policies in effect, translated into rules whose
// selectors live in a shared SelectorCache. It is safe for concurrent
// use.
type Repository struct {
	mu       sync.RWMutex
	cache    *SelectorCache
	policies map[PolicyRef]*storedPolicy
	origins  map[uint32]*Origin
	nextID   uint32
	// hostSelector selects the host identity (allow-localhost).
	hostSelector *Selector
	// ordered caches Rules(); nil after a change.
	ordered []*Rule
}

// NewRepository returns an empty repository over cache.
func NewRepository(cache *SelectorCache) *Repository {
	return &Repository{cache: cache, policies: map[PolicyRef]*storedPolicy{}, origins: map[uint32]*Origin{},
		hostSelector: cache.Intern(EntitySelectors("host")[0])}
}

// Cache returns the repository's selector cache.
func (r *Repository) Cache() *SelectorCache { return r.cache }

// Upsert adds p, or replaces the policy of the same kind, namespace and
// name. It returns the rules it replaced and the new rules (callers
// re-resolve the endpoints either set's subjects select).
func (r *Repository) Upsert(p *load.Policy) (old, added []*Rule, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rules, err := Translate(p, func() uint32 { r.nextID++; return r.nextID })
	if err != nil {
		return nil, nil, fmt.Errorf("upsert policy %s: %w", p.Ref(), err)
	}
	r.intern(rules)
	ref := RefOf(p)
	if prev, ok := r.policies[ref]; ok {
		old = prev.rules
		r.release(prev.rules)
	}
	r.policies[ref] = &storedPolicy{src: p, rules: rules}
	r.ordered = nil
	return old, rules, nil
}

// Delete removes a policy and returns its rules.
func (r *Repository) Delete(ref PolicyRef) ([]*Rule, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	prev, ok := r.policies[ref]
	if !ok {
		return nil, false
	}
	delete(r.policies, ref)
	r.release(prev.rules)
	r.ordered = nil
	return prev.rules, true
}

// intern replaces every selector of rules by the cache's copy and records
// the rules' origins by ID.
func (r *Repository) intern(rules []*Rule) {
	for _, rule := range rules {
		rule.Subject = r.cache.Intern(rule.Subject)
		r.origins[rule.Origin.RuleID] = rule.Origin
		for _, sec := range []*Section{&rule.Ingress, &rule.Egress} {
			for _, t := range sec.Rules {
				r.origins[t.Origin.RuleID] = t.Origin
				for i, s := range t.Peers {
					t.Peers[i] = r.cache.Intern(s)
				}
			}
		}
	}
}

func (r *Repository) release(rules []*Rule) {
	for _, rule := range rules {
		r.cache.Release(rule.Subject)
		delete(r.origins, rule.Origin.RuleID)
		for _, sec := range []*Section{&rule.Ingress, &rule.Egress} {
			for _, t := range sec.Rules {
				delete(r.origins, t.Origin.RuleID)
				for _, s := range t.Peers {
					r.cache.Release(s)
				}
			}
		}
	}
}

// Rules returns every rule, ordered by policy reference (kind,
// namespace, name) and position. The slice is shared until the next
// change: callers must not modify it.
func (r *Repository) Rules() []*Rule {
	r.mu.RLock()
	if r.ordered != nil {
		defer r.mu.RUnlock()
		return r.ordered
	}
	r.mu.RUnlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	refs := make([]PolicyRef, 0, len(r.policies))
	for ref := range r.policies {
		refs = append(refs, ref)
	}
	sort.Slice(refs, func(i, j int) bool { return refs[i].less(refs[j]) })
	out := []*Rule{}
	for _, ref := range refs {
		out = append(out, r.policies[ref].rules...)
	}
	r.ordered = out
	return out
}

// less orders references by kind, namespace and name.
func (r PolicyRef) less(o PolicyRef) bool {
	if r.Kind != o.Kind {
		return r.Kind < o.Kind
	}
	if r.Namespace != o.Namespace {
		return r.Namespace < o.Namespace
	}
	return r.Name < o.Name
}

// Policies returns the stored policies, ordered by reference.
func (r *Repository) Policies() []*load.Policy {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []*load.Policy
	for _, sp := range r.policies {
		out = append(out, sp.src)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ref() < out[j].Ref() })
	return out
}

// Origin returns the rule with the given datapath rule ID.
func (r *Repository) Origin(id uint32) (*Origin, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	o, ok := r.origins[id]
	return o, ok
}

// Prefixes returns every CIDR prefix the rules name (CIDRs and their
// excepts), deduplicated and sorted: each needs a CIDR identity and an
// ipcache entry.
func (r *Repository) Prefixes() []netip.Prefix {
	seen := map[netip.Prefix]struct{}{}
	for _, rule := range r.Rules() {
		for _, sec := range []*Section{&rule.Ingress, &rule.Egress} {
			for _, t := range sec.Rules {
				for _, s := range t.Peers {
					for _, p := range s.Prefixes() {
						seen[p] = struct{}{}
					}
				}
			}
		}
	}
	out := make([]netip.Prefix, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Addr() != out[j].Addr() {
			return out[i].Addr().Less(out[j].Addr())
		}
		return out[i].Bits() < out[j].Bits()
	})
	return out
}
