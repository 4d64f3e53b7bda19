package maps

// Load-balancing constants (lb.h).
const (
	// LBMaglevMax is the largest Maglev table size (lb.h LB_MAGLEV_MAX).
	LBMaglevMax = 16381

	LBScopeInternal uint8 = 0
	LBScopeExternal uint8 = 1

	LBFlagNodePort uint8 = 0x01
	LBFlagExternal uint8 = 0x02
	LBFlagLocal    uint8 = 0x04
	LBFlagAffinity uint8 = 0x08
	LBFlagMaglev   uint8 = 0x10
	LBFlagDSR      uint8 = 0x20

	LBBackendFlagTerminating uint8 = 0x01
)

// LBKey mirrors struct lb_key (lb.h): a frontend's slot; slot 0 is the
// service entry, slots 1.. its backends.
type LBKey struct {
	Addr     [16]byte `btf:"addr"`
	DPortNet uint16   `btf:"dport"`
	Proto    uint8    `btf:"proto"`
	Family   uint8    `btf:"family"`
	Slot     uint16   `btf:"slot"`
	Scope    uint8    `btf:"scope"`
	Pad      uint8    `btf:"pad"`
}

// LBService mirrors struct lb_service (lb.h): the service entry (slot 0)
// or a backend slot (only BackendID set).
type LBService struct {
	BackendID       uint32  `btf:"backend_id"`
	Count           uint16  `btf:"count"`
	Terminating     uint16  `btf:"terminating"`
	RevNatID        uint32  `btf:"rev_nat_id"`
	Flags           uint8   `btf:"flags"`
	Pad             [3]byte `btf:"pad"`
	AffinityTimeout uint32  `btf:"affinity_timeout"` // seconds
}

// LBBackend mirrors struct lb_backend (lb.h).
type LBBackend struct {
	Addr    [16]byte `btf:"addr"`
	PortNet uint16   `btf:"port"`
	Proto   uint8    `btf:"proto"`
	Family  uint8    `btf:"family"`
	Flags   uint8    `btf:"flags"`
	Pad     [3]byte  `btf:"pad"`
}

// LBRevNat mirrors struct lb_revnat (lb.h).
type LBRevNat struct {
	Addr    [16]byte `btf:"addr"`
	PortNet uint16   `btf:"port"`
	Family  uint8    `btf:"family"`
	Pad     [5]byte  `btf:"pad"`
}

// LBMaglev mirrors struct lb_maglev (lb.h): the first M entries are used.
type LBMaglev struct {
	BackendIDs [LBMaglevMax]uint32 `btf:"backend_ids"`
}

// LBAffinityKey mirrors struct lb_affinity_key (lb.h).
type LBAffinityKey struct {
	Client   [16]byte `btf:"client"`
	RevNatID uint32   `btf:"rev_nat_id"`
	Family   uint8    `btf:"family"`
	Pad      [3]byte  `btf:"pad"`
}

// LBAffinityValue mirrors struct lb_affinity_val (lb.h).
type LBAffinityValue struct {
	LastUsed  uint64 `btf:"last_used"` // jiffies
	BackendID uint32 `btf:"backend_id"`
	Pad       uint32 `btf:"pad"`
}

// LBTupleHash returns lb.h's lb_tuple_hash of t (t.Dir and t.Pad are not
// hashed): MurmurHash3 (seed 0) of the words of SAddr, DAddr, the ports
// (SPortNet | DPortNet<<16) and NextHdr, each as the datapath loads it
// from memory (little-endian hosts). A Maglev frontend sends a new
// connection whose client tuple is t to table[LBTupleHash(t) % M].
func LBTupleHash(t Tuple) uint32 {
	le32 := func(b []byte) uint32 {
		return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
	}
	rotl := func(x uint32, r uint) uint32 { return x<<r | x>>(32-r) }
	var h uint32
	mix := func(k uint32) {
		k *= 0xcc9e2d51
		k = rotl(k, 15)
		k *= 0x1b873593
		h ^= k
		h = rotl(h, 13)
		h = h*5 + 0xe6546b64
	}
	for i := 0; i < 16; i += 4 {
		mix(le32(t.SAddr[i:]))
	}
	for i := 0; i < 16; i += 4 {
		mix(le32(t.DAddr[i:]))
	}
	mix(uint32(t.SPortNet) | uint32(t.DPortNet)<<16)
	mix(uint32(t.NextHdr))
	h ^= 40
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	return h
}
