package service

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// testBackends returns n backends 10.x.y.z:8080 with ids 1..n.
func testBackends(n int) []MaglevBackend {
	out := make([]MaglevBackend, n)
	for i := range out {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		out[i] = MaglevBackend{ID: uint32(i + 1), Name: MaglevName(netip.AddrPortFrom(a, 8080))}
	}
	return out
}

func TestCheckMaglevSize(t *testing.T) {
	tests := []struct {
		in, want int
		err      bool
	}{
		{0, 16381, false}, {16381, 16381, false}, {251, 251, false}, {3, 3, false},
		{16380, 0, true}, {16411, 0, true}, {1, 0, true}, {2, 0, true}, {-7, 0, true}, {1000, 0, true},
	}
	for _, tt := range tests {
		got, err := CheckMaglevSize(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("CheckMaglevSize(%d) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.err)
		}
		if err != nil && !errors.Is(err, ErrMaglevSize) {
			t.Errorf("CheckMaglevSize(%d): error %v is not ErrMaglevSize", tt.in, err)
		}
	}
}

// maglevDisruption builds the table of n backends and the table without
// backend `drop`, and returns the percentage of the entries of surviving
// backends whose backend changed.
func maglevDisruption(t testing.TB, mb *MaglevBuilder, n, drop int) float64 {
	bs := testBackends(n)
	before := mb.Build(bs, nil)
	gone := bs[drop].ID
	after := mb.Build(append(append([]MaglevBackend{}, bs[:drop]...), bs[drop+1:]...), nil)
	moved, surviving := 0, 0
	for i := range before {
		if after[i] == gone {
			t.Fatalf("entry %d still names removed backend %d", i, gone)
		}
		if before[i] == gone {
			continue
		}
		surviving++
		if after[i] != before[i] {
			moved++
		}
	}
	return 100 * float64(moved) / float64(surviving)
}

func TestMaglevTable(t *testing.T) {
	tests := []struct{ m, n int }{{16381, 1000}, {16381, 3}, {251, 1}, {251, 7}, {1021, 100}, {16381, 16381 / 2}}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("M=%d,N=%d", tt.m, tt.n), func(t *testing.T) {
			mb, err := NewMaglevBuilder(tt.m)
			if err != nil {
				t.Fatal(err)
			}
			bs := testBackends(tt.n)
			table := mb.Build(bs, nil)
			if len(table) != tt.m {
				t.Fatalf("len = %d, want %d", len(table), tt.m)
			}
			shares := MaglevShares(table)
			if len(shares) != tt.n {
				t.Fatalf("%d backends in the table, want %d", len(shares), tt.n)
			}
			lo, hi := tt.m/tt.n, (tt.m+tt.n-1)/tt.n
			for id, c := range shares {
				if id < 1 || int(id) > tt.n {
					t.Fatalf("unknown backend id %d", id)
				}
				if c < lo || c > hi {
					t.Errorf("backend %d has %d entries, want %d..%d", id, c, lo, hi)
				}
			}
			// Order independence: a shuffled input gives the same table.
			shuffled := append([]MaglevBackend{}, bs...)
			rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			again := mb.Build(shuffled, nil)
			for i := range table {
				if again[i] != table[i] {
					t.Fatalf("entry %d: %d after shuffling the backends, %d before", i, again[i], table[i])
				}
			}
		})
	}
}

func TestMaglevEmpty(t *testing.T) {
	mb, _ := NewMaglevBuilder(251)
	table := mb.Build(nil, []uint32{7, 7, 7})
	if len(table) != 251 {
		t.Fatalf("len %d", len(table))
	}
	for i, v := range table {
		if v != 0 {
			t.Fatalf("entry %d = %d, want 0", i, v)
		}
	}
}

