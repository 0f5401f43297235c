package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/apigetaway/getaway/authflow/testidp"
	"github.com/apigetaway/getaway/edge"
	"github.com/valyala/fasthttp"
)

const (
	modulePath = "github.com/apigetaway/getaway"
	// buildWithin bounds go build of the gateway.
	buildWithin = 5 * time.Minute
	// cookieName is the gateway's session cookie (SESSION_COOKIE_NAME is
	// left at its default).
	cookieName = "sid"
)

// buildGetaway builds the gateway's main package (the module root) into
// dir and returns the binary and the module root.
func buildGetaway(ctx context.Context, dir string) (string, string, error) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		return "", "", fmt.Errorf("go not found to build getaway (or pass -getaway=BINARY): %w", err)
	}
	out, err := exec.CommandContext(ctx, gobin, "env", "GOMOD").Output()
	if err != nil {
		return "", "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", "", fmt.Errorf("not inside the %s module: run from its directory or pass -getaway=BINARY", modulePath)
	}
	mod, err := os.ReadFile(gomod)
	if err != nil {
		return "", "", err
	}
	if first, _, _ := strings.Cut(string(mod), "\n"); strings.TrimSpace(first) != "module "+modulePath {
		return "", "", fmt.Errorf("%s is not the %s module: run from its directory or pass -getaway=BINARY", gomod, modulePath)
	}
	root := filepath.Dir(gomod)

	bin := filepath.Join(dir, "getaway")
	ctx, cancel := context.WithTimeout(ctx, buildWithin)
	defer cancel()
	cmd := exec.CommandContext(ctx, gobin, "build", "-o", bin, ".")
	cmd.Dir = root
	// Its own process group, so that an interrupted build takes its
	// compiler processes with it.
	cmd.SysProcAttr = childAttrs()
	cmd.Cancel = func() error {
		killGroup(cmd.Process.Pid)
		return cmd.Process.Kill()
	}
	cmd.WaitDelay = stopGrace
	if out, err := cmd.CombinedOutput(); err != nil {
		if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return "", "", ctx.Err()
		}
		return "", "", fmt.Errorf("go build getaway: %w\n%s", err, out)
	}
	return bin, root, nil
}

// gateway is the running getaway child.
type gateway struct {
	*child
	addr    string // host:port
	base    string // http://addr, its APP_BASE_URL
	logPath string // its stdout and stderr
	logSeen int64  // bytes of the log already reported
}

