package sessioncache

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Session is what the gateway knows about a signed-in user. It is stored
// JSON-encoded (short field names keep the Redis values small).
//
// A *Session returned by [Store.GetSession] is shared between requests and
// must be treated as read-only; copy it before changing it, then store the
// copy with [Store.PutSession].
type Session struct {
	// Sub is the subject (the "sub" claim): the user's stable id at the
	// identity provider. It never changes for a session id.
	Sub string `json:"sub"`
	// Email, Name and Picture are the user's claims, as sent upstream in
	// x-user-* headers and shown by /whoami/me.
	Email   string `json:"em,omitempty"`
	Name    string `json:"nm,omitempty"`
	Picture string `json:"pic,omitempty"`
	// Groups are the user's groups (for admin authorization).
	Groups []string `json:"grp,omitempty"`

	// AccessToken, RefreshToken and IDToken are the tokens from the
	// identity provider. They are secrets: never log them.
	AccessToken  string `json:"at,omitempty"`
	RefreshToken string `json:"rt,omitempty"`
	IDToken      string `json:"it,omitempty"`

	// AccessExpiresAt is when AccessToken expires, in unix seconds; 0 means unknown.
	AccessExpiresAt int64 `json:"aexp,omitempty"`
	// CreatedAt is when the user signed in, in unix seconds. PutSession sets
	// it to the current time when it is 0.
	CreatedAt int64 `json:"cat"`
	// AbsoluteExpiresAt is the moment, in unix seconds, past which the
	// session may never live, however active it is. PutSession sets it to
	// CreatedAt + [Config.AbsoluteLifetime] when it is 0 or later than that.
	AbsoluteExpiresAt int64 `json:"abs"`
	// Version is incremented by the caller on each PutSession of the same
	// session (for example after a token refresh). It is informative only:
	// the store does not compare versions.
	Version int64 `json:"v,omitempty"`
}

// clone returns a copy of s that shares nothing mutable with it.
func (s *Session) clone() *Session {
	c := *s
	c.Groups = slices.Clone(s.Groups)
	return &c
}

// LoginState is what the gateway remembers between sending the browser to
// the identity provider and receiving it back on the callback.
type LoginState struct {
	// Verifier is the PKCE code verifier.
	Verifier string `json:"v"`
	// Nonce is the OpenID Connect nonce the ID token must carry.
	Nonce string `json:"n"`
	// Next is the local path to return to after signing in.
	Next string `json:"nx,omitempty"`
	// FrontendOrigin is the allowed origin the login started from.
	FrontendOrigin string `json:"o,omitempty"`
	// CreatedAt is when the login started, in unix seconds.
	CreatedAt int64 `json:"c"`
}

var (
	// ErrNotFound means there is no such session or login state: it expired,
	// was deleted (or, for login state, already taken), or never existed.
	// Treat the user as signed out (401), or the login as invalid (400).
	// It is returned unwrapped; compare with errors.Is.
	ErrNotFound = errors.New("sessioncache: not found")

	// ErrUnavailable means the store cannot answer right now: Redis is down
	// or unreachable, timed out, refused the command, or the store is
	// closed. The session may well be valid: answer 503, never 401. Errors
	// wrapping it also wrap the cause.
	ErrUnavailable = errors.New("sessioncache: store unavailable")
)

// errClosed is returned by every operation after Close.
var errClosed = fmt.Errorf("%w: closed", ErrUnavailable)

// Store keeps sessions and login state. All methods are safe for
// concurrent use. Ids, states and subjects are opaque strings; the store
// never logs them.
type Store interface {
	// GetSession returns the session stored under the cookie's session id,
	// or ErrNotFound. It is the hot path of every authenticated request: it
	// normally answers from process memory with no network round trip and
	// no allocation. It extends the idle timeout (at most once per
	// TouchInterval, in the background). A session past its
	// AbsoluteExpiresAt is deleted and reported as ErrNotFound. The returned
	// *Session is shared and read-only.
	GetSession(ctx context.Context, id string) (*Session, error)

	// PutSession stores a copy of s under id, replacing any previous one,
	// with a time to live of IdleTimeout capped by s.AbsoluteExpiresAt (see
	// [Session] for how zero CreatedAt and AbsoluteExpiresAt are filled). A
	// session already past its absolute expiry is not stored, and any
	// previous session under id is deleted.
	PutSession(ctx context.Context, id string, s *Session) error

	// DeleteSession deletes the session stored under id. Deleting an absent
	// session is not an error.
	DeleteSession(ctx context.Context, id string) error

	// DeleteUserSessions deletes every session of the subject sub (for
	// back-channel logout or "sign out everywhere") and returns how many
	// existed.
	DeleteUserSessions(ctx context.Context, sub string) (int, error)

	// PutState stores login state under the OAuth2 state value for
	// StateTTL.
	PutState(ctx context.Context, state string, st *LoginState) error

	// TakeState returns and deletes, atomically, the login state stored
	// under state. Of concurrent callers exactly one gets it; the others,
	// and every later caller, get ErrNotFound.
	TakeState(ctx context.Context, state string) (*LoginState, error)

	// AcquireRefreshLock takes a lock, named after the session and held for
	// at most ttl, so that one gateway instance at a time refreshes that
	// session's tokens. ok is false when someone else holds it. release
	// gives the lock up only if it is still ours (it may have expired and
	// been taken by someone else); it is safe to call more than once and
	// is a no-op when ok is false.
	AcquireRefreshLock(ctx context.Context, id string, ttl time.Duration) (release func(), ok bool, err error)

	// Watch reports the end of a session, for example to close the
	// WebSockets it authorised. gone is closed once a GetSession of id
	// would return ErrNotFound: the session was deleted (on any gateway
	// instance), expired, or never existed. Replacing the session with
	// PutSession does not close gone. cancel stops watching; call it when
	// done (it is idempotent). While the store cannot reach Redis gone
	// stays open; the session is checked again once Redis answers. Close
	// does not close gone.
	Watch(id string) (gone <-chan struct{}, cancel func())

	// Ping reports whether the store can answer (for /readyz). Its error
	// wraps ErrUnavailable.
	Ping(ctx context.Context) error

	// Close releases the store's connections and stops its goroutines.
	// Every call after Close fails with an error wrapping ErrUnavailable.
	Close()
}

// Compile-time interface guards.
var (
	_ Store = (*Memory)(nil)
	_ Store = (*Redis)(nil)
)

// prepareSession returns the copy of s that PutSession stores, with
// CreatedAt and AbsoluteExpiresAt filled in, and its time to live at now.
// A ttl <= 0 means the session is already past its absolute expiry.
func prepareSession(s *Session, now time.Time, cfg *Config) (*Session, time.Duration) {
	c := s.clone()
	if c.CreatedAt == 0 {
		c.CreatedAt = now.Unix()
	}
	limit := c.CreatedAt + int64(cfg.AbsoluteLifetime/time.Second)
	if c.AbsoluteExpiresAt == 0 || c.AbsoluteExpiresAt > limit {
		c.AbsoluteExpiresAt = limit
	}
	return c, min(cfg.IdleTimeout, time.Unix(c.AbsoluteExpiresAt, 0).Sub(now))
}

// pastAbsolute reports whether s may no longer be served at now (unix seconds).
func (s *Session) pastAbsolute(nowUnix int64) bool {
	return s.AbsoluteExpiresAt != 0 && nowUnix >= s.AbsoluteExpiresAt
}
