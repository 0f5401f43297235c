package edge

import (
	"bytes"
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/apigetaway/getaway/authflow"
	"github.com/apigetaway/getaway/healthd"
	"github.com/apigetaway/getaway/sessioncache"
	"github.com/apigetaway/getaway/upstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
	"go.uber.org/zap"
)

// Metrics (observability). The gateway keeps its own Prometheus registry
// (never the global one) and serves it in the text format on ADMIN_ADDR's
// GET /metrics and, for admins, on GET /admin/metrics; with neither, the
// counts are still kept (they cost a few atomic adds) but not served.
//
// The hot path pays no map lookup and no allocation for them: every
// request increments one counter and observes one histogram, both resolved
// at startup from a fixed route group and status class. Everything else
// (session cache, refreshes, WebSockets, config version, backend health,
// upstream errors) is read from the components' own counters when
// Prometheus scrapes.

// MetricsSources are what the metrics read at scrape time besides the
// server's own components. Every field is optional: a missing source
// reports nothing.
type MetricsSources struct {
	// Sessions reports session lookups (*sessioncache.Redis and
	// *sessioncache.Memory do).
	Sessions SessionStats
	// Refreshes reports token refreshes (*authflow.Auth does).
	Refreshes RefreshStats
	// Health returns the backends' health (healthd.Checker.Snapshot).
	Health func() map[string]healthd.Status
}

// SessionStats is a session store that counts its lookups.
type SessionStats interface {
	Stats() sessioncache.Stats
}

// RefreshStats is an authenticator that counts its token refreshes.
type RefreshStats interface {
	RefreshStats() authflow.RefreshStats
}

var (
	_ SessionStats = (*sessioncache.Redis)(nil)
	_ SessionStats = (*sessioncache.Memory)(nil)
	_ RefreshStats = (*authflow.Auth)(nil)
)

// routeGroup is the label a request is counted under: a small fixed set,
// so the counters can be resolved once, at startup.
type routeGroup uint8

const (
	groupAPI       routeGroup = iota // /api/*
	groupWebSocket                   // WebSocket upgrades on /api/*
	groupAuth                        // /auth/*, /whoami/*
	groupAdmin                       // /admin/*
	groupHealth                      // /healthz, /readyz
	groupStatic                      // GET and HEAD of anything else, when static files are on
	groupOther                       // the rest (404s without static files, other methods)
	groupCount
)

var routeGroupNames = [groupCount]string{"api", "websocket", "auth", "admin", "health", "static", "other"}

func (g routeGroup) String() string { return routeGroupNames[g] }

// statusClassNames label getaway_http_requests_total's code.
var statusClassNames = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

// statusClass maps a status to statusClassNames' index; anything below
// 100 counts as 1xx and anything above 599 as 5xx.
func statusClass(status int) int {
	return min(max(status/100, 1), 5) - 1
}

var (
	whoamiPrefix  = []byte("/whoami")
	adminPrefix   = []byte("/admin")
	healthzPath   = []byte("/healthz")
	readyzPath    = []byte("/readyz")
	metricsPath   = []byte("/metrics")
	bodyNoMetrics = []byte("metrics are served at GET /metrics\n")
)

// hasSegmentPrefix reports path == prefix or a path under prefix + "/".
func hasSegmentPrefix(path, prefix []byte) bool {
	return bytes.HasPrefix(path, prefix) && (len(path) == len(prefix) || path[len(prefix)] == '/')
}

// routeGroup classifies ctx's request by its canonical path (before any
// handler rewrites it), with a few prefix tests.
func (s *Server) routeGroup(ctx *fasthttp.RequestCtx) routeGroup {
	path := ctx.Path()
	switch {
	case isAPIPath(path):
		if upstream.IsWebSocketUpgrade(ctx) {
			return groupWebSocket
		}
		return groupAPI
	case isAuthPath(path), hasSegmentPrefix(path, whoamiPrefix):
		return groupAuth
	case hasSegmentPrefix(path, adminPrefix):
		return groupAdmin
	case bytes.Equal(path, healthzPath), bytes.Equal(path, readyzPath):
		return groupHealth
	case s.static != nil && (ctx.IsGet() || ctx.IsHead()):
		return groupStatic
	}
	return groupOther
}

// Rate limits counted by getaway_rate_limited_total.
const (
	limitAuth = iota
	limitAPIUser
	limitCount
)

// metrics are the server's Prometheus metrics.
type metrics struct {
	registry    *prometheus.Registry
	requests    [groupCount][len(statusClassNames)]prometheus.Counter
	durations   [groupCount]prometheus.Observer
	rateLimited [limitCount]prometheus.Counter
	// handler serves the registry in the Prometheus text format.
	handler fasthttp.RequestHandler
}

