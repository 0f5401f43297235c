package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/apigetaway/getaway/authflow/testidp"
	"github.com/apigetaway/getaway/bench/internal/procs"
	"github.com/apigetaway/getaway/bench/internal/redisproc"
)

// oauth2-proxy, the comparison of DESIGN.md section 4 ("getaway >= 10x
// oauth2-proxy with Redis sessions"), is built from its module with go
// install into a cache dir outside the repository, once, and run as a child
// process like nginx.
const (
	oauth2ProxyName    = "oauth2-proxy"
	oauth2ProxyModule  = "github.com/oauth2-proxy/oauth2-proxy/v7"
	oauth2ProxyVersion = "v7.15.6"
	// oauth2ProxyCookie is its session cookie (--cookie-name left at its
	// default). With Redis sessions it holds only a ticket, so it is never
	// split into _oauth2_proxy_0, _1...
	oauth2ProxyCookie = "_oauth2_proxy"
	// oauth2ProxyBuildWithin bounds go install of oauth2-proxy (about a
	// minute on 2 cores with a warm module cache).
	oauth2ProxyBuildWithin = 10 * time.Minute
	// oauth2ProxyPath is the path the harness loads: oauth2-proxy passes
	// it unchanged to the echo backend, as it does /bench for direct.
	oauth2ProxyPath = "/bench"
)

// oauth2ProxyCacheDir is where the built oauth2-proxy is kept between runs:
// getaway-bench/oauth2-proxy-VERSION in the user's cache dir (~/.cache).
func oauth2ProxyCacheDir() (string, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache dir for the oauth2-proxy build (-oauth2proxy-bin=BINARY runs one of yours): %w", err)
	}
	return filepath.Join(base, "getaway-bench", "oauth2-proxy-"+oauth2ProxyVersion), nil
}

// obtainOAuth2Proxy returns the oauth2-proxy binary in dir, building it
// there first with go install of oauth2ProxyModule at oauth2ProxyVersion
// when it is not there yet. The build uses the local Go toolchain only
// (GOTOOLCHAIN=local): a version that needs a newer Go fails with go's
// message rather than downloading one. built says whether it was built now.
func obtainOAuth2Proxy(ctx context.Context, dir string) (bin string, built bool, err error) {
	name := "oauth2-proxy"
	if runtime.GOOS == "windows" {
		name += ".exe"
	}
	bin = filepath.Join(dir, name)
	if fi, err := os.Stat(bin); err == nil && fi.Mode().IsRegular() {
		return bin, false, nil
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		return "", false, fmt.Errorf("go not found to build oauth2-proxy: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", false, err
	}
	// Installed into a dir of its own first and moved into place, so that
	// an interrupted build leaves no binary to reuse.
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "oauth2-proxy-build-")
	if err != nil {
		return "", false, err
	}
	defer os.RemoveAll(tmp)

	ctx, cancel := context.WithTimeout(ctx, oauth2ProxyBuildWithin)
	defer cancel()
	cmd := procs.CommandContext(ctx, gobin, "install", oauth2ProxyModule+"@"+oauth2ProxyVersion)
	cmd.Dir = tmp // outside any module or workspace
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "GOTOOLCHAIN=local")
	if out, err := cmd.CombinedOutput(); err != nil {
		if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return "", false, ctx.Err()
		}
		// go's reason (such as "requires go >= ...") is in its last lines.
		tail := strings.ReplaceAll(procs.LastLines(strings.TrimSpace(string(out)), 3), "\n", " | ")
		return "", false, fmt.Errorf("go install %s@%s: %w: %s", oauth2ProxyModule, oauth2ProxyVersion, err, tail)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", false, err
	}
	if err := os.Rename(filepath.Join(tmp, name), bin); err != nil {
		return "", false, err
	}
	return bin, true, nil
}

// oauth2ProxyConfig is what oauth2-proxy is run with.
type oauth2ProxyConfig struct {
	addr         string // host:port it listens on
	issuer       string // the OpenID provider
	clientID     string
	clientSecret string
	backendURL   string // http://host:port of the echo backend
	redisURL     string // redis://host:port for its sessions
	cookieSecret string // 32 random bytes, base64
}

// callbackURL is its OAuth redirect URL, which the provider must accept.
func (c oauth2ProxyConfig) callbackURL() string {
	return "http://" + c.addr + "/oauth2/callback"
}

// args are its command-line flags: sign-in with the OpenID provider
// (authorization code with PKCE), sessions in Redis, every path but
// /oauth2/* proxied to the echo backend, plain-HTTP cookies, any e-mail
// address accepted, no logging. A request to /bench without a valid
// session gets a 401 (--api-route) rather than a redirect to the
// provider, which load generators would count as a success. The secrets
// are in env, not here.
func (c oauth2ProxyConfig) args() []string {
	return []string{
		"--http-address=" + c.addr,
		"--provider=oidc",
		"--oidc-issuer-url=" + c.issuer,
		"--client-id=" + c.clientID,
		"--redirect-url=" + c.callbackURL(),
		"--code-challenge-method=S256",
		"--upstream=" + c.backendURL + "/",
		"--session-store-type=redis",
		"--redis-connection-url=" + c.redisURL,
		"--cookie-secure=false",
		"--email-domain=*",
		"--skip-provider-button",
		"--reverse-proxy=false",
		"--api-route=^" + oauth2ProxyPath,
		"--request-logging=false",
		"--auth-logging=false",
		"--standard-logging=false",
	}
}

