package edge

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/apigetaway/getaway/authflow"
	"github.com/apigetaway/getaway/healthd"
	"github.com/apigetaway/getaway/sessioncache"
	"github.com/apigetaway/getaway/upstream"
	"go.uber.org/zap/zapcore"
)

// Settings is everything the environment configures, already validated and
// split into the Config of each package. Variable names are those of the
// Node version where it had them; DESIGN section 2 lists them.
type Settings struct {
	// LogLevel from LOG_LEVEL: debug, info (default), warn or error.
	LogLevel zapcore.Level
	// LogFormat from LOG_FORMAT: json (default) or console.
	LogFormat string
	// ConfigPath from CONFIG_PATH: the routing file. Default config.yml.
	ConfigPath string
	// Server configures the listener and the edge middleware.
	Server Config
	// Proxy configures the /api proxy and its backend pools.
	Proxy upstream.ProxyConfig
	// WebSocket holds the limits of WebSockets proxied on /api/*
	// (WS_MAX_MESSAGE_BYTES, WS_IDLE_TIMEOUT_SECONDS); pass it in Deps.
	WebSocket upstream.WebSocketConfig
	// Auth configures sign-in; see AuthEnabled.
	Auth authflow.Config
	// AuthEnabled is true when any OIDC_* variable is set: sign-in is then
	// required to be completely and validly configured.
	AuthEnabled bool
	// RedisURL (REDIS_URL): redis://, rediss://, or several host:port for a
	// Redis Cluster. Empty keeps sessions in process memory (one instance).
	RedisURL string
	// Sessions configures session storage.
	Sessions sessioncache.Config
	// Admin says who may use the admin API (ADMIN_TOKENS, ADMIN_EMAILS,
	// ADMIN_GROUPS).
	Admin authflow.AdminConfig
	// Health configures backend health checks and notifications.
	Health healthd.Config
	// AccessLog (ACCESS_LOG: on, the default, or off) writes the access
	// log to stdout; its sampling is Server.AccessLogSample.
	AccessLog bool
}

// LookupEnv is the signature of os.LookupEnv, injected for tests.
type LookupEnv func(key string) (string, bool)