// TestMaglevPermutation pins the hash: a change of the hash changes every
// node's tables (which must agree) and needs a deliberate update here.
func TestMaglevPermutation(t *testing.T) {
	tests := []struct {
		name         string
		offset, skip uint32
	}{
		{"10.0.0.1:80", 16038, 11070},
		{"[fd00::1]:80", 3135, 7481},
	}
	for _, tt := range tests {
		o, s := MaglevPermutation(tt.name, 16381)
		if o != tt.offset || s != tt.skip {
			t.Errorf("%s: offset %d skip %d, want %d %d", tt.name, o, s, tt.offset, tt.skip)
		}
		if fnv1a64("") != 14695981039346656037 || fnv1a64("a") != 0xaf63dc4c8601ec8c {
			t.Fatalf("fnv1a64 is not FNV-1a 64")
		}
	}
}

// TestMaglevDisruption removes backends one at a time from 1000 (M=16381)
// and checks how many entries of the surviving backends moved.
func TestMaglevDisruption(t *testing.T) {
	mb, _ := NewMaglevBuilder(16381)
	worst, sum := 0.0, 0.0
	drops := []int{0, 1, 250, 499, 500, 998, 999}
	for _, d := range drops {
		p := maglevDisruption(t, mb, 1000, d)
		sum += p
		worst = max(worst, p)
	}
	t.Logf("M=16381 N=1000: surviving backends' entries moved: mean %.3f%%, worst %.3f%%", sum/float64(len(drops)), worst)
	if worst >= 1 {
		t.Errorf("removing one backend of 1000 moved %.3f%% of the surviving backends' entries, want < 1%%", worst)
	}
}

func BenchmarkMaglevTable(b *testing.B) {
	mb, _ := NewMaglevBuilder(16381)
	bs := testBackends(1000)
	table := make([]uint32, 16381)
	b.ReportAllocs()
	for b.Loop() {
		table = mb.Build(bs, table)
	}
}

// BenchmarkMaglevDisruption reports the percentage of the surviving
// backends' entries that move when one backend of 1000 goes (M=16381),
// averaged over which backend goes.
func BenchmarkMaglevDisruption(b *testing.B) {
	mb, _ := NewMaglevBuilder(16381)
	var sum, worst float64
	runs := 0
	for b.Loop() {
		p := maglevDisruption(b, mb, 1000, runs*37%1000)
		sum += p
		worst = max(worst, p)
		runs++
	}
	b.ReportMetric(sum/float64(runs), "%moved")
	b.ReportMetric(worst, "%moved-worst")
}

// referenceMaglev is the paper's populate (Eisenbud et al. 2016,
// Pseudocode 1) written plainly: full permutation arrays, modulo
// arithmetic, backends in name order.
func referenceMaglev(bs []MaglevBackend, m int) []uint32 {
	sorted := append([]MaglevBackend{}, bs...)
	slices.SortFunc(sorted, func(a, b MaglevBackend) int { return strings.Compare(a.Name, b.Name) })
	perm := make([][]int, len(sorted))
	for i, b := range sorted {
		off, skip := MaglevPermutation(b.Name, m)
		perm[i] = make([]int, m)
		for j := range m {
			perm[i][j] = (int(off) + j*int(skip)) % m
		}
	}
	entry := make([]int, m)
	for i := range entry {
		entry[i] = -1
	}
	next := make([]int, len(sorted))
	n := 0
	for {
		for i := range sorted {
			c := perm[i][next[i]]
			for entry[c] >= 0 {
				next[i]++
				c = perm[i][next[i]]
			}
			entry[c] = i
			next[i]++
			n++
			if n == m {
				out := make([]uint32, m)
				for j, e := range entry {
					out[j] = sorted[e].ID
				}
				return out
			}
		}
	}
}

func TestMaglevMatchesReference(t *testing.T) {
	for _, tt := range []struct{ m, n int }{{7, 3}, {251, 1}, {251, 10}, {1021, 300}, {16381, 50}} {
		mb, err := NewMaglevBuilder(tt.m)
		if err != nil {
			t.Fatal(err)
		}
		bs := testBackends(tt.n)
		if got, want := mb.Build(bs, nil), referenceMaglev(bs, tt.m); !slices.Equal(got, want) {
			t.Errorf("M=%d N=%d: the builder's table differs from the reference populate", tt.m, tt.n)
		}
	}
}
