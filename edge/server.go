package edge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/apigetaway/getaway/upstream"
	"github.com/fasthttp/router"
	"github.com/redis/rueidis"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
)

// Config configures the listener and the edge middleware. Every limit has a
// documented default (see LoadSettings); zero values here mean "default".
type Config struct {
	// Addr is the listen address. Default ":8080" (env PORT, LISTEN_HOST,
	// or LISTEN_ADDR for the whole address).
	Addr string
	// AllowedOrigins (env ALLOWED_ORIGINS) are browser origins allowed to
	// call the gateway with credentials, merged with config.yml's
	// allowedOrigins. Normalised as upstream.NormalizeOrigin returns them.
	AllowedOrigins []string
	// PublicDir holds static files served with the SPA fallback. Empty or
	// a missing directory turns static serving off. LoadSettings sets
	// "public" (env PUBLIC_DIR).
	PublicDir string
	// HeaderTimeout bounds the wait for a request head: on a new
	// connection from its opening, on a keep-alive one from the request's
	// first byte, to the end of the head. A client that trickles its head
	// (slowloris) is answered 408 and closed after it. Default 10s (env
	// HEADER_TIMEOUT).
	HeaderTimeout time.Duration
	// ReadTimeout bounds reading one request's body, counted from the end
	// of its head, including the reads of a body streamed to a backend.
	// Default 60s.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing one response. Default 60s.
	WriteTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle this long. Default 120s.
	IdleTimeout time.Duration
	// ShutdownTimeout bounds the wait for requests in flight at shutdown.
	// Default 15s.
	ShutdownTimeout time.Duration
	// MaxHeaderBytes caps a request head. Default 16 KiB; larger gets 431.
	MaxHeaderBytes int
	// MaxBodyBytes caps the bodies the gateway reads itself. Bodies of
	// proxied requests stream to the backend and are not capped here.
	// Default 1 MiB.
	MaxBodyBytes int
	// MaxConns caps concurrent client connections. Default 100000.
	MaxConns int
	// MaxConnsPerIP (env MAX_CONNS_PER_IP) caps concurrent connections from
	// one socket peer address (IPv6: one full address, not a /64); one more
	// is answered 429 and closed. It counts the peer, never
	// X-Forwarded-For: behind proxies it would cap the proxies. So 0 means
	// the default, 1000 (1% of the default MaxConns) without
	// TrustedProxies and off with them; a negative value turns it off.
	MaxConnsPerIP int
	// TrustedProxies (env TRUSTED_PROXIES) are the proxies whose
	// X-Forwarded-For entries are believed when they are the socket peer
	// (see ClientIPPolicy). Default none: the client is the peer. Give the
	// proxy the same list (upstream.ProxyConfig.ForwardedFor).
	TrustedProxies []netip.Prefix
	// AuthRateLimit (env AUTH_RATE_LIMIT) caps /auth/* requests per client
	// IP (IPv6: per /64). The zero value means the default, 60 per minute;
	// Off turns it off. See ratelimit.go.
	AuthRateLimit RateLimit
	// APIRateLimitPerUser (env API_RATE_LIMIT_PER_USER) caps /api/*
	// requests per authenticated subject. Default off.
	APIRateLimitPerUser RateLimit
	// RateLimitMaxKeys (env RATE_LIMIT_MAX_KEYS) caps the keys (client IPs,
	// subjects) each rate limit tracks in memory, about 150 bytes each.
	// Default 100000.
	RateLimitMaxKeys int
	// AdminAddr (env ADMIN_ADDR), e.g. "127.0.0.1:9090", is a second
	// listener ListenAndServe opens for GET /metrics, without
	// authentication: it must not be reachable by the public. Empty (the
	// default) opens none; admins can still read GET /admin/metrics.
	AdminAddr string
	// AccessLogSample (env ACCESS_LOG_SAMPLE) is the fraction of requests,
	// 0 to 1, written to the access log (Deps.AccessLog); 5xx and 429
	// answers are always written. Zero writes only those; LoadSettings
	// sets 0.01 by default.
	AccessLogSample float64
}

