package authflow_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apigetaway/getaway/authflow"
	"github.com/apigetaway/getaway/sessioncache"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLoginThenProxyWithIdentity(t *testing.T) {
	s := startStack(t, stackOptions{})
	gw := s.gws[0]

	r := s.signIn(t, gw, "?next=/dashboard%3Ftab%3D1", "")
	assert.Equal(t, gw.URL+"/dashboard?tab=1", r.header.Get("Location"))
	c := sessionCookie(r.header)
	require.NotNil(t, c)
	assert.True(t, c.HttpOnly)
	assert.Equal(t, http.SameSiteLaxMode, c.SameSite)
	assert.Equal(t, "/", c.Path)
	assert.Empty(t, c.Domain, "the cookie must be host-only")
	assert.GreaterOrEqual(t, len(c.Value), 43, "session ids carry at least 256 bits")

	r = send(t, http.MethodGet, gw.URL+"/api/orders?x=1", c.Value, http.Header{
		"X-User-Email": {"mallory@evil.test"},
		"Cookie":       {"theme=dark"},
	})
	require.Equal(t, http.StatusOK, r.status, r.body)
	assert.Equal(t, "backend ok", r.body)
	assert.Equal(t, s.idp.Email(), s.backend.header("X-User-Email"))
	assert.NotEmpty(t, s.backend.header("X-User-Sub"))
	assert.NotEmpty(t, s.backend.header("X-User-Name"))
	assert.NotContains(t, s.backend.header("Cookie"), "sid=", "the session cookie reached the backend")
	assert.Contains(t, s.backend.header("Cookie"), "theme=dark")
	assert.Empty(t, s.backend.header("Authorization"), "no token relay unless the mapping asks")

	// Token relay for a mapping with forwardAccessToken.
	r = send(t, http.MethodGet, gw.URL+"/api/relay", c.Value, http.Header{"Host": {"relay.test"}})
	require.Equal(t, http.StatusOK, r.status, r.body)
	assert.True(t, strings.HasPrefix(s.backend.header("Authorization"), "Bearer "))

	r = send(t, http.MethodGet, gw.URL+"/whoami/me", c.Value, nil)
	require.Equal(t, http.StatusOK, r.status, r.body)
	assert.Contains(t, r.body, `"email":"`+s.idp.Email()+`"`)
	assert.Contains(t, r.body, `"sub":"`)

	// Without or with a forged cookie: 401, and the backend sees nothing.
	hits := s.backend.hits.Load()
	for _, cookie := range []string{"", "forged", strings.Repeat("a", 43), c.Value + "x"} {
		r = send(t, http.MethodGet, gw.URL+"/api/orders", cookie, nil)
		assert.Equal(t, http.StatusUnauthorized, r.status)
		assert.JSONEq(t, `{"error":"Unauthorized"}`, r.body)
	}
	r = send(t, http.MethodGet, gw.URL+"/whoami/me", "", nil)
	assert.Equal(t, http.StatusUnauthorized, r.status)
	assert.Equal(t, hits, s.backend.hits.Load())
}

func TestLoginRedirectTargets(t *testing.T) {
	s := startStack(t, stackOptions{})
	gw := s.gws[0]
	tests := []struct{ name, query, want string }{
		{"default", "", gw.URL + "/"},
		{"local next", "?next=/a/b", gw.URL + "/a/b"},
		{"allowed frontend keeps its port", "?next=/x&frontend_host=" + url.QueryEscape(appOrigin), appOrigin + "/x"},
		{"scheme-relative", "?next=//evil.com", gw.URL + "/"},
		{"backslash", "?next=" + url.QueryEscape(`/\evil.com`), gw.URL + "/"},
		{"scheme", "?next=" + url.QueryEscape("https:evil.com"), gw.URL + "/"},
		{"absolute", "?next=" + url.QueryEscape("https://evil.com/x"), gw.URL + "/"},
		{"encoded slashes", "?next=%252F%252Fevil.com", gw.URL + "/"},
		{"encoded backslash", "?next=" + url.QueryEscape("/%5Cevil.com"), gw.URL + "/"},
		{"header injection", "?next=" + url.QueryEscape("/\r\nSet-Cookie: x=1"), gw.URL + "/"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := s.signIn(t, gw, tc.query, "")
			assert.Equal(t, tc.want, r.header.Get("Location"))
		})
	}
	t.Run("foreign frontend_host refused", func(t *testing.T) {
		for _, fh := range []string{"https://evil.com", "http://app.test:5174", "http://app.test"} {
			r := send(t, http.MethodGet, gw.URL+"/auth/login?frontend_host="+url.QueryEscape(fh), "", nil)
			assert.Equal(t, http.StatusBadRequest, r.status, fh)
		}
	})
	t.Run("login redirect is PKCE S256 with state and nonce", func(t *testing.T) {
		u, err := url.Parse(startLogin(t, gw, ""))
		require.NoError(t, err)
		q := u.Query()
		assert.True(t, strings.HasPrefix(u.String(), s.idp.Issuer()))
		assert.Equal(t, "code", q.Get("response_type"))
		assert.Equal(t, "S256", q.Get("code_challenge_method"))
		assert.NotEmpty(t, q.Get("code_challenge"))
		assert.NotEmpty(t, q.Get("state"))
		assert.NotEmpty(t, q.Get("nonce"))
		assert.Equal(t, gw.URL+"/auth/callback", q.Get("redirect_uri"))
		assert.Contains(t, q.Get("scope"), "openid")
	})
}

