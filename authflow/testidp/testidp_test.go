package testidp_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/oauth2"

	"github.com/apigetaway/getaway/authflow/testidp"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// callbackURL stands for the gateway's callback; Login stops before it, so
// nothing needs to listen there.
const callbackURL = "http://gateway.test/auth/callback"

// rp is a relying party built the way the gateway builds one: discovery,
// x/oauth2 for the code flow with PKCE, go-oidc for ID-token verification.
type rp struct {
	idp      *testidp.IdP
	provider *oidc.Provider
	conf     oauth2.Config
	verifier *oidc.IDTokenVerifier
	claims   struct {
		Revocation string `json:"revocation_endpoint"`
		EndSession string `json:"end_session_endpoint"`
	}
}

func newRP(t *testing.T, opts testidp.Options) *rp {
	t.Helper()
	idp, err := testidp.Start(opts)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, idp.Close()) })
	require.NoError(t, idp.AddRedirectURI(callbackURL))

	provider, err := oidc.NewProvider(t.Context(), idp.Issuer())
	require.NoError(t, err)
	// x/oauth2's default AuthStyleAutoDetect retries a failed token request
	// with the other client authentication, which would double the counts.
	endpoint := provider.Endpoint()
	endpoint.AuthStyle = oauth2.AuthStyleInHeader
	r := &rp{
		idp:      idp,
		provider: provider,
		conf: oauth2.Config{
			ClientID:     "getaway",
			ClientSecret: "getaway-secret",
			Endpoint:     endpoint,
			RedirectURL:  callbackURL,
			Scopes:       []string{oidc.ScopeOpenID, "profile", "email", oidc.ScopeOfflineAccess},
		},
		verifier: provider.Verifier(&oidc.Config{ClientID: "getaway"}),
	}
	require.NoError(t, provider.Claims(&r.claims))
	return r
}

// login runs the authorization code flow up to the callback and returns the
// code, the PKCE verifier and the nonce.
func (r *rp) login(t *testing.T) (code, verifier, nonce string) {
	t.Helper()
	verifier = oauth2.GenerateVerifier()
	state, nonce := rand.Text(), rand.Text()
	authURL := r.conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce))

	cb, err := r.idp.Login(t.Context(), authURL, r.idp.Username(), testidp.Password)
	require.NoError(t, err)
	u, err := url.Parse(cb)
	require.NoError(t, err)
	require.Equal(t, callbackURL, u.Scheme+"://"+u.Host+u.Path)
	require.Equal(t, state, u.Query().Get("state"))
	code = u.Query().Get("code")
	require.NotEmpty(t, code, "callback %s", cb)
	return code, verifier, nonce
}

// session logs in and exchanges the code.
func (r *rp) session(t *testing.T) *oauth2.Token {
	t.Helper()
	code, verifier, _ := r.login(t)
	tok, err := r.conf.Exchange(t.Context(), code, oauth2.VerifierOption(verifier))
	require.NoError(t, err)
	return tok
}

// refresh forces a refresh of tok, as if its access token had expired.
func (r *rp) refresh(ctx context.Context, tok *oauth2.Token) (*oauth2.Token, error) {
	stale := *tok
	stale.Expiry = time.Now().Add(-time.Minute)
	return r.conf.TokenSource(ctx, &stale).Token()
}

