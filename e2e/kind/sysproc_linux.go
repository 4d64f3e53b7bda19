package kind

import "syscall"

// detached puts a started daemon in its own session, so it outlives us.
func detached() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setsid: true} }
