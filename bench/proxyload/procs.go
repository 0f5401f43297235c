package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// stopGrace is how long a child has to exit after SIGTERM before it is
// killed.
const stopGrace = 5 * time.Second

// child is a server process started by the harness.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited
	err  error         // how it exited, once done is closed
	// cleanup, if set, runs once the process is gone (temp files).
	cleanup func()
}

// startChild starts cmd in its own process group (see procs_linux.go), so
// that a Ctrl-C reaches only the harness, which then stops it in order.
func startChild(name string, cmd *exec.Cmd) (*child, error) {
	cmd.SysProcAttr = childAttrs()
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// exited reports whether the process has already ended.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, kills the process if it is still there after
// stopGrace, and waits for it. It then kills what is left of its process
// group (nginx workers whose master was killed).
func (c *child) stop() {
	if !c.exited() {
		if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			_ = c.cmd.Process.Kill()
		}
		select {
		case <-c.done:
		case <-time.After(stopGrace):
			fmt.Fprintf(os.Stderr, "%s did not stop within %v: killed\n", c.name, stopGrace)
			_ = c.cmd.Process.Kill()
			<-c.done
		}
	}
	killGroup(c.cmd.Process.Pid)
	if c.cleanup != nil {
		c.cleanup()
		c.cleanup = nil
	}
}

// startRole starts this executable again in role, reads the address it
// reports ("ADDR host:port" on stdout) and waits until probePath on that
// address answers.
func startRole(ctx context.Context, role, probePath string, args ...string) (*child, string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	// An *os.File as Stdout, so exec.Cmd.Wait never waits on our reader.
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, "", err
	}
	cmd := exec.Command(self, append([]string{"-role=" + role}, args...)...)
	cmd.Stdout = pw
	c, err := startChild(role, cmd)
	pw.Close()
	if err != nil {
		pr.Close()
		return nil, "", err
	}

	addrc := make(chan string, 1)
	go func() {
		defer pr.Close()
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if addr, ok := strings.CutPrefix(sc.Text(), "ADDR "); ok {
				addrc <- addr
				break
			}
		}
		_, _ = io.Copy(io.Discard, pr) // nothing else is expected; never block the child
	}()

	timer := time.NewTimer(readyWithin)
	defer timer.Stop()
	select {
	case addr := <-addrc:
		if err := waitReady(ctx, c, "http://"+addr+probePath); err != nil {
			c.stop()
			return nil, "", err
		}
		return c, addr, nil
	case <-c.done:
		return nil, "", fmt.Errorf("%s exited before reporting its address: %v", role, c.err)
	case <-timer.C:
		err = fmt.Errorf("%s did not report its address within %v", role, readyWithin)
	case <-ctx.Done():
		err = ctx.Err()
	}
	c.stop()
	return nil, "", err
}

// waitReady polls url until it answers 200, c exits, ctx ends or
// readyWithin passes.
func waitReady(ctx context.Context, c *child, url string) error {
	deadline := time.Now().Add(readyWithin)
	for {
		status, err := get(url, "", nil)
		if err == nil && status == fasthttp.StatusOK {
			return nil
		}
		if c.exited() {
			return fmt.Errorf("%s exited while starting: %v", c.name, c.err)
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("status %d", status)
			}
			return fmt.Errorf("%s not ready within %v: %w", c.name, readyWithin, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// probe checks that t answers 200 with exactly echoBody, and returns the
// size of the whole response, head and body.
func probe(t target) (int, error) {
	var size int
	status, err := get(t.url, t.sid, func(resp *fasthttp.Response) error {
		if !bytes.Equal(resp.Body(), echoBody) {
			return fmt.Errorf("unexpected body %q", resp.Body())
		}
		size = len(resp.Header.Header()) + len(resp.Body())
		return nil
	})
	if err == nil && status != fasthttp.StatusOK {
		err = fmt.Errorf("status %d", status)
	}
	return size, err
}

// get requests url once, with the session cookie sid unless it is empty,
// and passes the response to check, if not nil.
func get(url, sid string, check func(*fasthttp.Response) error) (int, error) {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(url)
	req.SetConnectionClose()
	if sid != "" {
		req.Header.SetCookie(cookieName, sid)
	}
	if err := fasthttp.DoTimeout(req, resp, time.Second); err != nil {
		return 0, err
	}
	if check != nil {
		if err := check(resp); err != nil {
			return resp.StatusCode(), err
		}
	}
	return resp.StatusCode(), nil
}
