//go:build !linux

package redistest

import (
	"os"
	"syscall"
)

// dieWithParent has no portable equivalent outside Linux: cleanups stop
// the servers.
func dieWithParent() *syscall.SysProcAttr { return nil }

// Pause and Resume are Linux only here.
var sigStop, sigCont os.Signal
