package main

import (
	"context"
	"encoding/base64"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apigetaway/getaway/authflow/testidp"
	"github.com/apigetaway/getaway/bench/internal/redisproc"
	"github.com/valyala/fasthttp"
)

func TestOAuth2ProxyArgs(t *testing.T) {
	c := oauth2ProxyConfig{
		addr: "127.0.0.1:4180", issuer: "http://127.0.0.1:9000", clientID: "getaway", clientSecret: "client-s3cret",
		backendURL: "http://127.0.0.1:8000", redisURL: "redis://127.0.0.1:6379", cookieSecret: "cookie-s3cret",
	}
	args := c.args()
	for _, want := range []string{
		"--http-address=127.0.0.1:4180",
		"--provider=oidc",
		"--oidc-issuer-url=http://127.0.0.1:9000",
		"--client-id=getaway",
		"--redirect-url=http://127.0.0.1:4180/oauth2/callback",
		"--code-challenge-method=S256",
		"--upstream=http://127.0.0.1:8000/",
		"--session-store-type=redis",
		"--redis-connection-url=redis://127.0.0.1:6379",
		"--cookie-secure=false",
		"--email-domain=*",
		"--skip-provider-button",
		"--reverse-proxy=false",
		"--api-route=^/bench",
		"--request-logging=false",
		"--auth-logging=false",
		"--standard-logging=false",
	} {
		if !slices.Contains(args, want) {
			t.Errorf("args lack %s: %q", want, args)
		}
	}
	for _, a := range args {
		if strings.Contains(a, "s3cret") {
			t.Errorf("a secret is on the command line: %s", a)
		}
	}

	// Only the secrets and the Go runtime's tuning reach its environment.
	t.Setenv("OAUTH2_PROXY_UPSTREAMS", "http://elsewhere/")
	t.Setenv("GOGC", "200")
	env := c.env()
	for _, want := range []string{"OAUTH2_PROXY_CLIENT_SECRET=client-s3cret", "OAUTH2_PROXY_COOKIE_SECRET=cookie-s3cret", "GOGC=200"} {
		if !slices.Contains(env, want) {
			t.Errorf("env lacks %s: %q", want, env)
		}
	}
	for _, kv := range env {
		if strings.HasPrefix(kv, "OAUTH2_PROXY_UPSTREAMS=") {
			t.Errorf("the harness's %s reached oauth2-proxy", kv)
		}
	}
}

func TestNewCookieSecret(t *testing.T) {
	a, err := newCookieSecret()
	if err != nil {
		t.Fatal(err)
	}
	b, err := newCookieSecret()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.URLEncoding.DecodeString(a)
	if err != nil || len(raw) != 32 {
		t.Errorf("secret %q: %d bytes (%v), want 32 in base64", a, len(raw), err)
	}
	if a == b {
		t.Error("two secrets are the same")
	}
}

func TestOAuth2ProxyCacheDir(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	t.Setenv("HOME", cache) // os.UserCacheDir on macOS
	dir, err := oauth2ProxyCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	base, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(base, "getaway-bench", "oauth2-proxy-"+oauth2ProxyVersion); dir != want {
		t.Errorf("cache dir %s, want %s", dir, want)
	}
}

// TestObtainOAuth2ProxyReuses checks that a binary already in the cache dir
// is used as it is, without go install (which would fail here: no go on
// PATH).
func TestObtainOAuth2ProxyReuses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "oauth2-proxy-"+oauth2ProxyVersion)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "oauth2-proxy")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", t.TempDir())
	got, built, err := obtainOAuth2Proxy(context.Background(), dir)
	if err != nil || got != bin || built {
		t.Errorf("obtainOAuth2Proxy = %s, built %v, %v; want %s, reused", got, built, err, bin)
	}
	// Without the binary it must build, which fails without go.
	if err := os.Remove(bin); err != nil {
		t.Fatal(err)
	}
	if _, _, err := obtainOAuth2Proxy(context.Background(), dir); err == nil || !strings.Contains(err.Error(), "go not found") {
		t.Errorf("without the binary and without go: %v, want go not found", err)
	}
}

