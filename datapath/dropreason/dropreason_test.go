package dropreason

import (
	"bufio"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/cilium/api/v1/flow"
)

// headerPath is the C catalogue, relative to this package's directory.
const headerPath = "../../bpf/lib/drop_reasons.h"

// defineRE matches one catalogue line of the header:
// "#define DROP_<NAME> <code> // <text>" (or REASON_<NAME>).
var defineRE = regexp.MustCompile(`^#define\s+(DROP|REASON)_([A-Z0-9_]+)\s+([0-9]+)\s*//\s*(.*?)\s*$`)

// parseHeader returns the catalogue of the C header, keyed by code.
func parseHeader(t *testing.T) map[Reason]entry {
	t.Helper()
	f, err := os.Open(headerPath)
	if err != nil {
		t.Fatalf("open header: %v", err)
	}
	defer f.Close()

	out := map[Reason]entry{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if !strings.HasPrefix(trimmed, "#define DROP_") && !strings.HasPrefix(trimmed, "#define REASON_") {
			continue
		}
		m := defineRE.FindStringSubmatch(trimmed)
		if m == nil {
			t.Errorf("%s:%d: not in the catalogue format %q: %q", headerPath, n,
				"#define DROP_<NAME> <code> // <text>", line)
			continue
		}
		code, err := strconv.ParseUint(m[3], 10, 16)
		if err != nil {
			t.Errorf("%s:%d: parse code %q: %v", headerPath, n, m[3], err)
			continue
		}
		e := entry{code: Reason(code), name: m[2], desc: m[4]}
		if prev, dup := out[e.code]; dup {
			t.Errorf("%s:%d: code %d defined twice (%s and %s)", headerPath, n, code, prev.name, e.name)
		}
		out[e.code] = e
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read header: %v", err)
	}
	if len(out) == 0 {
		t.Fatalf("%s: no catalogue lines found", headerPath)
	}
	return out
}

// TestCatalogueMatchesHeader checks the Go table against the header in both
// directions: a line added to, removed from or changed on either side fails.
func TestCatalogueMatchesHeader(t *testing.T) {
	header := parseHeader(t)

	goTable := map[Reason]entry{}
	for _, e := range catalogue {
		if _, dup := goTable[e.code]; dup {
			t.Errorf("Go catalogue: code %d listed twice", e.code)
		}
		goTable[e.code] = e
	}

	for code, h := range header {
		g, ok := goTable[code]
		if !ok {
			t.Errorf("code %d (%s) is in the header but not in the Go catalogue", code, h.name)
			continue
		}
		if g.name != h.name {
			t.Errorf("code %d: Go name %q, header name %q", code, g.name, h.name)
		}
		if g.desc != h.desc {
			t.Errorf("code %d: Go description %q, header description %q", code, g.desc, h.desc)
		}
	}
	for code, g := range goTable {
		if _, ok := header[code]; !ok {
			t.Errorf("code %d (%s) is in the Go catalogue but not in the header", code, g.name)
		}
	}

	// The header's DROP_/REASON_ prefix must agree with IsDrop.
	f, err := os.ReadFile(headerPath)
	if err != nil {
		t.Fatalf("read header: %v", err)
	}
	for _, line := range strings.Split(string(f), "\n") {
		m := defineRE.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		code, _ := strconv.ParseUint(m[3], 10, 16)
		if isDrop := m[1] == "DROP"; Reason(code).IsDrop() != isDrop {
			t.Errorf("%s_%s (%d): IsDrop() = %v, but the header prefix says %s",
				m[1], m[2], code, Reason(code).IsDrop(), m[1])
		}
	}
}

// TestConstantNames checks that every Reason constant of dropreason.go is
// the CamelCase of its catalogue name (initialisms kept upper case:
// CTMapInsertionFailed for CT_MAP_INSERTION_FAILED), and that no catalogue
// entry lacks a constant.
func TestConstantNames(t *testing.T) {
	fset := token.NewFileSet()
	file, err := parser.ParseFile(fset, "dropreason.go", nil, 0)
	if err != nil {
		t.Fatalf("parse dropreason.go: %v", err)
	}
	seen := map[Reason]string{}
	for _, decl := range file.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			if typ, ok := vs.Type.(*ast.Ident); !ok || typ.Name != "Reason" {
				continue
			}
			for i, id := range vs.Names {
				if !id.IsExported() {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.INT {
					t.Errorf("%s: value is not an integer literal", id.Name)
					continue
				}
				code, err := strconv.ParseUint(lit.Value, 10, 16)
				if err != nil {
					t.Errorf("%s: parse value %s: %v", id.Name, lit.Value, err)
					continue
				}
				r := Reason(code)
				if !r.Known() {
					t.Errorf("%s = %d: not in the catalogue", id.Name, code)
					continue
				}
				if want := strings.ReplaceAll(r.String(), "_", ""); !strings.EqualFold(id.Name, want) {
					t.Errorf("%s = %d: name does not spell catalogue name %s", id.Name, code, r.String())
				}
				seen[r] = id.Name
			}
		}
	}
	for _, r := range All() {
		if _, ok := seen[r]; !ok {
			t.Errorf("%d %s: no exported constant", r, r)
		}
	}
}

