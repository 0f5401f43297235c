package authflow

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/apigetaway/getaway/sessioncache"
	"github.com/apigetaway/getaway/upstream"
	"github.com/bytedance/sonic"
	"github.com/fasthttp/router"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"
)

// SessionStore is what authflow needs from session storage;
// sessioncache.Store satisfies it.
type SessionStore interface {
	GetSession(ctx context.Context, id string) (*sessioncache.Session, error)
	PutSession(ctx context.Context, id string, s *sessioncache.Session) error
	DeleteSession(ctx context.Context, id string) error
	PutState(ctx context.Context, state string, st *sessioncache.LoginState) error
	TakeState(ctx context.Context, state string) (*sessioncache.LoginState, error)
	AcquireRefreshLock(ctx context.Context, id string, ttl time.Duration) (release func(), ok bool, err error)
}

var _ SessionStore = (sessioncache.Store)(nil)

// OriginPolicy reports whether a browser origin (scheme://host[:port]) is
// allowed to use the gateway with credentials. It is consulted per request,
// so a config reload changes it at once.
type OriginPolicy func(origin []byte) bool

// Auth signs users in and authenticates their requests. It is safe for
// concurrent use.
type Auth struct {
	cfg        Config
	idp        *provider
	store      SessionStore
	allows     OriginPolicy
	log        *zap.Logger
	ownOrigin  string
	cookieSite fasthttp.CookieSameSite
	now        func() time.Time

	refreshes singleflight.Group // one refresh per session per instance
	userinfo  userinfoCache
	unsaved   unsavedSessions // renewed sessions the store refused (unsaved.go)

	lastUnavailableLog atomic.Int64 // unix second of the last "session unavailable" log

	// Token refreshes asked of the provider, by outcome (RefreshStats).
	refreshOK, refreshFailed, refreshExpired atomic.Uint64
}

// RefreshStats counts the token refreshes this instance asked of the
// provider since it started.
type RefreshStats struct {
	// OK: new tokens were issued and stored, or kept in process memory
	// until the store takes them.
	OK uint64
	// Failed: the provider could not be asked or answered with an error
	// other than invalid_grant, or the renewed session could be neither
	// stored nor kept.
	Failed uint64
	// Expired: the session could not be renewed (invalid_grant, or no
	// refresh token and an expired access token) and was ended.
	Expired uint64
}

// RefreshStats returns the refreshes so far.
func (a *Auth) RefreshStats() RefreshStats {
	return RefreshStats{OK: a.refreshOK.Load(), Failed: a.refreshFailed.Load(), Expired: a.refreshExpired.Load()}
}

// New discovers the provider and returns a ready Auth. It fails, naming the
// reason, when the configuration is invalid or discovery fails.
func New(ctx context.Context, cfg Config, store SessionStore, allows OriginPolicy, log *zap.Logger) (*Auth, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	own, err := upstream.NormalizeOrigin(originOf(cfg.AppBaseURL))
	if err != nil {
		return nil, fmt.Errorf("APP_BASE_URL: %w", err)
	}
	idp, err := newProvider(ctx, cfg)
	if err != nil {
		return nil, err
	}
	site, _ := cfg.Cookie.sameSite()
	if allows == nil {
		allows = func([]byte) bool { return false }
	}
	if log == nil {
		log = zap.NewNop()
	}
	a := &Auth{
		cfg: cfg, idp: idp, store: store, allows: allows, log: log,
		ownOrigin: own, cookieSite: site, now: time.Now,
	}
	a.userinfo.init(cfg.UserinfoCacheTTL)
	return a, nil
}

// Register adds the sign-in routes: GET /auth/login, GET the callback
// (RedirectPath), POST /auth/logout and GET /whoami/me.
func (a *Auth) Register(r *router.Router) {
	r.GET("/auth/login", a.login)
	r.GET(a.cfg.RedirectPath, a.callback)
	r.POST("/auth/logout", a.logout)
	r.GET("/whoami/me", a.whoami)
}

// CookieName is the session cookie's name.
func (a *Auth) CookieName() string { return a.cfg.Cookie.Name }

// newID returns 256 random bits, base64url-encoded: session ids, states and
// nonces.
func newID() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// b2s views b as a string without copying, for map and store look-ups that
// do not keep the string. b must not change while the string is in use.
func b2s(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// errorBody is the JSON of every error authflow answers.
type errorBody struct {
	Error   string `json:"error"`
	Message string `json:"message,omitempty"`
}

// Constant bodies of the hot path's refusals.
var (
	bodyUnauthorized   = []byte(`{"error":"Unauthorized"}`)
	bodySessionExpired = []byte(`{"error":"Session expired"}`)
	bodyForbidden      = []byte(`{"error":"Forbidden"}`)
	bodyUnavailable    = []byte(`{"error":"unavailable"}`)
)

func writeBody(ctx *fasthttp.RequestCtx, status int, body []byte) {
	ctx.Response.ResetBody()
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.Response.SetBodyRaw(body)
}

// writeError answers status with {"error": code, "message": msg}. msg is a
// fixed sentence, never an internal error text.
func writeError(ctx *fasthttp.RequestCtx, status int, code, msg string) {
	b, _ := sonic.Marshal(errorBody{Error: code, Message: msg})
	writeBody(ctx, status, b)
}

// storeFailure answers a store error: 503 when the store cannot answer
// (never 401: the session may be valid), and reports whether err was one.
func storeFailure(ctx *fasthttp.RequestCtx, err error) bool {
	if errors.Is(err, sessioncache.ErrUnavailable) {
		writeBody(ctx, fasthttp.StatusServiceUnavailable, bodyUnavailable)
		return true
	}
	return false
}
