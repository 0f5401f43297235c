package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	modulePath = "github.com/apigetaway/getaway"
	// stopGrace is how long the gateway has to exit after SIGTERM before it
	// is killed; its own SHUTDOWN_TIMEOUT_SECONDS is shorter.
	stopGrace = 5 * time.Second
	// readyWithin bounds the wait for the gateway's /readyz.
	readyWithin = 30 * time.Second
)

// buildGateway builds the gateway (the module's root package) into dir with
// go build and returns the binary's path. The module is found from the
// working directory, as go run found this command.
func buildGateway(ctx context.Context, dir string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside the %s module: run devstack from its directory", modulePath)
	}
	mod, err := os.ReadFile(gomod)
	if err != nil {
		return "", err
	}
	if first, _, _ := strings.Cut(string(mod), "\n"); strings.TrimSpace(first) != "module "+modulePath {
		return "", fmt.Errorf("%s is not the %s module: run devstack from its directory", gomod, modulePath)
	}
	bin := filepath.Join(dir, "getaway")
	if runtime.GOOS == "windows" {
		bin += ".exe"
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", fmt.Errorf("go build of getaway failed: %w\n%s", err, out)
	}
	return bin, nil
}

// checkPort fails with advice when something already listens on port at
// 127.0.0.1, or at ::1, where a browser's "localhost" may go first.
func checkPort(port int) error {
	for _, host := range []string{"127.0.0.1", "::1"} {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, fmt.Sprint(port)))
		if err == nil {
			ln.Close()
			continue
		}
		if errors.Is(err, syscall.EADDRINUSE) || host == "127.0.0.1" {
			return portError(port, err)
		}
		// No IPv6 loopback here: nothing can take localhost from us there.
	}
	return nil
}

func portError(port int, err error) error {
	other := 18080
	if port == other {
		other = 28080
	}
	return fmt.Errorf("port %d is not free on localhost (%v): another program listens on it; "+
		"choose another port, e.g. go run ./bench/devstack -port %d", port, err, other)
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// gatewayProc is the running getaway child process.
type gatewayProc struct {
	cmd  *exec.Cmd
	log  *lineWriter
	done chan struct{} // closed once the process has exited
	err  error         // how it exited, once done is closed
}

// startGateway runs bin in dir with exactly env, its output going line by
// line to logs with a prefix.
func startGateway(bin, dir string, env []string, logs io.Writer) (*gatewayProc, error) {
	lw := &lineWriter{out: logs, prefix: "getaway | "}
	cmd := exec.Command(bin)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = lw, lw // one pipe, one copying goroutine
	cmd.SysProcAttr = childAttrs()
	cmd.WaitDelay = time.Second // should the pipe outlive the process
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start getaway: %w", err)
	}
	g := &gatewayProc{cmd: cmd, log: lw, done: make(chan struct{})}
	go func() {
		g.err = cmd.Wait()
		lw.flush()
		close(g.done)
	}()
	return g, nil
}

// waitReady polls url until it answers 200, the process exits, ctx ends or
// readyWithin passes.
func (g *gatewayProc) waitReady(ctx context.Context, url string) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(readyWithin)
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		select {
		case <-g.done:
			return fmt.Errorf("getaway exited while starting (%v); its log is above", g.err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("getaway not ready within %v: GET %s: %w", readyWithin, url, err)
		}
	}
}

// stop sends SIGTERM, kills the process if it is still there after
// stopGrace, and waits for it. It reports a kill or a failed exit.
func (g *gatewayProc) stop() error {
	select {
	case <-g.done: // it had stopped by itself
	default:
		if err := g.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			_ = g.cmd.Process.Kill() // no SIGTERM on Windows
			<-g.done
			return nil
		}
		select {
		case <-g.done:
		case <-time.After(stopGrace):
			_ = g.cmd.Process.Kill()
			<-g.done
			return fmt.Errorf("getaway did not stop within %v of SIGTERM: killed", stopGrace)
		}
	}
	if g.err != nil {
		return fmt.Errorf("getaway: %w", g.err)
	}
	return nil
}

// lineWriter writes each complete line to out with a prefix, and keeps the
// last lines for error messages.
type lineWriter struct {
	mu     sync.Mutex
	out    io.Writer
	prefix string
	buf    []byte
	tail   []string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.line(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}

// flush writes an unterminated last line.
func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.line(string(w.buf))
		w.buf = nil
	}
}

func (w *lineWriter) line(l string) {
	l = strings.TrimRight(l, "\r")
	fmt.Fprintf(w.out, "%s%s\n", w.prefix, l)
	if w.tail = append(w.tail, l); len(w.tail) > 20 {
		w.tail = w.tail[1:]
	}
}

// contains reports whether one of the last lines contains s.
func (w *lineWriter) contains(s string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, l := range w.tail {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}
