package model

import (
	"os/exec"
	"strings"
	"testing"
)

// TestIndependentOfImplementation checks that the model, the independent
// oracle, depends on nothing of the implementation it judges: no package
// under agent/, datapath/ or sim/, directly or transitively (tests
// included).
func TestIndependentOfImplementation(t *testing.T) {
	const module = "github.com/ciliaproject/cilia"
	out, err := exec.Command("go", "list", "-deps", "-test", "-f", "{{.ImportPath}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) == 0 {
		t.Fatal("go list -deps listed nothing")
	}
	for _, d := range deps {
		for _, forbidden := range []string{"/agent", "/datapath", "/sim"} {
			p := module + forbidden
			if d == p || strings.HasPrefix(d, p+"/") {
				t.Errorf("conformance/model depends on %s: the model must import nothing from agent/, datapath/ or sim/", d)
			}
		}
	}
}
