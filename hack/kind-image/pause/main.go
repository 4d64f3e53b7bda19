// Command pause is the pod sandbox process of the offline kind node image: it
// waits for SIGINT or SIGTERM and exits 0. As PID 1 of a pod it also reaps the
// zombies it inherits. With -v it prints its name and exits, which is how
// cilia-kind probes whether docker can run a container with --privileged.
// The same binary stands in for images the offline cluster never runs.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "-v" || os.Args[1] == "--version") {
		fmt.Println("pause (cilia)")
		return
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			return
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
