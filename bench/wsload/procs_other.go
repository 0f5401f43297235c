//go:build !linux

package main

import "syscall"

// childAttrs puts a child in its own process group.
func childAttrs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// killGroup kills whatever is left in the process group a child led.
func killGroup(pgid int) {
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}
