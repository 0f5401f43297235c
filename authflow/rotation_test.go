package authflow

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apigetaway/getaway/authflow/testidp"
	"github.com/apigetaway/getaway/sessioncache"
	"github.com/apigetaway/getaway/sessioncache/redistest"
	"github.com/apigetaway/getaway/upstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
	"go.uber.org/goleak"
	"go.uber.org/zap"
)

// A refresh spends the session's refresh token and the test IdP rotates it;
// when the store then refuses the renewed session, the gateway keeps it in
// memory (unsaved.go) instead of going back to the dead token.

// flakyStore is a Memory store whose PutSession fails while failPuts is
// set, as Redis refusing writes would.
type flakyStore struct {
	*sessioncache.Memory
	failPuts atomic.Bool
}

func newFlakyStore(t *testing.T) *flakyStore {
	t.Helper()
	mem, err := sessioncache.NewMemory(sessioncache.Config{})
	require.NoError(t, err)
	t.Cleanup(mem.Close)
	return &flakyStore{Memory: mem}
}

func (s *flakyStore) PutSession(ctx context.Context, id string, sess *sessioncache.Session) error {
	if s.failPuts.Load() {
		return fmt.Errorf("%w: put session: refused by the test", sessioncache.ErrUnavailable)
	}
	return s.Memory.PutSession(ctx, id, sess)
}

// newRotationAuth returns an Auth at base on idp and store, built by New as
// main builds it. Its clock runs shift ahead of the real one.
func newRotationAuth(t *testing.T, idp *testidp.IdP, store SessionStore, base string, skew time.Duration, shift *atomic.Int64) *Auth {
	t.Helper()
	require.NoError(t, idp.AddRedirectURI(base+"/auth/callback"))
	a, err := New(context.Background(), Config{
		AppBaseURL:   base,
		Issuer:       idp.Issuer(),
		ClientID:     "getaway",
		ClientSecret: "getaway-secret",
		RefreshSkew:  skew,
		HTTPTimeout:  2 * time.Second,
		Cookie:       CookieConfig{Insecure: true},
	}, store, nil, zap.NewNop())
	require.NoError(t, err)
	t.Cleanup(a.Close)
	if shift != nil {
		a.now = func() time.Time { return time.Now().Add(time.Duration(shift.Load())) }
	}
	return a
}

// requestCtx is a request as the server hands it to a handler.
func requestCtx(method, uri string, cookie, sid string) *fasthttp.RequestCtx {
	var req fasthttp.Request
	req.Header.SetMethod(method)
	req.SetRequestURI(uri)
	if sid != "" {
		req.Header.SetCookie(cookie, sid)
	}
	ctx := new(fasthttp.RequestCtx)
	ctx.Init(&req, nil, nil)
	return ctx
}

// signInAt goes through a's login and callback with the IdP's login form
// and returns the session id.
func signInAt(t *testing.T, a *Auth, idp *testidp.IdP) string {
	t.Helper()
	login := requestCtx(fasthttp.MethodGet, a.cfg.AppBaseURL+"/auth/login", "", "")
	a.login(login)
	require.Equal(t, fasthttp.StatusFound, login.Response.StatusCode(), string(login.Response.Body()))
	cb, err := idp.Login(context.Background(), string(login.Response.Header.Peek("Location")), idp.Username(), testidp.Password)
	require.NoError(t, err)
	callback := requestCtx(fasthttp.MethodGet, cb, "", "")
	a.callback(callback)
	require.Equal(t, fasthttp.StatusFound, callback.Response.StatusCode(), string(callback.Response.Body()))
	var c fasthttp.Cookie
	c.SetKey(a.cfg.Cookie.Name)
	require.True(t, callback.Response.Header.Cookie(&c), "callback set no session cookie")
	return string(c.Value())
}

// apiGet authenticates GET /api/x with session sid as RequireAuth does:
// 200 and the identity, or the refusal's status and body.
func apiGet(a *Auth, sid string) (int, upstream.Identity, string) {
	ctx := requestCtx(fasthttp.MethodGet, a.cfg.AppBaseURL+"/api/x", a.cfg.Cookie.Name, sid)
	ident, ok := a.Authenticate(ctx)
	if ok {
		return fasthttp.StatusOK, ident, ""
	}
	return ctx.Response.StatusCode(), ident, string(ctx.Response.Body())
}

