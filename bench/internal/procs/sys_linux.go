package procs

import "syscall"

// childAttrs puts a child in its own process group and has the kernel send
// it SIGTERM should the harness die without stopping it.
func childAttrs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}

// killGroup kills whatever is left in the process group a child led.
func killGroup(pgid int) {
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}