// DefaultMaxConnsPerIP is MaxConnsPerIP's default when no proxy is trusted,
// that is when the socket peer is the client: one address alone cannot hold
// more than 1% of the default MaxConns, while a load test from one host
// (k6, wrk) or a NAT of some hundred browsers stays below it.
const DefaultMaxConnsPerIP = 1000

func (c Config) withDefaults() Config {
	if c.Addr == "" {
		c.Addr = ":8080"
	}
	if c.HeaderTimeout == 0 {
		c.HeaderTimeout = 10 * time.Second
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = 60 * time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 60 * time.Second
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 120 * time.Second
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 15 * time.Second
	}
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = 16 << 10
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.MaxConns == 0 {
		c.MaxConns = 100_000
	}
	if c.MaxConnsPerIP == 0 {
		c.MaxConnsPerIP = DefaultMaxConnsPerIP
		if len(c.TrustedProxies) > 0 {
			c.MaxConnsPerIP = -1
		}
	}
	if c.AuthRateLimit.IsZero() {
		c.AuthRateLimit = RateLimit{Requests: 60, Window: time.Minute}
	}
	if c.RateLimitMaxKeys == 0 {
		c.RateLimitMaxKeys = 100_000
	}
	return c
}

// Authenticator decides on whose behalf an /api request is proxied.
type Authenticator interface {
	// Authenticate returns the verified identity of ctx's client and true,
	// or false after writing the refusal (401, 403, 503, ...) into
	// ctx.Response. The identity is returned by value so that the hot path
	// does not allocate it.
	Authenticate(ctx *fasthttp.RequestCtx) (upstream.Identity, bool)
}

// AuthenticatorFunc adapts a function to Authenticator.
type AuthenticatorFunc func(ctx *fasthttp.RequestCtx) (upstream.Identity, bool)

// Authenticate calls f(ctx).
func (f AuthenticatorFunc) Authenticate(ctx *fasthttp.RequestCtx) (upstream.Identity, bool) {
	return f(ctx)
}

// DenyAll refuses every request with 401. It is the Authenticator in force
// until sign-in is configured, so the gateway is never an open proxy.
var DenyAll Authenticator = AuthenticatorFunc(func(ctx *fasthttp.RequestCtx) (upstream.Identity, bool) {
	writeJSON(ctx, fasthttp.StatusUnauthorized, bodyUnauthorized)
	return upstream.Identity{}, false
})

// ReadinessCheck is one dependency /readyz asks about.
type ReadinessCheck struct {
	// Name is reported when the check fails, e.g. "redis".
	Name string
	// Check returns nil when the dependency can serve.
	Check func(ctx context.Context) error
}

// Deps are the components the server is wired to.
type Deps struct {
	// Proxy serves /api/*. Required.
	Proxy *upstream.Proxy
	// Auth guards /api/*. Nil means DenyAll.
	Auth Authenticator
	// Routes, when set, registers more routes (sign-in) on the router.
	Routes func(r *router.Router)
	// Admin wires the admin API; without an Authorizer it is off (404).
	Admin AdminDeps
	// Ready lists what /readyz checks.
	Ready []ReadinessCheck
	// Log receives the server's logs. Nil means no logs.
	Log *zap.Logger
	// WebSocket holds the limits of WebSockets proxied on /api/* (issue 5;
	// see websocket.go). The zero value means every default.
	WebSocket upstream.WebSocketConfig
	// RateLimitRedis, when set, shares the rate limits' counts among the
	// instances on it (issue 6; see ratelimit.go); their background
	// senders run until Shutdown. Nil counts per process.
	RateLimitRedis rueidis.Client
	// Metrics are the sources the metrics read at scrape time (session
	// cache, refreshes, backend health); see metrics.go.
	Metrics MetricsSources
	// AccessLog, when set, receives the access log (NewAccessLogger);
	// nil turns it off. See accesslog.go.
	AccessLog *zap.Logger

	now func() time.Time // the rate limits' clock; nil is time.Now (tests)
}

