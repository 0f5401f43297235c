package edge

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apigetaway/getaway/healthd"
	"github.com/apigetaway/getaway/sessioncache"
	"github.com/apigetaway/getaway/upstream"
	"github.com/apigetaway/getaway/upstream/wsecho"
	"github.com/fasthttp/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
)

func withDeps(f func(d *Deps)) gatewayOption { return func(o *gatewayOpts) { f(&o.deps) } }

// serveMetrics runs g's metrics listener (ADMIN_ADDR) on loopback and
// returns its /metrics URL.
func serveMetrics(t *testing.T, g *gateway) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- g.Server.ServeMetrics(ln) }()
	t.Cleanup(func() {
		require.NoError(t, g.Server.metricsLn.shutdown(context.Background()))
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Error("metrics listener did not stop")
		}
	})
	return "http://" + ln.Addr().String() + "/metrics"
}

// samples is one scrape: series (name and labels as exposed) -> value.
type samples map[string]float64

// scrape reads url in the Prometheus text format.
func scrape(t *testing.T, url string, header http.Header) samples {
	t.Helper()
	resp, body := do(t, http.MethodGet, url, header, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.True(t, strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain"), resp.Header.Get("Content-Type"))
	return parseSamples(t, body)
}

func parseSamples(t *testing.T, body string) samples {
	t.Helper()
	out := samples{}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		require.Positive(t, i, line)
		v, err := strconv.ParseFloat(line[i+1:], 64)
		require.NoError(t, err, line)
		out[line[:i]] = v
	}
	require.NoError(t, sc.Err())
	return out
}

func requestsSeries(group, code string) string {
	return fmt.Sprintf(`getaway_http_requests_total{code=%q,group=%q}`, code, group)
}

func TestMetricsCountRequestsOnAdminAddr(t *testing.T) {
	be := startBackend(t, nil)
	gw := startGateway(t, defaultBackendYAML(be.URL))
	url := serveMetrics(t, gw)

	before := scrape(t, url, nil)
	const n = 3
	for range n {
		resp, _ := do(t, http.MethodGet, gw.URL+"/api/x?y=1", nil, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	resp, _ := do(t, http.MethodGet, gw.URL+"/nothing-here", nil, nil)
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	resp, _ = do(t, http.MethodGet, gw.URL+"/healthz", nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	after := scrape(t, url, nil)

	delta := func(series string) float64 { return after[series] - before[series] }
	assert.Equal(t, float64(n), delta(requestsSeries("api", "2xx")))
	assert.Equal(t, float64(1), delta(requestsSeries("other", "4xx")))
	assert.Equal(t, float64(1), delta(requestsSeries("health", "2xx")))
	assert.Equal(t, float64(0), delta(requestsSeries("api", "5xx")))
	assert.Equal(t, float64(n), delta(`getaway_http_request_duration_seconds_count{group="api"}`))
	assert.Positive(t, after[`getaway_http_request_duration_seconds_sum{group="api"}`])
	// Every group and class is there from the start, at zero.
	assert.Contains(t, before, requestsSeries("websocket", "1xx"))
	assert.Contains(t, before, requestsSeries("static", "5xx"))

	// The runtime and process collectors (a soak test reads these).
	assert.Positive(t, after["go_goroutines"])
	assert.Positive(t, after["process_resident_memory_bytes"])

	// The config version follows the routing in force.
	assert.Equal(t, float64(1), after["getaway_config_version"])
	f, err := upstream.ParseFile("config.yml", []byte(defaultBackendYAML(be.URL)))
	require.NoError(t, err)
	_, err = gw.Proxy.Apply(f)
	require.NoError(t, err)
	assert.Equal(t, float64(2), scrape(t, url, nil)["getaway_config_version"])
}

func TestMetricsNotOnMainListener(t *testing.T) {
	be := startBackend(t, nil)
	gw := startGateway(t, defaultBackendYAML(be.URL))
	url := serveMetrics(t, gw)

	resp, body := do(t, http.MethodGet, gw.URL+"/metrics", nil, nil)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	assert.NotContains(t, body, "getaway_http_requests_total")

	// The metrics listener serves /metrics and nothing else.
	resp, body = do(t, http.MethodGet, strings.TrimSuffix(url, "/metrics")+"/api/x", nil, nil)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	assert.Zero(t, be.hits.Load(), "the metrics listener never proxies")
	assert.NotContains(t, body, "getaway_http_requests_total")
	resp, _ = do(t, http.MethodPost, url, nil, nil)
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
}

func TestMetricsListenAndServeAdminAddr(t *testing.T) {
	be := startBackend(t, nil)
	f, err := upstream.ParseFile("config.yml", []byte(defaultBackendYAML(be.URL)))
	require.NoError(t, err)
	p, err := upstream.NewProxy(upstream.ProxyConfig{}, f, zap.NewNop())
	require.NoError(t, err)
	admin := freePort(t)
	s, err := New(Config{Addr: freePort(t), AdminAddr: admin}, Deps{Proxy: p, Auth: allowAll})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- s.ListenAndServe() }()

	var resp *http.Response
	deadline := time.Now().Add(10 * time.Second)
	for {
		req, _ := http.NewRequest(http.MethodGet, "http://"+admin+"/metrics", nil)
		if resp, err = testClient.Do(req); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond) // polling for the listener to come up
	}
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	require.NoError(t, s.Shutdown(context.Background()))
	require.NoError(t, <-done)
	_, err = net.DialTimeout("tcp", admin, time.Second)
	assert.Error(t, err, "Shutdown closes the metrics listener too")
}

// freePort returns a loopback address nothing listens on now.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

func TestMetricsRateLimited(t *testing.T) {
	be := startBackend(t, nil)
	gw := startGateway(t, defaultBackendYAML(be.URL), withConfig(func(c *Config) {
		c.AuthRateLimit = RateLimit{Requests: 2, Window: time.Hour}
		c.APIRateLimitPerUser = RateLimit{Requests: 1, Window: time.Hour}
	}))
	url := serveMetrics(t, gw)

	for i := range 3 {
		resp, _ := do(t, http.MethodGet, gw.URL+"/auth/login", nil, nil)
		if i == 2 {
			require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
		}
	}
	for i := range 3 {
		resp, _ := do(t, http.MethodGet, gw.URL+"/api/x", nil, nil)
		if i > 0 {
			require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
		}
	}
	// A backend's own 429 is not the gateway's limit.
	tooMany := startBackend(t, func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(fasthttp.StatusTooManyRequests) })
	other := startGateway(t, defaultBackendYAML(tooMany.URL))
	resp, _ := do(t, http.MethodGet, other.URL+"/api/x", nil, nil)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)

	got := scrape(t, url, nil)
	assert.Equal(t, float64(1), got[`getaway_rate_limited_total{limit="auth"}`])
	assert.Equal(t, float64(2), got[`getaway_rate_limited_total{limit="api_user"}`])
	assert.Equal(t, float64(2), got[requestsSeries("api", "4xx")])
	assert.Equal(t, float64(3), got[requestsSeries("auth", "4xx")], "two 404s (no sign-in routes) and the 429")
	assert.Equal(t, float64(0), scrape(t, serveMetrics(t, other), nil)[`getaway_rate_limited_total{limit="api_user"}`])
}

