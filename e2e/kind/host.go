package kind

import (
	"archive/tar"
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

//go:embed docker-wrapper.sh
var dockerWrapper string

// ErrNoDocker is returned when no docker daemon answers and none could be
// started.
var ErrNoDocker = errors.New("docker daemon not available")

// ProbeImage is an empty image (no files) imported locally to probe what
// `docker run` allows; it needs no registry.
const ProbeImage = "cilia/kind-probe:empty"

// HostNeeds lists the workarounds this host needs to run kind nodes. Each is
// detected (DetectHost), never assumed.
type HostNeeds struct {
	// PrivilegedRewrite: `docker run --privileged` fails ("unable to apply
	// caps"), so kind's docker calls go through the wrapper.
	PrivilegedRewrite bool
	// EmptyModules: the host has no /lib/modules, which kind mounts into
	// every node; the wrapper mounts an empty folder instead.
	EmptyModules bool
}

// Any reports whether the host needs any workaround.
func (h HostNeeds) Any() bool { return h.PrivilegedRewrite || h.EmptyModules }

// String lists the needed workarounds, or "none".
func (h HostNeeds) String() string {
	var s []string
	if h.PrivilegedRewrite {
		s = append(s, "privileged-rewrite")
	}
	if h.EmptyModules {
		s = append(s, "empty-lib-modules")
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ",")
}

// PrivilegedRefused classifies the output of a `docker run --privileged`
// probe of ProbeImage (which has no files): the run is refused when runc
// cannot grant the capabilities; any other failure (the missing entrypoint)
// means the privileged setup itself worked.
func PrivilegedRefused(output string) bool {
	o := strings.ToLower(output)
	return strings.Contains(o, "unable to apply caps") ||
		(strings.Contains(o, "apply caps") && strings.Contains(o, "operation not permitted"))
}

// EnsureDocker checks that a docker daemon answers. When none does, the
// caller is root and dockerd is installed (a host without systemd), it starts
// dockerd in the background, logging to logPath, and waits up to 30 s.
func EnsureDocker(ctx context.Context, logPath string) error {
	if exec.CommandContext(ctx, "docker", "info").Run() == nil {
		return nil
	}
	dockerd, err := exec.LookPath("dockerd")
	if err != nil || os.Geteuid() != 0 {
		return fmt.Errorf("ensure docker: %w (no dockerd to start, or not root)", ErrNoDocker)
	}
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return fmt.Errorf("ensure docker: %w", err)
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("ensure docker: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(dockerd)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = detached()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start dockerd: %w", err)
	}
	_ = cmd.Process.Release()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if exec.CommandContext(ctx, "docker", "info").Run() == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ensure docker: %w", ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
	return fmt.Errorf("ensure docker: %w (dockerd started but does not answer; see %s)", ErrNoDocker, logPath)
}

// ensureProbeImage imports ProbeImage from an in-memory tar with one folder.
func ensureProbeImage(ctx context.Context) error {
	if exec.CommandContext(ctx, "docker", "image", "inspect", ProbeImage).Run() == nil {
		return nil
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777}); err != nil {
		return fmt.Errorf("write probe image: %w", err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("write probe image: %w", err)
	}
	cmd := exec.CommandContext(ctx, "docker", "import", "-", ProbeImage)
	cmd.Stdin = &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("import probe image: %w: %s", err, out)
	}
	return nil
}

// DetectHost probes the docker daemon for the workarounds kind needs here:
// it runs ProbeImage with --privileged and classifies the refusal
// (PrivilegedRefused), and looks for /lib/modules.
func DetectHost(ctx context.Context) (HostNeeds, error) {
	var h HostNeeds
	if err := ensureProbeImage(ctx); err != nil {
		return h, fmt.Errorf("detect host: %w", err)
	}
	out, err := exec.CommandContext(ctx, "docker", "run", "--rm", "--privileged", ProbeImage, "/nonexistent").CombinedOutput()
	if err == nil {
		return h, fmt.Errorf("detect host: probe container ran a command that does not exist: %s", out)
	}
	h.PrivilegedRewrite = PrivilegedRefused(string(out))
	if _, err := os.Stat("/lib/modules"); err != nil {
		h.EmptyModules = true
	}
	return h, nil
}

// WriteDockerWrapper writes the docker wrapper (docker-wrapper.sh) as
// dir/docker, calling the docker binary realDocker and applying the
// workarounds in needs, and returns dir; put it
// first on PATH (UseWrapper) for kind's docker calls to go through it.
func WriteDockerWrapper(dir, realDocker string, needs HostNeeds) (string, error) {
	empty := filepath.Join(dir, "empty-lib-modules")
	if err := os.MkdirAll(empty, 0o755); err != nil {
		return "", fmt.Errorf("write docker wrapper: %w", err)
	}
	rewrite := "0"
	if needs.PrivilegedRewrite {
		rewrite = "1"
	}
	s := strings.NewReplacer("@REAL_DOCKER@", realDocker, "@EMPTY_MODULES@", empty,
		"@REWRITE_PRIVILEGED@", rewrite).Replace(dockerWrapper)
	if err := os.WriteFile(filepath.Join(dir, "docker"), []byte(s), 0o755); err != nil {
		return "", fmt.Errorf("write docker wrapper: %w", err)
	}
	return dir, nil
}

// UseWrapper writes the docker wrapper into dir when needs asks for it and
// prepends dir to this process's PATH, so the kind library (which runs
// "docker" from PATH) and child processes use it. It returns whether the
// wrapper is in use.
func UseWrapper(needs HostNeeds, dir string) (bool, error) {
	if !needs.Any() {
		return false, nil
	}
	path := os.Getenv("PATH")
	first, _, _ := strings.Cut(path, string(os.PathListSeparator))
	if first == dir {
		return true, nil
	}
	real, err := exec.LookPath("docker")
	if err != nil {
		return false, fmt.Errorf("use docker wrapper: %w", err)
	}
	if real, err = filepath.Abs(real); err != nil {
		return false, fmt.Errorf("use docker wrapper: %w", err)
	}
	if _, err := WriteDockerWrapper(dir, real, needs); err != nil {
		return false, err
	}
	if err := os.Setenv("PATH", dir+string(os.PathListSeparator)+path); err != nil {
		return false, fmt.Errorf("use docker wrapper: %w", err)
	}
	return true, nil
}