func TestCallbackFailures(t *testing.T) {
	s := startStack(t, stackOptions{})
	gw := s.gws[0]
	login := func(t *testing.T) (authorize, callback string) {
		authorize = startLogin(t, gw, "")
		cb, err := s.idp.Login(context.Background(), authorize, s.idp.Username(), "verysecure")
		require.NoError(t, err)
		return authorize, cb
	}

	t.Run("missing state", func(t *testing.T) {
		r := send(t, http.MethodGet, gw.URL+"/auth/callback?code=abc", "", nil)
		assert.Equal(t, http.StatusBadRequest, r.status)
	})
	t.Run("unknown state", func(t *testing.T) {
		r := send(t, http.MethodGet, gw.URL+"/auth/callback?code=abc&state=nope", "", nil)
		assert.Equal(t, http.StatusBadRequest, r.status)
		assert.Contains(t, r.body, `"error":"invalid_state"`)
	})
	t.Run("state replay", func(t *testing.T) {
		_, cb := login(t)
		first := send(t, http.MethodGet, cb, "", nil)
		require.Equal(t, http.StatusFound, first.status, first.body)
		again := send(t, http.MethodGet, cb, "", nil)
		assert.Equal(t, http.StatusBadRequest, again.status)
		assert.Nil(t, sessionCookie(again.header))
	})
	t.Run("provider error", func(t *testing.T) {
		authorize := startLogin(t, gw, "")
		r := send(t, http.MethodGet, gw.URL+"/auth/callback?error=access_denied&state="+stateOf(t, authorize), "", nil)
		assert.Equal(t, http.StatusBadRequest, r.status)
		assert.Contains(t, r.body, "login_failed")
	})
	t.Run("bad code", func(t *testing.T) {
		authorize := startLogin(t, gw, "")
		r := send(t, http.MethodGet, gw.URL+"/auth/callback?code=forged&state="+stateOf(t, authorize), "", nil)
		assert.Equal(t, http.StatusBadGateway, r.status)
		assert.NotContains(t, r.body, "127.0.0.1")
	})
	t.Run("missing code", func(t *testing.T) {
		authorize := startLogin(t, gw, "")
		r := send(t, http.MethodGet, gw.URL+"/auth/callback?state="+stateOf(t, authorize), "", nil)
		assert.Equal(t, http.StatusBadRequest, r.status)
	})
	t.Run("nonce mismatch", func(t *testing.T) {
		authorize, cb := login(t)
		// Swap the stored nonce, as if the ID token came from another login.
		state := stateOf(t, authorize)
		st, err := s.store.TakeState(context.Background(), state)
		require.NoError(t, err)
		st.Nonce = "another-login"
		require.NoError(t, s.store.PutState(context.Background(), state, st))
		r := send(t, http.MethodGet, cb, "", nil)
		assert.Equal(t, http.StatusBadGateway, r.status)
		assert.Nil(t, sessionCookie(r.header))
	})
	t.Run("verifier mismatch", func(t *testing.T) {
		authorize, cb := login(t)
		state := stateOf(t, authorize)
		st, err := s.store.TakeState(context.Background(), state)
		require.NoError(t, err)
		st.Verifier = strings.Repeat("x", 43)
		require.NoError(t, s.store.PutState(context.Background(), state, st))
		r := send(t, http.MethodGet, cb, "", nil)
		assert.Equal(t, http.StatusBadGateway, r.status, "the IdP must refuse a code redeemed with another PKCE verifier")
	})
}

func TestNewSessionAtEveryLogin(t *testing.T) {
	s := startStack(t, stackOptions{})
	gw := s.gws[0]
	old := s.login(t)
	// An attacker-planted or previous cookie is replaced, and its session
	// deleted.
	r := s.signIn(t, gw, "", old)
	fresh := sessionCookie(r.header)
	require.NotNil(t, fresh)
	assert.NotEqual(t, old, fresh.Value)
	assert.Equal(t, http.StatusUnauthorized, send(t, http.MethodGet, gw.URL+"/api/x", old, nil).status)
	assert.Equal(t, http.StatusOK, send(t, http.MethodGet, gw.URL+"/api/x", fresh.Value, nil).status)
}

