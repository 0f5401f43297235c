package authflow_test

import (
	"context"
	"github.com/apigetaway/getaway/upstream/wsecho"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/apigetaway/getaway/authflow"
	"github.com/apigetaway/getaway/authflow/testidp"
	"github.com/apigetaway/getaway/sessioncache"
	"github.com/apigetaway/getaway/sessioncache/redistest"
	"github.com/fasthttp/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
)

// WebSockets tied to the session (issue 5), through real sign-ins at the
// test IdP: the upgrade is authenticated from the session cookie like any
// /api request, and the socket is closed (1008) when the session ends on
// any instance.

// startWSStack is startStack with a WebSocket backend behind every gateway.
func startWSStack(t *testing.T, o stackOptions) (*stack, *wsecho.Server) {
	t.Helper()
	wsb := wsecho.Start(t)
	o.backendURL = wsb.URL
	return startStack(t, o), wsb
}

// dialWS opens a socket to gw's path with the session cookie sid ("" for
// none) and extra headers; on refusal it returns the status and body.
func dialWS(t *testing.T, gw *gatewayInstance, path, sid string, h http.Header) (*websocket.Conn, int, string) {
	t.Helper()
	if h == nil {
		h = http.Header{}
	}
	if sid != "" {
		h.Add("Cookie", "sid="+sid)
	}
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	c, resp, err := d.Dial("ws"+strings.TrimPrefix(gw.URL, "http")+path, h)
	if err == nil {
		t.Cleanup(func() { _ = c.Close() })
		return c, resp.StatusCode, ""
	}
	require.NotNil(t, resp, "dial: %v", err)
	body, _ := io.ReadAll(resp.Body)
	return nil, resp.StatusCode, string(body)
}

func wsEcho(t *testing.T, c *websocket.Conn, msg string) {
	t.Helper()
	require.NoError(t, c.SetWriteDeadline(time.Now().Add(10*time.Second)))
	require.NoError(t, c.WriteMessage(websocket.TextMessage, []byte(msg)))
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, got, err := c.ReadMessage()
	require.NoError(t, err)
	require.Equal(t, msg, string(got))
}

// awaitClose reads until c's close frame, which must come within d of
// start; it returns the frame.
func awaitClose(t *testing.T, c *websocket.Conn, start time.Time, d time.Duration) *websocket.CloseError {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(start.Add(d)))
	for {
		_, _, err := c.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		require.ErrorAs(t, err, &ce, "no close frame within %v", d)
		t.Logf("close %d %q after %v", ce.Code, ce.Text, time.Since(start))
		return ce
	}
}

func TestWebSocketSignedIn(t *testing.T) {
	s, wsb := startWSStack(t, stackOptions{})
	gw := s.gws[0]
	sid := s.login(t)

	c, status, body := dialWS(t, gw, "/api/chat?room=1", sid, http.Header{
		"Origin":       {appOrigin},
		"X-User-Email": {"mallory@evil.test"},
		"Cookie":       {"theme=dark"},
	})
	require.Equal(t, http.StatusSwitchingProtocols, status, body)
	wsEcho(t, c, "hello")
	assert.Equal(t, s.idp.Email(), wsb.Header("X-User-Email"))
	assert.NotEmpty(t, wsb.Header("X-User-Sub"))
	assert.NotEmpty(t, wsb.Header("X-User-Name"))
	assert.NotContains(t, wsb.Header("Cookie"), "sid=", "the session cookie reached the backend")
	assert.Contains(t, wsb.Header("Cookie"), "theme=dark")

	// The gateway's own origin, and no Origin at all (not a browser), pass.
	for _, h := range []http.Header{{"Origin": {gw.URL}}, nil} {
		c, status, body := dialWS(t, gw, "/api/chat", sid, h)
		require.Equal(t, http.StatusSwitchingProtocols, status, body)
		wsEcho(t, c, "ok")
	}
	attempts := wsb.Attempts.Load()

	t.Run("refused before the backend", func(t *testing.T) {
		for _, tc := range []struct {
			name, sid  string
			header     http.Header
			wantStatus int
			wantBody   string
		}{
			{"no cookie", "", nil, http.StatusUnauthorized, `{"error":"Unauthorized"}`},
			{"forged cookie", "forged", nil, http.StatusUnauthorized, `{"error":"Unauthorized"}`},
			{"another session's id", strings.Repeat("a", 43), http.Header{"Origin": {appOrigin}}, http.StatusUnauthorized, `{"error":"Unauthorized"}`},
			{"foreign origin", sid, http.Header{"Origin": {"https://evil.test"}}, http.StatusForbidden, `{"error":"Forbidden"}`},
			{"lookalike origin", sid, http.Header{"Origin": {appOrigin + ".evil.test"}}, http.StatusForbidden, `{"error":"Forbidden"}`},
			{"cross-site, no origin", sid, http.Header{"Sec-Fetch-Site": {"cross-site"}}, http.StatusForbidden, `{"error":"Forbidden"}`},
		} {
			t.Run(tc.name, func(t *testing.T) {
				c, status, body := dialWS(t, gw, "/api/chat", tc.sid, tc.header)
				require.Nil(t, c)
				assert.Equal(t, tc.wantStatus, status)
				assert.JSONEq(t, tc.wantBody, body)
			})
		}
		assert.Equal(t, attempts, wsb.Attempts.Load(), "a refused upgrade reached the backend")
	})
}

