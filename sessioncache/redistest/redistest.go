package redistest

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
)

// Server is one redis-server process listening on 127.0.0.1. Its methods
// are safe for concurrent use.
type Server struct {
	bin  string
	port int
	dir  string   // --dir, kept across Restart
	args []string // extra arguments, after the defaults

	mu     sync.Mutex    // guards cmd and exited
	cmd    *exec.Cmd     // nil while the server is not running
	exited chan struct{} // closed once cmd has been reaped
}

// Start starts a redis-server of the test's own on a free loopback port,
// with extraArgs appended to the defaults (see the package documentation),
// and kills it in tb.Cleanup. It returns once the server answers PING. It
// skips the test when redis-server is not installed, or fails it when
// CI=true, and fails it when the server does not start.
func Start(tb testing.TB, extraArgs ...string) *Server {
	tb.Helper()
	bin := lookTool(tb, "redis-server")
	s, err := launch(bin, tb.TempDir(), extraArgs, false)
	if err != nil {
		tb.Fatalf("redistest: starting redis-server: %v", err)
	}
	tb.Cleanup(s.Kill)
	return s
}

// Addr returns the server's address, "127.0.0.1:PORT". It stays the same
// across Restart.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// URL returns the server's URL, "redis://127.0.0.1:PORT".
func (s *Server) URL() string { return "redis://" + s.Addr() }

// Kill stops the server at once (SIGKILL, so nothing is saved on the way
// out) and waits until the process has exited. Killing a server that is
// not running does nothing.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.killLocked()
}

func (s *Server) killLocked() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// Pause stops the server without killing it (SIGSTOP): it keeps its port
// and connections but answers nothing, as a hung server would, until
// [Server.Resume]. Kill and Restart work on a paused server.
func (s *Server) Pause(tb testing.TB) { s.signal(tb, sigStop) }

// Resume lets a paused server run again (SIGCONT).
func (s *Server) Resume(tb testing.TB) { s.signal(tb, sigCont) }

func (s *Server) signal(tb testing.TB, sig os.Signal) {
	tb.Helper()
	if sig == nil {
		tb.Skip("redistest: pausing a server is not supported on this system")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		tb.Fatalf("redistest: %v: redis-server is not running", sig)
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		tb.Fatalf("redistest: %v: %v", sig, err)
	}
}

// Restart kills the server if it is running and starts it again with the
// same port, directory and arguments, retrying for up to 5s while the old
// socket lingers or the port is briefly taken. It returns once the server
// answers PING, and fails the test otherwise.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.killLocked()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := s.startLocked()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("redistest: restarting redis-server: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Do sends one command to the server on a fresh connection and returns
// the reply: a string (simple or bulk), an int64, nil (null bulk), an []any
// of those, or an [Error] for an error reply. It speaks RESP2 and sends
// nothing but the command (no HELLO, no CLIENT SETNAME), so the server's
// command counts see exactly that one command. It waits up to 2s to
// connect and 5s for the reply.
func (s *Server) Do(args ...string) (any, error) { return do(s.Addr(), args...) }

// CommandStats returns the number of calls of each command the server has
// run since it started, from INFO commandstats, keyed by the name Redis
// gives there: lower case, and on Redis 7 and later subcommands apart
// ("get", "client|tracking", "cluster|slots"). The INFO it sends counts
// from the next reading on.
func (s *Server) CommandStats(tb testing.TB) map[string]int64 {
	tb.Helper()
	reply, err := s.Do("INFO", "commandstats")
	if err != nil {
		tb.Fatalf("redistest: INFO commandstats: %v", err)
	}
	text, _ := reply.(string)
	calls := make(map[string]int64)
	for _, line := range strings.Split(text, "\r\n") {
		rest, ok := strings.CutPrefix(line, "cmdstat_")
		if !ok {
			continue
		}
		name, rest, ok := strings.Cut(rest, ":calls=")
		if !ok {
			continue
		}
		n, _, _ := strings.Cut(rest, ",")
		calls[name], _ = strconv.ParseInt(n, 10, 64)
	}
	return calls
}

// CommandCalls returns the total of [Server.CommandStats] less the
// commands that connection bookkeeping sends rather than the work under
// test. It leaves out exactly:
//
//   - info: the readings of CommandStats and CommandCalls themselves;
//   - ping: Start's and Restart's readiness probes, and the health-check
//     PINGs clients send on idle connections (rueidis does);
//   - hello, and every CLIENT subcommand except CLIENT CACHING (on Redis 7
//     and later client|setname, client|setinfo, client|tracking,
//     client|no-evict, ...): what a client sends to set up a connection.
//     Redis 6 counts all CLIENT subcommands as one "client", which is
//     then left out whole, CLIENT CACHING included.
//
// Everything else counts, including the CLIENT CACHING YES that rueidis
// sends before each cacheable read (opt-in tracking), MULTI and EXEC,
// scripts, and commands sent with [Server.Do].
func (s *Server) CommandCalls(tb testing.TB) int64 {
	tb.Helper()
	var total int64
	for name, n := range s.CommandStats(tb) {
		if !bookkeeping(name) {
			total += n
		}
	}
	return total
}

