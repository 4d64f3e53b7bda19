package load

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/cilium/pkg/option"
)

// moduleRoot finds the root of the cilia module from the test's
// working directory (the package directory).
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("get working directory: %v", err)
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(string(data), "module github.com/ciliaproject/cilia\n") {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("find module root: no go.mod of github.com/ciliaproject/cilia above the test directory")
		}
		dir = parent
	}
}

// corpusDir is the folder of Cilium's example policies: $CILIA_CORPUS,
// or the copy in fixtures/cilium-examples (verbatim, with its SOURCE.md).
// The test fails when it is missing: the corpus is part of what this
// package must read.
func corpusDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("CILIA_CORPUS")
	if dir == "" {
		dir = filepath.Join(moduleRoot(t), "fixtures", "cilium-examples")
	}
	if info, err := os.Stat(dir); err != nil || !info.IsDir() {
		t.Fatalf("corpus of Cilium example policies not found at %s (set CILIA_CORPUS): %v", dir, err)
	}
	return dir
}

// yamlFiles lists the *.yaml files under dir, relative to it.
func yamlFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
			rel, _ := filepath.Rel(dir, p)
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("list %s: %v", dir, err)
	}
	return files
}

// bySeverity returns the diagnostics of one severity.
func bySeverity(ds []Diagnostic, s Severity) []Diagnostic {
	var out []Diagnostic
	for _, d := range ds {
		if d.Severity == s {
			out = append(out, d)
		}
	}
	return out
}

// enableCiliumFeatures sets the agent options Rule.Sanitize consults to
// the values cilia assumes (see cilium.go), for the cross-checks.
func enableCiliumFeatures(t *testing.T) {
	t.Helper()
	c := option.Config
	l7, icmp, nodes, ext := c.EnableL7Proxy, c.EnableICMPRules, c.EnableNodeSelectorLabels, c.EnableExtendedIPProtocols
	c.EnableL7Proxy, c.EnableICMPRules, c.EnableNodeSelectorLabels, c.EnableExtendedIPProtocols = true, true, true, true
	t.Cleanup(func() {
		c.EnableL7Proxy, c.EnableICMPRules, c.EnableNodeSelectorLabels, c.EnableExtendedIPProtocols = l7, icmp, nodes, ext
	})
}

// sanitizeAll runs Cilium's own Rule.Sanitize on a copy of every rule of
// p, so that a policy this package accepts is one Cilium accepts too.
func sanitizeAll(t *testing.T, p *Policy) {
	t.Helper()
	for i, r := range p.Rules {
		if err := r.DeepCopy().Sanitize(); err != nil {
			t.Errorf("%s %s: Cilium's Rule.Sanitize rejects a rule this package accepted: %v", p.Ref(), p.RulePaths[i], err)
		}
	}
}
