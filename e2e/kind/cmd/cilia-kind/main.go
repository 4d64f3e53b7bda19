// Command cilia-kind brings up and tears down the kind clusters of cilia's
// end-to-end tests (make kind-image, make kind-up, make kind-down):
//
//	cilia-kind image                 print the node image, building it offline if needed
//	cilia-kind up [flags]            create the cluster (or reuse it) and wait until it is ready
//	cilia-kind down [flags]          delete the cluster and check nothing is left
//	cilia-kind load [flags] IMAGE... copy local docker images into every node
//
// The node image is kind's stock image on a host that reaches a registry and
// the offline image from hack/kind-image/build.sh elsewhere (CILIA_KIND_ONLINE
// forces either). Artifacts, kubeconfigs and logs live under $CILIA_CACHE
// (default /var/cache/cilia). See docs/e2e.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/ciliaproject/cilia/e2e/kind"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "cilia-kind:", err)
		os.Exit(1)
	}
}

func usage() error {
	return fmt.Errorf("usage: cilia-kind image|up|down|load [-name NAME -workers N -dual-stack -kubeconfig PATH -timeout D] [IMAGE...]")
}

func run(args []string) error {
	if len(args) == 0 {
		return usage()
	}
	fs := flag.NewFlagSet("cilia-kind "+args[0], flag.ContinueOnError)
	cache := kind.CacheDir()
	name := fs.String("name", kind.DefaultPrefix+"-e2e", "cluster name (also its docker network)")
	workers := fs.Int("workers", 0, "worker nodes besides the control plane")
	dual := fs.Bool("dual-stack", false, "IPv4 and IPv6 pod and service subnets")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig path (default $CILIA_CACHE/kind/NAME/kubeconfig)")
	script := fs.String("build-script", "hack/kind-image/build.sh", "offline image pipeline")
	image := fs.String("image", "", "node image (default: chosen and built by 'image')")
	timeout := fs.Duration("timeout", 10*time.Minute, "time to wait for the cluster to be ready")
	verbosity := fs.Int("v", 0, "kind library log verbosity")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *kubeconfig == "" {
		*kubeconfig = filepath.Join(cache, "kind", *name, "kubeconfig")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	nodeImage := func() (string, error) {
		if err := installDocker(ctx, *script); err != nil {
			return "", err
		}
		mode, needs, err := kind.Setup(ctx, cache)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(os.Stderr, "cilia-kind: node image mode %s, host workarounds: %s\n", mode, needs)
		if *image != "" {
			return *image, nil
		}
		if mode == kind.Online {
			return kind.StockImage, nil
		}
		return kind.BuildOfflineImage(ctx, *script, cache)
	}

	switch args[0] {
	case "image":
		img, err := nodeImage()
		if err != nil {
			return err
		}
		fmt.Println(img)
		return nil
	case "up":
		start := time.Now()
		img, err := nodeImage()
		if err != nil {
			return err
		}
		wctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		if c, err := kind.Open(*name, *kubeconfig, nil); err == nil {
			fmt.Fprintf(os.Stderr, "cilia-kind: cluster %s exists; waiting for it\n", *name)
			if err := c.WaitReady(wctx); err != nil {
				return err
			}
		} else {
			cfg := kind.Config{Name: *name, Workers: *workers, DualStack: *dual, Image: img, KubeconfigPath: *kubeconfig}
			logs := filepath.Join(cache, "kind", *name, "logs")
			if _, err := kind.Create(wctx, cfg, logs, kind.Logger(*verbosity)); err != nil {
				return fmt.Errorf("%w (node logs in %s)", err, logs)
			}
		}
		fmt.Fprintf(os.Stderr, "cilia-kind: cluster %s ready in %s\n", *name, time.Since(start).Round(time.Second))
		fmt.Println(*kubeconfig)
		return nil
	case "load":
		// The host's workarounds (the docker wrapper) apply to kind's
		// docker exec calls too.
		if _, _, err := kind.Setup(ctx, cache); err != nil {
			return err
		}
		c, err := kind.Open(*name, *kubeconfig, nil)
		if err != nil {
			return err
		}
		if err := c.LoadImages(ctx, fs.Args()...); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "cilia-kind: loaded %v into %s\n", fs.Args(), *name)
		return nil
	case "down":
		if err := kind.EnsureDocker(ctx, filepath.Join(cache, "kind", "dockerd.log")); err != nil {
			return err
		}
		if err := kind.Delete(ctx, *name, *kubeconfig, kind.Logger(*verbosity)); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "cilia-kind: cluster %s deleted; no containers, network or netns left\n", *name)
		return nil
	}
	return usage()
}

// installDocker installs the host packages (docker.io and the image
// pipeline's tools) with the pipeline's `deps` step when neither docker nor
// dockerd is on PATH.
func installDocker(ctx context.Context, script string) error {
	if _, err := exec.LookPath("dockerd"); err == nil {
		return nil
	}
	if _, err := exec.LookPath("docker"); err == nil && exec.CommandContext(ctx, "docker", "info").Run() == nil {
		return nil
	}
	cmd := exec.CommandContext(ctx, "bash", script, "deps")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("install docker: %w", err)
	}
	return nil
}
