package main

import "syscall"

// childAttrs puts the gateway in its own process group, so that a Ctrl-C in
// the terminal reaches only devstack, which stops it in order, and has the
// kernel send it SIGTERM should devstack die without stopping it.
func childAttrs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
