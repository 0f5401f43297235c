package sessioncache

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
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// This file starts real redis-server processes on free loopback ports
// (DESIGN.md section 5: no miniredis, no mocks, never a fixed port, never a
// process left behind). One single node and one 3-node cluster are shared
// by the whole test binary and stopped by TestMain; tests that kill or
// count commands start their own server.

func TestMain(m *testing.M) {
	code := m.Run()
	stopSharedRedis()
	if code == 0 {
		// Every store is closed by now. Two goroutines of rueidis' cluster
		// client may outlive Close for a few seconds and end by themselves:
		// the one closing connections a topology refresh replaced (after
		// 5s, cluster.go _refresh) and the delay of a lazy refresh
		// (singleflight.go DelayDo).
		if err := goleak.Find(
			goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*clusterClient)._refresh.func2"),
			goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*call).DelayDo.func1"),
		); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// redisServer is one redis-server process.
type redisServer struct {
	bin   string
	port  int
	dir   string
	extra []string

	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has been reaped
}

func (s *redisServer) addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// redisServerPath returns the redis-server binary, or skips the test when
// it is not installed (fails instead when CI=true: CI must run these).
func redisServerPath(tb testing.TB) string {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatal("redis-server not installed (required when CI=true)")
		}
		tb.Skip("redis-server not installed")
	}
	return bin
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// launchRedis starts redis-server on a free port, retrying with another
// port when it loses the race for the one it picked. extra may contain
// "{{port2}}", replaced by a second free port (for --cluster-port).
func launchRedis(bin, dir string, extra ...string) (*redisServer, error) {
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		args := append([]string(nil), extra...)
		for i, a := range args {
			if a == "{{port2}}" {
				p2, err := freePort()
				if err != nil {
					return nil, err
				}
				args[i] = strconv.Itoa(p2)
			}
		}
		s := &redisServer{bin: bin, port: port, dir: dir, extra: args}
		if lastErr = s.start(); lastErr == nil {
			return s, nil
		}
	}
	return nil, lastErr
}

// start runs the server on s.port and waits until it answers PING.
func (s *redisServer) start() error {
	args := append([]string{
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir,
	}, s.extra...)
	logf, err := os.OpenFile(filepath.Join(s.dir, "redis.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(s.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	s.cmd = cmd
	s.exited = make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(s.exited)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if reply, err := respDo(s.addr(), "PING"); err == nil && reply == "PONG" {
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("redis-server on port %d exited at start (see %s)", s.port, logf.Name())
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.kill()
			return fmt.Errorf("redis-server on port %d did not answer PING within 10s", s.port)
		}
	}
}

// kill stops the server at once (SIGKILL) and reaps it.
func (s *redisServer) kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// restart starts the server again on the same port, retrying briefly while
// the old socket lingers.
func (s *redisServer) restart(tb testing.TB) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := s.start()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("restarting redis-server: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startRedis starts a server of the test's own, killed at its end.
func startRedis(tb testing.TB, extra ...string) *redisServer {
	tb.Helper()
	s, err := launchRedis(redisServerPath(tb), tb.TempDir(), extra...)
	if err != nil {
		tb.Fatalf("starting redis-server: %v", err)
	}
	tb.Cleanup(s.kill)
	return s
}

var shared struct {
	mu         sync.Mutex
	dir        string
	single     *redisServer
	singleErr  error
	cluster    []*redisServer
	clusterErr error
}

func sharedDir() (string, error) {
	if shared.dir == "" {
		dir, err := os.MkdirTemp("", "sessioncache-redis-")
		if err != nil {
			return "", err
		}
		shared.dir = dir
	}
	return shared.dir, nil
}

// sharedRedis returns the single-node server shared by the test binary.
func sharedRedis(tb testing.TB) *redisServer {
	tb.Helper()
	bin := redisServerPath(tb)
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.single == nil && shared.singleErr == nil {
		dir, err := sharedDir()
		if err == nil {
			dir = filepath.Join(dir, "single")
			if err = os.Mkdir(dir, 0o700); err == nil {
				shared.single, err = launchRedis(bin, dir)
			}
		}
		shared.singleErr = err
	}
	if shared.singleErr != nil {
		tb.Fatalf("starting shared redis-server: %v", shared.singleErr)
	}
	return shared.single
}

// sharedRedisCluster returns the 3-node cluster (3 primaries, no replicas)
// shared by the test binary.
func sharedRedisCluster(tb testing.TB) []*redisServer {
	tb.Helper()
	bin := redisServerPath(tb)
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatal("redis-cli not installed (required when CI=true)")
		}
		tb.Skip("redis-cli not installed")
	}
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.cluster == nil && shared.clusterErr == nil {
		shared.cluster, shared.clusterErr = startCluster(bin, cli)
	}
	if shared.clusterErr != nil {
		tb.Fatalf("starting shared redis cluster: %v", shared.clusterErr)
	}
	return shared.cluster
}

func startCluster(bin, cli string) ([]*redisServer, error) {
	base, err := sharedDir()
	if err != nil {
		return nil, err
	}
	var nodes []*redisServer
	fail := func(err error) ([]*redisServer, error) {
		for _, n := range nodes {
			n.kill()
		}
		return nil, err
	}
	for i := range 3 {
		dir := filepath.Join(base, fmt.Sprintf("cluster-%d", i))
		if err := os.Mkdir(dir, 0o700); err != nil {
			return fail(err)
		}
		// The cluster bus gets a free port of its own: the default,
		// port+10000, may be taken or beyond 65535.
		n, err := launchRedis(bin, dir,
			"--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--cluster-port", "{{port2}}",
			"--cluster-node-timeout", "5000")
		if err != nil {
			return fail(err)
		}
		nodes = append(nodes, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := []string{"--cluster", "create"}
	for _, n := range nodes {
		args = append(args, n.addr())
	}
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		return fail(fmt.Errorf("redis-cli --cluster create: %v\n%s", err, out))
	}
	deadline := time.Now().Add(15 * time.Second)
	for _, n := range nodes {
		for {
			info, err := respDo(n.addr(), "CLUSTER", "INFO")
			if s, ok := info.(string); err == nil && ok && strings.Contains(s, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				return fail(fmt.Errorf("node %s: cluster_state not ok within 15s", n.addr()))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nodes, nil
}

func stopSharedRedis() {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.single != nil {
		shared.single.kill()
	}
	for _, n := range shared.cluster {
		n.kill()
	}
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
}

// respDo sends one command on a fresh connection (RESP2, no client
// library: nothing else is sent, which keeps command counts exact) and
// returns the reply: string, int64, nil, []any, or an error for an error
// reply.
func respDo(addr string, args ...string) (any, error) {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return nil, err
	}
	return readReply(bufio.NewReader(conn))
}

func readReply(r *bufio.Reader) (any, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return nil, errors.New("empty reply line")
	}
	switch body := line[1:]; line[0] {
	case '+':
		return body, nil
	case '-':
		return nil, fmt.Errorf("redis: %s", body)
	case ':':
		return strconv.ParseInt(body, 10, 64)
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return nil, err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return nil, err
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = readReply(r); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("unexpected reply %q", line)
}

// respNodeDo runs a keyed command on whichever node of nodes owns the key
// (following one MOVED), for cluster and single node alike.
func respNodeDo(nodes []*redisServer, args ...string) (any, error) {
	reply, err := respDo(nodes[0].addr(), args...)
	if err != nil && strings.HasPrefix(err.Error(), "redis: MOVED ") {
		f := strings.Fields(err.Error())
		return respDo(f[len(f)-1], args...)
	}
	return reply, err
}
