//go:build !linux

package procs

import "syscall"

// childAttrs leaves children in the harness's process group elsewhere than
// on Linux: a Ctrl-C reaches them too, and they stop on it.
func childAttrs() *syscall.SysProcAttr { return nil }

// killGroup has nothing to do without process groups of children.
func killGroup(int) {}
