package maps_test

import (
	"bytes"
	"errors"
	"reflect"
	"slices"
	"testing"

	"github.com/cilium/ebpf/btf"

	"github.com/ciliaproject/cilia/datapath"
	"github.com/ciliaproject/cilia/datapath/maps"
)

// TestLayoutMatchesBTF checks every Go mirror against the C struct of the
// same name in the compiled objects' BTF: size, and for each member its
// name, offset and size, in order. lxc.o must hold every struct; host.o and
// overlay.o are checked for the structs they hold, and must hold the ones
// they share with Go through maps and events.
func TestLayoutMatchesBTF(t *testing.T) {
	for _, obj := range []struct {
		name     string
		elf      []byte
		required []string // nil: all
	}{
		{"lxc", datapath.LxcObject(), nil},
		{"host", datapath.HostObject(), []string{"event", "ipcache_entry", "addr_key", "endpoint_info", "metrics_value"}},
		{"overlay", datapath.OverlayObject(), []string{"event", "ipcache_entry", "addr_key", "endpoint_info", "metrics_value"}},
	} {
		t.Run(obj.name, func(t *testing.T) {
			spec, err := btf.LoadSpecFromReader(bytes.NewReader(obj.elf))
			if err != nil {
				t.Fatalf("load BTF: %v", err)
			}
			checkLayouts(t, spec, obj.required)
		})
	}
}

func checkLayouts(t *testing.T, spec *btf.Spec, required []string) {
	for _, tc := range []struct {
		cStruct string
		goType  any
	}{
		{"tuple", maps.Tuple{}},
		{"tuple4", maps.Tuple4{}},
		{"ct_entry", maps.CTEntry{}},
		{"ipcache_key", maps.IPCacheKey{}},
		{"ipcache_entry", maps.IPCacheEntry{}},
		{"addr_key", maps.AddrKey{}},
		{"endpoint_info", maps.EndpointInfo{}},
		{"ep_policy_state", maps.EndpointPolicyState{}},
		{"policy_key", maps.PolicyKey{}},
		{"policy_entry", maps.PolicyEntry{}},
		{"frag_key", maps.FragKey{}},
		{"frag_ports", maps.FragPorts{}},
		{"metrics_value", maps.MetricsValue{}},
		{"event", maps.Event{}},
		{"lb_key", maps.LBKey{}},
		{"lb_service", maps.LBService{}},
		{"lb_backend", maps.LBBackend{}},
		{"lb_revnat", maps.LBRevNat{}},
		{"lb_maglev", maps.LBMaglev{}},
		{"lb_affinity_key", maps.LBAffinityKey{}},
		{"lb_affinity_val", maps.LBAffinityValue{}},
	} {
		t.Run(tc.cStruct, func(t *testing.T) {
			var s *btf.Struct
			if err := spec.TypeByName(tc.cStruct, &s); err != nil {
				if required != nil && !slices.Contains(required, tc.cStruct) {
					t.Skipf("struct %s not in this object", tc.cStruct)
				}
				t.Fatalf("struct %s not in BTF: %v", tc.cStruct, err)
			}
			gt := reflect.TypeOf(tc.goType)
			if uintptr(s.Size) != gt.Size() {
				t.Fatalf("size: C %d, Go %d", s.Size, gt.Size())
			}
			if len(s.Members) != gt.NumField() {
				t.Fatalf("members: C %d, Go %d", len(s.Members), gt.NumField())
			}
			for i, m := range s.Members {
				f := gt.Field(i)
				if got := f.Tag.Get("btf"); got != m.Name {
					t.Errorf("member %d: C %q, Go %s tagged %q", i, m.Name, f.Name, got)
				}
				if uintptr(m.Offset.Bytes()) != f.Offset {
					t.Errorf("%s: offset C %d, Go %d", m.Name, m.Offset.Bytes(), f.Offset)
				}
				size, err := btf.Sizeof(m.Type)
				if err != nil {
					t.Fatalf("%s: size: %v", m.Name, err)
				}
				if uintptr(size) != f.Type.Size() {
					t.Errorf("%s: size C %d, Go %d", m.Name, size, f.Type.Size())
				}
			}
		})
	}
}

func TestPolicyKeys(t *testing.T) {
	for _, tc := range []struct {
		name    string
		proto   uint8
		ports   maps.PortRange
		want    [][2]uint32 // {prefixlen, port}
		wantErr bool
	}{
		{name: "any protocol", proto: 0, want: [][2]uint32{{40, 0}}},
		{name: "any port", proto: 6, want: [][2]uint32{{48, 0}}},
		{name: "full range is any port", proto: 6, ports: maps.PortRange{0, 65535}, want: [][2]uint32{{48, 0}}},
		{name: "single port", proto: 6, ports: maps.PortRange{80, 80}, want: [][2]uint32{{64, 80}}},
		{name: "lo only", proto: 17, ports: maps.PortRange{53, 0}, want: [][2]uint32{{64, 53}}},
		{name: "aligned block", proto: 6, ports: maps.PortRange{8080, 8087}, want: [][2]uint32{{61, 8080}}},
		{name: "unaligned range", proto: 6, ports: maps.PortRange{79, 82},
			want: [][2]uint32{{64, 79}, {63, 80}, {64, 82}}},
		{name: "upper half", proto: 6, ports: maps.PortRange{32768, 65535}, want: [][2]uint32{{49, 32768}}},
		{name: "ports without protocol", proto: 0, ports: maps.PortRange{80, 80}, wantErr: true},
		{name: "reversed", proto: 6, ports: maps.PortRange{90, 80}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys, err := maps.PolicyKeys(7, maps.Egress, tc.proto, tc.ports)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("want error, got %v", keys)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got [][2]uint32
			for _, k := range keys {
				if k.Identity != 7 || k.Egress != 1 || k.Protocol != tc.proto {
					t.Errorf("key %+v: wrong identity/direction/protocol", k)
				}
				got = append(got, [2]uint32{k.Prefixlen, uint32(maps.NetToHost16(k.DPortNet))})
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestPolicyKeysCoverExactly checks that the blocks of many ranges cover
// exactly the range: every port inside matches one block, none outside.
func TestPolicyKeysCoverExactly(t *testing.T) {
	for _, r := range []maps.PortRange{{1, 1}, {1, 1023}, {1000, 2000}, {65000, 65535}, {3, 65534}} {
		keys, err := maps.PolicyKeys(0, maps.Ingress, 6, r)
		if err != nil {
			t.Fatal(err)
		}
		for p := uint32(0); p <= 0xffff; p++ {
			n := 0
			for _, k := range keys {
				shift := 64 - k.Prefixlen
				if p>>shift == uint32(maps.NetToHost16(k.DPortNet))>>shift {
					n++
				}
			}
			in := p >= uint32(r.Lo) && p <= uint32(r.Hi)
			if (in && n != 1) || (!in && n != 0) {
				t.Fatalf("range %v: port %d matched %d blocks", r, p, n)
			}
		}
	}
}

func TestWrapUpdateError(t *testing.T) {
	if err := maps.WrapUpdateError("x", nil); err != nil {
		t.Fatalf("nil error wrapped: %v", err)
	}
	if err := maps.WrapUpdateError("x", errors.New("other")); errors.Is(err, maps.ErrMapFull) {
		t.Fatalf("unrelated error reported as full: %v", err)
	}
}
