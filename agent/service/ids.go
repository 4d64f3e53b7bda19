package service

import (
	"errors"
	"fmt"
)

// ErrIDsExhausted is returned when an id space has no free id.
var ErrIDsExhausted = errors.New("ids exhausted")

// idAllocator hands out cluster-wide ids (1..max) for keys: the same key
// keeps its id while it is allocated. Ids are handed out round-robin, so
// a released id is reused only after the counter has gone round (a stale
// conntrack entry that still names it is unlikely to meet its reuse), and
// the manager releases an id only once no node's maps hold it any more.
type idAllocator[K comparable] struct {
	what string
	ids  map[K]uint32
	keys map[uint32]K
	next uint32
	max  uint32
}

func newIDAllocator[K comparable](what string, max uint32) *idAllocator[K] {
	return &idAllocator[K]{what: what, ids: map[K]uint32{}, keys: map[uint32]K{}, next: 1, max: max}
}

// get returns k's id, allocating one when it has none.
func (a *idAllocator[K]) get(k K) (uint32, error) {
	if id, ok := a.ids[k]; ok {
		return id, nil
	}
	if uint32(len(a.keys)) >= a.max {
		return 0, fmt.Errorf("allocate %s id: %w (%d in use)", a.what, ErrIDsExhausted, len(a.keys))
	}
	for {
		id := a.next
		a.next++
		if a.next > a.max {
			a.next = 1
		}
		if _, used := a.keys[id]; !used {
			a.ids[k], a.keys[id] = id, k
			return id, nil
		}
	}
}

// lookup returns k's id, if it has one.
func (a *idAllocator[K]) lookup(k K) (uint32, bool) {
	id, ok := a.ids[k]
	return id, ok
}

// key returns the key an id is allocated to.
func (a *idAllocator[K]) key(id uint32) (K, bool) {
	k, ok := a.keys[id]
	return k, ok
}

// release frees the id of every allocated key for which keep returns
// false.
func (a *idAllocator[K]) releaseUnless(keep func(k K, id uint32) bool) {
	for k, id := range a.ids {
		if !keep(k, id) {
			delete(a.ids, k)
			delete(a.keys, id)
		}
	}
}
