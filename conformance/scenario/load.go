package scenario

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Load reads and validates the scenario file at path. A file that is not
// a valid scenario gives a *ValidationError listing every problem.
func Load(path string) (*Scenario, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load scenario: %w", err)
	}
	return Parse(path, data)
}

// Parse validates a scenario from data; file names it in problems and
// becomes Scenario.File. An invalid scenario gives a *ValidationError
// listing every problem.
func Parse(file string, data []byte) (*Scenario, error) {
	d := &decoder{file: file}
	root := d.document(data)
	if root == nil {
		return nil, d.err()
	}
	f := d.decodeFile(root)
	if f == nil {
		return nil, d.err()
	}
	sc := d.build(f)
	if err := d.err(); err != nil {
		return nil, err
	}
	return sc, nil
}

// Files returns the scenario files under dir: every *.yaml and *.yml,
// recursively, sorted by path.
func Files(dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !e.IsDir() && isScenarioFile(path) {
			out = append(out, path)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list scenarios: %w", err)
	}
	sort.Strings(out)
	return out, nil
}

// isScenarioFile reports whether a path names a YAML file.
func isScenarioFile(path string) bool {
	ext := strings.ToLower(filepath.Ext(path))
	return ext == ".yaml" || ext == ".yml"
}

// LoadDir loads every scenario file under dir (see Files), in path
// order. Scenario names must be unique across the directory. Problems of
// every file are returned together as one *ValidationError, and then no
// scenarios are returned.
func LoadDir(dir string) ([]*Scenario, error) {
	files, err := Files(dir)
	if err != nil {
		return nil, err
	}
	return LoadFiles(files)
}

// LoadFiles loads the given scenario files in order, like LoadDir:
// names must be unique across them, and problems of every file are
// returned together as one *ValidationError.
func LoadFiles(files []string) ([]*Scenario, error) {
	var out []*Scenario
	var probs []Problem
	for _, path := range files {
		sc, err := Load(path)
		var ve *ValidationError
		if errors.As(err, &ve) {
			probs = append(probs, ve.Problems...)
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, sc)
	}
	probs = append(probs, DuplicateNames(out)...)
	if len(probs) > 0 {
		sortProblems(probs)
		return nil, &ValidationError{Problems: probs}
	}
	return out, nil
}

// DuplicateNames reports scenarios that share a name, each at the later
// file's metadata.name, naming the file that had it first.
func DuplicateNames(scs []*Scenario) []Problem {
	var probs []Problem
	first := map[string]*Scenario{}
	for _, sc := range scs {
		prev, dup := first[sc.Metadata.Name]
		if !dup {
			first[sc.Metadata.Name] = sc
			continue
		}
		probs = append(probs, Problem{
			File: sc.File, Line: sc.nameLine, Column: sc.nameColumn, Path: "metadata.name",
			Message: fmt.Sprintf("duplicate scenario name %q (also in %s:%d)", sc.Metadata.Name, prev.File, prev.nameLine),
		})
	}
	return probs
}
