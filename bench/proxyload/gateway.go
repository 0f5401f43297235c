package main

import (
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
	"github.com/apigetaway/getaway/bench/internal/procs"
	"github.com/apigetaway/getaway/edge"
	"github.com/valyala/fasthttp"
)

// cookieName is the gateway's session cookie (SESSION_COOKIE_NAME is left
// at its default).
const cookieName = "sid"

// gateway is the running getaway child.
type gateway struct {
	*procs.Child
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
		// The cold-path rounds sign in hundreds of times from one address.
		"AUTH_RATE_LIMIT=0",
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

	var g *gateway
	err = procs.RetryOnFreeAddr(ctx, func(addr string) (retry bool, err error) {
		env := gatewayEnv(addr, idp.Issuer(), redisURL, configPath)
		// What main.go will make of it: fail here, with the reason, on a
		// setting the gateway would refuse.
		settings, err := edge.LoadSettings(procs.LookupIn(env))
		if err != nil {
			return false, fmt.Errorf("gateway environment: %w", err)
		}
		if !settings.AuthEnabled || settings.Server.Addr != addr || settings.RedisURL != redisURL {
			return false, errors.New("gateway environment: not read as intended (sign-in, address or Redis)")
		}
		base := settings.Auth.AppBaseURL
		if err := idp.AddRedirectURI(base + settings.Auth.RedirectPath); err != nil {
			return false, err
		}

		logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		if err != nil {
			return false, err
		}
		cmd := exec.Command(bin)
		cmd.Dir = dir // no ./public: static files off
		cmd.Env = env
		cmd.Stdout, cmd.Stderr = logf, logf
		c, err := procs.Start("getaway", cmd)
		logf.Close() // the child has its own descriptor
		if err != nil {
			return false, err
		}
		if err := c.WaitHTTP(ctx, base+"/readyz", readyWithin); err != nil {
			stopChild(c)
			// Another process may have taken the port: try another one.
			log, _ := os.ReadFile(logPath)
			return bytes.Contains(log, []byte("address already in use")), err
		}
		g = &gateway{Child: c, addr: addr, base: base, logPath: logPath}
		return false, nil
	})
	if err == nil {
		g.OnStop(func() {
			// Whatever it logged since the report (while stopping).
			if rest := g.newLog(); len(rest) > 0 {
				fmt.Fprintf(os.Stderr, "getaway log:\n%s\n", strings.Join(rest, "\n"))
			}
			os.RemoveAll(dir)
		})
		return g, nil
	}
	log, _ := os.ReadFile(logPath)
	os.RemoveAll(dir)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return nil, fmt.Errorf("%w\ngetaway log:\n%s", err, lastLines(string(log), 20))
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