// Server is the gateway's HTTP server.
type Server struct {
	cfg          Config
	proxy        *upstream.Proxy
	auth         Authenticator
	ready        []ReadinessCheck
	log          *zap.Logger
	allowsOrigin func(origin []byte) bool
	static       *static
	ws           *upstream.WebSocketProxy // WebSockets on /api/* (issue 5)
	clientIP     *ClientIPPolicy          // who the client is (issue 6)
	limits       *rateLimits              // rate limits (issue 6)
	metrics      *metrics                 // Prometheus metrics
	metricsLn    *metricsListener         // ADMIN_ADDR's GET /metrics
	access       *accessLog               // nil: no access log
	handler      fasthttp.RequestHandler
	srv          *fasthttp.Server
}

// New builds the server, its routes and its middleware chain.
func New(cfg Config, deps Deps) (*Server, error) {
	if deps.Proxy == nil {
		return nil, errors.New("edge: a proxy is required")
	}
	cfg = cfg.withDefaults()
	s := &Server{
		cfg:          cfg,
		proxy:        deps.Proxy,
		auth:         deps.Auth,
		ready:        deps.Ready,
		log:          deps.Log,
		allowsOrigin: OriginPolicy(cfg.AllowedOrigins, deps.Proxy),
		clientIP:     NewClientIPPolicy(cfg.TrustedProxies),
	}
	if s.auth == nil {
		s.auth = DenyAll
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	// WebSockets on /api/* (issue 5): see websocket.go.
	ws, err := upstream.NewWebSocketProxy(deps.Proxy, deps.WebSocket, s.log.Named("websocket"))
	if err != nil {
		return nil, err
	}
	s.ws = ws
	st, err := newStatic(cfg.PublicDir)
	if err != nil {
		return nil, err
	}
	s.static = st
	if st == nil {
		s.log.Info("static files off: no public directory", zap.String("dir", cfg.PublicDir))
	}
	// Rate limits (issue 6); their senders run until Shutdown.
	s.limits = newRateLimits(cfg, deps, s.log.Named("ratelimit"))
	// Observability: metrics, traceparent, access log (see metrics.go).
	s.metrics = newMetrics(s, deps.Metrics)
	s.metricsLn = s.newMetricsListener()
	s.access = newAccessLog(deps.AccessLog, cfg.AccessLogSample)

	r := router.New()
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	r.HandleMethodNotAllowed = false
	r.HandleOPTIONS = false
	r.GET("/healthz", s.healthz)
	r.HEAD("/healthz", s.healthz)
	r.GET("/readyz", s.readyz)
	r.HEAD("/readyz", s.readyz)
	if deps.Routes != nil {
		deps.Routes(r)
	}
	s.registerAdmin(r, deps.Admin)
	r.NotFound = s.notFound
	routes := r.Handler
	// /api and everything below it, in any method, is the proxy: matched
	// before the router, on the hot path, by one prefix test.
	s.handler = s.chain(func(ctx *fasthttp.RequestCtx) {
		if isAPIPath(ctx.Path()) {
			s.serveAPI(ctx)
			return
		}
		// The router matches the raw path: give it the canonical one, so
		// that /%61dmin/config is /admin/config, with the same guard.
		if !canonicalizePath(ctx) {
			writeJSON(ctx, fasthttp.StatusBadRequest, bodyBadRequest)
			return
		}
		routes(ctx)
	})

	// Slowloris: the server's ReadTimeout, here HeaderTimeout, runs from a
	// connection's opening, or a keep-alive request's first byte, to the
	// end of the head; HeaderReceived then gives the rest of the request
	// ReadTimeout from there (fasthttp server.go, serveConnCounted).
	// IdleTimeout alone bounds the wait for a keep-alive request's first
	// byte.
	s.srv = &fasthttp.Server{
		Handler:                       s.handler,
		ErrorHandler:                  s.serverError,
		Name:                          "getaway",
		NoDefaultServerHeader:         true,
		NoDefaultContentType:          true,
		ReadTimeout:                   cfg.HeaderTimeout,
		HeaderReceived:                bodyReadTimeout(cfg.ReadTimeout),
		WriteTimeout:                  cfg.WriteTimeout,
		IdleTimeout:                   cfg.IdleTimeout,
		ReadBufferSize:                cfg.MaxHeaderBytes,
		MaxRequestBodySize:            cfg.MaxBodyBytes,
		StreamRequestBody:             true,
		Concurrency:                   cfg.MaxConns,
		MaxConnsPerIP:                 max(cfg.MaxConnsPerIP, 0),
		DisablePreParseMultipartForm:  true,
		CloseOnShutdown:               true,
		TCPKeepalive:                  true,
		SecureErrorLogMessage:         true,
		DisableHeaderNamesNormalizing: false,
		Logger:                        zapPrintf{s.log.Named("fasthttp")},
	}
	return s, nil
}

// Handler returns the whole request handler: the middleware chain around the
// router. Useful for in-memory tests and benchmarks.
func (s *Server) Handler() fasthttp.RequestHandler { return s.handler }

// ListenAndServe listens on the configured address, and on AdminAddr for
// metrics when it is set, and serves until Shutdown.
func (s *Server) ListenAndServe() error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.Addr, err)
	}
	if s.cfg.AdminAddr != "" {
		mln, err := net.Listen("tcp", s.cfg.AdminAddr)
		if err != nil {
			_ = ln.Close()
			return fmt.Errorf("listen on ADMIN_ADDR %s: %w", s.cfg.AdminAddr, err)
		}
		if !isLoopbackAddr(s.cfg.AdminAddr) {
			s.log.Warn("metrics listener is not on loopback: keep it unreachable from the public", zap.String("addr", s.cfg.AdminAddr))
		}
		go func() {
			if err := s.ServeMetrics(mln); err != nil {
				s.log.Error("metrics listener stopped", zap.Error(err))
			}
		}()
	}
	return s.Serve(ln)
}

