//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/apigetaway/getaway/authflow/testidp"
	"github.com/apigetaway/getaway/sessioncache/redistest"
	"go.uber.org/goleak"
)

// The fault suite (faults_test.go; Linux only, for parent-death signals
// and SIGSTOP) runs the gateway as the real getaway binary, with real
// redis-server, OpenID provider and backend processes around it, and
// breaks them one at a time under load. This file holds its machinery: the
// backend role of the test binary, the processes, the stack, and the load
// with its record of every answer.

// Environment of the backend role: when backendRoleEnv is set, the test
// binary serves as backend of that name on the address in backendAddrEnv
// instead of running tests.
const (
	backendRoleEnv = "GETAWAY_FAULTS_BACKEND"
	backendAddrEnv = "GETAWAY_FAULTS_BACKEND_ADDR"
)

func TestMain(m *testing.M) {
	if name := os.Getenv(backendRoleEnv); name != "" {
		os.Exit(serveBackend(name, os.Getenv(backendAddrEnv)))
	}
	code := m.Run()
	gatewayBuild.cleanup()
	if code == 0 {
		// Every process, client and load goroutine is stopped by now.
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// backendReply is what a fault-suite backend answers: its name and the
// identity the gateway sent, so the load can check both.
type backendReply struct {
	Backend string `json:"backend"`
	Email   string `json:"email"`
}

// serveBackend is the backend role: it answers every request with a
// backendReply until it is killed.
func serveBackend(name, addr string) int {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "backend %s: %v\n", name, err)
		return 1
	}
	srv := &http.Server{
		ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(backendReply{Backend: name, Email: r.Header.Get("X-User-Email")})
		}),
	}
	err = srv.Serve(ln)
	fmt.Fprintf(os.Stderr, "backend %s: %v\n", name, err)
	return 1
}

// builtGateway is the getaway binary, built once per test binary.
type builtGateway struct {
	once sync.Once
	dir  string // temporary, removed by TestMain
	bin  string
	err  error
}

var gatewayBuild builtGateway

// gatewayBinary builds the gateway (go build of this package) on first
// use and returns the binary.
func gatewayBinary(t *testing.T) string {
	t.Helper()
	b := &gatewayBuild
	b.once.Do(func() {
		if b.dir, b.err = os.MkdirTemp("", "getaway-faults-"); b.err != nil {
			return
		}
		b.bin = filepath.Join(b.dir, "getaway")
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "go", "build", "-o", b.bin, ".").CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if b.err != nil {
		t.Fatalf("building getaway: %v", b.err)
	}
	return b.bin
}

func (b *builtGateway) cleanup() {
	if b.dir != "" {
		_ = os.RemoveAll(b.dir)
	}
}

// proc is one child process of the suite.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has been reaped
}

// startProc starts cmd, which dies with the test binary (parent-death
// signal), and reaps it in the background.
func startProc(name string, cmd *exec.Cmd) (*proc, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL and waits until the process is gone.
func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// signal sends sig (SIGSTOP, SIGCONT, ...) to the process.
func (p *proc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("%s: sending %v: %v", p.name, sig, err)
	}
}

// stop sends SIGTERM and kills the process if it is still there after
// grace.
func (p *proc) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.kill()
	}
}

// backend is a backend process of the suite, restartable on its address.
type backend struct {
	name string
	addr string
	log  string // its stderr
	mu   sync.Mutex
	p    *proc
}

// startBackend runs the test binary in the backend role on a free
// loopback port and waits until it answers; it is killed at the end of t.
func startBackend(t *testing.T, name string) *backend {
	t.Helper()
	addr := freeAddr(t)
	b := &backend{name: name, addr: addr, log: filepath.Join(t.TempDir(), "backend-"+name+".log")}
	b.start(t)
	t.Cleanup(b.kill)
	return b
}

// URL is the backend's base URL.
func (b *backend) URL() string { return "http://" + b.addr }