// waitFor polls cond every 20 ms until it holds or within passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// writerRunning reports whether a's background writer is running.
func writerRunning(a *Auth) bool {
	a.unsaved.mu.Lock()
	defer a.unsaved.mu.Unlock()
	return a.unsaved.running
}

func TestRefreshKeepsSessionTheStoreRefused(t *testing.T) {
	idp, err := testidp.Start(testidp.Options{}) // tokens live 5 minutes
	require.NoError(t, err)
	t.Cleanup(func() { _ = idp.Close() })
	store := newFlakyStore(t)
	var shift atomic.Int64
	a := newRotationAuth(t, idp, store, "http://gw.test", 0, &shift)
	ctx := context.Background()
	// stale moves a's clock past the refresh point of the access token
	// of the session; fresh puts it back.
	stale := func() { shift.Store(int64(10 * time.Minute)) }
	fresh := func() { shift.Store(0) }

	sid := signInAt(t, a, idp)
	signedIn, err := store.GetSession(ctx, sid)
	require.NoError(t, err)

	// The access token expires while the store refuses writes: the IdP
	// renews (and rotates) the tokens, the request is served with them.
	stale()
	store.failPuts.Store(true)
	status, ident, body := apiGet(a, sid)
	require.Equal(t, fasthttp.StatusOK, status, body)
	require.Equal(t, 1, idp.TokenRequests("refresh_token"))
	assert.Equal(t, signedIn.Sub, ident.Sub)
	assert.Equal(t, idp.Email(), ident.Email)
	renewed := ident.AccessToken
	assert.NotEqual(t, signedIn.AccessToken, renewed, "served with the renewed access token")
	inStore, err := store.GetSession(ctx, sid)
	require.NoError(t, err)
	require.Equal(t, signedIn.RefreshToken, inStore.RefreshToken, "the store took the renewed session: nothing was tested")
	assert.Equal(t, uint64(1), a.RefreshStats().OK)

	// Later requests get the renewed session, not the stored one, and
	// refresh nothing.
	fresh()
	status, ident, body = apiGet(a, sid)
	require.Equal(t, fasthttp.StatusOK, status, body)
	assert.Equal(t, renewed, ident.AccessToken)
	assert.Equal(t, 1, idp.TokenRequests("refresh_token"))

	// The renewed access token expires too, the store still refusing:
	// the refresh spends the rotated refresh token (the stored one is
	// dead: it would end the session with invalid_grant).
	stale()
	status, ident, body = apiGet(a, sid)
	require.Equal(t, fasthttp.StatusOK, status, "second refresh while unsaved: %s", body)
	require.Equal(t, 2, idp.TokenRequests("refresh_token"))
	assert.NotEqual(t, renewed, ident.AccessToken)
	renewed = ident.AccessToken
	assert.Equal(t, RefreshStats{OK: 2}, a.RefreshStats())

	// The store takes writes again: the writer stores the latest renewed
	// session, then stops.
	fresh()
	store.failPuts.Store(false)
	waitFor(t, 5*time.Second, "the renewed session in the store", func() bool {
		s, err := store.GetSession(ctx, sid)
		return err == nil && s.AccessToken == renewed
	})
	inStore, err = store.GetSession(ctx, sid)
	require.NoError(t, err)
	assert.Equal(t, signedIn.Version+2, inStore.Version)
	assert.NotEqual(t, signedIn.RefreshToken, inStore.RefreshToken)
	waitFor(t, 5*time.Second, "the writer to stop", func() bool { return !writerRunning(a) })
	assert.False(t, a.unsaved.has(sid))

	// And the stored refresh token works.
	stale()
	status, _, body = apiGet(a, sid)
	require.Equal(t, fasthttp.StatusOK, status, "refresh from the stored session: %s", body)
	assert.Equal(t, 3, idp.TokenRequests("refresh_token"))
	assert.Equal(t, RefreshStats{OK: 3}, a.RefreshStats())
}

