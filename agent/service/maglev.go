package service

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/ciliaproject/cilia/datapath/maps"
)

// DefaultMaglevSize is the default Maglev table size M (a prime).
const DefaultMaglevSize = maps.LBMaglevMax

// ErrMaglevSize is returned for a Maglev table size that is not a prime
// in [3, maps.LBMaglevMax].
var ErrMaglevSize = errors.New("invalid maglev table size")

// CheckMaglevSize returns m, or DefaultMaglevSize for 0, when it is a
// valid table size: a prime no larger than maps.LBMaglevMax.
func CheckMaglevSize(m int) (int, error) {
	if m == 0 {
		return DefaultMaglevSize, nil
	}
	if m < 3 || m > maps.LBMaglevMax || !isPrime(m) {
		return 0, fmt.Errorf("check maglev size %d: %w (a prime in 3..%d)", m, ErrMaglevSize, maps.LBMaglevMax)
	}
	return m, nil
}

func isPrime(n int) bool {
	if n < 2 {
		return false
	}
	for d := 2; d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}

// Maglev hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software
// Network Load Balancer", NSDI 2016, §3.4). Each backend gets a
// permutation of the M table positions, offset + j*skip (mod M), from two
// hashes of its name "addr:port" (netip.AddrPort's String form, e.g.
// "10.0.0.1:80" or "[fd00::1]:80"):
//
//	base   = FNV-1a 64 of the name
//	offset = splitmix64(base ^ maglevSeedOffset) % M
//	skip   = splitmix64(base ^ maglevSeedSkip) % (M-1) + 1
//
// (splitmix64 is Steele, Lea and Flood's 64-bit finalizer, which spreads
// FNV's weak low bits.) Since M is prime, every skip in [1, M-1] visits
// every position. The backends, sorted by name, take turns claiming their
// next unclaimed preferred position until the table is full, so each gets
// ⌊M/N⌋ or ⌈M/N⌉ entries, and the table depends only on the set of names:
// every node builds the same one.
const (
	maglevSeedOffset uint64 = 0x9e3779b97f4a7c15
	maglevSeedSkip   uint64 = 0xc2b2ae3d27d4eb4f
)

// fnv1a64 is the 64-bit FNV-1a hash of s.
func fnv1a64(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// splitmix64 is the splitmix64 finalizer.
func splitmix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// MaglevPermutation returns a backend name's offset and skip for table
// size m.
func MaglevPermutation(name string, m int) (offset, skip uint32) {
	base := fnv1a64(name)
	return uint32(splitmix64(base^maglevSeedOffset) % uint64(m)),
		uint32(splitmix64(base^maglevSeedSkip)%uint64(m-1) + 1)
}

// MaglevBackend is a backend as the Maglev builder sees it: its id (what
// the table holds) and its name (what it hashes).
type MaglevBackend struct {
	ID   uint32
	Name string
}

// MaglevName returns the name a backend address hashes as: "addr:port".
func MaglevName(a netip.AddrPort) string { return a.String() }

// MaglevBuilder builds Maglev tables of one size, reusing its buffers: a
// builder is not safe for concurrent use.
type MaglevBuilder struct {
	m      int
	next   []uint32 // per backend: its current permutation position
	skip   []uint32
	taken  []uint64 // bitset of the claimed table entries
	sorted []MaglevBackend
}

// NewMaglevBuilder returns a builder of tables of size m (see
// CheckMaglevSize).
func NewMaglevBuilder(m int) (*MaglevBuilder, error) {
	m, err := CheckMaglevSize(m)
	if err != nil {
		return nil, err
	}
	return &MaglevBuilder{m: m, taken: make([]uint64, (m+63)/64)}, nil
}

// Size returns the table size M.
func (mb *MaglevBuilder) Size() int { return mb.m }

// Build fills table (len M; allocated when nil or too short) with the
// Maglev lookup table of backends and returns it. The result depends only
// on the set of backends, not on their order. Backends with duplicate
// names must not be passed. With no backend the table is all zeros.
func (mb *MaglevBuilder) Build(backends []MaglevBackend, table []uint32) []uint32 {
	m := mb.m
	if len(table) < m {
		table = make([]uint32, m)
	}
	table = table[:m]
	n := len(backends)
	if n == 0 {
		clear(table)
		return table
	}
	mb.sorted = append(mb.sorted[:0], backends...)
	slices.SortFunc(mb.sorted, func(a, b MaglevBackend) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	if cap(mb.next) < n {
		mb.next, mb.skip = make([]uint32, n), make([]uint32, n)
	}
	next, skip := mb.next[:n], mb.skip[:n]
	for i, b := range mb.sorted {
		next[i], skip[i] = MaglevPermutation(b.Name, m)
	}
	taken := mb.taken
	clear(taken)
	um := uint32(m)
	filled := 0
	for {
		for i := 0; i < n; i++ {
			c, sk := next[i], skip[i]
			for taken[c>>6]&(1<<(c&63)) != 0 {
				c += sk
				if c >= um {
					c -= um
				}
			}
			taken[c>>6] |= 1 << (c & 63)
			table[c] = mb.sorted[i].ID
			c += sk
			if c >= um {
				c -= um
			}
			next[i] = c
			filled++
			if filled == m {
				return table
			}
		}
	}
}

// maglevBackends returns the Maglev view of backends whose ids are ids.
func maglevBackends(bs []Backend, ids []uint32) []MaglevBackend {
	out := make([]MaglevBackend, len(bs))
	for i, b := range bs {
		out[i] = MaglevBackend{ID: ids[i], Name: MaglevName(b.Addr)}
	}
	return out
}

// MaglevShares counts each backend id's entries in table.
func MaglevShares(table []uint32) map[uint32]int {
	out := map[uint32]int{}
	for _, id := range table {
		out[id]++
	}
	return out
}