// revoke revokes a refresh token at the revocation endpoint (RFC 7009) with
// client_secret_basic.
func (r *rp) revoke(ctx context.Context, refreshToken string) error {
	form := url.Values{"token": {refreshToken}, "token_type_hint": {"refresh_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.claims.Revocation, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(r.conf.ClientID), url.QueryEscape(r.conf.ClientSecret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	if err := resp.Body.Close(); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("revocation: %s", resp.Status)
	}
	return nil
}

func requireInvalidGrant(t *testing.T, err error) {
	t.Helper()
	var re *oauth2.RetrieveError
	require.ErrorAs(t, err, &re)
	require.Equal(t, "invalid_grant", re.ErrorCode, "body %s", re.Body)
}

func TestCodeFlowRefreshRevoke(t *testing.T) {
	r := newRP(t, testidp.Options{AccessTokenTTL: 2 * time.Second})
	ctx := t.Context()

	code, verifier, nonce := r.login(t)
	tok, err := r.conf.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	require.NoError(t, err)
	assert.Equal(t, 1, r.idp.TokenRequests("authorization_code"))
	assert.EqualValues(t, 2, tok.ExpiresIn, "expires_in follows AccessTokenTTL")
	require.NotEmpty(t, tok.RefreshToken)

	rawID, _ := tok.Extra("id_token").(string)
	idt, err := r.verifier.Verify(ctx, rawID)
	require.NoError(t, err)
	assert.Equal(t, nonce, idt.Nonce)
	var claims struct {
		Email string `json:"email"`
		Name  string `json:"name"`
	}
	require.NoError(t, idt.Claims(&claims))
	assert.Equal(t, r.idp.Email(), claims.Email)
	assert.Equal(t, "test-user@zitadel.ch", claims.Email)
	assert.Equal(t, "Test User", claims.Name)

	info, err := r.provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	require.NoError(t, err)
	assert.Equal(t, idt.Subject, info.Subject)
	assert.Equal(t, r.idp.Email(), info.Email)

	// Refresh with rotation: a new access token and a new refresh token.
	fresh, err := r.refresh(ctx, tok)
	require.NoError(t, err)
	assert.Equal(t, 1, r.idp.TokenRequests("refresh_token"))
	assert.NotEqual(t, tok.AccessToken, fresh.AccessToken)
	assert.NotEqual(t, tok.RefreshToken, fresh.RefreshToken)
	_, err = r.verifier.Verify(ctx, fresh.Extra("id_token").(string))
	require.NoError(t, err)

	// Revoke the current refresh token with client authentication.
	require.NoError(t, r.revoke(ctx, fresh.RefreshToken))
	assert.Equal(t, 1, r.idp.Revocations())

	_, err = r.refresh(ctx, fresh)
	requireInvalidGrant(t, err)
	assert.Equal(t, 2, r.idp.TokenRequests("refresh_token"))
}

func TestMinimalIDToken(t *testing.T) {
	r := newRP(t, testidp.Options{MinimalIDToken: true})
	tok := r.session(t)
	idt, err := r.verifier.Verify(t.Context(), tok.Extra("id_token").(string))
	require.NoError(t, err)
	var claims struct {
		Email string `json:"email"`
	}
	require.NoError(t, idt.Claims(&claims))
	assert.Empty(t, claims.Email)
	assert.InDelta(t, 300, tok.ExpiresIn, 1, "the example's 5 minutes, truncated by the OP")
}

func TestTokenEndpointDown(t *testing.T) {
	r := newRP(t, testidp.Options{})
	code, verifier, _ := r.login(t)

	r.idp.SetTokenEndpointDown(true)
	_, err := r.conf.Exchange(t.Context(), code, oauth2.VerifierOption(verifier))
	var re *oauth2.RetrieveError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, http.StatusServiceUnavailable, re.Response.StatusCode)
	assert.Equal(t, 1, r.idp.TokenRequests("authorization_code"))

	// The OP never saw the code, so it still works once the endpoint is back.
	r.idp.SetTokenEndpointDown(false)
	_, err = r.conf.Exchange(t.Context(), code, oauth2.VerifierOption(verifier))
	require.NoError(t, err)
	assert.Equal(t, 2, r.idp.TokenRequests("authorization_code"))
}

func TestSetRefreshInvalid(t *testing.T) {
	r := newRP(t, testidp.Options{})
	tok := r.session(t)

	r.idp.SetRefreshInvalid(true)
	_, err := r.refresh(t.Context(), tok)
	requireInvalidGrant(t, err)

	r.idp.SetRefreshInvalid(false)
	_, err = r.refresh(t.Context(), tok)
	require.NoError(t, err)
}

func TestEndSession(t *testing.T) {
	const afterLogout = "http://app.test/signed-out"
	r := newRP(t, testidp.Options{PostLogoutRedirectURIs: []string{afterLogout}})
	tok := r.session(t)

	q := url.Values{
		"id_token_hint":            {tok.Extra("id_token").(string)},
		"post_logout_redirect_uri": {afterLogout},
		"state":                    {"s1"},
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, r.claims.EndSession+"?"+q.Encode(), nil)
	require.NoError(t, err)
	resp, err := noFollow.Do(req)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusFound, resp.StatusCode)
	assert.Equal(t, afterLogout+"?state=s1", resp.Header.Get("Location"))

	// End-session drops the user's tokens at the IdP.
	_, err = r.refresh(t.Context(), tok)
	requireInvalidGrant(t, err)
}

func TestLoginRefused(t *testing.T) {
	r := newRP(t, testidp.Options{})
	tests := []struct {
		name     string
		redirect string
		user     string
		password string
		wantErr  error
	}{
		{name: "wrong password", redirect: callbackURL, user: r.idp.Username(), password: "nope", wantErr: testidp.ErrLoginFailed},
		{name: "unknown user", redirect: callbackURL, user: "nobody", password: testidp.Password, wantErr: testidp.ErrLoginFailed},
		{name: "unregistered redirect_uri", redirect: "http://evil.test/cb", user: r.idp.Username(), password: testidp.Password},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conf := r.conf
			conf.RedirectURL = tt.redirect
			authURL := conf.AuthCodeURL("state", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))
			cb, err := r.idp.Login(t.Context(), authURL, tt.user, tt.password)
			require.Error(t, err, "callback %s", cb)
			if tt.wantErr != nil {
				assert.ErrorIs(t, err, tt.wantErr)
			}
		})
	}
}