// Serve serves connections from ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.log.Info("listening", zap.String("addr", ln.Addr().String()))
	return s.srv.Serve(ln)
}

// Shutdown stops accepting connections and waits, up to ShutdownTimeout or
// ctx's end, for requests in flight to finish. Meanwhile every WebSocket
// gets close 1001 (going away) and is closed.
func (s *Server) Shutdown(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ShutdownTimeout)
	defer cancel()
	// WebSockets (issue 5): fasthttp neither tracks nor closes hijacked
	// connections, so they are closed here, alongside the HTTP drain.
	wsDone := make(chan error, 1)
	go func() { wsDone <- s.ws.Shutdown(ctx) }()
	err := s.srv.ShutdownWithContext(ctx)
	err = errors.Join(err, <-wsDone, s.metricsLn.shutdown(ctx))
	s.limits.close()
	s.proxy.Close()
	return err
}

// bodyReadTimeout is the server's HeaderReceived hook: once a head is in,
// the rest of the request gets d.
func bodyReadTimeout(d time.Duration) func(*fasthttp.RequestHeader) fasthttp.RequestConfig {
	return func(*fasthttp.RequestHeader) fasthttp.RequestConfig {
		return fasthttp.RequestConfig{ReadTimeout: d}
	}
}

var apiPrefix = []byte("/api")

// isAPIPath reports path == "/api" or a path under "/api/".
func isAPIPath(path []byte) bool {
	return bytes.HasPrefix(path, apiPrefix) && (len(path) == len(apiPrefix) || path[len(apiPrefix)] == '/')
}

// canonicalizePath makes the request's path its canonical form, ctx.Path():
// percent-decoded once, duplicate slashes and dot segments resolved, case
// kept (/ADMIN is not /admin). Static files and the /auth rate limit read
// ctx.Path(); the router matches the raw path (URI.PathOriginal), which is
// set here to the canonical path escaped, so /%61dmin/config reaches
// /admin/config and its guard. Escaping touches only bytes no route has
// ('%', '?', '#', spaces, controls, '\', non-ASCII): /%2561 is the path
// /%61, routed as /%2561, never /a. The query string is left as sent. /api
// paths are not passed here: the proxy judges and forwards the raw target.
//
// It reports false, and the request is refused, if the path set does not
// read back as the canonical one.
func canonicalizePath(ctx *fasthttp.RequestCtx) bool {
	u := ctx.Request.URI()
	if bytes.Equal(u.PathOriginal(), u.Path()) {
		return true // the common case: nothing to do, no allocation
	}
	canonical := append([]byte(nil), u.Path()...)
	u.SetPathBytes(appendEscapedPath(make([]byte, 0, len(canonical)+16), canonical))
	return bytes.Equal(u.Path(), canonical)
}