func TestOAuth2ProxyTargetLine(t *testing.T) {
	o := options{duration: time.Second, conns: 8, rounds: 1}
	targets := []target{{name: direct}, {name: oauth2ProxyName}, {name: getawayCached}}
	for _, tc := range []struct {
		getaway, proxy float64
		want           string
	}{
		{30000, 2500, "met (12.00x)."},
		{30000, 4000, "not met (7.50x)."},
	} {
		results := map[string][]result{
			direct:          {{rps: 60000, p50: time.Millisecond, p99: 2 * time.Millisecond}},
			oauth2ProxyName: {{rps: tc.proxy, p50: 10 * time.Millisecond, p99: 30 * time.Millisecond}},
			getawayCached:   {{rps: tc.getaway, p50: 2 * time.Millisecond, p99: 5 * time.Millisecond}},
		}
		rep := newReport(o, environment{oauth2Proxy: "oauth2-proxy v7.15.6"}, targets, results, nil)
		rep.redisOAuth2Proxy = &redisUse{requests: 2000, byCmd: map[string]int64{"get": 2000}}
		want := "DESIGN.md section 4 target, getaway-cached req/s >= 10x oauth2-proxy's: " + tc.want
		text := rep.text()
		for _, w := range []string{want, "Redis commands per 1,000 oauth2-proxy requests: 1000.000", "oauth2-proxy 0/0"} {
			if !strings.Contains(text, w) {
				t.Errorf("the report lacks %q:\n%s", w, text)
			}
		}
		if !slices.Contains(rep.chart().Notes, want) {
			t.Errorf("the chart's notes lack %q: %q", want, rep.chart().Notes)
		}
	}

	// Without the row: the reason, and no Redis line for it.
	targets = []target{{name: direct}, {name: getawayCached}}
	results := map[string][]result{
		direct:        {{rps: 60000}},
		getawayCached: {{rps: 30000}},
	}
	rep := newReport(o, environment{oauth2Proxy: "skipped (-oauth2proxy=false)"}, targets, results, nil)
	text := rep.text()
	want := "DESIGN.md section 4 target, getaway-cached req/s >= 10x oauth2-proxy's: n/a (oauth2-proxy: skipped (-oauth2proxy=false))."
	if !strings.Contains(text, want) {
		t.Errorf("the report lacks %q:\n%s", want, text)
	}
	if strings.Contains(text, "per 1,000 oauth2-proxy requests") {
		t.Errorf("a Redis line for oauth2-proxy, which did not run:\n%s", text)
	}
	for _, n := range rep.chart().Notes {
		if strings.Contains(n, "10x") {
			t.Errorf("the chart has the target line without the row: %q", n)
		}
	}
}

// TestTargetCookie checks that a target's session goes out in its own
// cookie with both the Go generator and probe: a server that answers 401
// without _oauth2_proxy=ticket must see no 401.
func TestTargetCookie(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Request.Header.Cookie(oauth2ProxyCookie)) != "ticket" || len(ctx.Request.Header.Cookie(cookieName)) != 0 {
			ctx.SetStatusCode(fasthttp.StatusUnauthorized)
			return
		}
		ctx.SetBody(echoBody)
	}}
	go srv.Serve(ln) //nolint:errcheck // ends with Shutdown
	t.Cleanup(func() { _ = srv.Shutdown() })

	tg := target{name: oauth2ProxyName, url: "http://" + ln.Addr().String() + "/bench", sid: "ticket", cookie: oauth2ProxyCookie}
	if _, err := probe(tg); err != nil {
		t.Errorf("probe: %v", err)
	}
	res, err := goGen{}.run(context.Background(), tg, 2, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if res.requests == 0 || res.badStatus != 0 || res.socketErrors != 0 {
		t.Errorf("%d requests, %d refused, %d socket errors; want some, none refused", res.requests, res.badStatus, res.socketErrors)
	}
	// The gateway's targets keep their cookie name.
	if got := (target{sid: "x"}).cookieKey(); got != cookieName {
		t.Errorf("default cookie %q, want %q", got, cookieName)
	}
}

// TestOAuth2ProxySignIn runs the real oauth2-proxy against the test provider,
// a redis-server and an echo backend, when the harness has built it into the
// cache dir before (go run ./bench/proxyload) and redis-server is installed.
func TestOAuth2ProxySignIn(t *testing.T) {
	if testing.Short() {
		t.Skip("starts oauth2-proxy")
	}
	dir, err := oauth2ProxyCacheDir()
	if err != nil {
		t.Skip(err)
	}
	bin := filepath.Join(dir, "oauth2-proxy")
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("oauth2-proxy not built yet (go run ./bench/proxyload builds it): %v", err)
	}
	rbin := redisproc.Find()
	if rbin == "" {
		t.Skip("redis-server not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	rc, raddr, _, err := redisproc.Start(ctx, rbin, readyWithin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopChild(rc) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	backend := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBody(echoBody) }}
	go backend.Serve(ln) //nolint:errcheck // ends with Shutdown
	t.Cleanup(func() { _ = backend.Shutdown() })
	idp, err := testidp.Start(testidp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idp.Close() })

	c, addr, err := startOAuth2Proxy(ctx, bin, idp, ln.Addr().String(), raddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopChild(c) })
	url := "http://" + addr + oauth2ProxyPath
	if status, err := get(target{url: url}, nil); err != nil || status != fasthttp.StatusUnauthorized {
		t.Errorf("without a session: status %d (%v), want 401", status, err)
	}
	before, err := readCommandStats(ctx, raddr)
	if err != nil {
		t.Fatal(err)
	}
	sid, err := signInOAuth2Proxy(ctx, idp, "http://"+addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := probe(target{url: url, sid: sid, cookie: oauth2ProxyCookie}); err != nil {
		t.Errorf("with the session: %v", err)
	}
	after, err := readCommandStats(ctx, raddr)
	if err != nil {
		t.Fatal(err)
	}
	// The session went to Redis and was read back from it.
	var u redisUse
	u.add(before, after, 1, time.Second)
	if u.byCmd["set"] == 0 || u.byCmd["get"] == 0 {
		t.Errorf("Redis commands of a sign-in and a request: %s; want SET and GET", u.breakdown())
	}
}