// The socket of a session ends within 1s of the session's end, with 1008,
// on whichever instance the session ended.
func TestWebSocketEndsWithTheSession(t *testing.T) {
	redisStores := func(srv *redistest.Server) func(t *testing.T, i int) sessioncache.Store {
		return func(t *testing.T, _ int) sessioncache.Store {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			store, err := sessioncache.NewRedis(ctx, srv.URL(), sessioncache.Config{}, nil)
			require.NoError(t, err)
			t.Cleanup(store.Close)
			return store
		}
	}
	t.Run("logout on another instance (two gateways, one Redis)", func(t *testing.T) {
		srv := redistest.Start(t)
		s, wsb := startWSStack(t, stackOptions{instances: 2, stores: redisStores(srv)})
		a, b := s.gws[0], s.gws[1]
		sid := s.login(t) // on A

		c, status, body := dialWS(t, b, "/api/live", sid, nil)
		require.Equal(t, http.StatusSwitchingProtocols, status, body)
		wsEcho(t, c, "on B")
		other := s.login(t)
		keep, status, body := dialWS(t, b, "/api/live", other, nil)
		require.Equal(t, http.StatusSwitchingProtocols, status, body)

		loggedOut := time.Now()
		r := send(t, http.MethodPost, a.URL+"/auth/logout", sid, nil)
		require.Equal(t, http.StatusNoContent, r.status, r.body)
		ce := awaitClose(t, c, loggedOut, time.Second)
		assert.Equal(t, websocket.ClosePolicyViolation, ce.Code)
		assert.Equal(t, "session ended", ce.Text)
		assert.Equal(t, websocket.ClosePolicyViolation, wsb.NextClose(t).Code, "the backend is told too")
		wsEcho(t, keep, "another session's socket stays open")

		// The ended session cannot open a new socket.
		_, status, _ = dialWS(t, b, "/api/live", sid, nil)
		assert.Equal(t, http.StatusUnauthorized, status)
	})
	t.Run("deletion in Redis", func(t *testing.T) {
		srv := redistest.Start(t)
		s, _ := startWSStack(t, stackOptions{stores: redisStores(srv)})
		sid := s.login(t)
		c, status, body := dialWS(t, s.gws[0], "/api/live", sid, nil)
		require.Equal(t, http.StatusSwitchingProtocols, status, body)
		wsEcho(t, c, "x")
		deleted := time.Now()
		_, err := srv.Do("FLUSHALL")
		require.NoError(t, err)
		ce := awaitClose(t, c, deleted, time.Second)
		assert.Equal(t, websocket.ClosePolicyViolation, ce.Code)
	})
	t.Run("logout on another instance (two gateways, one Memory store)", func(t *testing.T) {
		s, _ := startWSStack(t, stackOptions{instances: 2})
		sid := s.login(t)
		c, status, body := dialWS(t, s.gws[1], "/api/live", sid, nil)
		require.Equal(t, http.StatusSwitchingProtocols, status, body)
		wsEcho(t, c, "x")
		loggedOut := time.Now()
		r := send(t, http.MethodPost, s.gws[0].URL+"/auth/logout", sid, nil)
		require.Equal(t, http.StatusNoContent, r.status, r.body)
		ce := awaitClose(t, c, loggedOut, time.Second)
		assert.Equal(t, websocket.ClosePolicyViolation, ce.Code)
	})
}

// watchlessStore is a session store that cannot watch sessions.
type watchlessStore struct{ authflow.SessionStore }

func TestWebSocketRefusedWithoutSessionWatch(t *testing.T) {
	idp, err := testidp.Start(testidp.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = idp.Close() })
	mem, err := sessioncache.NewMemory(sessioncache.Config{})
	require.NoError(t, err)
	t.Cleanup(mem.Close)
	const id = "session-without-watch"
	require.NoError(t, mem.PutSession(context.Background(), id, &sessioncache.Session{
		Sub: "user-1", Email: "alice@example.com", AccessToken: "at", AccessExpiresAt: time.Now().Add(time.Hour).Unix(),
	}))
	auth, err := authflow.New(context.Background(), authflow.Config{
		AppBaseURL: "http://gw.test", Issuer: idp.Issuer(), ClientID: "getaway", ClientSecret: "getaway-secret",
		Cookie: authflow.CookieConfig{Insecure: true},
	}, watchlessStore{mem}, nil, zap.NewNop())
	require.NoError(t, err)

	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod(fasthttp.MethodGet)
	ctx.Request.Header.SetCookie("sid", id)
	_, end, ok := auth.AuthenticateUpgrade(&ctx)
	assert.False(t, ok, "a socket that could outlive its session was authorised")
	assert.Nil(t, end.Stop)
	assert.Equal(t, fasthttp.StatusServiceUnavailable, ctx.Response.StatusCode())
	assert.JSONEq(t, `{"error":"unavailable"}`, string(ctx.Response.Body()))

	// HTTP requests do not need the watch.
	ctx.Response.Reset()
	ident, ok := auth.Authenticate(&ctx)
	require.True(t, ok)
	assert.Equal(t, "alice@example.com", ident.Email)

	// With the watch, the upgrade is authorised and watches the session.
	auth, err = authflow.New(context.Background(), authflow.Config{
		AppBaseURL: "http://gw.test", Issuer: idp.Issuer(), ClientID: "getaway", ClientSecret: "getaway-secret",
		Cookie: authflow.CookieConfig{Insecure: true},
	}, mem, nil, zap.NewNop())
	require.NoError(t, err)
	ctx.Response.Reset()
	ident, end, ok = auth.AuthenticateUpgrade(&ctx)
	require.True(t, ok)
	assert.Equal(t, "user-1", ident.Sub)
	require.NotNil(t, end.Stop)
	defer end.Stop()
	require.NoError(t, mem.DeleteSession(context.Background(), id))
	select {
	case <-end.Gone:
	case <-time.After(time.Second):
		t.Fatal("the deletion was not reported")
	}
}
