package kind

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCtrShim checks the ctr shim of the offline node image maps `info` to
// `version` and drops --label=..., leaving everything else alone.
func TestCtrShim(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "ctr")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho \"$*\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"info"}, "version"},
		{[]string{"--namespace=k8s.io", "info"}, "--namespace=k8s.io version"},
		{[]string{"--namespace=k8s.io", "images", "import", "--label=io.cri-containerd.pinned=pinned", "--all-platforms", "-"}, "--namespace=k8s.io images import --all-platforms -"},
		{[]string{"images", "ls", "info"}, "images ls info"},
	}
	for _, tt := range tests {
		cmd := exec.Command("sh", append([]string{"../../hack/kind-image/ctr-shim.sh"}, tt.args...)...)
		cmd.Env = append(os.Environ(), "CILIA_REAL_CTR="+fake)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("shim %v: %v", tt.args, err)
		}
		if got := strings.TrimSpace(string(out)); got != tt.want {
			t.Errorf("shim %v ran ctr %q, want %q", tt.args, got, tt.want)
		}
	}
}

// TestCrictlShim checks the crictl stand-in answers `inspecti` (as kind load
// parses it) and `images` from a fake ctr's image list, and refuses the rest.
func TestCrictlShim(t *testing.T) {
	dir := t.TempDir()
	list := "REF TYPE DIGEST SIZE PLATFORMS LABELS\n" +
		"docker.io/library/probe:dev application/vnd.docker.distribution.manifest.v2+json sha256:aaa 1.0 MiB linux/amd64 -\n" +
		"registry.k8s.io/pause:3.10 application/vnd.docker.distribution.manifest.v2+json sha256:bbb 0.5 MiB linux/amd64 -\n" +
		"sha256:cfg1 application/vnd.docker.distribution.manifest.v2+json sha256:aaa 1.0 MiB linux/amd64 -\n"
	if err := os.WriteFile(filepath.Join(dir, "list"), []byte(list), 0o644); err != nil {
		t.Fatal(err)
	}
	fake := "#!/bin/sh\ncat " + filepath.Join(dir, "list") + "\n"
	if err := os.WriteFile(filepath.Join(dir, "ctr"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		cmd := exec.Command("bash", append([]string{"../../hack/kind-image/crictl-shim.sh"}, args...)...)
		cmd.Env = append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"))
		out, err := cmd.Output()
		return strings.TrimSpace(string(out)), err
	}
	tests := []struct {
		args []string
		want string
		err  bool
	}{
		{args: []string{"inspecti", "probe:dev"}, want: `{"status":{"id":"sha256:cfg1","repoTags":["docker.io/library/probe:dev"]}}`},
		{args: []string{"inspecti", "registry.k8s.io/pause:3.10"}, want: `{"status":{"id":"sha256:bbb","repoTags":["registry.k8s.io/pause:3.10"]}}`},
		{args: []string{"inspecti", "nothere:1"}, err: true},
		{args: []string{"pull", "x"}, err: true},
	}
	for _, tt := range tests {
		got, err := run(tt.args...)
		if (err != nil) != tt.err || (!tt.err && got != tt.want) {
			t.Errorf("crictl %v = %q, %v; want %q (error %v)", tt.args, got, err, tt.want, tt.err)
		}
	}
	got, err := run("images")
	if err != nil || !strings.Contains(got, "docker.io/library/probe:dev") || strings.Contains(got, "sha256:cfg1") {
		t.Errorf("crictl images = %q, %v", got, err)
	}
}