func TestMetricsUpstreamErrors(t *testing.T) {
	dead := "http://" + freePort(t)
	gw := startGateway(t, defaultBackendYAML(dead))
	url := serveMetrics(t, gw)
	for range 2 {
		resp, _ := do(t, http.MethodGet, gw.URL+"/api/x", nil, nil)
		require.Equal(t, http.StatusBadGateway, resp.StatusCode)
	}
	got := scrape(t, url, nil)
	assert.Equal(t, float64(2), got[fmt.Sprintf(`getaway_upstream_errors_total{backend=%q,kind="connect"}`, dead)])
	assert.Equal(t, float64(2), got[requestsSeries("api", "5xx")])
}

func TestMetricsPanicCountsAs500(t *testing.T) {
	gw := startGateway(t, defaultBackendYAML("http://127.0.0.1:1"), withAuth(AuthenticatorFunc(func(*fasthttp.RequestCtx) (upstream.Identity, bool) {
		panic("boom")
	})))
	url := serveMetrics(t, gw)
	resp, _ := do(t, http.MethodGet, gw.URL+"/api/x", nil, nil)
	require.Equal(t, http.StatusInternalServerError, resp.StatusCode)
	assert.Equal(t, float64(1), scrape(t, url, nil)[requestsSeries("api", "5xx")])
}

func TestMetricsWebSockets(t *testing.T) {
	be := wsecho.Start(t)
	gw := startGateway(t, defaultBackendYAML(be.URL))
	url := serveMetrics(t, gw)
	c, status, body := dialWS(t, gw.wsURL("/api/live"), nil)
	require.NotNil(t, c, "status %d: %s", status, body)
	echo(t, c, "hello")

	got := scrape(t, url, nil)
	assert.Equal(t, float64(1), got["getaway_websocket_connections_open"])
	assert.Equal(t, float64(1), got["getaway_websocket_connections_total"])
	assert.Equal(t, float64(1), got[requestsSeries("websocket", "1xx")])
	assert.Zero(t, got[requestsSeries("api", "1xx")])

	require.NoError(t, c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second)))
	deadline := time.Now().Add(10 * time.Second)
	for gw.Server.ws.Open() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // polling for the relay to end
	}
	got = scrape(t, url, nil)
	assert.Equal(t, float64(0), got["getaway_websocket_connections_open"])
	assert.Equal(t, float64(1), got["getaway_websocket_connections_total"])
}