// env is its complete environment: the secrets, and of the harness's own
// environment only the Go runtime's tuning variables, so that a stray
// OAUTH2_PROXY_* cannot change what is measured.
func (c oauth2ProxyConfig) env() []string {
	env := []string{
		"OAUTH2_PROXY_CLIENT_SECRET=" + c.clientSecret,
		"OAUTH2_PROXY_COOKIE_SECRET=" + c.cookieSecret,
	}
	for _, k := range []string{"GOMAXPROCS", "GOGC", "GOMEMLIMIT", "GODEBUG"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// newCookieSecret returns 32 random bytes, base64 (URL alphabet), as
// --cookie-secret takes them.
func newCookieSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.URLEncoding.EncodeToString(b), nil
}

// startOAuth2Proxy runs bin against idp (its one client, with the callback
// registered), the echo backend at backendAddr and Redis at redisAddr, on
// a free loopback port, and waits until its /ping answers. It returns the
// child and its address.
func startOAuth2Proxy(ctx context.Context, bin string, idp *testidp.IdP, backendAddr, redisAddr string) (*procs.Child, string, error) {
	secret, err := newCookieSecret()
	if err != nil {
		return nil, "", err
	}
	dir, err := os.MkdirTemp("", "proxyload-oauth2-proxy-")
	if err != nil {
		return nil, "", err
	}
	logPath := filepath.Join(dir, "oauth2-proxy.log")

	var child *procs.Child
	var addr string
	err = procs.RetryOnFreeAddr(ctx, func(a string) (bool, error) {
		c := oauth2ProxyConfig{
			addr:         a,
			issuer:       idp.Issuer(),
			clientID:     idp.ClientID(),
			clientSecret: gatewayClientSecret,
			backendURL:   "http://" + backendAddr,
			redisURL:     "redis://" + redisAddr,
			cookieSecret: secret,
		}
		if err := idp.AddRedirectURI(c.callbackURL()); err != nil {
			return false, err
		}
		logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		if err != nil {
			return false, err
		}
		cmd := exec.Command(bin, c.args()...)
		cmd.Dir = dir
		cmd.Env = c.env()
		cmd.Stdout, cmd.Stderr = logf, logf
		ch, err := procs.Start(oauth2ProxyName, cmd)
		logf.Close() // the child has its own descriptor
		if err != nil {
			return false, err
		}
		if err := ch.WaitHTTP(ctx, "http://"+a+"/ping", readyWithin); err != nil {
			stopChild(ch)
			log, _ := os.ReadFile(logPath)
			// Another process may have taken the port: try another one.
			return bytes.Contains(log, []byte("address already in use")),
				fmt.Errorf("%w\nits log:\n%s", err, procs.LastLines(string(log), 10))
		}
		child, addr = ch, a
		return false, nil
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, "", err
	}
	child.OnStop(func() { os.RemoveAll(dir) })
	return child, addr, nil
}

// gatewayClientSecret is the secret of testidp's one client, which the
// gateway (gatewayproc) and oauth2-proxy share: testidp's default.
const gatewayClientSecret = "getaway-secret"

// signInOAuth2Proxy signs in through oauth2-proxy at base as a browser
// would: GET /oauth2/start?rd=/bench (a CSRF cookie and a redirect to the
// provider), the provider's login form (testidp's Login), GET of the
// callback with the CSRF cookie (the session cookie and a redirect to
// /bench). It returns the session cookie's value.
func signInOAuth2Proxy(ctx context.Context, idp *testidp.IdP, base string) (string, error) {
	jar, err := cookiejar.New(nil)
	if err != nil {
		return "", err
	}
	client := &http.Client{
		Jar:     jar,
		Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	defer client.CloseIdleConnections()
	get := func(target string) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
		if err != nil {
			return nil, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound {
			return nil, fmt.Errorf("GET %s: status %d, want 302: %s", target, resp.StatusCode, snippet(body))
		}
		return resp, nil
	}
	resp, err := get(base + "/oauth2/start?rd=" + oauth2ProxyPath)
	if err != nil {
		return "", err
	}
	callback, err := idp.Login(ctx, resp.Header.Get("Location"), idp.Username(), testidp.Password)
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(callback, base+"/oauth2/callback?") {
		return "", fmt.Errorf("the provider redirected to %s, not to oauth2-proxy's callback", callback)
	}
	if resp, err = get(callback); err != nil {
		return "", err
	}
	if loc := resp.Header.Get("Location"); loc != oauth2ProxyPath {
		return "", fmt.Errorf("the callback redirected to %q, want %s", loc, oauth2ProxyPath)
	}
	for _, c := range resp.Cookies() {
		if c.Name == oauth2ProxyCookie && c.Value != "" {
			return c.Value, nil
		}
	}
	return "", fmt.Errorf("the callback set no %s cookie", oauth2ProxyCookie)
}

// oauth2ProxyRun is oauth2-proxy as the harness runs it.
type oauth2ProxyRun struct {
	children  []*procs.Child // its redis-server, then itself
	redisAddr string         // its redis-server, for INFO commandstats
	target    target
}

// setupOAuth2Proxy obtains oauth2-proxy (o.oauth2ProxyBin, or the cached
// build, built now if need be), starts a redis-server of its own and
// oauth2-proxy against idp and the echo backend, signs in through it and
// checks that /bench answers the backend's body with the session and 401
// without. oauth2-proxy is a comparison point, not the subject: when any
// of that fails, or Redis is off or missing, it returns no run and why,
// for the report. The error is ctx's only.
func setupOAuth2Proxy(ctx context.Context, o options, idp *testidp.IdP, backendAddr string) (*oauth2ProxyRun, string, error) {
	if !o.oauth2Proxy {
		return nil, "skipped (-oauth2proxy=false)", nil
	}
	if !o.redis {
		return nil, "skipped (-redis=false): the DESIGN.md comparison is with Redis sessions", nil
	}
	rbin := redisproc.Find()
	if rbin == "" {
		return nil, "skipped: redis-server not found, and the DESIGN.md comparison is with Redis sessions", nil
	}
	bin, how := o.oauth2ProxyBin, ""
	if bin == "" {
		dir, err := oauth2ProxyCacheDir()
		if err != nil {
			return nil, "not measured: " + err.Error(), nil
		}
		if _, err := os.Stat(dir); err != nil {
			fmt.Printf("%s: go install %s@%s into %s (once; later runs reuse it) ...\n", oauth2ProxyName, oauth2ProxyModule, oauth2ProxyVersion, dir)
		}
		var built bool
		bin, built, err = obtainOAuth2Proxy(ctx, dir)
		if ctx.Err() != nil {
			return nil, "", ctx.Err()
		}
		if err != nil {
			return nil, "not measured, the build failed: " + oneLine(err), nil
		}
		how = fmt.Sprintf("%s %s, built with go install (%s) into %s", oauth2ProxyName, oauth2ProxyVersion, runtime.Version(), filepath.Dir(bin))
		if !built {
			how += " by an earlier run"
		}
	} else {
		// Release binaries print "oauth2-proxy v7.x.y (built with goX)".
		out, _ := exec.Command(bin, "--version").CombinedOutput()
		first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		how = fmt.Sprintf("%s (%s, -oauth2proxy-bin)", first, bin)
	}

	run := &oauth2ProxyRun{}
	fail := func(what string, err error) (*oauth2ProxyRun, string, error) {
		for _, c := range slices.Backward(run.children) {
			stopChild(c)
		}
		if ctx.Err() != nil {
			return nil, "", ctx.Err()
		}
		fmt.Fprintf(os.Stderr, "%s: %s: %v\n", oauth2ProxyName, what, err)
		return nil, how + "; not measured, " + what + ": " + oneLine(err), nil
	}
	rc, raddr, rversion, err := redisproc.Start(ctx, rbin, readyWithin)
	if err != nil {
		return fail("its redis-server did not start", err)
	}
	run.children = append(run.children, rc)
	run.redisAddr = raddr

	c, addr, err := startOAuth2Proxy(ctx, bin, idp, backendAddr, raddr)
	if err != nil {
		return fail("it did not start", err)
	}
	run.children = append(run.children, c)

	sid, err := signInOAuth2Proxy(ctx, idp, "http://"+addr)
	if err != nil {
		return fail("the sign-in through it failed", err)
	}
	run.target = target{name: oauth2ProxyName, url: "http://" + addr + oauth2ProxyPath, sid: sid, cookie: oauth2ProxyCookie}
	if _, err := probe(run.target); err != nil {
		return fail("the signed-in request failed", err)
	}
	// Without the cookie it must refuse: the row then measures
	// authentication, not an open door.
	if status, err := get(target{url: run.target.url}, nil); err != nil || status != http.StatusUnauthorized {
		return fail("the request without a session was not refused", fmt.Errorf("status %d (%v), want 401", status, err))
	}
	return run, fmt.Sprintf("%s; provider oidc (the same testidp client, PKCE S256), sessions in a %s of its own (%s), upstream the echo backend, logging off",
		how, rversion, raddr), nil
}

// oneLine is err's message up to its first line break, for the report.
func oneLine(err error) string {
	first, _, _ := strings.Cut(err.Error(), "\n")
	return first
}