// LoadSettings reads and validates the environment. Every bad value is
// reported, each with its variable's name and the reason; nothing starts
// half-configured.
func LoadSettings(lookup LookupEnv) (*Settings, error) {
	e := envReader{lookup: lookup}
	s := &Settings{
		LogFormat:  e.oneOf("LOG_FORMAT", "json", "json", "console"),
		ConfigPath: e.str("CONFIG_PATH", "config.yml"),
	}
	switch lvl := e.oneOf("LOG_LEVEL", "info", "debug", "info", "warn", "error"); lvl {
	case "debug":
		s.LogLevel = zapcore.DebugLevel
	case "warn":
		s.LogLevel = zapcore.WarnLevel
	case "error":
		s.LogLevel = zapcore.ErrorLevel
	default:
		s.LogLevel = zapcore.InfoLevel
	}

	port := e.integer("PORT", 8080, 0, 65535)
	s.Server = Config{
		Addr:            e.str("LISTEN_ADDR", net.JoinHostPort(e.str("LISTEN_HOST", ""), strconv.Itoa(port))),
		AllowedOrigins:  e.origins("ALLOWED_ORIGINS"),
		PublicDir:       e.str("PUBLIC_DIR", "public"),
		HeaderTimeout:   e.duration("HEADER_TIMEOUT", 10*time.Second),
		ReadTimeout:     e.seconds("READ_TIMEOUT_SECONDS", 60*time.Second),
		WriteTimeout:    e.seconds("WRITE_TIMEOUT_SECONDS", 60*time.Second),
		IdleTimeout:     e.seconds("IDLE_TIMEOUT_SECONDS", 120*time.Second),
		ShutdownTimeout: e.seconds("SHUTDOWN_TIMEOUT_SECONDS", 15*time.Second),
		MaxHeaderBytes:  e.integer("MAX_HEADER_BYTES", 16<<10, 1024, 1<<20),
		MaxBodyBytes:    e.integer("MAX_BODY_BYTES", 1<<20, 1024, 1<<30),
		MaxConns:        e.integer("MAX_CONNS", 100_000, 1, 10_000_000),
		MaxConnsPerIP:   e.offOrInteger("MAX_CONNS_PER_IP", 1, 10_000_000),
		// Issue 6: client IP and rate limits.
		TrustedProxies:      e.trustedProxies("TRUSTED_PROXIES"),
		AuthRateLimit:       e.rateLimit("AUTH_RATE_LIMIT", RateLimit{Requests: 60, Window: time.Minute}),
		APIRateLimitPerUser: e.rateLimit("API_RATE_LIMIT_PER_USER", RateLimit{Off: true}),
		RateLimitMaxKeys:    e.integer("RATE_LIMIT_MAX_KEYS", 100_000, 1_000, 100_000_000),
		// Observability: metrics listener and access log sampling.
		AdminAddr:       e.hostPort("ADMIN_ADDR"),
		AccessLogSample: e.fraction("ACCESS_LOG_SAMPLE", 0.01),
	}
	s.AccessLog = e.oneOf("ACCESS_LOG", "on", "on", "off") == "on"
	s.Proxy = upstream.ProxyConfig{
		SessionCookieName: e.str("SESSION_COOKIE_NAME", "sid"),
		Pool: upstream.PoolConfig{
			ResponseTimeout:    e.seconds("PROXY_TIMEOUT_SECONDS", 30*time.Second),
			DialTimeout:        e.seconds("PROXY_DIAL_TIMEOUT_SECONDS", 5*time.Second),
			WriteTimeout:       e.seconds("PROXY_WRITE_TIMEOUT_SECONDS", 30*time.Second),
			MaxConnsPerBackend: e.integer("PROXY_MAX_CONNS_PER_BACKEND", 1024, 1, 1_000_000),
		},
		// The proxy's X-Forwarded-For follows the same trusted proxies as
		// the edge's client IP.
		ForwardedFor: NewClientIPPolicy(s.Server.TrustedProxies),
	}
	s.WebSocket = upstream.WebSocketConfig{
		MaxMessageBytes: int64(e.integer("WS_MAX_MESSAGE_BYTES", 1<<20, 1, 1<<30)),
		IdleTimeout:     e.seconds("WS_IDLE_TIMEOUT_SECONDS", 60*time.Second),
	}
	s.RedisURL = e.str("REDIS_URL", "")
	s.Sessions = sessioncache.Config{
		IdleTimeout:      e.seconds("SESSION_IDLE_TIMEOUT_SECONDS", 8*time.Hour),
		AbsoluteLifetime: e.seconds("SESSION_ABSOLUTE_TIMEOUT_SECONDS", 7*24*time.Hour),
	}
	if err := s.Sessions.Validate(); err != nil {
		e.errs = append(e.errs, fmt.Errorf("SESSION_IDLE_TIMEOUT_SECONDS / SESSION_ABSOLUTE_TIMEOUT_SECONDS: %w", err))
	}
	s.Auth = authflow.Config{
		AppBaseURL:            strings.TrimSuffix(e.str("APP_BASE_URL", ""), "/"),
		Issuer:                strings.TrimSuffix(e.str("OIDC_ISSUER", ""), "/"),
		AuthorizationEndpoint: e.str("OIDC_AUTHORIZATION_ENDPOINT", ""),
		TokenEndpoint:         e.str("OIDC_TOKEN_ENDPOINT", ""),
		UserinfoEndpoint:      e.str("OIDC_USERINFO_ENDPOINT", ""),
		JWKSURI:               e.str("OIDC_JWKS_URI", ""),
		RevocationEndpoint:    e.str("OIDC_REVOCATION_ENDPOINT", ""),
		EndSessionEndpoint:    e.str("OIDC_END_SESSION_ENDPOINT", ""),
		ClientID:              e.str("OIDC_CLIENT_ID", ""),
		ClientSecret:          e.str("OIDC_CLIENT_SECRET", ""),
		RedirectPath:          e.str("OIDC_REDIRECT_PATH", "/auth/callback"),
		Scopes:                strings.Fields(e.str("OIDC_SCOPES", "openid profile email offline_access")),
		IDTokenMaxAge:         e.secondsOrZero("ID_TOKEN_MAX_AGE_SECONDS"),
		RefreshSkew:           e.seconds("TOKEN_REFRESH_SKEW_SECONDS", 60*time.Second),
		Cookie: authflow.CookieConfig{
			Name:     s.Proxy.SessionCookieName,
			Domain:   e.str("SESSION_COOKIE_DOMAIN", ""),
			Insecure: !e.boolean("SESSION_COOKIE_SECURE", true),
			SameSite: e.str("SESSION_COOKIE_SAMESITE", "Lax"),
			MaxAge:   s.Sessions.AbsoluteLifetime,
		},
	}
	for _, k := range []string{"OIDC_ISSUER", "OIDC_AUTHORIZATION_ENDPOINT", "OIDC_TOKEN_ENDPOINT", "OIDC_CLIENT_ID"} {
		if v, _ := lookup(k); v != "" {
			s.AuthEnabled = true
		}
	}
	if s.AuthEnabled {
		if err := s.Auth.Validate(); err != nil {
			e.errs = append(e.errs, err)
		}
	}
	s.Health = healthd.Config{
		Interval:        e.duration("HEALTH_INTERVAL", 60*time.Second),
		Timeout:         e.duration("HEALTH_TIMEOUT", 10*time.Second),
		NotifyDownAfter: e.duration("NOTIFY_DOWN_AFTER", 6*time.Hour),
		AppriseURL:      e.str("APPRISE_URL", ""),
		AppriseTags:     e.str("APPRISE_TAGS", ""),
	}
	if err := s.Health.Validate(); err != nil {
		e.errs = append(e.errs, err)
	}
	s.Admin = authflow.AdminConfig{
		Tokens: e.namedTokens("ADMIN_TOKENS"),
		Emails: e.list("ADMIN_EMAILS"),
		Groups: e.list("ADMIN_GROUPS"),
	}
	if err := s.Admin.Validate(); err != nil {
		e.errs = append(e.errs, err)
	}
	if (len(s.Admin.Emails) > 0 || len(s.Admin.Groups) > 0) && !s.AuthEnabled {
		e.errs = append(e.errs, errors.New("ADMIN_EMAILS / ADMIN_GROUPS: need sign-in (OIDC_*) to be configured"))
	}
	if err := errors.Join(e.errs...); err != nil {
		return nil, err
	}
	return s, nil
}

