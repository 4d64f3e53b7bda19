package kind

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestPrivilegedRefused(t *testing.T) {
	tests := []struct {
		name string
		out  string
		want bool
	}{
		{"caps refused", `docker: Error response from daemon: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: unable to apply caps: operation not permitted: unknown.`, true},
		{"missing entrypoint", `docker: Error response from daemon: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: "/nonexistent": stat /nonexistent: no such file or directory: unknown.`, false},
		{"other error", `Cannot connect to the Docker daemon at unix:///var/run/docker.sock.`, false},
	}
	for _, tt := range tests {
		if got := PrivilegedRefused(tt.out); got != tt.want {
			t.Errorf("%s: PrivilegedRefused = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestHostNeeds(t *testing.T) {
	tests := []struct {
		h   HostNeeds
		any bool
		s   string
	}{
		{HostNeeds{}, false, "none"},
		{HostNeeds{PrivilegedRewrite: true}, true, "privileged-rewrite"},
		{HostNeeds{PrivilegedRewrite: true, EmptyModules: true}, true, "privileged-rewrite,empty-lib-modules"},
	}
	for _, tt := range tests {
		if tt.h.Any() != tt.any || tt.h.String() != tt.s {
			t.Errorf("%+v: Any %v String %q, want %v %q", tt.h, tt.h.Any(), tt.h.String(), tt.any, tt.s)
		}
	}
}

func TestModeFromEnv(t *testing.T) {
	tests := []struct {
		v    string
		mode Mode
		ok   bool
		err  bool
	}{
		{"", "", false, false},
		{"1", Online, true, false},
		{"0", Offline, true, false},
		{"maybe", "", false, true},
	}
	for _, tt := range tests {
		m, ok, err := ModeFromEnv(tt.v)
		if m != tt.mode || ok != tt.ok || (err != nil) != tt.err {
			t.Errorf("ModeFromEnv(%q) = %q %v %v", tt.v, m, ok, err)
		}
		if err != nil && !errors.Is(err, ErrBadOnlineEnv) {
			t.Errorf("ModeFromEnv(%q) error %v is not ErrBadOnlineEnv", tt.v, err)
		}
	}
}

// TestDockerWrapper runs the wrapper against a fake docker that prints its
// arguments, one per line, and checks each rewrite happens only when asked.
func TestDockerWrapper(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Fatalf("bash is needed: %v", err)
	}
	_, modErr := os.Stat("/lib/modules")
	tests := []struct {
		name    string
		needs   HostNeeds
		args    []string
		want    []string
		without []string
	}{
		{
			name:    "run rewritten",
			needs:   HostNeeds{PrivilegedRewrite: true},
			args:    []string{"run", "--privileged", "--volume", "/lib/modules:/lib/modules:ro", "img"},
			want:    []string{"run", "--cap-add=ALL", "--cap-drop=SYS_RESOURCE", "systempaths=unconfined", "--device-cgroup-rule=a *:* rwm", "img"},
			without: []string{"--privileged"},
		},
		{
			name:    "exec drops privileged",
			needs:   HostNeeds{PrivilegedRewrite: true},
			args:    []string{"exec", "--privileged", "-i", "node", "true"},
			want:    []string{"exec", "-i", "node", "true"},
			without: []string{"--privileged"},
		},
		{
			name:    "privileged kept when allowed",
			needs:   HostNeeds{EmptyModules: true},
			args:    []string{"run", "--privileged", "img"},
			want:    []string{"run", "--privileged", "img"},
			without: []string{"--cap-add=ALL"},
		},
		{
			name:  "other commands untouched",
			needs: HostNeeds{PrivilegedRewrite: true},
			args:  []string{"ps", "-a", "--privileged"},
			want:  []string{"ps", "-a", "--privileged"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			fake := filepath.Join(dir, "fake-docker")
			if err := os.WriteFile(fake, []byte("#!/bin/sh\nfor a in \"$@\"; do echo \"$a\"; done\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			wdir, err := WriteDockerWrapper(filepath.Join(dir, "w"), fake, tt.needs)
			if err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(filepath.Join(wdir, "docker"), tt.args...).Output()
			if err != nil {
				t.Fatalf("wrapper: %v", err)
			}
			got := strings.Split(strings.TrimSpace(string(out)), "\n")
			has := map[string]bool{}
			for _, g := range got {
				has[g] = true
			}
			for _, w := range tt.want {
				if !has[w] {
					t.Errorf("args %q lack %q", got, w)
				}
			}
			for _, w := range tt.without {
				if has[w] {
					t.Errorf("args %q still have %q", got, w)
				}
			}
			if tt.name == "run rewritten" {
				wantMount := "/lib/modules:/lib/modules:ro"
				if modErr != nil {
					wantMount = filepath.Join(wdir, "empty-lib-modules") + ":/lib/modules:ro"
				}
				if !has[wantMount] {
					t.Errorf("args %q lack mount %q", got, wantMount)
				}
			}
		})
	}
}
