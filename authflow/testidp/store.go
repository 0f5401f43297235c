package testidp

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

var (
	_ exampleop.Storage = (*store)(nil)
	_ op.Client         = (*client)(nil)
)

// errRefreshDisabled is what the storage reports for every refresh token
// while SetRefreshInvalid(true); the OP answers it with invalid_grant.
var errRefreshDisabled = errors.New("refresh tokens disabled by testidp")

// errTokenExpired is what userinfo and introspection get for an access token
// past the shortened lifetime.
var errTokenExpired = errors.New("token is expired")

// store is the example storage with the few behaviours tests need changed;
// every other method is the example's.
type store struct {
	*storage.Storage
	client          *client
	ttl             time.Duration // 0: the example's lifetime
	refreshDisabled *atomic.Bool

	// refreshMu works around the example's GetRefreshTokenInfo, which reads
	// the refresh-token map without the storage's lock (a data race under
	// -race when a revocation meets a login or refresh). Writers of that map
	// share the read side among themselves (the storage's own lock orders
	// them); GetRefreshTokenInfo takes the write side to exclude them all.
	refreshMu sync.RWMutex

	expMu     sync.Mutex
	expiresAt map[string]time.Time // access-token id -> shortened expiry
}

func newStore(s *storage.Storage, c *client, ttl time.Duration, refreshDisabled *atomic.Bool) *store {
	return &store{Storage: s, client: c, ttl: ttl, refreshDisabled: refreshDisabled, expiresAt: map[string]time.Time{}}
}

// GetClientByClientID returns our client, whose redirect URIs can change at
// run time; the example's client has a fixed list and no post-logout URIs.
func (s *store) GetClientByClientID(ctx context.Context, clientID string) (op.Client, error) {
	if clientID == s.client.GetID() {
		return s.client, nil
	}
	return s.Storage.GetClientByClientID(ctx, clientID)
}

// CreateAccessToken shortens the lifetime when a TTL is set.
func (s *store) CreateAccessToken(ctx context.Context, req op.TokenRequest) (string, time.Time, error) {
	id, exp, err := s.Storage.CreateAccessToken(ctx, req)
	if err != nil {
		return "", time.Time{}, err
	}
	return id, s.shorten(id, exp), nil
}

// CreateAccessAndRefreshTokens shortens the access-token lifetime when a TTL
// is set.
func (s *store) CreateAccessAndRefreshTokens(ctx context.Context, req op.TokenRequest, currentRefreshToken string) (string, string, time.Time, error) {
	s.refreshMu.RLock()
	defer s.refreshMu.RUnlock()
	id, refresh, exp, err := s.Storage.CreateAccessAndRefreshTokens(ctx, req, currentRefreshToken)
	if err != nil {
		return "", "", time.Time{}, err
	}
	return id, refresh, s.shorten(id, exp), nil
}

// shorten records the shortened expiry of access token id and returns the
// expiration to hand to the OP.
func (s *store) shorten(id string, exp time.Time) time.Time {
	if s.ttl <= 0 {
		return exp
	}
	now := time.Now()
	exp = now.Add(s.ttl)
	s.expMu.Lock()
	if len(s.expiresAt) >= 4096 { // benchmarks issue many tokens
		for k, v := range s.expiresAt {
			if v.Before(now) {
				delete(s.expiresAt, k)
			}
		}
	}
	s.expiresAt[id] = exp
	s.expMu.Unlock()
	// The OP derives expires_in by truncating (exp - now) to whole seconds;
	// half a second of slack keeps it at exactly the TTL despite the time
	// spent between here and there.
	return exp.Add(time.Second / 2)
}

func (s *store) expired(tokenID string) bool {
	if s.ttl <= 0 {
		return false
	}
	s.expMu.Lock()
	exp, ok := s.expiresAt[tokenID]
	s.expMu.Unlock()
	return ok && !time.Now().Before(exp)
}

// SetUserinfoFromToken refuses access tokens past the shortened lifetime.
func (s *store) SetUserinfoFromToken(ctx context.Context, userinfo *oidc.UserInfo, tokenID, subject, origin string) error {
	if s.expired(tokenID) {
		return errTokenExpired
	}
	return s.Storage.SetUserinfoFromToken(ctx, userinfo, tokenID, subject, origin)
}

// SetIntrospectionFromToken refuses access tokens past the shortened
// lifetime.
func (s *store) SetIntrospectionFromToken(ctx context.Context, resp *oidc.IntrospectionResponse, tokenID, subject, clientID string) error {
	if s.expired(tokenID) {
		return errTokenExpired
	}
	return s.Storage.SetIntrospectionFromToken(ctx, resp, tokenID, subject, clientID)
}

// TokenRequestByRefreshToken fails for every token while refresh is
// disabled; the OP maps any error here to invalid_grant.
func (s *store) TokenRequestByRefreshToken(ctx context.Context, refreshToken string) (op.RefreshTokenRequest, error) {
	if s.refreshDisabled.Load() {
		return nil, errRefreshDisabled
	}
	return s.Storage.TokenRequestByRefreshToken(ctx, refreshToken)
}

// GetRefreshTokenInfo is the example's, excluded from the map's writers.
func (s *store) GetRefreshTokenInfo(ctx context.Context, clientID, token string) (string, string, error) {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	return s.Storage.GetRefreshTokenInfo(ctx, clientID, token)
}

// RevokeToken is the example's, ordered against GetRefreshTokenInfo.
func (s *store) RevokeToken(ctx context.Context, tokenIDOrToken, userID, clientID string) *oidc.Error {
	s.refreshMu.RLock()
	defer s.refreshMu.RUnlock()
	return s.Storage.RevokeToken(ctx, tokenIDOrToken, userID, clientID)
}

// TerminateSession is the example's (end-session drops the user's tokens),
// ordered against GetRefreshTokenInfo.
func (s *store) TerminateSession(ctx context.Context, userID, clientID string) error {
	s.refreshMu.RLock()
	defer s.refreshMu.RUnlock()
	return s.Storage.TerminateSession(ctx, userID, clientID)
}

// client is the example's confidential web client (client_secret_basic or
// _post, http redirect URIs allowed) with redirect URIs read from the IdP, so
// they can be added after Start, and a choice of ID-token claims.
type client struct {
	*storage.Client
	idp            *IdP
	minimalIDToken bool
}

// IDTokenUserinfoClaimsAssertion reports whether ID tokens carry the
// userinfo claims of the granted scopes (Options.MinimalIDToken).
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return !c.minimalIDToken }

// RedirectURIs returns the exact redirect_uri values currently allowed.
func (c *client) RedirectURIs() []string {
	c.idp.urisMu.RLock()
	defer c.idp.urisMu.RUnlock()
	return slices.Clone(c.idp.redirectURIs)
}

// PostLogoutRedirectURIs returns the exact post_logout_redirect_uri values
// currently allowed.
func (c *client) PostLogoutRedirectURIs() []string {
	c.idp.urisMu.RLock()
	defer c.idp.urisMu.RUnlock()
	return slices.Clone(c.idp.postLogoutURIs)
}
