package policy

import (
	"sort"
	"sync"

	"github.com/ciliaproject/cilia/agent/identity"
)

// SelectorCache keeps, for every selector in use, the identities it
// selects. Selections are computed once when a selector is first used and
// then kept up to date one identity at a time as identities come and go,
// so resolving a policy never re-matches labels. It implements
// identity.Observer. It is safe for concurrent use.
type SelectorCache struct {
	mu        sync.RWMutex
	ids       map[identity.NumericIdentity]*identity.Identity
	selectors map[string]*cachedSelector
}

type cachedSelector struct {
	sel  *Selector
	ids  map[identity.NumericIdentity]struct{}
	refs int
}

// NewSelectorCache returns an empty cache.
func NewSelectorCache() *SelectorCache {
	return &SelectorCache{ids: map[identity.NumericIdentity]*identity.Identity{}, selectors: map[string]*cachedSelector{}}
}

// Intern returns the cache's copy of s (equal selectors share one) and
// takes a reference to it; a new selector's selections are computed
// against every known identity.
func (c *SelectorCache) Intern(s *Selector) *Selector {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cs, ok := c.selectors[s.Key()]; ok {
		cs.refs++
		return cs.sel
	}
	cs := &cachedSelector{sel: s, ids: map[identity.NumericIdentity]struct{}{}, refs: 1}
	if !s.Wildcard {
		for n, id := range c.ids {
			if s.Matches(id) {
				cs.ids[n] = struct{}{}
			}
		}
	}
	c.selectors[s.Key()] = cs
	return s
}

// Release drops a reference taken by Intern; the selector leaves the cache
// with its last reference.
func (c *SelectorCache) Release(s *Selector) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cs, ok := c.selectors[s.Key()]; ok {
		if cs.refs--; cs.refs == 0 {
			delete(c.selectors, s.Key())
		}
	}
}

// Selections returns the identities s selects, sorted; the wildcard
// selects identity 0 (any identity, for the datapath).
func (c *SelectorCache) Selections(s *Selector) []identity.NumericIdentity {
	if s.Wildcard {
		return []identity.NumericIdentity{0}
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	cs, ok := c.selectors[s.Key()]
	if !ok {
		return nil
	}
	out := make([]identity.NumericIdentity, 0, len(cs.ids))
	for n := range cs.ids {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Selects reports whether s selects identity n (per the cache).
func (c *SelectorCache) Selects(s *Selector, n identity.NumericIdentity) bool {
	if s.Wildcard {
		return true
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	cs, ok := c.selectors[s.Key()]
	if !ok {
		return false
	}
	_, sel := cs.ids[n]
	return sel
}

// Identity returns a known identity.
func (c *SelectorCache) Identity(n identity.NumericIdentity) (*identity.Identity, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	id, ok := c.ids[n]
	return id, ok
}

// IdentitiesAdded adds ids to the selections of every selector that
// selects them.
func (c *SelectorCache) IdentitiesAdded(ids []*identity.Identity) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range ids {
		c.ids[id.ID] = id
		for _, cs := range c.selectors {
			if !cs.sel.Wildcard && cs.sel.Matches(id) {
				cs.ids[id.ID] = struct{}{}
			}
		}
	}
}

// IdentitiesRemoved removes ids from every selection.
func (c *SelectorCache) IdentitiesRemoved(ids []*identity.Identity) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range ids {
		delete(c.ids, id.ID)
		for _, cs := range c.selectors {
			delete(cs.ids, id.ID)
		}
	}
}