// bookkeeping reports whether CommandCalls leaves out the command that
// INFO commandstats names name.
func bookkeeping(name string) bool {
	switch name {
	case "info", "ping", "hello", "client":
		return true
	case "client|caching":
		return false
	}
	return strings.HasPrefix(name, "client|")
}

// StartCluster starts a cluster of the test's own: 3 primaries without
// replicas, each on free loopback ports (its cluster bus on a second free
// port), all slots assigned and cluster_state ok on every node, killed in
// tb.Cleanup. It skips the test when redis-server or redis-cli is not
// installed, or fails it when CI=true.
func StartCluster(tb testing.TB) []*Server {
	tb.Helper()
	bin := lookTool(tb, "redis-server")
	cli := lookTool(tb, "redis-cli")
	nodes, err := startCluster(bin, cli, tb.TempDir())
	if err != nil {
		tb.Fatalf("redistest: starting redis cluster: %v", err)
	}
	tb.Cleanup(func() {
		for _, n := range nodes {
			n.Kill()
		}
	})
	return nodes
}

// ClusterURL returns the URL listing every node, as sessioncache.NewRedis
// takes it: "redis://127.0.0.1:P1,127.0.0.1:P2,...". For one server it is
// that server's URL.
func ClusterURL(nodes []*Server) string {
	addrs := make([]string, len(nodes))
	for i, n := range nodes {
		addrs[i] = n.Addr()
	}
	return "redis://" + strings.Join(addrs, ",")
}

// DoKeyed is [Server.Do] of a command on a key, sent to whichever of nodes
// holds the key: it asks nodes[0] and follows one MOVED redirection. On a
// single node it is nodes[0].Do.
func DoKeyed(nodes []*Server, args ...string) (any, error) {
	reply, err := nodes[0].Do(args...)
	var rerr Error
	if errors.As(err, &rerr) && strings.HasPrefix(string(rerr), "MOVED ") {
		f := strings.Fields(string(rerr))
		return do(f[len(f)-1], args...)
	}
	return reply, err
}

// Error is an error reply of the server, without its leading '-', such as
// "MOVED 3999 127.0.0.1:6381" or "ERR unknown command".
type Error string

// Error returns the reply prefixed with "redis: ".
func (e Error) Error() string { return "redis: " + string(e) }

// Shared starts one single-node server and one cluster on first use and
// shares them among the tests of a binary (Start costs a few milliseconds,
// a cluster a second or more). Tests that share a server must keep to
// their own keys (a key prefix per test) and must not Kill, Restart or
// reconfigure it; tests that do, or that count commands, start their own.
//
// The zero value is ready to use. The servers outlive the tests that
// asked for them: call Close from TestMain after m.Run. A Shared is safe
// for concurrent use.
type Shared struct {
	mu         sync.Mutex
	dir        string
	single     *Server
	singleErr  error
	cluster    []*Server
	clusterErr error
}

// Server returns the shared single-node server, starting it on the first
// call. It skips or fails the test as [Start] does; a server that failed
// to start fails every test that asks for it.
func (sh *Shared) Server(tb testing.TB) *Server {
	tb.Helper()
	bin := lookTool(tb, "redis-server")
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.single == nil && sh.singleErr == nil {
		dir, err := sh.subdir("single")
		if err == nil {
			sh.single, err = launch(bin, dir, nil, false)
		}
		sh.singleErr = err
	}
	if sh.singleErr != nil {
		tb.Fatalf("redistest: starting shared redis-server: %v", sh.singleErr)
	}
	return sh.single
}

// Cluster returns the shared cluster (as [StartCluster] makes it),
// starting it on the first call.
func (sh *Shared) Cluster(tb testing.TB) []*Server {
	tb.Helper()
	bin := lookTool(tb, "redis-server")
	cli := lookTool(tb, "redis-cli")
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.cluster == nil && sh.clusterErr == nil {
		dir, err := sh.subdir("cluster")
		if err == nil {
			sh.cluster, err = startCluster(bin, cli, dir)
		}
		sh.clusterErr = err
	}
	if sh.clusterErr != nil {
		tb.Fatalf("redistest: starting shared redis cluster: %v", sh.clusterErr)
	}
	return sh.cluster
}

