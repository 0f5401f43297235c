//go:build !linux

package redistest

import "syscall"

// dieWithParent has no portable equivalent outside Linux: cleanups stop
// the servers.
func dieWithParent() *syscall.SysProcAttr { return nil }
