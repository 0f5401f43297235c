package procs

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// pollEvery is how often WaitReady asks a starting child.
const pollEvery = 20 * time.Millisecond

// ErrKilled is wrapped by the error of a Stop that had to kill the child.
var ErrKilled = errors.New("killed")

// Child is a running child process.
type Child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited
	err  error         // how it exited, once done is closed

	onStop   []func()
	stopOnce sync.Once
	stopErr  error
}

// Start starts cmd as the child name (used in messages), in a process
// group of its own with a parent-death signal (see the package
// documentation); cmd.SysProcAttr is replaced. Its stderr goes to the
// harness's unless cmd.Stderr is set. The child must be stopped with Stop.
func Start(name string, cmd *exec.Cmd) (*Child, error) {
	cmd.SysProcAttr = childAttrs()
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &Child{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// Name is the name the child was started with.
func (c *Child) Name() string { return c.name }

// Pid is the child's process id.
func (c *Child) Pid() int { return c.cmd.Process.Pid }

// Done is closed once the process has exited (and, when its output goes to
// a writer that is not a file, once that output has been copied).
func (c *Child) Done() <-chan struct{} { return c.done }

// Exited reports whether the process has exited.
func (c *Child) Exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// Err is how the process exited, as exec.Cmd.Wait reports it: nil for
// exit status 0, and nil while it runs.
func (c *Child) Err() error {
	if !c.Exited() {
		return nil
	}
	return c.err
}

// exitErr describes how the child exited, for messages.
func (c *Child) exitErr() error {
	if err := c.Err(); err != nil {
		return err
	}
	return errors.New("exit status 0")
}

// OnStop registers f to run once Stop has seen the process exit, such as
// removing the child's temp dir. Functions run last registered first.
func (c *Child) OnStop(f func()) { c.onStop = append(c.onStop, f) }

// Stop sends SIGTERM, kills the process if it is still there after grace,
// waits for it, and kills whatever is left of its process group (nginx
// workers whose master was killed). It then runs the OnStop functions. It
// returns an error wrapping ErrKilled after a kill, or how the process
// exited when that was not exit status 0. Later calls return the same.
func (c *Child) Stop(grace time.Duration) error {
	c.stopOnce.Do(func() {
		c.stopErr = c.stop(grace)
		for _, f := range slices.Backward(c.onStop) {
			f()
		}
		c.onStop = nil
	})
	return c.stopErr
}

func (c *Child) stop(grace time.Duration) error {
	pid := c.Pid()
	defer killGroup(pid)
	if c.Exited() {
		return c.exitedWith()
	}
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		_ = c.cmd.Process.Kill()
		<-c.done
		if errors.Is(err, os.ErrProcessDone) {
			return c.exitedWith()
		}
		return nil // no SIGTERM on Windows
	}
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-c.done:
		return c.exitedWith()
	case <-timer.C:
		killGroup(pid)
		_ = c.cmd.Process.Kill()
		<-c.done
		return fmt.Errorf("%s did not stop within %v of SIGTERM: %w", c.name, grace, ErrKilled)
	}
}

// exitedWith is Stop's error for a process that has exited.
func (c *Child) exitedWith() error {
	if c.err != nil {
		return fmt.Errorf("%s: %w", c.name, c.err)
	}
	return nil
}

// WaitReady calls ready every 20ms until it returns nil. It fails when the
// child exits, ctx ends or within passes, whichever comes first; after
// within, with ready's last error.
func (c *Child) WaitReady(ctx context.Context, within time.Duration, ready func(context.Context) error) error {
	deadline := time.Now().Add(within)
	for {
		err := ready(ctx)
		switch {
		case err == nil:
			return nil
		case c.Exited():
			return fmt.Errorf("%s exited while starting: %w", c.name, c.exitErr())
		case ctx.Err() != nil:
			return ctx.Err()
		case time.Now().After(deadline):
			return fmt.Errorf("%s not ready within %v: %w", c.name, within, err)
		}
		select {
		case <-ctx.Done():
		case <-c.done:
		case <-time.After(pollEvery):
		}
	}
}

// probeClient asks a starting child, on a fresh connection every time.
var probeClient = &http.Client{
	Timeout:   time.Second,
	Transport: &http.Transport{DisableKeepAlives: true},
}

// WaitHTTP is WaitReady until a GET of url answers 200.
func (c *Child) WaitHTTP(ctx context.Context, url string, within time.Duration) error {
	return c.WaitReady(ctx, within, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := probeClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
		}
		return nil
	})
}

// LastLines returns at most the last n lines of s, a child's log, for an
// error message.
func LastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