// durationBuckets suit a gateway: most answers take well under a
// millisecond of its own time plus the backend's.
var durationBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// newMetrics builds the registry of s, whose proxy and WebSocket relay
// must be set, reading src at scrape time.
func newMetrics(s *Server, src MetricsSources) *metrics {
	m := &metrics{registry: prometheus.NewRegistry()}
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "getaway_http_requests_total",
		Help: "HTTP requests answered, by route group and status class.",
	}, []string{"group", "code"})
	durations := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "getaway_http_request_duration_seconds",
		Help:    "Time from reading a request to the response head being ready (streamed bodies excluded), by route group.",
		Buckets: durationBuckets,
	}, []string{"group"})
	limited := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "getaway_rate_limited_total",
		Help: "Requests refused with 429 by a rate limit (auth: /auth/* per client IP; api_user: /api/* per subject).",
	}, []string{"limit"})
	for g := range groupCount {
		for c, code := range statusClassNames {
			m.requests[g][c] = requests.WithLabelValues(g.String(), code)
		}
		m.durations[g] = durations.WithLabelValues(g.String())
	}
	m.rateLimited[limitAuth] = limited.WithLabelValues("auth")
	m.rateLimited[limitAPIUser] = limited.WithLabelValues("api_user")
	m.registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		requests, durations, limited,
		newScrapeCollector(s, src),
	)
	h := promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{
		ErrorLog:            zapPromLog{s.log.Named("metrics")},
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
	})
	m.handler = fasthttpadaptor.NewFastHTTPHandler(h)
	return m
}

// observe is the outermost middleware (outside recoverPanic, so a panic
// counts as the 500 it became): it classifies the request, puts a valid
// traceparent on it (trace.go), and once the handlers are done counts it,
// times it from fasthttp's start time, and writes the access log line when
// the request is logged. It allocates nothing for a request not logged.
func (s *Server) observe(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		var e accessEntry
		e.group = s.routeGroup(ctx)
		e.trace = ensureTraceparent(&ctx.Request.Header)
		if s.access != nil {
			e.pathLen = copy(e.path[:], ctx.Path())
		}
		next(ctx)
		status := ctx.Response.StatusCode()
		d := time.Since(ctx.Time())
		s.metrics.observe(e.group, status, d)
		// Only the /auth limit answers 429 in this group (authflow never
		// does); the per-user /api limit is counted where it refuses.
		if status == fasthttp.StatusTooManyRequests && e.group == groupAuth {
			s.metrics.rateLimited[limitAuth].Inc()
		}
		if s.access != nil && s.access.wants(status) {
			s.access.write(ctx, &e, status, d, s.clientIP)
		}
	}
}

// observe counts one answered request. It allocates nothing.
func (m *metrics) observe(g routeGroup, status int, d time.Duration) {
	m.requests[g][statusClass(status)].Inc()
	m.durations[g].Observe(d.Seconds())
}

// scrapeCollector reads the components' counters when Prometheus scrapes.
type scrapeCollector struct {
	s   *Server
	src MetricsSources

	sessions, refreshes, wsOpen, wsTotal, version, backendUp, upstreamErrors *prometheus.Desc
}

