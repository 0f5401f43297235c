package redistest

import (
	"os"
	"syscall"
)

// dieWithParent makes the kernel kill redis-server when the test binary
// dies without running its cleanups (a -timeout panic, a kill -9).
func dieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// The signals of Pause and Resume.
var sigStop, sigCont os.Signal = syscall.SIGSTOP, syscall.SIGCONT
