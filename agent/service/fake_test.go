package service

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/ciliaproject/cilia/datapath/maps"
)

// fakeDatapath records one node's maps and checks the make-before-break
// invariant after every call: every slot a service entry counts exists,
// every slot and Maglev entry names an existing backend, every service
// entry's rev-NAT entry exists, and a Maglev service entry with backends
// has its table (of length m).
type fakeDatapath struct {
	m          int
	tables     Tables
	calls      []string
	violations []string
	// fail makes the calls whose name it holds fail.
	fail map[string]bool
}

var errInjected = errors.New("injected failure")

func newFakeDatapath(m int) *fakeDatapath {
	return &fakeDatapath{m: m, fail: map[string]bool{}, tables: Tables{
		Services: map[maps.LBKey]maps.LBService{}, Backends: map[uint32]maps.LBBackend{},
		RevNat: map[uint32]maps.LBRevNat{}, Maglev: map[uint32][]uint32{}}}
}

func (f *fakeDatapath) record(call string, do func()) error {
	name, _, _ := strings.Cut(call, " ")
	if f.fail[name] {
		return fmt.Errorf("%s: %w", call, errInjected)
	}
	do()
	f.calls = append(f.calls, call)
	for _, v := range f.check() {
		f.violations = append(f.violations, "after "+call+": "+v)
	}
	return nil
}

// check returns the invariant's violations in the current maps.
func (f *fakeDatapath) check() []string {
	var out []string
	t := f.tables
	for k, v := range t.Services {
		if k.Slot != 0 {
			if _, ok := t.Backends[v.BackendID]; !ok {
				out = append(out, fmt.Sprintf("slot %v names missing backend %d", k, v.BackendID))
			}
			continue
		}
		total := int(v.Count) + int(v.Terminating)
		for i := 1; i <= total; i++ {
			sk := k
			sk.Slot = uint16(i)
			if _, ok := t.Services[sk]; !ok {
				out = append(out, fmt.Sprintf("service %v counts %d slots, slot %d missing", k, total, i))
			}
		}
		if _, ok := t.RevNat[v.RevNatID]; !ok {
			out = append(out, fmt.Sprintf("service %v: rev-nat %d missing", k, v.RevNatID))
		}
		if v.Flags&maps.LBFlagMaglev != 0 && total > 0 {
			if tab, ok := t.Maglev[v.RevNatID]; !ok || len(tab) != f.m {
				out = append(out, fmt.Sprintf("service %v: maglev table %d missing or of length %d", k, v.RevNatID, len(tab)))
			}
		}
	}
	for id, tab := range t.Maglev {
		for _, b := range tab {
			if _, ok := t.Backends[b]; !ok {
				out = append(out, fmt.Sprintf("maglev table %d names missing backend %d", id, b))
				break
			}
		}
	}
	slices.Sort(out)
	return out
}

func (f *fakeDatapath) PutLBBackend(id uint32, b maps.LBBackend) error {
	return f.record(fmt.Sprintf("PutLBBackend %d", id), func() { f.tables.Backends[id] = b })
}

func (f *fakeDatapath) DeleteLBBackend(id uint32) error {
	return f.record(fmt.Sprintf("DeleteLBBackend %d", id), func() { delete(f.tables.Backends, id) })
}

func (f *fakeDatapath) PutLBService(k maps.LBKey, v maps.LBService) error {
	return f.record(fmt.Sprintf("PutLBService %v", k), func() { f.tables.Services[k] = v })
}

func (f *fakeDatapath) DeleteLBService(k maps.LBKey) error {
	return f.record(fmt.Sprintf("DeleteLBService %v", k), func() { delete(f.tables.Services, k) })
}

func (f *fakeDatapath) PutLBRevNat(id uint32, v maps.LBRevNat) error {
	return f.record(fmt.Sprintf("PutLBRevNat %d", id), func() { f.tables.RevNat[id] = v })
}

func (f *fakeDatapath) DeleteLBRevNat(id uint32) error {
	return f.record(fmt.Sprintf("DeleteLBRevNat %d", id), func() { delete(f.tables.RevNat, id) })
}

func (f *fakeDatapath) PutLBMaglev(id uint32, table []uint32) error {
	if len(table) != f.m {
		f.violations = append(f.violations, fmt.Sprintf("PutLBMaglev %d: length %d, want %d", id, len(table), f.m))
	}
	return f.record(fmt.Sprintf("PutLBMaglev %d", id), func() { f.tables.Maglev[id] = slices.Clone(table) })
}

func (f *fakeDatapath) DeleteLBMaglev(id uint32) error {
	return f.record(fmt.Sprintf("DeleteLBMaglev %d", id), func() { delete(f.tables.Maglev, id) })
}

// LBTables implements TableReader.
func (f *fakeDatapath) LBTables() (Tables, error) { return f.tables, nil }
