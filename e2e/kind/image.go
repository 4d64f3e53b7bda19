package kind

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"sigs.k8s.io/kind/pkg/apis/config/defaults"
)

// StockImage is the kind library's default node image, used on a host that
// reaches a container registry (GitHub runners).
const StockImage = defaults.Image

// OnlineEnv forces the choice of node image: "1" uses StockImage, "0" builds
// the offline image; unset, a pull probe decides (ChooseMode).
const OnlineEnv = "CILIA_KIND_ONLINE"

// ErrBadOnlineEnv is returned for a CILIA_KIND_ONLINE other than "", "0", "1".
var ErrBadOnlineEnv = errors.New("bad " + OnlineEnv)

// Mode says where the node image comes from.
type Mode string

// The two modes.
const (
	// Online pulls StockImage; no host workaround runs.
	Online Mode = "online"
	// Offline builds the node image locally (hack/kind-image/build.sh).
	Offline Mode = "offline"
)

// ModeFromEnv maps the value of CILIA_KIND_ONLINE to a mode; ok is false when
// it is unset or empty and a probe must decide.
func ModeFromEnv(v string) (m Mode, ok bool, err error) {
	switch strings.TrimSpace(v) {
	case "":
		return "", false, nil
	case "1", "true", "yes":
		return Online, true, nil
	case "0", "false", "no":
		return Offline, true, nil
	}
	return "", false, fmt.Errorf("choose node image: %w: %q (want 0 or 1)", ErrBadOnlineEnv, v)
}

// ChooseMode decides where the node image comes from: CILIA_KIND_ONLINE when
// set, else Online when StockImage is already local or a pull of it succeeds
// within the timeout, else Offline.
func ChooseMode(ctx context.Context, timeout time.Duration) (Mode, error) {
	if m, ok, err := ModeFromEnv(os.Getenv(OnlineEnv)); err != nil || ok {
		return m, err
	}
	if exec.CommandContext(ctx, "docker", "image", "inspect", StockImage).Run() == nil {
		return Online, nil
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if exec.CommandContext(pctx, "docker", "pull", "-q", StockImage).Run() == nil {
		return Online, nil
	}
	return Offline, nil
}

// CacheDir returns the cache root for built artifacts: $CILIA_CACHE, or
// /var/cache/cilia. It lies outside the repository.
func CacheDir() string {
	if d := os.Getenv("CILIA_CACHE"); d != "" {
		return d
	}
	return "/var/cache/cilia"
}

// WrapperDir is where the docker wrapper is written when the host needs it.
func WrapperDir(cache string) string { return filepath.Join(cache, "kind", "wrapper") }

// BuildOfflineImage runs the offline image pipeline (script, normally
// hack/kind-image/build.sh) with the cache root in CILIA_CACHE and returns
// the node image it printed last. Its progress goes to stderr.
func BuildOfflineImage(ctx context.Context, script, cache string) (string, error) {
	cmd := exec.CommandContext(ctx, "bash", script)
	cmd.Env = append(os.Environ(), "CILIA_CACHE="+cache)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("build offline node image: %w", err)
	}
	lines := strings.Fields(strings.TrimSpace(string(out)))
	if len(lines) == 0 {
		return "", errors.New("build offline node image: the pipeline printed no image name")
	}
	img := lines[len(lines)-1]
	if exec.CommandContext(ctx, "docker", "image", "inspect", img).Run() != nil {
		return "", fmt.Errorf("build offline node image: %q is not a local image", img)
	}
	return img, nil
}

// Setup prepares this host for kind: it makes sure docker answers
// (EnsureDocker), chooses the node image mode, and in Offline mode detects
// the host workarounds and puts the docker wrapper on PATH when they are
// needed. Online mode applies none of them.
func Setup(ctx context.Context, cache string) (Mode, HostNeeds, error) {
	var needs HostNeeds
	if err := EnsureDocker(ctx, filepath.Join(cache, "kind", "dockerd.log")); err != nil {
		return "", needs, err
	}
	mode, err := ChooseMode(ctx, 60*time.Second)
	if err != nil || mode == Online {
		return mode, needs, err
	}
	if needs, err = DetectHost(ctx); err != nil {
		return mode, needs, err
	}
	if _, err := UseWrapper(needs, WrapperDir(cache)); err != nil {
		return mode, needs, err
	}
	return mode, needs, nil
}