// hostPort reads a listen address host:port (host may be empty: every
// interface); empty means none.
func (e *envReader) hostPort(key string) string {
	v := strings.TrimSpace(e.str(key, ""))
	if v == "" {
		return ""
	}
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		e.fail(key, "must be host:port, e.g. 127.0.0.1:9090", v)
		return ""
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		e.fail(key, "port must be a number from 0 to 65535", v)
		return ""
	}
	return v
}

// fraction reads a number from 0 to 1.
func (e *envReader) fraction(key string, def float64) float64 {
	v, ok := e.lookup(key)
	if !ok || strings.TrimSpace(v) == "" {
		return def
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || !(f >= 0 && f <= 1) { // written so that NaN fails too
		e.fail(key, "must be a number from 0 to 1", v)
		return def
	}
	return f
}

// list parses a comma list, dropping empty items.
func (e *envReader) list(key string) []string {
	v, _ := e.lookup(key)
	var out []string
	for _, item := range strings.Split(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// namedTokens parses "name=token" items (a bare token is named by its
// position, "token-1", ...). Names go into the change log; tokens never do.
func (e *envReader) namedTokens(key string) map[string]string {
	items := e.list(key)
	if len(items) == 0 {
		return nil
	}
	out := make(map[string]string, len(items))
	for i, item := range items {
		name, tok, ok := strings.Cut(item, "=")
		if !ok {
			name, tok = fmt.Sprintf("token-%d", i+1), item
		}
		if _, dup := out[name]; dup || name == "" {
			e.fail(key, "each token needs a distinct name (name=token)", name)
			continue
		}
		out[name] = tok
	}
	return out
}

// envReader collects one error per bad variable while reading them all.
type envReader struct {
	lookup LookupEnv
	errs   []error
}

func (e *envReader) fail(key, reason string, v string) {
	e.errs = append(e.errs, fmt.Errorf("%s: %s (got %q)", key, reason, v))
}

func (e *envReader) str(key, def string) string {
	if v, ok := e.lookup(key); ok && v != "" {
		return v
	}
	return def
}

func (e *envReader) oneOf(key, def string, allowed ...string) string {
	v := strings.ToLower(strings.TrimSpace(e.str(key, def)))
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	e.fail(key, "must be one of "+strings.Join(allowed, ", "), v)
	return def
}

func (e *envReader) integer(key string, def, lo, hi int) int {
	v, ok := e.lookup(key)
	if !ok || v == "" {
		return def
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < lo || n > hi {
		e.fail(key, fmt.Sprintf("must be an integer from %d to %d", lo, hi), v)
		return def
	}
	return n
}

// offOrInteger reads a limit whose default is decided elsewhere: unset or
// empty is 0 (the default), "0" is -1 (off), else an integer from lo to hi.
func (e *envReader) offOrInteger(key string, lo, hi int) int {
	v, _ := e.lookup(key)
	switch strings.TrimSpace(v) {
	case "":
		return 0
	case "0":
		return -1
	}
	return e.integer(key, 0, lo, hi)
}

// maxSeconds caps every duration read here: a year, beyond any timeout.
const maxSeconds = 366 * 24 * 3600

func (e *envReader) seconds(key string, def time.Duration) time.Duration {
	v, ok := e.lookup(key)
	if !ok || v == "" {
		return def
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || !(f > 0 && f <= maxSeconds) { // written so that NaN fails too
		e.fail(key, fmt.Sprintf("must be a number of seconds above 0 and at most %d", maxSeconds), v)
		return def
	}
	return time.Duration(f * float64(time.Second))
}

// duration reads a Go duration ("90s", "6h") or a number of seconds, above
// 0 and at most a year either way.
func (e *envReader) duration(key string, def time.Duration) time.Duration {
	v, ok := e.lookup(key)
	if !ok || strings.TrimSpace(v) == "" {
		return def
	}
	if d, err := time.ParseDuration(strings.TrimSpace(v)); err == nil {
		if d <= 0 || d > maxSeconds*time.Second {
			e.fail(key, fmt.Sprintf("must be a duration above 0 and at most %dh", maxSeconds/3600), v)
			return def
		}
		return d
	}
	return e.seconds(key, def)
}

func (e *envReader) secondsOrZero(key string) time.Duration {
	if v, _ := e.lookup(key); strings.TrimSpace(v) == "0" {
		return 0
	}
	return e.seconds(key, 0)
}

func (e *envReader) boolean(key string, def bool) bool {
	v, ok := e.lookup(key)
	if !ok || v == "" {
		return def
	}
	b, err := strconv.ParseBool(strings.TrimSpace(v))
	if err != nil {
		e.fail(key, "must be true or false", v)
		return def
	}
	return b
}

// trustedProxies parses a comma list of CIDRs and addresses.
func (e *envReader) trustedProxies(key string) []netip.Prefix {
	v, _ := e.lookup(key)
	out, err := ParseTrustedProxies(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s: %w", key, err))
	}
	return out
}

// rateLimit parses a limit such as "60/m", or "0" for none.
func (e *envReader) rateLimit(key string, def RateLimit) RateLimit {
	v, ok := e.lookup(key)
	if !ok || strings.TrimSpace(v) == "" {
		return def
	}
	rl, err := ParseRateLimit(v)
	if err != nil {
		e.fail(key, err.Error(), v)
		return def
	}
	return rl
}

// origins parses a comma list of browser origins (scheme://host[:port]).
func (e *envReader) origins(key string) []string {
	v, _ := e.lookup(key)
	var out []string
	for _, raw := range strings.Split(v, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		o, err := upstream.NormalizeOrigin(raw)
		if err != nil {
			e.fail(key, err.Error(), raw)
			continue
		}
		out = append(out, o)
	}
	return out
}
