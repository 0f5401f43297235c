//go:build !linux

package main

import "syscall"

// childAttrs leaves the gateway in devstack's process group elsewhere than
// on Linux: a Ctrl-C in the terminal reaches it too, and it stops on it.
func childAttrs() *syscall.SysProcAttr { return nil }