func TestOtherUser(t *testing.T) {
	r := newRP(t, testidp.Options{})
	authURL := r.conf.AuthCodeURL("state", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))
	cb, err := r.idp.Login(t.Context(), authURL, testidp.OtherUsername, testidp.Password)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(cb, callbackURL+"?"), cb)
}

func TestStopRestart(t *testing.T) {
	r := newRP(t, testidp.Options{})
	tok := r.session(t)

	require.NoError(t, r.idp.Stop())
	require.NoError(t, r.idp.Stop(), "second Stop is a no-op")
	_, err := r.refresh(t.Context(), tok)
	var re *oauth2.RetrieveError
	require.Error(t, err)
	require.False(t, errors.As(err, &re), "no HTTP answer while stopped: %v", err)

	require.NoError(t, r.idp.Restart())
	_, err = r.refresh(t.Context(), tok)
	require.NoError(t, err, "tokens issued before Stop stay valid")

	require.NoError(t, r.idp.Close())
	require.NoError(t, r.idp.Close(), "second Close is a no-op")
	require.ErrorIs(t, r.idp.Restart(), testidp.ErrClosed)
}

func TestStartRejects(t *testing.T) {
	tests := []struct {
		name string
		opts testidp.Options
	}{
		{name: "relative redirect", opts: testidp.Options{RedirectURIs: []string{"/auth/callback"}}},
		{name: "bad post-logout scheme", opts: testidp.Options{PostLogoutRedirectURIs: []string{"ftp://x/y"}}},
		{name: "negative ttl", opts: testidp.Options{AccessTokenTTL: -time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idp, err := testidp.Start(tt.opts)
			if idp != nil {
				_ = idp.Close()
			}
			require.Error(t, err)
		})
	}
}

// TestConcurrentSessions runs whole sessions side by side, as the gateway's
// tests and benchmarks do, so -race sees the IdP under concurrent use.
func TestConcurrentSessions(t *testing.T) {
	r := newRP(t, testidp.Options{})
	const n = 8
	errs := make(chan error, n)
	for range n {
		go func() {
			errs <- func() error {
				verifier := oauth2.GenerateVerifier()
				authURL := r.conf.AuthCodeURL("state", oauth2.S256ChallengeOption(verifier))
				cb, err := r.idp.Login(t.Context(), authURL, r.idp.Username(), testidp.Password)
				if err != nil {
					return err
				}
				u, err := url.Parse(cb)
				if err != nil {
					return err
				}
				tok, err := r.conf.Exchange(t.Context(), u.Query().Get("code"), oauth2.VerifierOption(verifier))
				if err != nil {
					return err
				}
				if tok, err = r.refresh(t.Context(), tok); err != nil {
					return err
				}
				return r.revoke(t.Context(), tok.RefreshToken)
			}()
		}()
	}
	for range n {
		require.NoError(t, <-errs)
	}
	assert.Equal(t, n, r.idp.TokenRequests("refresh_token"))
	assert.Equal(t, n, r.idp.Revocations())
}

// TestRevocationDuringRefresh covers the example storage reading its
// refresh-token map without a lock on revocation: -race reports it unless the
// wrapper orders revocations against refreshes.
func TestRevocationDuringRefresh(t *testing.T) {
	r := newRP(t, testidp.Options{})
	const n, rounds = 4, 20
	var wg sync.WaitGroup
	for range n {
		tok := r.session(t)
		wg.Go(func() {
			for range rounds {
				var err error
				if tok, err = r.refresh(t.Context(), tok); err != nil {
					t.Error(err)
					return
				}
			}
		})
		wg.Go(func() {
			for range rounds {
				// An unknown token is a no-op for the OP, but it is looked up
				// in the refresh-token map first.
				if err := r.revoke(t.Context(), rand.Text()); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	assert.Equal(t, n*rounds, r.idp.TokenRequests("refresh_token"))
	assert.Equal(t, n*rounds, r.idp.Revocations())
}

func TestClientAuthStyles(t *testing.T) {
	r := newRP(t, testidp.Options{})
	tests := []struct {
		name  string
		style oauth2.AuthStyle
	}{
		{name: "client_secret_basic", style: oauth2.AuthStyleInHeader},
		{name: "client_secret_post", style: oauth2.AuthStyleInParams},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, verifier, _ := r.login(t)
			conf := r.conf
			conf.Endpoint.AuthStyle = tt.style
			_, err := conf.Exchange(t.Context(), code, oauth2.VerifierOption(verifier))
			require.NoError(t, err)

			conf.ClientSecret = "wrong"
			code, verifier, _ = r.login(t)
			_, err = conf.Exchange(t.Context(), code, oauth2.VerifierOption(verifier))
			require.Error(t, err)
		})
	}
}