// Close kills the servers sh started, waits for them to exit and removes
// their directories. sh is then as new.
func (sh *Shared) Close() {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.single != nil {
		sh.single.Kill()
	}
	for _, n := range sh.cluster {
		n.Kill()
	}
	if sh.dir != "" {
		_ = os.RemoveAll(sh.dir)
	}
	sh.dir, sh.single, sh.singleErr, sh.cluster, sh.clusterErr = "", nil, nil, nil, nil
}

// subdir creates and returns a new directory named name in sh's
// temporary directory. sh.mu must be held.
func (sh *Shared) subdir(name string) (string, error) {
	if sh.dir == "" {
		dir, err := os.MkdirTemp("", "redistest-")
		if err != nil {
			return "", err
		}
		sh.dir = dir
	}
	dir := filepath.Join(sh.dir, name)
	return dir, os.Mkdir(dir, 0o700)
}

// lookTool returns the path of an installed program, or skips the test
// (fails it when CI=true: CI must run the Redis tests).
func lookTool(tb testing.TB, name string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("redistest: %s not installed (required when CI=true)", name)
		}
		tb.Skipf("redistest: %s not installed", name)
	}
	return p
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

// launch starts redis-server in dir on a free port, retrying with another
// port when it loses the race for the one it picked. With clusterBus the
// cluster bus gets a free port of its own: the default, port+10000, may be
// taken or beyond 65535.
func launch(bin, dir string, extra []string, clusterBus bool) (*Server, error) {
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		args := append([]string(nil), extra...)
		if clusterBus {
			bus, err := freePort()
			if err != nil {
				return nil, err
			}
			args = append(args, "--cluster-port", strconv.Itoa(bus))
		}
		s := &Server{bin: bin, port: port, dir: dir, args: args}
		s.mu.Lock()
		lastErr = s.startLocked()
		s.mu.Unlock()
		if lastErr == nil {
			return s, nil
		}
	}
	return nil, lastErr
}

// startLocked runs the server and waits until it answers PING. Its output
// goes to redis.log in its directory. s.mu must be held.
func (s *Server) startLocked() error {
	args := append([]string{
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir,
	}, s.args...)
	logf, err := os.OpenFile(filepath.Join(s.dir, "redis.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command(s.bin, args...)
	cmd.SysProcAttr = dieWithParent()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	s.cmd, s.exited = cmd, exited
	deadline := time.Now().Add(10 * time.Second)
	for {
		if reply, err := s.Do("PING"); err == nil && reply == "PONG" {
			return nil
		}
		select {
		case <-exited:
			s.cmd = nil
			return fmt.Errorf("redis-server on port %d exited at start (see %s)", s.port, logf.Name())
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.killLocked()
			return fmt.Errorf("redis-server on port %d did not answer PING within 10s", s.port)
		}
	}
}

// startCluster starts three cluster-enabled nodes in subdirectories of
// base, joins them with redis-cli --cluster create and waits until every
// node reports cluster_state:ok. On failure it kills what it started.
func startCluster(bin, cli, base string) ([]*Server, error) {
	var nodes []*Server
	fail := func(err error) ([]*Server, error) {
		for _, n := range nodes {
			n.Kill()
		}
		return nil, err
	}
	for i := range 3 {
		dir := filepath.Join(base, "node-"+strconv.Itoa(i))
		if err := os.Mkdir(dir, 0o700); err != nil {
			return fail(err)
		}
		n, err := launch(bin, dir, []string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--cluster-node-timeout", "5000",
		}, true)
		if err != nil {
			return fail(err)
		}
		nodes = append(nodes, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := []string{"--cluster", "create"}
	for _, n := range nodes {
		args = append(args, n.Addr())
	}
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		return fail(fmt.Errorf("redis-cli --cluster create: %v\n%s", err, out))
	}
	deadline := time.Now().Add(15 * time.Second)
	for _, n := range nodes {
		for {
			info, err := n.Do("CLUSTER", "INFO")
			if s, ok := info.(string); err == nil && ok && strings.Contains(s, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				return fail(fmt.Errorf("node %s: cluster_state not ok within 15s", n.Addr()))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nodes, nil
}

// do sends one command to addr on a fresh connection; see [Server.Do].
func do(addr string, args ...string) (any, error) {
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
	if _, err := io.WriteString(conn, b.String()); err != nil {
		return nil, err
	}
	return readReply(bufio.NewReader(conn))
}

// readReply reads one RESP2 reply.
func readReply(r *bufio.Reader) (any, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return nil, errors.New("redistest: empty reply line")
	}
	switch body := line[1:]; line[0] {
	case '+':
		return body, nil
	case '-':
		return nil, Error(body)
	case ':':
		return strconv.ParseInt(body, 10, 64)
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return nil, err // "$-1": a null bulk string
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return nil, err // "*-1": a null array
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = readReply(r); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("redistest: unexpected reply %q", line)
}
