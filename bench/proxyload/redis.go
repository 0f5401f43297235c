package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/apigetaway/getaway/bench/internal/procs"
)

// redisTimeout bounds one command of the harness's own Redis client.
const redisTimeout = 2 * time.Second

// findRedis returns the redis-server binary on PATH, or "".
func findRedis() string {
	p, err := exec.LookPath("redis-server")
	if err != nil {
		return ""
	}
	return p
}

// startRedis runs redis-server on a free loopback port without persistence,
// its files in a temp dir, and waits until it answers PING. It returns the
// child, the address and the version. A lost race for the port is retried
// with another one.
func startRedis(ctx context.Context, bin string) (*procs.Child, string, string, error) {
	// "Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 ..."
	info, _ := exec.Command(bin, "--version").CombinedOutput()
	version := strings.TrimSpace(string(info))
	for f := range strings.FieldsSeq(version) {
		if v, ok := strings.CutPrefix(f, "v="); ok {
			version = "redis-server " + v
			break
		}
	}

	dir, err := os.MkdirTemp("", "proxyload-redis-")
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
		if err := rc.WaitReady(ctx, readyWithin, pong(a)); err != nil {
			stopChild(rc)
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
	return nil, "", "", fmt.Errorf("%w\nredis.log:\n%s", err, lastLines(string(log), 20))
}

// pong is a readiness probe: addr answers PING with PONG.
func pong(addr string) func(context.Context) error {
	return func(ctx context.Context) error {
		reply, err := redisDo(ctx, addr, "PING")
		if err == nil && reply != "PONG" {
			err = fmt.Errorf("PING answered %q", reply)
		}
		return err
	}
}

// redisDo sends one command on a connection of its own and returns the
// reply: the text of a simple string, integer or bulk string. An error
// reply is returned as an error. It is all the harness asks of Redis (PING
// and INFO), so it needs no client library and issues no command of its
// own, such as HELLO, that would show in the command statistics.
func redisDo(ctx context.Context, addr string, args ...string) (string, error) {
	d := net.Dialer{Timeout: redisTimeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(redisTimeout)); err != nil {
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

// commandStats is the calls= count of every command in INFO commandstats,
// by command name ("get", "client|tracking").
type commandStats map[string]int64

// readCommandStats asks Redis for INFO commandstats.
func readCommandStats(ctx context.Context, addr string) (commandStats, error) {
	info, err := redisDo(ctx, addr, "INFO", "commandstats")
	if err != nil {
		return nil, fmt.Errorf("INFO commandstats: %w", err)
	}
	return parseCommandStats(info)
}

// parseCommandStats reads the section INFO commandstats returns:
//
//	# Commandstats
//	cmdstat_get:calls=12,usec=40,usec_per_call=3.33,rejected_calls=0,failed_calls=0
func parseCommandStats(info string) (commandStats, error) {
	stats := commandStats{}
	for line := range strings.Lines(info) {
		line = strings.TrimSpace(line)
		name, fields, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		name, ok = strings.CutPrefix(name, "cmdstat_")
		if !ok {
			continue
		}
		found := false
		for f := range strings.SplitSeq(fields, ",") {
			if v, ok := strings.CutPrefix(f, "calls="); ok {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("INFO commandstats line %q: %w", line, err)
				}
				stats[name] = n
				found = true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("INFO commandstats line %q has no calls=", line)
		}
	}
	return stats, nil
}

// redisUse adds up the Redis commands the gateway sent while the harness
// was sending it a number of requests.
type redisUse struct {
	requests int64
	elapsed  time.Duration // how long those requests took
	byCmd    map[string]int64
}

// add records the commands between two INFO commandstats readings taken
// around requests requests that took elapsed. Redis counts a command once
// it has run, so the later reading includes the earlier INFO and not
// itself: one INFO call of the difference is the harness's own.
func (u *redisUse) add(before, after commandStats, requests int64, elapsed time.Duration) {
	if u.byCmd == nil {
		u.byCmd = map[string]int64{}
	}
	u.requests += requests
	u.elapsed += elapsed
	for name, n := range after {
		d := n - before[name]
		if name == "info" {
			d--
		}
		if d > 0 {
			u.byCmd[name] += d
		}
	}
}

// commands is the total count.
func (u *redisUse) commands() int64 {
	var n int64
	for _, c := range u.byCmd {
		n += c
	}
	return n
}

// perThousand is the number of commands per 1,000 requests.
func (u *redisUse) perThousand() float64 {
	if u.requests == 0 {
		return 0
	}
	return float64(u.commands()) * 1000 / float64(u.requests)
}

// perSecond is the number of commands per second of load; commands sent
// whatever the load (keep-alive PINGs) show here.
func (u *redisUse) perSecond() float64 {
	if u.elapsed <= 0 {
		return 0
	}
	return float64(u.commands()) / u.elapsed.Seconds()
}

// breakdown lists the commands, the most frequent first: "get 3, evalsha 1".
func (u *redisUse) breakdown() string {
	names := make([]string, 0, len(u.byCmd))
	for name := range u.byCmd {
		names = append(names, name)
	}
	slices.SortFunc(names, func(a, b string) int {
		return cmp.Or(cmp.Compare(u.byCmd[b], u.byCmd[a]), strings.Compare(a, b))
	})
	parts := make([]string, len(names))
	for i, name := range names {
		parts[i] = fmt.Sprintf("%s %d", strings.ToUpper(name), u.byCmd[name])
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// lastLines returns at most the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
