package maps_test

import (
	"testing"

	"github.com/ciliaproject/cilia/datapath/maps"
)

func TestIdentityMark(t *testing.T) {
	for _, tc := range []struct {
		identity, mark uint32
	}{
		{2, 0x00020F00},
		{1001, 0x03E90F00},
		{0x0A0BB8, 0x0BB80F0A},
		{0xFFFFFF, 0xFFFF0FFF},
		{0x01000004, 0x00041F00}, // a local CIDR identity keeps bit 24
	} {
		if got := maps.IdentityMark(tc.identity); got != tc.mark {
			t.Errorf("IdentityMark(%#x) = %#x, want %#x", tc.identity, got, tc.mark)
		}
		id, ok := maps.MarkIdentity(tc.mark)
		if !ok || id != tc.identity {
			t.Errorf("MarkIdentity(%#x) = %#x, %v; want %#x, true", tc.mark, id, ok, tc.identity)
		}
	}
	for _, mark := range []uint32{0, maps.MarkMagicToProxy | 80<<16, 0x0E00} {
		if _, ok := maps.MarkIdentity(mark); ok {
			t.Errorf("MarkIdentity(%#x): reports an identity", mark)
		}
	}
}