func (b *backend) start(t *testing.T) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.OpenFile(b.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), backendRoleEnv+"="+b.name, backendAddrEnv+"="+b.addr)
	cmd.Stdout, cmd.Stderr = logf, logf
	p, err := startProc("backend "+b.name, cmd)
	if err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	b.p = p
	b.mu.Unlock()
	waitFor(t, 10*time.Second, "backend "+b.name+" answers", func() error {
		if p.exited() {
			return fmt.Errorf("backend %s exited (see %s)", b.name, b.log)
		}
		return getOK(b.URL() + "/")
	})
}

// kill kills the backend process (SIGKILL) and waits until it is gone.
func (b *backend) kill() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.p != nil {
		b.p.kill()
		b.p = nil
	}
}

// restart starts the backend again on the same address.
func (b *backend) restart(t *testing.T) {
	t.Helper()
	b.kill()
	b.start(t)
}

// stackOptions configures startStack.
type stackOptions struct {
	// accessTTL shortens the IdP's access-token lifetime (0: 5 minutes).
	accessTTL time.Duration
	// refreshSkew is TOKEN_REFRESH_SKEW_SECONDS (0: the default, 60).
	refreshSkew time.Duration
}

// stack is a running fault-suite setup: redis-server with an append-only
// file synced at every write, an in-process OpenID provider, backends "a"
// (routes /api/a/...) and "b" (/api/b/...) as processes of their own, and
// the getaway binary wired to them.
type stack struct {
	redis    *redistest.Server
	idp      *testidp.IdP
	backends map[string]*backend
	gw       *proc
	base     string // the gateway, http://127.0.0.1:PORT
	gwLog    string
}

