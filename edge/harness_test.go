package edge

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apigetaway/getaway/upstream"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
)

// backend is a real fasthttp server on loopback that records what reached it.
type backend struct {
	Addr  string
	URL   string
	hits  atomic.Int64
	conns atomic.Int64

	mu   sync.Mutex
	last *fasthttp.Request // copy of the last request's head
}

// startBackend serves h (or an echo of the request URI) on 127.0.0.1:0.
func startBackend(t testing.TB, h fasthttp.RequestHandler) *backend {
	t.Helper()
	b := &backend{}
	if h == nil {
		h = func(ctx *fasthttp.RequestCtx) {
			ctx.SetContentType("text/plain")
			ctx.SetBody(ctx.Request.Header.RequestURI())
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			b.hits.Add(1)
			req := new(fasthttp.Request)
			ctx.Request.Header.CopyTo(&req.Header)
			b.mu.Lock()
			b.last = req
			b.mu.Unlock()
			h(ctx)
		},
		ConnState: func(_ net.Conn, st fasthttp.ConnState) {
			if st == fasthttp.StateNew {
				b.conns.Add(1)
			}
		},
		StreamRequestBody:  true,
		MaxRequestBodySize: 64 << 10,
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	b.Addr = ln.Addr().String()
	b.URL = "http://" + b.Addr
	return b
}

// lastRequest returns the head of the last request the backend received.
func (b *backend) lastRequest(t testing.TB) *fasthttp.Request {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	require.NotNil(t, b.last, "backend received no request")
	return b.last
}

// gateway is a running edge.Server on loopback.
type gateway struct {
	URL    string
	Addr   string
	Server *Server
	Proxy  *upstream.Proxy
}

type gatewayOption func(*gatewayOpts)

type gatewayOpts struct {
	cfg  Config
	pool upstream.PoolConfig
	auth Authenticator
	deps Deps
}

func withConfig(f func(*Config)) gatewayOption { return func(o *gatewayOpts) { f(&o.cfg) } }
func withPool(f func(*upstream.PoolConfig)) gatewayOption {
	return func(o *gatewayOpts) { f(&o.pool) }
}
func withAuth(a Authenticator) gatewayOption { return func(o *gatewayOpts) { o.auth = a } }
func withReady(rc ...ReadinessCheck) gatewayOption {
	return func(o *gatewayOpts) { o.deps.Ready = append(o.deps.Ready, rc...) }
}

// testUser is the identity the test authenticator vouches for.
var testUser = upstream.Identity{Sub: "user-1", Email: "alice@example.com", Name: "Alice", AccessToken: "access-token-1"}

// allowAll authenticates every request as testUser.
var allowAll = AuthenticatorFunc(func(*fasthttp.RequestCtx) (upstream.Identity, bool) { return testUser, true })

// startGateway runs the whole server with configYAML as config.yml.
func startGateway(t testing.TB, configYAML string, opts ...gatewayOption) *gateway {
	t.Helper()
	o := gatewayOpts{auth: allowAll, cfg: Config{PublicDir: ""}}
	for _, opt := range opts {
		opt(&o)
	}
	f, err := upstream.ParseFile("config.yml", []byte(configYAML))
	require.NoError(t, err)
	p, err := upstream.NewProxy(upstream.ProxyConfig{Pool: o.pool}, f, zap.NewNop())
	require.NoError(t, err)
	o.deps.Proxy = p
	o.deps.Auth = o.auth
	s, err := New(o.cfg, o.deps)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ln) }()
	t.Cleanup(func() {
		_ = s.Shutdown(context.Background())
		<-done
	})
	return &gateway{URL: "http://" + ln.Addr().String(), Addr: ln.Addr().String(), Server: s, Proxy: p}
}

// do sends a request with net/http (a client independent of fasthttp) and
// returns the response with its body read.
func do(t testing.TB, method, url string, header http.Header, body io.Reader) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	require.NoError(t, err)
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
		if strings.EqualFold(k, "Host") {
			req.Host = vs[0]
		}
	}
	resp, err := testClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

var testClient = &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
	return http.ErrUseLastResponse
}}

// rawRequest writes raw bytes to addr and returns everything the server
// answered until it closed the connection or a second passed.
func rawRequest(t testing.TB, addr, raw string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	_, err = io.WriteString(c, raw)
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(2*time.Second)))
	b, _ := io.ReadAll(c)
	return string(b)
}
