package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/apigetaway/getaway/bench/internal/procs"
)

const (
	// stopGrace is how long the gateway has to exit after SIGTERM before it
	// is killed; its own SHUTDOWN_TIMEOUT_SECONDS is shorter.
	stopGrace = 5 * time.Second
	// readyWithin bounds the wait for the gateway's /readyz.
	readyWithin = 30 * time.Second
)

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

// startGateway runs bin in dir with exactly env, its output going line by
// line to logs with a prefix. It returns the child and its log.
func startGateway(bin, dir string, env []string, logs io.Writer) (*procs.Child, *lineWriter, error) {
	lw := &lineWriter{out: logs, prefix: "getaway | "}
	cmd := exec.Command(bin)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = lw, lw // one pipe, one copying goroutine
	cmd.WaitDelay = time.Second     // should the pipe outlive the process
	g, err := procs.Start("getaway", cmd)
	if err != nil {
		return nil, nil, err
	}
	g.OnStop(lw.flush) // an unterminated last line
	return g, lw, nil
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

// contains reports whether one of the last lines, or a line not yet
// ended, contains s.
func (w *lineWriter) contains(s string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, l := range w.tail {
		if strings.Contains(l, s) {
			return true
		}
	}
	return bytes.Contains(w.buf, []byte(s))
}
