package authflow_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apigetaway/getaway/authflow"
	"github.com/apigetaway/getaway/authflow/testidp"
	"github.com/apigetaway/getaway/edge"
	"github.com/apigetaway/getaway/sessioncache"
	"github.com/apigetaway/getaway/upstream"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
)

// appOrigin is the SPA origin the stacks allow.
const appOrigin = "http://app.test:5173"

// backend is a real fasthttp server on loopback that records requests.
type backend struct {
	URL  string
	hits atomic.Int64
	mu   sync.Mutex
	last fasthttp.RequestHeader
}

func startBackend(t *testing.T) *backend {
	t.Helper()
	b := &backend{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		b.hits.Add(1)
		b.mu.Lock()
		ctx.Request.Header.CopyTo(&b.last)
		b.mu.Unlock()
		ctx.SetBodyString("backend ok")
	}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	b.URL = "http://" + ln.Addr().String()
	return b
}

// header returns a header of the last request the backend received.
func (b *backend) header(k string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.last.Peek(k))
}

// gatewayInstance is one running gateway.
type gatewayInstance struct {
	URL  string
	Auth *authflow.Auth
}

// stack is an IdP, a backend, a session store and one or more gateways.
type stack struct {
	idp     *testidp.IdP
	backend *backend
	store   sessioncache.Store
	gws     []*gatewayInstance
}

type stackOptions struct {
	accessTTL   time.Duration
	refreshSkew time.Duration
	instances   int
	// stores returns the store of instance i; nil: one shared Memory store.
	stores func(t *testing.T, i int) sessioncache.Store
	// backendURL is the default backend; empty: a recording HTTP backend.
	backendURL string
}

func startStack(t *testing.T, o stackOptions) *stack {
	t.Helper()
	if o.instances == 0 {
		o.instances = 1
	}
	idp, err := testidp.Start(testidp.Options{AccessTokenTTL: o.accessTTL})
	require.NoError(t, err)
	t.Cleanup(func() { _ = idp.Close() })
	s := &stack{idp: idp}
	if o.backendURL != "" {
		s.backend = &backend{URL: o.backendURL}
	} else {
		s.backend = startBackend(t)
	}
	if o.stores == nil {
		mem, err := sessioncache.NewMemory(sessioncache.Config{})
		require.NoError(t, err)
		t.Cleanup(mem.Close)
		o.stores = func(*testing.T, int) sessioncache.Store { return mem }
	}
	for i := 0; i < o.instances; i++ {
		store := o.stores(t, i)
		if i == 0 {
			s.store = store
		}
		s.gws = append(s.gws, startGateway(t, idp, s.backend, store, o))
	}
	return s
}

func startGateway(t *testing.T, idp *testidp.IdP, be *backend, store sessioncache.Store, o stackOptions) *gatewayInstance {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	base := "http://" + ln.Addr().String()
	require.NoError(t, idp.AddRedirectURI(base+"/auth/callback"))
	require.NoError(t, idp.AddPostLogoutRedirectURI(base))

	f, err := upstream.ParseFile("config.yml", []byte(fmt.Sprintf("defaultBackend: %q\nmappings:\n  - frontendHost: relay.test\n    backend: %q\n    forwardAccessToken: true\n", be.URL, be.URL)))
	require.NoError(t, err)
	proxy, err := upstream.NewProxy(upstream.ProxyConfig{}, f, zap.NewNop())
	require.NoError(t, err)
	origins := []string{appOrigin}
	auth, err := authflow.New(context.Background(), authflow.Config{
		AppBaseURL:   base,
		Issuer:       idp.Issuer(),
		ClientID:     "getaway",
		ClientSecret: "getaway-secret",
		RefreshSkew:  o.refreshSkew,
		Cookie:       authflow.CookieConfig{Insecure: true},
	}, store, edge.OriginPolicy(origins, proxy), zap.NewNop())
	require.NoError(t, err)
	srv, err := edge.New(edge.Config{AllowedOrigins: origins}, edge.Deps{Proxy: proxy, Auth: auth, Routes: auth.Register})
	require.NoError(t, err)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()); <-done })
	return &gatewayInstance{URL: base, Auth: auth}
}

// client never follows redirects: the tests look at each one.
var client = &http.Client{Timeout: 20 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
	return http.ErrUseLastResponse
}}

type result struct {
	status int
	header http.Header
	body   string
}

// send makes one request; cookie is the session id ("" for none).
func send(t *testing.T, method, target, cookie string, h http.Header) result {
	t.Helper()
	req, err := http.NewRequest(method, target, nil)
	require.NoError(t, err)
	for k, v := range h {
		if k == "Host" {
			req.Host = v[0]
			continue
		}
		req.Header[k] = v
	}
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: "sid", Value: cookie})
	}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return result{resp.StatusCode, resp.Header, string(b)}
}

// sessionCookie returns the sid cookie a response set, or nil.
func sessionCookie(h http.Header) *http.Cookie {
	for _, c := range (&http.Response{Header: h}).Cookies() {
		if c.Name == "sid" {
			return c
		}
	}
	return nil
}

// startLogin asks gw for a login and returns the IdP authorize URL.
func startLogin(t *testing.T, gw *gatewayInstance, query string) string {
	t.Helper()
	r := send(t, http.MethodGet, gw.URL+"/auth/login"+query, "", nil)
	require.Equal(t, http.StatusFound, r.status, r.body)
	return r.header.Get("Location")
}

// signIn goes through the whole login as a browser would and returns the
// callback's response (302 with the cookie).
func (s *stack) signIn(t *testing.T, gw *gatewayInstance, query, oldCookie string) result {
	t.Helper()
	authorize := startLogin(t, gw, query)
	cb, err := s.idp.Login(context.Background(), authorize, s.idp.Username(), testidp.Password)
	require.NoError(t, err)
	r := send(t, http.MethodGet, cb, oldCookie, nil)
	require.Equal(t, http.StatusFound, r.status, r.body)
	return r
}

// login signs in and returns the session id.
func (s *stack) login(t *testing.T) string {
	t.Helper()
	c := sessionCookie(s.signIn(t, s.gws[0], "", "").header)
	require.NotNil(t, c, "callback set no session cookie")
	return c.Value
}

// stateOf returns the state parameter of an authorize URL.
func stateOf(t *testing.T, authorize string) string {
	t.Helper()
	u, err := url.Parse(authorize)
	require.NoError(t, err)
	return u.Query().Get("state")
}