// gatewayEnv is the complete environment of the gateway process: nothing
// of the harness's own environment reaches it but the Go runtime's tuning
// variables, so a stray OIDC_* or REDIS_URL cannot change what is measured.
func gatewayEnv(addr, issuer, redisURL, configPath string) []string {
	env := []string{
		"LISTEN_ADDR=" + addr,
		"APP_BASE_URL=http://" + addr,
		"OIDC_ISSUER=" + issuer,
		"OIDC_CLIENT_ID=getaway",
		"OIDC_CLIENT_SECRET=getaway-secret",
		"SESSION_COOKIE_SECURE=false",
		"CONFIG_PATH=" + configPath,
		"LOG_LEVEL=error",
		// A bounded graceful stop, within the harness's stopGrace.
		"SHUTDOWN_TIMEOUT_SECONDS=2",
	}
	if redisURL != "" {
		env = append(env, "REDIS_URL="+redisURL)
	}
	for _, k := range []string{"GOMAXPROCS", "GOGC", "GOMEMLIMIT", "GODEBUG"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// lookupIn is os.LookupEnv over env.
func lookupIn(env []string) edge.LookupEnv {
	return func(key string) (string, bool) {
		for _, kv := range slices.Backward(env) {
			if k, v, ok := strings.Cut(kv, "="); ok && k == key {
				return v, true
			}
		}
		return "", false
	}
}

// startGateway runs the getaway binary as main.go wires it, configured by
// its environment only: sign-in against idp, sessions in Redis at redisURL
// (or in process memory when it is empty), every /api request routed to
// backendURL. It waits until /readyz answers 200. A lost race for the port
// is retried with another one.
func startGateway(ctx context.Context, bin string, idp *testidp.IdP, backendURL, redisURL string) (*gateway, error) {
	dir, err := os.MkdirTemp("", "proxyload-gateway-")
	if err != nil {
		return nil, err
	}
	configPath := filepath.Join(dir, "config.yml")
	config := "# written by bench/proxyload\ndefaultBackend: " + strconv.Quote(backendURL) + "\n"
	if err := os.WriteFile(configPath, []byte(config), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	logPath := filepath.Join(dir, "gateway.log")

	var lastErr error
	for range 3 {
		addr, err := freeAddr()
		if err != nil {
			lastErr = err
			break
		}
		env := gatewayEnv(addr, idp.Issuer(), redisURL, configPath)
		// What main.go will make of it: fail here, with the reason, on a
		// setting the gateway would refuse.
		settings, err := edge.LoadSettings(lookupIn(env))
		if err != nil {
			lastErr = fmt.Errorf("gateway environment: %w", err)
			break
		}
		if !settings.AuthEnabled || settings.Server.Addr != addr || settings.RedisURL != redisURL {
			lastErr = errors.New("gateway environment: not read as intended (sign-in, address or Redis)")
			break
		}
		base := settings.Auth.AppBaseURL
		if err := idp.AddRedirectURI(base + settings.Auth.RedirectPath); err != nil {
			lastErr = err
			break
		}

		logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		if err != nil {
			lastErr = err
			break
		}
		cmd := exec.Command(bin)
		cmd.Dir = dir // no ./public: static files off
		cmd.Env = env
		cmd.Stdout, cmd.Stderr = logf, logf
		c, err := startChild("getaway", cmd)
		logf.Close() // the child has its own descriptor
		if err != nil {
			lastErr = err
			break
		}
		if lastErr = waitReady(ctx, c, base+"/readyz"); lastErr == nil {
			g := &gateway{child: c, addr: addr, base: base, logPath: logPath}
			c.cleanup = func() {
				// Whatever it logged since the report (while stopping).
				if rest := g.newLog(); len(rest) > 0 {
					fmt.Fprintf(os.Stderr, "getaway log:\n%s\n", strings.Join(rest, "\n"))
				}
				os.RemoveAll(dir)
			}
			return g, nil
		}
		c.stop()
		// Another process may have taken the port: try another one.
		if log, _ := os.ReadFile(logPath); ctx.Err() != nil || !bytes.Contains(log, []byte("address already in use")) {
			break
		}
	}
	log, _ := os.ReadFile(logPath)
	os.RemoveAll(dir)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return nil, fmt.Errorf("%w\ngetaway log:\n%s", lastErr, lastLines(string(log), 20))
}

// newLog returns the gateway's log lines written since the last call.
func (g *gateway) newLog() []string {
	f, err := os.Open(g.logPath)
	if err != nil {
		return nil
	}
	defer f.Close()
	if _, err := f.Seek(g.logSeen, io.SeekStart); err != nil {
		return nil
	}
	b, _ := io.ReadAll(f)
	g.logSeen += int64(len(b))
	var lines []string
	for l := range strings.Lines(string(b)) {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// browser signs in through the gateway as a browser would and makes API
// requests with the session cookie, over one keep-alive connection.
type browser struct {
	hc   *fasthttp.HostClient
	base string
	idp  *testidp.IdP
}

func newBrowser(g *gateway, idp *testidp.IdP) *browser {
	return &browser{
		hc:   &fasthttp.HostClient{Addr: g.addr, MaxConns: 1, ReadTimeout: requestTimeout, WriteTimeout: requestTimeout},
		base: g.base,
		idp:  idp,
	}
}

func (b *browser) close() { b.hc.CloseIdleConnections() }

// get requests url with the session cookie sid (none when empty) and
// passes the response to check.
func (b *browser) get(url, sid string, check func(*fasthttp.Response) error) error {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(url)
	if sid != "" {
		req.Header.SetCookie(cookieName, sid)
	}
	if err := b.hc.DoTimeout(req, resp, requestTimeout); err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	if err := check(resp); err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	return nil
}

// signIn goes through the gateway's login: GET /auth/login (302 to the
// provider), the provider's login form (testidp's Login), GET of the
// gateway's callback (302 with the session cookie). It returns the session
// id.
func (b *browser) signIn(ctx context.Context) (string, error) {
	var authorize string
	err := b.get(b.base+"/auth/login", "", func(resp *fasthttp.Response) error {
		if resp.StatusCode() != fasthttp.StatusFound {
			return fmt.Errorf("status %d, want 302: %s", resp.StatusCode(), snippet(resp.Body()))
		}
		authorize = string(resp.Header.Peek(fasthttp.HeaderLocation))
		return nil
	})
	if err != nil {
		return "", err
	}
	callback, err := b.idp.Login(ctx, authorize, b.idp.Username(), testidp.Password)
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(callback, b.base+"/") {
		return "", fmt.Errorf("the provider redirected to %s, not to the gateway", callback)
	}
	var sid string
	err = b.get(callback, "", func(resp *fasthttp.Response) error {
		if resp.StatusCode() != fasthttp.StatusFound {
			return fmt.Errorf("status %d, want 302: %s", resp.StatusCode(), snippet(resp.Body()))
		}
		c := fasthttp.AcquireCookie()
		defer fasthttp.ReleaseCookie(c)
		c.SetKey(cookieName)
		if !resp.Header.Cookie(c) || len(c.Value()) == 0 {
			return fmt.Errorf("no %s cookie set", cookieName)
		}
		sid = string(c.Value())
		return nil
	})
	return sid, err
}

// api requests url with session sid and checks that it answers 200 with
// the backend's body. It returns how long the request took.
func (b *browser) api(url, sid string) (time.Duration, error) {
	t0 := time.Now()
	var d time.Duration
	err := b.get(url, sid, func(resp *fasthttp.Response) error {
		d = time.Since(t0)
		return checkEcho(resp)
	})
	return d, err
}

// checkEcho accepts a 200 with exactly echoBody.
func checkEcho(resp *fasthttp.Response) error {
	if resp.StatusCode() != fasthttp.StatusOK {
		return fmt.Errorf("status %d, want 200: %s", resp.StatusCode(), snippet(resp.Body()))
	}
	if !bytes.Equal(resp.Body(), echoBody) {
		return fmt.Errorf("unexpected body %s", snippet(resp.Body()))
	}
	return nil
}

// snippet quotes the start of a body for an error message.
func snippet(b []byte) string {
	const limit = 200
	if len(b) > limit {
		return strconv.Quote(string(b[:limit])) + "..."
	}
	return strconv.Quote(string(b))
}

// coldResult is the latency of the first API request of fresh sessions.
type coldResult struct {
	n        int             // sign-ins attempted
	failures []string        // what went wrong, one per failed sign-in or request
	first    []time.Duration // first request after each sign-in, sorted
	second   []time.Duration // the request right after it, sorted
	signIn   []time.Duration // the whole sign-in, sorted
	redis    *redisUse       // commands per sign-in and two requests; nil without Redis
}

// measureCold signs in n times, one after the other, and times the first
// API request of each new session (the session is not yet in the gateway's
// process cache: it was just written) and, for comparison, the second one.
// All requests go over one warm keep-alive connection, so no connect is
// timed.
func measureCold(ctx context.Context, b *browser, apiURL string, n int) *coldResult {
	r := &coldResult{n: n}
	for range n {
		if ctx.Err() != nil {
			break
		}
		t0 := time.Now()
		sid, err := b.signIn(ctx)
		if err != nil {
			r.failures = append(r.failures, "sign-in: "+err.Error())
			continue
		}
		r.signIn = append(r.signIn, time.Since(t0))
		d, err := b.api(apiURL, sid)
		if err != nil {
			r.failures = append(r.failures, "first request: "+err.Error())
			continue
		}
		r.first = append(r.first, d)
		if d, err = b.api(apiURL, sid); err != nil {
			r.failures = append(r.failures, "second request: "+err.Error())
			continue
		}
		r.second = append(r.second, d)
	}
	slices.Sort(r.first)
	slices.Sort(r.second)
	slices.Sort(r.signIn)
	return r
}

// memory is the gateway's resident set from /proc/PID/status.
type memory struct {
	rssKiB, peakKiB int64 // VmRSS, VmHWM
}

func (m memory) String() string {
	return fmt.Sprintf("%.1f MiB (peak %.1f MiB)", float64(m.rssKiB)/1024, float64(m.peakKiB)/1024)
}

// readMemory reads VmRSS and VmHWM of process pid (Linux only).
func readMemory(pid int) (memory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memory{}, err
	}
	return parseProcStatus(string(b))
}

// parseProcStatus reads "VmRSS:\t  12345 kB" and "VmHWM: ..." lines.
func parseProcStatus(status string) (memory, error) {
	var m memory
	var haveRSS bool
	sc := bufio.NewScanner(strings.NewReader(status))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return memory{}, fmt.Errorf("/proc status line %q: want a number of kB", sc.Text())
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return memory{}, fmt.Errorf("/proc status line %q: %w", sc.Text(), err)
		}
		if k == "VmRSS" {
			m.rssKiB, haveRSS = n, true
		} else {
			m.peakKiB = n
		}
	}
	if !haveRSS {
		return memory{}, errors.New("/proc status has no VmRSS line")
	}
	return m, nil
}
