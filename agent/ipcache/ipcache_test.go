package ipcache

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/ciliaproject/cilia/agent/identity"
)

// recorder records the writes Sync makes.
type recorder struct {
	ops     []string
	failOn  string
	entries map[netip.Prefix]identity.NumericIdentity
}

func (r *recorder) UpsertIPCache(p netip.Prefix, e Entry) error {
	id := e.Identity
	op := fmt.Sprintf("put %s=%d", p, id)
	if e.TunnelEndpoint.IsValid() {
		op += "@" + e.TunnelEndpoint.String()
	}
	if op == r.failOn {
		return errors.New("map full")
	}
	r.ops = append(r.ops, op)
	r.entries[p] = id
	return nil
}

func (r *recorder) DeleteIPCache(p netip.Prefix) error {
	r.ops = append(r.ops, "del "+p.String())
	delete(r.entries, p)
	return nil
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// entries turns prefix -> identity into ipcache entries without tunnel
// endpoints.
func entries(m map[netip.Prefix]identity.NumericIdentity) map[netip.Prefix]Entry {
	out := map[netip.Prefix]Entry{}
	for p, id := range m {
		out[p] = Entry{Identity: id}
	}
	return out
}

func TestLookupLongestPrefix(t *testing.T) {
	c := New()
	want := map[netip.Prefix]identity.NumericIdentity{
		pfx("10.244.1.10/32"): 256, pfx("10.0.0.0/8"): 1 << 24, pfx("10.244.0.0/16"): 1<<24 | 2,
		pfx("0.0.0.0/0"): 1<<24 | 3, pfx("fd00::10/128"): 257,
	}
	if _, err := c.Sync(entries(want), nil); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		addr   string
		id     identity.NumericIdentity
		prefix string
	}{
		{"10.244.1.10", 256, "10.244.1.10/32"},
		{"10.244.1.11", 1<<24 | 2, "10.244.0.0/16"},
		{"10.1.2.3", 1 << 24, "10.0.0.0/8"},
		{"203.0.113.7", 1<<24 | 3, "0.0.0.0/0"},
		{"fd00::10", 257, "fd00::10/128"},
		{"2001:db8::1", identity.World, "invalid Prefix"}, // 0.0.0.0/0 covers no IPv6 address
	}
	for _, tt := range tests {
		id, p, _ := c.Lookup(netip.MustParseAddr(tt.addr))
		if id != tt.id || p.String() != tt.prefix {
			t.Errorf("Lookup(%s) = %d %s, want %d %s", tt.addr, id, p, tt.id, tt.prefix)
		}
	}
}

func TestSyncWritesOnlyDifferences(t *testing.T) {
	c := New()
	w := &recorder{entries: map[netip.Prefix]identity.NumericIdentity{}}
	first := map[netip.Prefix]identity.NumericIdentity{pfx("10.0.0.1/32"): 256, pfx("10.0.0.2/32"): 257}
	if n, err := c.Sync(entries(first), w); err != nil || n != 2 {
		t.Fatalf("first sync: %d writes, %v", n, err)
	}
	w.ops = nil
	// 10.0.0.2 moves to another identity, 10.0.0.1 goes, 10.0.0.3 comes.
	second := map[netip.Prefix]identity.NumericIdentity{pfx("10.0.0.2/32"): 258, pfx("10.0.0.3/32"): 256}
	if n, err := c.Sync(entries(second), w); err != nil || n != 3 {
		t.Fatalf("second sync: %d writes, %v", n, err)
	}
	if got, want := strings.Join(w.ops, "; "), "put 10.0.0.2/32=258; put 10.0.0.3/32=256; del 10.0.0.1/32"; got != want {
		t.Fatalf("writes %q, want %q (upserts before deletes)", got, want)
	}
	w.ops = nil
	if n, _ := c.Sync(entries(second), w); n != 0 || len(w.ops) != 0 {
		t.Fatalf("unchanged sync wrote %v", w.ops)
	}
	if len(w.entries) != c.Len() {
		t.Fatalf("datapath has %d entries, ipcache %d", len(w.entries), c.Len())
	}
}

func TestSyncErrorKeepsWhatWasWritten(t *testing.T) {
	c := New()
	w := &recorder{entries: map[netip.Prefix]identity.NumericIdentity{}, failOn: "put 10.0.0.2/32=257"}
	want := map[netip.Prefix]identity.NumericIdentity{pfx("10.0.0.1/32"): 256, pfx("10.0.0.2/32"): 257}
	if _, err := c.Sync(entries(want), w); err == nil {
		t.Fatal("no error")
	}
	if c.Len() != 1 {
		t.Fatalf("ipcache has %d entries after a failed write, want the 1 written", c.Len())
	}
	w.failOn = ""
	if n, err := c.Sync(entries(want), w); err != nil || n != 1 {
		t.Fatalf("retry: %d writes, %v; want the missing one", n, err)
	}
}

func TestSyncWritesTunnelEndpointChanges(t *testing.T) {
	c := New()
	w := &recorder{entries: map[netip.Prefix]identity.NumericIdentity{}}
	tep := netip.MustParseAddr("192.168.0.12")
	want := map[netip.Prefix]Entry{pfx("10.244.2.10/32"): {Identity: 256, TunnelEndpoint: tep}}
	if n, err := c.Sync(want, w); err != nil || n != 1 {
		t.Fatalf("sync: %d writes, %v", n, err)
	}
	// The pod moves behind another node: same identity, new endpoint.
	want[pfx("10.244.2.10/32")] = Entry{Identity: 256, TunnelEndpoint: netip.MustParseAddr("192.168.0.13")}
	w.ops = nil
	if n, err := c.Sync(want, w); err != nil || n != 1 {
		t.Fatalf("resync: %d writes, %v", n, err)
	}
	if got, wantOp := strings.Join(w.ops, "; "), "put 10.244.2.10/32=256@192.168.0.13"; got != wantOp {
		t.Fatalf("writes %q, want %q", got, wantOp)
	}
	if e, ok := c.Entry(pfx("10.244.2.10/32")); !ok || e.TunnelEndpoint.String() != "192.168.0.13" {
		t.Fatalf("Entry = %+v, %v", e, ok)
	}
}
