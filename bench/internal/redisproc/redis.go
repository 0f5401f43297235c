package redisproc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/apigetaway/getaway/bench/internal/procs"
)

// timeout bounds one command of Do.
const timeout = 2 * time.Second

// stopGrace bounds the stop of a redis-server that did not get ready.
const stopGrace = 5 * time.Second

// Find returns the redis-server binary on PATH, or "".
func Find() string {
	p, err := exec.LookPath("redis-server")
	if err != nil {
		return ""
	}
	return p
}

// Start runs bin (redis-server) on a free loopback port without
// persistence, its files in a temp dir removed when it stops, and waits, up
// to within, until it answers PING. It returns the child, the address and
// the version ("redis-server 7.0.15"). A lost race for the port is retried
// with another one.
func Start(ctx context.Context, bin string, within time.Duration) (*procs.Child, string, string, error) {
	// "Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 ..."
	info, _ := exec.Command(bin, "--version").CombinedOutput()
	version := strings.TrimSpace(string(info))
	for f := range strings.FieldsSeq(version) {
		if v, ok := strings.CutPrefix(f, "v="); ok {
			version = "redis-server " + v
			break
		}
	}

	dir, err := os.MkdirTemp("", "bench-redis-")
	if err != nil {
		return nil, "", "", err
	}
	logFile := filepath.Join(dir, "redis.log")
	var c *procs.Child
	var addr string
	err = procs.RetryOnFreeAddr(ctx, func(a string) (retry bool, err error) {
		_, port, _ := net.SplitHostPort(a)
		cmd := exec.Command(bin,
			"--port", port, "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no",
			"--dir", dir, "--logfile", logFile, "--daemonize", "no")
		rc, err := procs.Start("redis-server", cmd)
		if err != nil {
			return false, err
		}
		if err := rc.WaitReady(ctx, within, pong(a)); err != nil {
			_ = rc.Stop(stopGrace)
			return true, err
		}
		c, addr = rc, a
		return false, nil
	})
	if err == nil {
		c.OnStop(func() { os.RemoveAll(dir) })
		return c, addr, version, nil
	}
	log, _ := os.ReadFile(logFile)
	os.RemoveAll(dir)
	if ctx.Err() != nil {
		return nil, "", "", ctx.Err()
	}
	return nil, "", "", fmt.Errorf("%w\nredis.log:\n%s", err, procs.LastLines(string(log), 20))
}

// pong is a readiness probe: addr answers PING with PONG.
func pong(addr string) func(context.Context) error {
	return func(ctx context.Context) error {
		reply, err := Do(ctx, addr, "PING")
		if err == nil && reply != "PONG" {
			err = fmt.Errorf("PING answered %q", reply)
		}
		return err
	}
}

// Do sends one command on a connection of its own and returns the
// reply: the text of a simple string, integer or bulk string. An error
// reply is returned as an error. It is all the bench programs ask of Redis
// (PING and INFO), so it needs no client library and issues no command of
// its own, such as HELLO, that would show in the command statistics.
func Do(ctx context.Context, addr string, args ...string) (string, error) {
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return "", err
	}
	if _, err := io.WriteString(conn, encodeCommand(args...)); err != nil {
		return "", err
	}
	return readReply(bufio.NewReader(conn))
}

// encodeCommand writes args as a RESP array of bulk strings.
func encodeCommand(args ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b.String()
}

// readReply reads one RESP2 reply that is not an array.
func readReply(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if line == "" {
		return "", errors.New("redis: empty reply line")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", fmt.Errorf("redis: %s", line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < -1 || n > 64<<20 {
			return "", fmt.Errorf("redis: bad bulk length %q", line)
		}
		if n == -1 {
			return "", errors.New("redis: nil reply")
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	default:
		return "", fmt.Errorf("redis: unexpected reply %q", line)
	}
}