// flowNameExceptions lists the codes whose catalogue name deliberately
// differs from the name Cilium's flow.DropReason gives the same number, with
// Cilium's name. Any other difference fails, and so does an entry here that
// no longer differs or whose Cilium name changed.
var flowNameExceptions = map[Reason]string{
	// 134: Cilium's C define is DROP_INVALID; only the flow enum appends
	// _DROPPED. DESIGN.md section 6 names it INVALID_PACKET.
	InvalidPacket: "INVALID_PACKET_DROPPED",
	// 158: Cilium's C define is DROP_NO_SERVICE, the flow enum calls it
	// SERVICE_BACKEND_NOT_FOUND. DESIGN.md section 6 names it NO_SERVICE.
	NoService: "SERVICE_BACKEND_NOT_FOUND",
	// 205: Cilium's DROP_PUNT_PROXY. Ours is a REASON_ (redirect, not a
	// drop), so the catalogue name drops the DROP_ and says PUNT_TO_PROXY
	// as DESIGN.md section 6 does.
	PuntToProxy: "DROP_PUNT_PROXY",
}

// TestFlowDropReason checks the mapping onto Hubble's enum: the same number,
// and the same name unless listed in flowNameExceptions.
func TestFlowDropReason(t *testing.T) {
	used := map[Reason]bool{}
	for _, r := range All() {
		got := r.FlowDropReason()
		if !r.IsDrop() && r != PuntToProxy {
			if got != flow.DropReason_DROP_REASON_UNKNOWN {
				t.Errorf("%d %s: FlowDropReason() = %v, want DROP_REASON_UNKNOWN for a non-drop", r, r, got)
			}
			continue
		}
		ciliumName, ok := flow.DropReason_name[int32(r)]
		if !ok {
			t.Logf("%d %s: no counterpart in flow.DropReason", r, r)
			if got != flow.DropReason_DROP_REASON_UNKNOWN {
				t.Errorf("%d %s: FlowDropReason() = %v, want DROP_REASON_UNKNOWN", r, r, got)
			}
			continue
		}
		if int32(got) != int32(r) {
			t.Errorf("%d %s: FlowDropReason() = %d (%v), want the same number", r, r, int32(got), got)
		}
		if want, listed := flowNameExceptions[r]; listed {
			used[r] = true
			if ciliumName == r.String() {
				t.Errorf("%d %s: listed in flowNameExceptions but flow.DropReason now agrees; remove it", r, r)
			} else if ciliumName != want {
				t.Errorf("%d %s: flow.DropReason calls it %s, flowNameExceptions says %s", r, r, ciliumName, want)
			} else {
				t.Logf("deliberate name difference: %d ours %s, Cilium flow.DropReason %s", r, r, ciliumName)
			}
			continue
		}
		if ciliumName != r.String() {
			t.Errorf("%d: ours %s, Cilium flow.DropReason %s: rename, or add to flowNameExceptions with a reason",
				r, r, ciliumName)
		}
	}
	for r := range flowNameExceptions {
		if !used[r] {
			t.Errorf("flowNameExceptions lists %d %s, which is not a mapped catalogue reason", r, r)
		}
	}

	// Codes outside the catalogue map to UNKNOWN even when Cilium defines
	// them (140 is Cilium's MISSED_TAIL_CALL, never emitted here).
	for _, r := range []Reason{2, 129, 140, 206, 999} {
		if got := r.FlowDropReason(); got != flow.DropReason_DROP_REASON_UNKNOWN {
			t.Errorf("Reason(%d).FlowDropReason() = %v, want DROP_REASON_UNKNOWN", r, got)
		}
	}
}