func TestMetricsScrapeTimeSources(t *testing.T) {
	be := startBackend(t, nil)
	store, err := sessioncache.NewMemory(sessioncache.Config{})
	require.NoError(t, err)
	t.Cleanup(store.Close)
	sess := &sessioncache.Session{Sub: "user-1"}
	require.NoError(t, store.PutSession(context.Background(), "sid-1", sess))
	// An authenticator on the real store: a cookie's session, or 401.
	auth := AuthenticatorFunc(func(ctx *fasthttp.RequestCtx) (upstream.Identity, bool) {
		s, err := store.GetSession(ctx, string(ctx.Request.Header.Cookie("sid")))
		if err != nil {
			writeJSON(ctx, fasthttp.StatusUnauthorized, bodyUnauthorized)
			return upstream.Identity{}, false
		}
		return upstream.Identity{Sub: s.Sub}, true
	})
	up := time.Now().Unix()
	gw := startGateway(t, defaultBackendYAML(be.URL), withAuth(auth), withDeps(func(d *Deps) {
		d.Metrics = MetricsSources{
			Sessions: store,
			Health: func() map[string]healthd.Status {
				return map[string]healthd.Status{
					"http://up.test":      {Status: healthd.StatusUp, LastUp: &up},
					"http://down.test":    {Status: healthd.StatusDown},
					"http://unknown.test": {Status: healthd.StatusUnknown},
				}
			},
		}
	}))
	url := serveMetrics(t, gw)
	before := scrape(t, url, nil)
	resp, _ := do(t, http.MethodGet, gw.URL+"/api/x", http.Header{"Cookie": {"sid=sid-1"}}, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	resp, _ = do(t, http.MethodGet, gw.URL+"/api/x", http.Header{"Cookie": {"sid=nope"}}, nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	after := scrape(t, url, nil)

	hits := `getaway_session_cache_lookups_total{result="hit"}`
	assert.Equal(t, float64(2), after[hits]-before[hits], "a Memory store answers every lookup from memory")
	assert.Equal(t, float64(0), after[`getaway_session_cache_lookups_total{result="miss"}`])
	assert.Equal(t, float64(1), after[`getaway_backend_up{backend="http://up.test"}`])
	assert.Contains(t, after, `getaway_backend_up{backend="http://down.test"}`)
	assert.Equal(t, float64(0), after[`getaway_backend_up{backend="http://down.test"}`])
	assert.NotContains(t, after, `getaway_backend_up{backend="http://unknown.test"}`)
	// No refresh source: the series are absent rather than zero.
	assert.NotContains(t, after, `getaway_token_refreshes_total{result="ok"}`)
}

func TestRouteGroups(t *testing.T) {
	s := &Server{}
	withStatic := &Server{static: &static{}}
	tests := []struct {
		method, path string
		upgrade      bool
		srv          *Server
		want         routeGroup
	}{
		{"GET", "/api", false, s, groupAPI},
		{"POST", "/api/v1/x", false, s, groupAPI},
		{"GET", "/api/live", true, s, groupWebSocket},
		{"GET", "/apix", false, s, groupOther},
		{"GET", "/auth/login", false, s, groupAuth},
		{"GET", "/whoami/me", false, s, groupAuth},
		{"GET", "/authx", false, s, groupOther},
		{"PUT", "/admin/config", false, s, groupAdmin},
		{"GET", "/healthz", false, s, groupHealth},
		{"GET", "/readyz", false, s, groupHealth},
		{"GET", "/healthz/x", false, s, groupOther},
		{"GET", "/index.html", false, withStatic, groupStatic},
		{"POST", "/index.html", false, withStatic, groupOther},
		{"GET", "/index.html", false, s, groupOther},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			var ctx fasthttp.RequestCtx
			ctx.Request.Header.SetMethod(tc.method)
			ctx.Request.SetRequestURI(tc.path)
			if tc.upgrade {
				ctx.Request.Header.Set("Connection", "Upgrade")
				ctx.Request.Header.Set("Upgrade", "websocket")
			}
			assert.Equal(t, tc.want.String(), tc.srv.routeGroup(&ctx).String())
		})
	}
}

func TestStatusClass(t *testing.T) {
	for status, want := range map[int]string{0: "1xx", 101: "1xx", 200: "2xx", 304: "3xx", 404: "4xx", 429: "4xx", 503: "5xx", 999: "5xx"} {
		assert.Equal(t, want, statusClassNames[statusClass(status)], "status %d", status)
	}
}

// BenchmarkObserve is the observe middleware alone around a handler that
// answers 200 at once: metrics, traceparent generation, no access log.
func BenchmarkObserve(b *testing.B) {
	f, err := upstream.ParseFile("config.yml", []byte(defaultBackendYAML("http://backend")))
	require.NoError(b, err)
	p, err := upstream.NewProxy(upstream.ProxyConfig{}, f, zap.NewNop())
	require.NoError(b, err)
	s, err := New(Config{}, Deps{Proxy: p})
	require.NoError(b, err)
	h := s.observe(func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(fasthttp.StatusOK) })
	var ctx fasthttp.RequestCtx
	b.ReportAllocs()
	for b.Loop() {
		ctx.Request.Reset()
		ctx.Request.SetRequestURI("/api/v2/bench?x=1")
		ctx.Request.Header.SetHost("app.example.com")
		h(&ctx)
	}
}