// A logout while the renewed session is unsaved wins: the writer never
// stores the session again.
func TestLogoutDropsUnsavedSession(t *testing.T) {
	idp, err := testidp.Start(testidp.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = idp.Close() })
	store := newFlakyStore(t)
	var shift atomic.Int64
	a := newRotationAuth(t, idp, store, "http://gw.test", 0, &shift)
	sid := signInAt(t, a, idp)

	shift.Store(int64(10 * time.Minute))
	store.failPuts.Store(true)
	status, _, body := apiGet(a, sid)
	require.Equal(t, fasthttp.StatusOK, status, body)
	require.True(t, a.unsaved.has(sid), "the renewed session was not kept")

	logout := requestCtx(fasthttp.MethodPost, a.cfg.AppBaseURL+"/auth/logout", a.cfg.Cookie.Name, sid)
	a.logout(logout)
	require.Equal(t, fasthttp.StatusNoContent, logout.Response.StatusCode(), string(logout.Response.Body()))

	// The writer finds the session gone and drops it, store refusing or not.
	waitFor(t, 5*time.Second, "the unsaved session to be dropped", func() bool { return !a.unsaved.has(sid) })
	store.failPuts.Store(false)
	waitFor(t, 5*time.Second, "the writer to stop", func() bool { return !writerRunning(a) })
	_, err = store.GetSession(context.Background(), sid)
	require.ErrorIs(t, err, sessioncache.ErrNotFound, "the logged-out session was stored again")
	status, _, body = apiGet(a, sid)
	assert.Equal(t, fasthttp.StatusUnauthorized, status)
	assert.JSONEq(t, `{"error":"Unauthorized"}`, body)
}

// The writer stops once its sessions are stored or moot, and at Close,
// leaving no goroutine behind.
func TestUnsavedWriterStops(t *testing.T) {
	store := newFlakyStore(t) // its sweeper runs until the test's cleanup
	a := &Auth{cfg: Config{}.withDefaults(), store: store, log: zap.NewNop(), now: time.Now}
	ctx := context.Background()
	ignore := goleak.IgnoreCurrent()
	session := func(version int64, abs time.Time) *sessioncache.Session {
		s := &sessioncache.Session{Sub: "user-1", RefreshToken: fmt.Sprintf("rt-%d", version), Version: version}
		if !abs.IsZero() {
			s.AbsoluteExpiresAt = abs.Unix()
		}
		return s
	}
	put := func(id string, s *sessioncache.Session) {
		t.Helper()
		require.NoError(t, store.Memory.PutSession(ctx, id, s))
	}

	t.Run("stored once the store answers", func(t *testing.T) {
		put("a", session(1, time.Time{}))
		store.failPuts.Store(true)
		kept, first := a.keepUnsaved("a", session(2, time.Time{}))
		require.True(t, kept)
		require.True(t, first)
		got, err := a.currentSession(ctx, "a")
		require.NoError(t, err)
		assert.Equal(t, int64(2), got.Version, "the unsaved session is newer than the stored one")
		store.failPuts.Store(false)
		goleak.VerifyNone(t, ignore)
		got, err = store.GetSession(ctx, "a")
		require.NoError(t, err)
		assert.Equal(t, "rt-2", got.RefreshToken)
	})
	t.Run("dropped past the absolute expiry", func(t *testing.T) {
		put("b", session(1, time.Time{}))
		store.failPuts.Store(true)
		kept, _ := a.keepUnsaved("b", session(2, time.Now().Add(-time.Second)))
		require.True(t, kept)
		goleak.VerifyNone(t, ignore)
		assert.False(t, a.unsaved.has("b"))
	})
	t.Run("dropped when the session is deleted", func(t *testing.T) {
		put("c", session(1, time.Time{}))
		store.failPuts.Store(true)
		kept, _ := a.keepUnsaved("c", session(2, time.Time{}))
		require.True(t, kept)
		require.NoError(t, store.DeleteSession(ctx, "c"))
		goleak.VerifyNone(t, ignore)
		_, err := store.GetSession(ctx, "c")
		assert.ErrorIs(t, err, sessioncache.ErrNotFound)
	})
	t.Run("stopped by Close", func(t *testing.T) {
		put("d", session(1, time.Time{}))
		store.failPuts.Store(true)
		kept, _ := a.keepUnsaved("d", session(2, time.Time{}))
		require.True(t, kept)
		a.Close()
		goleak.VerifyNone(t, ignore)
		kept, _ = a.keepUnsaved("e", session(2, time.Time{}))
		assert.False(t, kept, "kept after Close")
	})
}