func newScrapeCollector(s *Server, src MetricsSources) *scrapeCollector {
	return &scrapeCollector{
		s:   s,
		src: src,
		sessions: prometheus.NewDesc("getaway_session_cache_lookups_total",
			"Session lookups: hit = answered from process memory, miss = asked Redis.", []string{"result"}, nil),
		refreshes: prometheus.NewDesc("getaway_token_refreshes_total",
			"Token refreshes asked of the OpenID provider, by outcome (ok, failed, expired).", []string{"result"}, nil),
		wsOpen: prometheus.NewDesc("getaway_websocket_connections_open",
			"WebSockets being relayed now.", nil, nil),
		wsTotal: prometheus.NewDesc("getaway_websocket_connections_total",
			"WebSockets accepted by a backend and relayed since start.", nil, nil),
		version: prometheus.NewDesc("getaway_config_version",
			"Version of the routing configuration in force (1 at start, +1 per applied change).", nil, nil),
		backendUp: prometheus.NewDesc("getaway_backend_up",
			"1 when the last health check found the backend up, 0 when down (unknown backends are left out).", []string{"backend"}, nil),
		upstreamErrors: prometheus.NewDesc("getaway_upstream_errors_total",
			"Failed exchanges with a backend, by kind (timeout, pool_exhausted, connect, upgrade, other).", []string{"backend", "kind"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *scrapeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.sessions, c.refreshes, c.wsOpen, c.wsTotal, c.version, c.backendUp, c.upstreamErrors} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *scrapeCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	if c.src.Sessions != nil {
		st := c.src.Sessions.Stats()
		counter(c.sessions, st.Hits, "hit")
		counter(c.sessions, st.Misses, "miss")
	}
	if c.src.Refreshes != nil {
		st := c.src.Refreshes.RefreshStats()
		counter(c.refreshes, st.OK, "ok")
		counter(c.refreshes, st.Failed, "failed")
		counter(c.refreshes, st.Expired, "expired")
	}
	ch <- prometheus.MustNewConstMetric(c.wsOpen, prometheus.GaugeValue, float64(c.s.ws.Open()))
	counter(c.wsTotal, c.s.ws.Opened())
	ch <- prometheus.MustNewConstMetric(c.version, prometheus.GaugeValue, float64(c.s.proxy.Routing().Version))
	if c.src.Health != nil {
		for backend, st := range c.src.Health() {
			switch st.Status {
			case healthd.StatusUp:
				ch <- prometheus.MustNewConstMetric(c.backendUp, prometheus.GaugeValue, 1, backend)
			case healthd.StatusDown:
				ch <- prometheus.MustNewConstMetric(c.backendUp, prometheus.GaugeValue, 0, backend)
			}
		}
	}
	for _, e := range c.s.proxy.ErrorCounts() {
		counter(c.upstreamErrors, e.Count, e.Backend, e.Kind)
	}
}

// zapPromLog adapts zap to promhttp's error log.
type zapPromLog struct{ log *zap.Logger }

func (z zapPromLog) Println(v ...any) {
	z.log.Warn("metrics scrape failed", zap.Any("error", v))
}

// serveMetricsPort is the handler of the ADMIN_ADDR listener: GET /metrics
// and nothing else.
func (s *Server) serveMetricsPort(ctx *fasthttp.RequestCtx) {
	if !bytes.Equal(ctx.Path(), metricsPath) {
		ctx.SetStatusCode(fasthttp.StatusNotFound)
		ctx.SetContentType("text/plain; charset=utf-8")
		ctx.SetBody(bodyNoMetrics)
		return
	}
	if !ctx.IsGet() && !ctx.IsHead() {
		ctx.Response.Header.Set(fasthttp.HeaderAllow, "GET, HEAD")
		ctx.SetStatusCode(fasthttp.StatusMethodNotAllowed)
		return
	}
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-store")
	s.metrics.handler(ctx)
}

// metricsListener is the private listener of ADMIN_ADDR.
type metricsListener struct {
	srv     *fasthttp.Server
	mu      sync.Mutex
	ln      net.Listener // set while serving
	stopped bool
}

func (s *Server) newMetricsListener() *metricsListener {
	return &metricsListener{srv: &fasthttp.Server{
		Handler:               s.serveMetricsPort,
		Name:                  "getaway",
		NoDefaultServerHeader: true,
		ReadTimeout:           10 * time.Second,
		WriteTimeout:          30 * time.Second,
		IdleTimeout:           120 * time.Second,
		Concurrency:           64,
		MaxRequestBodySize:    1 << 10,
		CloseOnShutdown:       true,
		Logger:                zapPrintf{s.log.Named("metrics")},
	}}
}

// ServeMetrics serves GET /metrics, unauthenticated, from ln until
// Shutdown. ln must be private (loopback, or a network the public cannot
// reach): ListenAndServe calls it on ADMIN_ADDR.
func (s *Server) ServeMetrics(ln net.Listener) error {
	m := s.metricsLn
	m.mu.Lock()
	if m.stopped {
		m.mu.Unlock()
		_ = ln.Close()
		return nil
	}
	m.ln = ln
	m.mu.Unlock()
	s.log.Info("serving metrics", zap.String("addr", ln.Addr().String()))
	err := m.srv.Serve(ln)
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// shutdown stops the metrics listener: closing ln ends Serve even if it
// had not registered it with fasthttp yet.
func (m *metricsListener) shutdown(ctx context.Context) error {
	m.mu.Lock()
	m.stopped = true
	ln := m.ln
	m.mu.Unlock()
	if ln == nil {
		return nil
	}
	_ = ln.Close()
	// fasthttp closes ln again: that error says nothing.
	if err := m.srv.ShutdownWithContext(ctx); !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// isLoopbackAddr reports whether addr (host:port) listens on loopback only.
func isLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
