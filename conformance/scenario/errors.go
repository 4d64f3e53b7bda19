package scenario

import (
	"fmt"
	"sort"
	"strings"
)

// Problem is one thing wrong in a scenario file: where it is and what.
type Problem struct {
	// File is the file as given to Load or Parse.
	File string
	// Line and Column are 1-based; 0 when unknown (Column is 0 for YAML
	// syntax errors, which report a line only).
	Line   int
	Column int
	// Path is the field path, e.g. "steps[1].probes[0].port"; "" for the
	// file as a whole.
	Path    string
	Message string
}

// String formats p as "file:line:column: path: message", leaving out the
// parts that are unknown.
func (p Problem) String() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		b.WriteString(":")
	}
	if p.Line > 0 {
		fmt.Fprintf(&b, "%d:", p.Line)
		if p.Column > 0 {
			fmt.Fprintf(&b, "%d:", p.Column)
		}
	}
	if b.Len() > 0 {
		b.WriteString(" ")
	}
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// ValidationError is the error Load, Parse and LoadDir return for a file
// that is not a valid scenario. It holds every problem found, sorted by
// file, line and column.
type ValidationError struct {
	Problems []Problem
}

// Error lists the problems, one per line.
func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// sortProblems orders problems by file, line and column, keeping the
// order of discovery for problems at the same place.
func sortProblems(ps []Problem) {
	sort.SliceStable(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
}