func TestLogout(t *testing.T) {
	s := startStack(t, stackOptions{})
	gw := s.gws[0]
	sid := s.login(t)

	// A foreign site cannot log the user out (CSRF), nor reach the API.
	foreign := http.Header{"Origin": {"https://evil.test"}, "Sec-Fetch-Site": {"cross-site"}}
	r := send(t, http.MethodPost, gw.URL+"/auth/logout", sid, foreign)
	assert.Equal(t, http.StatusForbidden, r.status)
	assert.Equal(t, http.StatusForbidden, send(t, http.MethodPost, gw.URL+"/api/x", sid, foreign).status)
	// The SPA on an allowed origin can.
	spa := http.Header{"Origin": {appOrigin}, "Sec-Fetch-Site": {"cross-site"}}
	assert.Equal(t, http.StatusOK, send(t, http.MethodPost, gw.URL+"/api/x", sid, spa).status)

	revocations := s.idp.Revocations()
	r = send(t, http.MethodPost, gw.URL+"/auth/logout", sid, spa)
	assert.Equal(t, http.StatusNoContent, r.status)
	c := sessionCookie(r.header)
	require.NotNil(t, c, "logout must clear the cookie")
	assert.Empty(t, c.Value)
	assert.Less(t, c.MaxAge, 0)
	assert.Equal(t, revocations+1, s.idp.Revocations(), "the refresh token was not revoked")
	assert.Equal(t, http.StatusUnauthorized, send(t, http.MethodGet, gw.URL+"/api/x", sid, nil).status)
	_, err := s.store.GetSession(context.Background(), sid)
	assert.ErrorIs(t, err, sessioncache.ErrNotFound)

	t.Run("redirect=1 gives the end-session url", func(t *testing.T) {
		sid := s.login(t)
		r := send(t, http.MethodPost, gw.URL+"/auth/logout?redirect=1", sid, nil)
		require.Equal(t, http.StatusOK, r.status, r.body)
		assert.Contains(t, r.body, `"logoutUrl":"`+s.idp.Issuer())
		assert.Contains(t, r.body, "id_token_hint=")
	})
}

func TestRefresh(t *testing.T) {
	// Tokens live 65 s and are refreshed within 60 s of expiry: a token
	// is fresh for its first 5 s.
	s := startStack(t, stackOptions{accessTTL: 65 * time.Second, refreshSkew: 60 * time.Second})
	gw := s.gws[0]
	sid := s.login(t)
	waitStale(t, s, sid, 60*time.Second)

	before := s.idp.TokenRequests("refresh_token")
	var wg sync.WaitGroup
	statuses := make([]int, 50)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i] = send(t, http.MethodGet, gw.URL+"/api/x", sid, nil).status
		}()
	}
	wg.Wait()
	for i, st := range statuses {
		assert.Equal(t, http.StatusOK, st, "request %d", i)
	}
	assert.Equal(t, before+1, s.idp.TokenRequests("refresh_token"), "50 concurrent requests must share one refresh")
	assert.Equal(t, authflow.RefreshStats{OK: 1}, gw.Auth.RefreshStats())

	t.Run("provider down while the token is valid", func(t *testing.T) {
		waitStale(t, s, sid, 60*time.Second)
		s.idp.SetTokenEndpointDown(true)
		defer s.idp.SetTokenEndpointDown(false)
		assert.Equal(t, http.StatusOK, send(t, http.MethodGet, gw.URL+"/api/x", sid, nil).status)
	})
	t.Run("invalid_grant ends the session", func(t *testing.T) {
		s.idp.SetRefreshInvalid(true)
		defer s.idp.SetRefreshInvalid(false)
		r := send(t, http.MethodGet, gw.URL+"/api/x", sid, nil)
		assert.Equal(t, http.StatusUnauthorized, r.status)
		assert.JSONEq(t, `{"error":"Session expired"}`, r.body)
		assert.Equal(t, http.StatusUnauthorized, send(t, http.MethodGet, gw.URL+"/api/x", sid, nil).status)
		assert.Equal(t, uint64(1), gw.Auth.RefreshStats().Expired)
	})
	// The refresh tried while the provider was down.
	assert.Equal(t, uint64(1), gw.Auth.RefreshStats().Failed)
}

func TestRefreshOnceAcrossInstances(t *testing.T) {
	s := startStack(t, stackOptions{accessTTL: 65 * time.Second, refreshSkew: 60 * time.Second, instances: 2})
	sid := s.login(t)
	waitStale(t, s, sid, 60*time.Second)
	before := s.idp.TokenRequests("refresh_token")
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		gw := s.gws[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			assert.Equal(t, http.StatusOK, send(t, http.MethodGet, gw.URL+"/api/x", sid, nil).status)
		}()
	}
	wg.Wait()
	assert.Equal(t, before+1, s.idp.TokenRequests("refresh_token"), "two instances must share one refresh")
}

// waitStale waits, bounded, until session sid's access token is within
// skew of expiry, so the next request must refresh it.
func waitStale(t *testing.T, s *stack, sid string, skew time.Duration) {
	t.Helper()
	sess, err := s.store.GetSession(context.Background(), sid)
	require.NoError(t, err)
	require.NotZero(t, sess.AccessExpiresAt)
	staleAt := time.Unix(sess.AccessExpiresAt, 0).Add(-skew)
	require.Eventually(t, func() bool { return !time.Now().Before(staleAt) }, 15*time.Second, 50*time.Millisecond)
}