// appendEscapedPath appends path with every byte other than a path
// character of RFC 3986 (unreserved, sub-delims, ':', '@', '/')
// percent-encoded: '%', '?', '#', spaces, controls, '\' and non-ASCII.
func appendEscapedPath(dst, path []byte) []byte {
	const hex = "0123456789ABCDEF"
	for _, c := range path {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			strings.IndexByte("-._~!$&'()*+,;=:@/", c) >= 0:
			dst = append(dst, c)
		default:
			dst = append(dst, '%', hex[c>>4], hex[c&0xf])
		}
	}
	return dst
}

// serveAPI authenticates and proxies an /api request.
func (s *Server) serveAPI(ctx *fasthttp.RequestCtx) {
	// WebSocket upgrades (issue 5): same authentication, own relay; see
	// websocket.go.
	if upstream.IsWebSocketUpgrade(ctx) {
		s.serveWebSocket(ctx)
		return
	}
	id, ok := s.auth.Authenticate(ctx)
	if !ok {
		return
	}
	// The per-user limit needs the subject, known only now (issue 6).
	if !s.allowAPI(ctx, id.Sub) {
		s.metrics.rateLimited[limitAPIUser].Inc()
		return
	}
	if err := s.proxy.Forward(ctx, &id); err != nil {
		s.failProxy(ctx, err)
	}
}

var bodyOK = []byte(`{"ok":true}`)

func (s *Server) healthz(ctx *fasthttp.RequestCtx) {
	writeJSON(ctx, fasthttp.StatusOK, bodyOK)
}

// readyz answers 200 when every dependency can serve, else 503 naming the
// ones that cannot (never their error text, which may hold addresses).
func (s *Server) readyz(ctx *fasthttp.RequestCtx) {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var failing []string
	for _, rc := range s.ready {
		if err := rc.Check(c); err != nil {
			failing = append(failing, rc.Name)
			s.log.Warn("readiness check failed", zap.String("dependency", rc.Name), zap.Error(err))
		}
	}
	if len(failing) == 0 {
		writeJSON(ctx, fasthttp.StatusOK, bodyOK)
		return
	}
	body, _ := marshalJSON(map[string]any{"ok": false, "error": "not_ready", "failing": failing})
	writeJSON(ctx, fasthttp.StatusServiceUnavailable, body)
}

// serverError answers requests fasthttp could not parse. Such a request
// never reaches a handler, so it is never forwarded.
func (s *Server) serverError(ctx *fasthttp.RequestCtx, err error) {
	var tooLarge *fasthttp.ErrSmallBuffer
	var netErr net.Error
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		writeJSON(ctx, fasthttp.StatusRequestEntityTooLarge, bodyTooLarge)
	case errors.As(err, &tooLarge):
		writeJSON(ctx, fasthttp.StatusRequestHeaderFieldsTooLarge, []byte(`{"error":"headers_too_large"}`))
	case errors.As(err, &netErr) && netErr.Timeout():
		// HeaderTimeout, or ReadTimeout before the head was parsed.
		writeJSON(ctx, fasthttp.StatusRequestTimeout, []byte(`{"error":"request_timeout"}`))
	default:
		writeJSON(ctx, fasthttp.StatusBadRequest, bodyBadRequest)
	}
	// Such answers bypass the middleware chain: give them its headers,
	// and count them.
	setSecurityHeaders(&ctx.Response.Header)
	ctx.SetConnectionClose()
	s.metrics.requests[groupOther][statusClass(ctx.Response.StatusCode())].Inc()
}

// zapPrintf adapts zap to fasthttp's Logger.
type zapPrintf struct{ log *zap.Logger }

func (z zapPrintf) Printf(format string, args ...any) {
	z.log.Debug(fmt.Sprintf(format, args...))
}