// startStack starts a stack for t and stops all of it when t ends. It
// skips t when redis-server is not installed (see redistest).
func startStack(t *testing.T, opts stackOptions) *stack {
	t.Helper()
	s := &stack{
		redis:    redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always"),
		backends: map[string]*backend{},
	}
	bin := gatewayBinary(t)
	idp, err := testidp.Start(testidp.Options{ClientSecret: "faults-secret", AccessTokenTTL: opts.accessTTL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = idp.Close() })
	s.idp = idp
	for _, name := range []string{"a", "b"} {
		s.backends[name] = startBackend(t, name)
	}

	dir := t.TempDir()
	config := "mappings:\n"
	for _, name := range []string{"a", "b"} {
		config += fmt.Sprintf("  - frontendHost: \"127.0.0.1\"\n    pathPrefix: \"/%s\"\n    backend: %q\n", name, s.backends[name].URL())
	}
	if err := os.WriteFile(filepath.Join(dir, "config.yml"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	s.gwLog = filepath.Join(dir, "getaway.log")

	// The port is free a moment before the gateway binds it: retry should
	// another process take it meanwhile.
	for attempt := 1; ; attempt++ {
		addr := freeAddr(t)
		s.base = "http://" + addr
		if err := idp.AddRedirectURI(s.base + "/auth/callback"); err != nil {
			t.Fatal(err)
		}
		env := []string{
			"LISTEN_ADDR=" + addr,
			"APP_BASE_URL=" + s.base,
			"OIDC_ISSUER=" + idp.Issuer(),
			"OIDC_CLIENT_ID=" + idp.ClientID(),
			"OIDC_CLIENT_SECRET=faults-secret",
			"SESSION_COOKIE_SECURE=false",
			"CONFIG_PATH=" + filepath.Join(dir, "config.yml"),
			"PUBLIC_DIR=" + filepath.Join(dir, "public"), // absent: no static files
			"REDIS_URL=" + s.redis.URL(),
			"AUTH_RATE_LIMIT=0",
			"LOG_LEVEL=info",
			"LOG_FORMAT=console",
			"SHUTDOWN_TIMEOUT_SECONDS=2",
		}
		if opts.refreshSkew > 0 {
			env = append(env, "TOKEN_REFRESH_SKEW_SECONDS="+strconv.Itoa(int(opts.refreshSkew/time.Second)))
		}
		for _, k := range []string{"PATH", "HOME", "GOMAXPROCS", "GODEBUG"} {
			if v, ok := os.LookupEnv(k); ok {
				env = append(env, k+"="+v)
			}
		}
		logf, err := os.OpenFile(s.gwLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin)
		cmd.Dir, cmd.Env = dir, env
		cmd.Stdout, cmd.Stderr = logf, logf
		gw, err := startProc("getaway", cmd)
		logf.Close()
		if err != nil {
			t.Fatal(err)
		}
		s.gw = gw
		err = poll(20*time.Second, func() error {
			if gw.exited() {
				return errors.New("getaway exited")
			}
			return getOK(s.base + "/readyz")
		})
		if err == nil {
			break
		}
		gw.kill()
		if attempt == 3 || !strings.Contains(readFile(s.gwLog), "address already in use") {
			t.Fatalf("getaway did not become ready: %v; its log:\n%s", err, tail(readFile(s.gwLog), 30))
		}
	}
	t.Cleanup(func() {
		s.gw.stop(5 * time.Second)
		if t.Failed() {
			t.Logf("getaway log (last lines):\n%s", tail(readFile(s.gwLog), 40))
		}
	})
	return s
}

// user is one signed-in browser: its session cookie and e-mail claim.
type user struct {
	sid   string
	email string
}

// signIn signs n sessions in through the gateway and the IdP, alternating
// the IdP's two example users.
func (s *stack) signIn(t *testing.T, n int) []user {
	t.Helper()
	users := make([]user, n)
	for i := range users {
		name, email := s.idp.Username(), s.idp.Email()
		if i%2 == 1 {
			name, email = testidp.OtherUsername, "test-user2@zitadel.ch"
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		sid, err := s.idp.SignInThrough(ctx, s.base, name, testidp.Password, "sid")
		cancel()
		if err != nil {
			t.Fatalf("signing %s in: %v", name, err)
		}
		users[i] = user{sid: sid, email: email}
	}
	return users
}

// answer is one request of the load (or of a test), as the client saw it.
type answer struct {
	user   int    // index into the load's users
	route  string // backend route: "a" or "b"
	start  time.Time
	took   time.Duration
	status int    // 0: no answer (err)
	body   string // the JSON error body, or the backend's reply
	err    error  // transport error, client timeout included
}

// end is when the answer (or the error) came.
func (a answer) end() time.Time { return a.start.Add(a.took) }

// kind classifies an answer for histograms: "200", "503 unavailable",
// "502 bad_gateway", "error", ...
func (a answer) kind() string {
	if a.err != nil {
		if errors.Is(a.err, context.DeadlineExceeded) || strings.Contains(a.err.Error(), "Timeout") {
			return "client timeout"
		}
		return "transport error"
	}
	var e struct {
		Error string `json:"error"`
	}
	if a.status != http.StatusOK && json.Unmarshal([]byte(a.body), &e) == nil && e.Error != "" {
		return strconv.Itoa(a.status) + " " + e.Error
	}
	return strconv.Itoa(a.status)
}

// requestTimeout bounds every request of the suite: no answer within it
// is a failure ("client timeout").
const requestTimeout = 3 * time.Second

// client is the suite's HTTP client: keep-alive, no redirects, every
// request bounded by requestTimeout.
func newClient() *http.Client {
	return &http.Client{
		Timeout:   requestTimeout,
		Transport: &http.Transport{MaxIdleConnsPerHost: 16, IdleConnTimeout: 30 * time.Second},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// get sends GET /api/<route>/x with u's cookie.
func (s *stack) get(c *http.Client, u user, route string) answer {
	a := answer{route: route, start: time.Now()}
	req, err := http.NewRequest(http.MethodGet, s.base+"/api/"+route+"/x", nil)
	if err != nil {
		panic(err) // a constant URL
	}
	req.AddCookie(&http.Cookie{Name: "sid", Value: u.sid})
	resp, err := c.Do(req)
	if err == nil {
		var b []byte
		b, err = io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
		a.status, a.body = resp.StatusCode, string(b)
	}
	a.took, a.err = time.Since(a.start), err
	return a
}

// ok reports whether a is the backend's 200 for u on its route.
func (a answer) ok(u user) bool {
	if a.err != nil || a.status != http.StatusOK {
		return false
	}
	var r backendReply
	return json.Unmarshal([]byte(a.body), &r) == nil && r.Backend == a.route && r.Email == u.email
}

// load is a few goroutines sending requests continuously, round robin
// over users and routes, each bounded by requestTimeout; every answer is
// recorded.
type load struct {
	s      *stack
	users  []user
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	answers []answer
}

// startLoad starts workers goroutines of load on s; it stops at the end of
// t at the latest.
func (s *stack) startLoad(t *testing.T, users []user, routes []string, workers int) *load {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{s: s, users: users, cancel: cancel}
	for w := range workers {
		l.wg.Go(func() {
			c := newClient()
			defer c.CloseIdleConnections()
			for i := w; ctx.Err() == nil; i += workers {
				ui, route := i%len(users), routes[(i/len(users))%len(routes)]
				a := s.get(c, users[ui], route)
				a.user = ui
				l.mu.Lock()
				l.answers = append(l.answers, a)
				l.mu.Unlock()
				// A short pause keeps a 2-core machine responsive: the
				// load is there to be present, not to saturate.
				select {
				case <-ctx.Done():
				case <-time.After(5 * time.Millisecond):
				}
			}
		})
	}
	t.Cleanup(l.stop)
	return l
}

// stop ends the load and waits for its goroutines. It is idempotent.
func (l *load) stop() {
	l.cancel()
	l.wg.Wait()
}

// all returns a copy of every answer so far.
func (l *load) all() []answer {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]answer(nil), l.answers...)
}

// startedIn returns the answers to requests started in [from, to).
func (l *load) startedIn(from, to time.Time) []answer {
	var out []answer
	for _, a := range l.all() {
		if !a.start.Before(from) && a.start.Before(to) {
			out = append(out, a)
		}
	}
	return out
}

// waitAnswers waits until at least n requests started at or after from
// have been answered and at least d has passed since from: a phase of a
// test lasts that long under load. It fails t after 20s.
func (l *load) waitAnswers(t *testing.T, from time.Time, n int, d time.Duration) {
	t.Helper()
	waitFor(t, 20*time.Second, fmt.Sprintf("%d answers of the load over %v", n, d), func() error {
		if got := len(l.startedIn(from, time.Now().Add(time.Hour))); got < n {
			return fmt.Errorf("%d so far", got)
		}
		if time.Since(from) < d {
			return fmt.Errorf("%v so far", time.Since(from))
		}
		return nil
	})
}

// histogram counts answers by kind, e.g. "200=812 503 unavailable=40".
func histogram(as []answer) string {
	counts := map[string]int{}
	for _, a := range as {
		counts[a.kind()]++
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%q=%d", k, counts[k])
	}
	return fmt.Sprintf("%d requests: %s", len(as), strings.Join(parts, " "))
}

// slowest returns the longest time an answer took.
func slowest(as []answer) time.Duration {
	var m time.Duration
	for _, a := range as {
		m = max(m, a.took)
	}
	return m
}

// readyz returns /readyz's status and body.
func (s *stack) readyz(c *http.Client) (int, string, error) {
	resp, err := c.Get(s.base + "/readyz")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	return resp.StatusCode, string(b), err
}

// poll calls cond every 10ms until it returns nil or within has passed;
// it returns cond's last error then.
func poll(within time.Duration, cond func() error) error {
	deadline := time.Now().Add(within)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitFor is poll failing t with what it waited for.
func waitFor(t *testing.T, within time.Duration, what string, cond func() error) {
	t.Helper()
	if err := poll(within, cond); err != nil {
		t.Fatalf("waiting %v for %s: %v", within, what, err)
	}
}

// probeClient asks starting processes, on a fresh connection each time.
var probeClient = &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// getOK GETs url and wants 200.
func getOK(url string) error {
	resp, err := probeClient.Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	return nil
}

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
