package load

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestValidFixtures loads every file of fixtures/policies/valid: each
// must hold at least one policy and load without an Error or a Warning,
// and Cilium's own Rule.Sanitize must accept every rule.
func TestValidFixtures(t *testing.T) {
	enableCiliumFeatures(t)
	dir := filepath.Join(moduleRoot(t), "fixtures", "policies", "valid")
	files := yamlFiles(t, dir)
	if len(files) < 20 {
		t.Fatalf("found %d valid fixtures in %s, want at least 20", len(files), dir)
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			r, err := File(filepath.Join(dir, f))
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range r.Diagnostics {
				if d.Severity != Note {
					t.Errorf("unexpected %s", d)
				}
			}
			if len(r.Policies) == 0 {
				t.Errorf("no policy loaded")
			}
			for _, p := range r.Policies {
				sanitizeAll(t, p)
			}
		})
	}
}

// expectation is the first line of an invalid fixture:
// "# expect: <line>:<path>: <message substring>".
type expectation struct {
	line    int
	path    string
	message string
}

// readExpectation parses an invalid fixture's first line.
func readExpectation(t *testing.T, file string) expectation {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan()
	rest, ok := strings.CutPrefix(sc.Text(), "# expect: ")
	if !ok {
		t.Fatalf("first line of %s is not \"# expect: <line>:<path>: <message>\"", file)
	}
	lineText, rest, _ := strings.Cut(rest, ":")
	path, msg, ok := strings.Cut(rest, ": ")
	line, err := strconv.Atoi(lineText)
	if !ok || err != nil {
		t.Fatalf("malformed expectation in %s: %q", file, sc.Text())
	}
	return expectation{line: line, path: path, message: msg}
}

// TestInvalidFixtures loads every file of fixtures/policies/invalid:
// each has exactly one mistake, so it must produce exactly one Error,
// with the line, path and message its first line announces, and no
// Warning.
func TestInvalidFixtures(t *testing.T) {
	dir := filepath.Join(moduleRoot(t), "fixtures", "policies", "invalid")
	files := yamlFiles(t, dir)
	if len(files) < 25 {
		t.Fatalf("found %d invalid fixtures in %s, want at least 25", len(files), dir)
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			path := filepath.Join(dir, f)
			want := readExpectation(t, path)
			r, err := File(path)
			if err != nil {
				t.Fatal(err)
			}
			errs := bySeverity(r.Diagnostics, Error)
			for _, d := range bySeverity(r.Diagnostics, Warning) {
				t.Errorf("unexpected %s", d)
			}
			if len(errs) != 1 {
				t.Fatalf("got %d errors, want exactly 1:\n%s", len(errs), joinDiagnostics(r.Diagnostics))
			}
			got := errs[0]
			if got.Line != want.line || got.Path != want.path || !strings.Contains(got.Message, want.message) {
				t.Errorf("got  %d:%s: %s\nwant %d:%s: ...%s...", got.Line, got.Path, got.Message, want.line, want.path, want.message)
			}
			if got.File != path {
				t.Errorf("diagnostic names file %q, want %q", got.File, path)
			}
			if len(r.Policies) != 0 {
				t.Errorf("an invalid object was returned as a policy")
			}
		})
	}
}

// joinDiagnostics formats diagnostics one per line.
func joinDiagnostics(ds []Diagnostic) string {
	var b strings.Builder
	for _, d := range ds {
		b.WriteString("  " + d.String() + "\n")
	}
	return b.String()
}