// TestCloseStoresUnsaved: a renewed session still in memory when the
// gateway stops is stored by Close's last attempt once the store answers.
func TestCloseStoresUnsaved(t *testing.T) {
	store := newFlakyStore(t)
	a := &Auth{cfg: Config{}.withDefaults(), store: store, log: zap.NewNop(), now: time.Now}
	ctx := context.Background()
	require.NoError(t, store.Memory.PutSession(ctx, "s", &sessioncache.Session{Sub: "user-1", RefreshToken: "rt-1", Version: 1}))
	store.failPuts.Store(true)
	kept, _ := a.keepUnsaved("s", &sessioncache.Session{Sub: "user-1", RefreshToken: "rt-2", Version: 2})
	require.True(t, kept)
	// The store answers again; the writer waits out its first backoff,
	// and the process stops before it is over.
	store.failPuts.Store(false)
	a.Close()
	got, err := store.GetSession(ctx, "s")
	require.NoError(t, err)
	assert.Equal(t, "rt-2", got.RefreshToken, "the renewed session was lost at Close")
	assert.False(t, a.unsaved.has("s"))
}

// roundTripFunc adapts a function to http.RoundTripper.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// Redis dies while the IdP renews a session's tokens: after the refresh
// lock, before the renewed session is written (the gap the fault suite
// found). The request is served with the renewed tokens; once Redis is
// back the renewed session is in it within 2 s, another instance refreshes
// it from there, and the session is never lost.
func TestRedisDiesDuringRefresh(t *testing.T) {
	t.Parallel()
	// An append-only file synced at each write: the session survives the kill.
	srv := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	// Access tokens live 4 s and are refreshed within 1 s of expiry.
	idp, err := testidp.Start(testidp.Options{AccessTokenTTL: 4 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { _ = idp.Close() })
	newStore := func() *sessioncache.Redis {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		store, err := sessioncache.NewRedis(ctx, srv.URL(), sessioncache.Config{}, nil)
		require.NoError(t, err)
		t.Cleanup(store.Close)
		return store
	}
	a := newRotationAuth(t, idp, newStore(), "http://gw-a.test", time.Second, nil)
	// Redis is killed when the next token request leaves for the IdP.
	var killOnTokenRequest atomic.Bool
	tokenURL := a.idp.oauth.Endpoint.TokenURL
	a.idp.client.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.URL.String() == tokenURL && killOnTokenRequest.CompareAndSwap(true, false) {
			srv.Kill()
		}
		return http.DefaultTransport.RoundTrip(r)
	})

	sid := signInAt(t, a, idp)
	signedIn, err := a.store.GetSession(context.Background(), sid)
	require.NoError(t, err)
	waitFor(t, 5*time.Second, "the access token to go stale", func() bool { return a.stale(signedIn, time.Now()) })

	killOnTokenRequest.Store(true)
	status, ident, body := apiGet(a, sid)
	require.False(t, killOnTokenRequest.Load(), "no token request was made")
	require.Equal(t, fasthttp.StatusOK, status, "refresh while Redis died: %s", body)
	require.Equal(t, 1, idp.TokenRequests("refresh_token"))
	renewed := ident.AccessToken
	assert.NotEqual(t, signedIn.AccessToken, renewed)
	assert.Equal(t, idp.Email(), ident.Email)

	// Redis down: the renewed session is served from memory.
	status, ident, body = apiGet(a, sid)
	require.Equal(t, fasthttp.StatusOK, status, "while Redis is down: %s", body)
	assert.Equal(t, renewed, ident.AccessToken)

	srv.Restart(t)
	restarted := time.Now()
	b := newRotationAuth(t, idp, newStore(), "http://gw-b.test", time.Second, nil)
	var stored *sessioncache.Session
	waitFor(t, 2*time.Second, "the renewed session in Redis after the restart", func() bool {
		s, err := b.store.GetSession(context.Background(), sid)
		if err != nil {
			require.NotErrorIs(t, err, sessioncache.ErrNotFound, "the session was lost")
			return false
		}
		stored = s
		return s.AccessToken == renewed
	})
	t.Logf("renewed session stored %v after Redis answered again", time.Since(restarted).Round(time.Millisecond))
	assert.Equal(t, signedIn.Version+1, stored.Version)
	assert.NotEqual(t, signedIn.RefreshToken, stored.RefreshToken)

	// The other instance refreshes with the rotated refresh token it read
	// from Redis. The refresh lock taken before the kill may still be held
	// (it outlived the restart): until it expires, the request waits for
	// it, and may be answered 503.
	waitFor(t, 5*time.Second, "the renewed access token to go stale", func() bool { return b.stale(stored, time.Now()) })
	waitFor(t, 15*time.Second, "a refresh on the other instance", func() bool {
		status, ident, body = apiGet(b, sid)
		if status == fasthttp.StatusOK && ident.AccessToken != renewed {
			return true
		}
		require.Contains(t, []int{fasthttp.StatusOK, fasthttp.StatusServiceUnavailable}, status, body)
		return false
	})
	assert.Equal(t, 2, idp.TokenRequests("refresh_token"))
	assert.Equal(t, RefreshStats{OK: 1}, b.RefreshStats())
	status, _, body = apiGet(a, sid)
	assert.Equal(t, fasthttp.StatusOK, status, "first instance after the refresh on the other: %s", body)
}