func TestAll(t *testing.T) {
	all := All()
	if len(all) != len(catalogue) {
		t.Fatalf("All() has %d reasons, catalogue %d", len(all), len(catalogue))
	}
	if !slices.IsSorted(all) {
		t.Errorf("All() is not sorted: %v", all)
	}
	if len(slices.Compact(slices.Clone(all))) != len(all) {
		t.Errorf("All() has duplicates: %v", all)
	}
	// The metrics map is indexed by (__u8 reason << 2) | direction.
	for _, r := range all {
		if r > 255 {
			t.Errorf("%d %s: does not fit the __u8 reason of the metrics index", r, r)
		}
	}
	// All returns a copy.
	all[0] = 999
	if All()[0] == 999 {
		t.Errorf("All() returns the internal slice")
	}
}

func TestIsDrop(t *testing.T) {
	tests := []struct {
		r    Reason
		want bool
	}{
		{Forwarded, false},
		{EventLost, false},
		{129, false},
		{InvalidSourceMAC, true},
		{PolicyDenied, true},
		{PolicyDeny, true},
		{TTLExceeded, true},
		{PuntToProxy, false},
		{250, true}, // outside the catalogue, but in the drop range
	}
	for _, tt := range tests {
		if got := tt.r.IsDrop(); got != tt.want {
			t.Errorf("Reason(%d).IsDrop() = %v, want %v", tt.r, got, tt.want)
		}
	}
}

func TestString(t *testing.T) {
	tests := []struct {
		r        Reason
		name     string
		descPart string
	}{
		{PolicyDenied, "POLICY_DENIED", "no entry allows"},
		{PolicyDeny, "POLICY_DENY", "deny policy entry"},
		{InvalidSourceIP, "INVALID_SOURCE_IP", "spoofing"},
		{NoService, "NO_SERVICE", "no backend"},
		{PuntToProxy, "PUNT_TO_PROXY", "not a drop"},
		{Forwarded, "FORWARDED", "metrics only"},
		{EventLost, "EVENT_LOST", "ring buffer"},
		{140, "UNKNOWN_REASON_140", ""},
		{65535, "UNKNOWN_REASON_65535", ""},
	}
	for _, tt := range tests {
		if got := tt.r.String(); got != tt.name {
			t.Errorf("Reason(%d).String() = %q, want %q", tt.r, got, tt.name)
		}
		desc := tt.r.Description()
		if tt.descPart == "" && desc != "" {
			t.Errorf("Reason(%d).Description() = %q, want empty", tt.r, desc)
		}
		if !strings.Contains(desc, tt.descPart) {
			t.Errorf("Reason(%d).Description() = %q, want it to contain %q", tt.r, desc, tt.descPart)
		}
	}
}

func TestParseRoundTrip(t *testing.T) {
	for _, r := range All() {
		for _, in := range []string{r.String(), strings.ToLower(r.String()), strconv.Itoa(int(r))} {
			got, err := Parse(in)
			if err != nil {
				t.Errorf("Parse(%q): %v", in, err)
				continue
			}
			if got != r {
				t.Errorf("Parse(%q) = %d, want %d", in, got, r)
			}
		}
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		want    Reason
		wantErr bool
	}{
		{"POLICY_DENIED", PolicyDenied, false},
		{"Policy_Deny", PolicyDeny, false},
		{"133", PolicyDenied, false},
		{"0133", PolicyDenied, false},
		{"0", Forwarded, false},
		{"205", PuntToProxy, false},
		{"ttl_exceeded", TTLExceeded, false},
		{"", 0, true},
		{"NOPE", 0, true},
		{"DROP_POLICY_DENIED", 0, true}, // the C name is not the catalogue name
		{"REASON_PUNT_TO_PROXY", 0, true},
		{"UNKNOWN_REASON_140", 0, true},
		{"140", 0, true}, // Cilium's MISSED_TAIL_CALL, not in this catalogue
		{"-133", 0, true},
		{"+133", 0, true},
		{"65536", 0, true},
		{" 133", 0, true},
		{"0x85", 0, true},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if tt.wantErr {
			if err == nil {
				t.Errorf("Parse(%q) = %v, want an error", tt.in, got)
				continue
			}
			if !errors.Is(err, ErrUnknownReason) {
				t.Errorf("Parse(%q) error %v does not wrap ErrUnknownReason", tt.in, err)
			}
			if want := "parse drop reason " + strconv.Quote(tt.in) + ": unknown drop reason"; err.Error() != want {
				t.Errorf("Parse(%q) error = %q, want %q", tt.in, err, want)
			}
			continue
		}
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("Parse(%q) = %d %s, want %d %s", tt.in, got, got, tt.want, tt.want)
		}
	}
}