// Another instance still holding the session from before a refresh spends
// the dead refresh token; when the renewed session reaches the store while
// it does, the provider's invalid_grant does not end the session: the
// instance looks again and uses the renewed one.
func TestInvalidGrantUsesSessionStoredMeanwhile(t *testing.T) {
	idp, err := testidp.Start(testidp.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = idp.Close() })
	storeA := newFlakyStore(t)
	storeB := &flakyStore{Memory: storeA.Memory} // the same sessions, writes never refused
	var shift atomic.Int64
	a := newRotationAuth(t, idp, storeA, "http://gw-a.test", 0, &shift)
	b := newRotationAuth(t, idp, storeB, "http://gw-b.test", 0, &shift)
	sid := signInAt(t, a, idp)
	ctx := context.Background()
	signedIn, err := storeB.GetSession(ctx, sid)
	require.NoError(t, err)

	shift.Store(int64(10 * time.Minute))
	storeA.failPuts.Store(true)
	status, _, body := apiGet(a, sid)
	require.Equal(t, fasthttp.StatusOK, status, body)
	require.True(t, a.unsaved.has(sid))

	// B's token request (with the dead refresh token) leaves once A has
	// stored the renewed session.
	b.idp.client.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.URL.String() == b.idp.oauth.Endpoint.TokenURL && storeA.failPuts.CompareAndSwap(true, false) {
			waitFor(t, 5*time.Second, "A to store the renewed session", func() bool {
				s, err := storeB.GetSession(ctx, sid)
				return err == nil && s.Version == signedIn.Version+1
			})
		}
		return http.DefaultTransport.RoundTrip(r)
	})
	status, ident, body := apiGet(b, sid)
	require.False(t, storeA.failPuts.Load(), "B made no token request")
	require.Equal(t, fasthttp.StatusOK, status, "B after invalid_grant: %s", body)
	assert.Equal(t, idp.Email(), ident.Email)
	// B spent the dead token (invalid_grant), then the renewed one.
	assert.Equal(t, 3, idp.TokenRequests("refresh_token"))
	stored, err := storeB.GetSession(ctx, sid)
	require.NoError(t, err, "the session was ended")
	assert.Equal(t, signedIn.Version+2, stored.Version)
	assert.Equal(t, ident.AccessToken, stored.AccessToken)
	assert.Equal(t, RefreshStats{OK: 1}, b.RefreshStats())
}
