package edge

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"testing"

	"github.com/apigetaway/getaway/upstream"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
	"go.uber.org/zap"
)

// benchBackend serves a small JSON answer on an in-memory listener, so the
// benchmarks measure the gateway's work and not the loopback stack.
func benchBackend(b *testing.B) *fasthttputil.InmemoryListener {
	b.Helper()
	ln := fasthttputil.NewInmemoryListener()
	body := []byte(`{"id":42,"name":"bench","tags":["a","b","c"],"ok":true}`)
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.SetBody(body)
	}}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { _ = srv.Shutdown() })
	return ln
}

// runHandler drives h with one reused RequestCtx, as fasthttp's server does,
// and drains each streamed answer.
func runHandler(b *testing.B, h fasthttp.RequestHandler, target string) {
	b.Helper()
	var ctx fasthttp.RequestCtx
	ctx.Init(&fasthttp.Request{}, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}, nil)
	// The head is parsed from bytes, as the server parses it (the Cookie
	// line stays raw until something asks fasthttp for a cookie).
	head := []byte("GET " + target + " HTTP/1.1\r\nHost: app.example.com\r\nCookie: sid=abc; theme=dark\r\n\r\n")
	src := bytes.NewReader(head)
	br := bufio.NewReader(src)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ctx.Request.Reset()
		ctx.Response.Reset()
		src.Reset(head)
		br.Reset(src)
		if err := ctx.Request.Header.Read(br); err != nil {
			b.Fatal(err)
		}
		h(&ctx)
		if ctx.Response.StatusCode() != fasthttp.StatusOK {
			b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
		if err := ctx.Response.BodyWriteTo(io.Discard); err != nil {
			b.Fatal(err)
		}
		_ = ctx.Response.CloseBodyStream()
	}
}

// BenchmarkProxyDirect is the baseline: the same backend through a bare
// HostClient, with no gateway work.
func BenchmarkProxyDirect(b *testing.B) {
	ln := benchBackend(b)
	hc := &fasthttp.HostClient{Addr: "backend", Dial: func(string) (net.Conn, error) { return ln.Dial() }, StreamResponseBody: true}
	runHandler(b, func(ctx *fasthttp.RequestCtx) {
		if err := hc.Do(&ctx.Request, &ctx.Response); err != nil {
			b.Fatal(err)
		}
	}, "/bench?x=1")
}

// BenchmarkProxyGateway is the whole edge handler on an authenticated /api
// request: middleware, routing, header rewrite and the pooled backend call.
func BenchmarkProxyGateway(b *testing.B) {
	ln := benchBackend(b)
	f, err := upstream.ParseFile("config.yml", []byte(`
defaultBackend: "http://backend"
mappings:
  - frontendHost: app.example.com
    pathPrefix: /v2
    backend: "http://backend"
`))
	require.NoError(b, err)
	p, err := upstream.NewProxy(upstream.ProxyConfig{Pool: upstream.PoolConfig{
		Dial: func(string) (net.Conn, error) { return ln.Dial() },
	}}, f, zap.NewNop())
	require.NoError(b, err)
	s, err := New(Config{}, Deps{Proxy: p, Auth: allowAll})
	require.NoError(b, err)
	runHandler(b, s.Handler(), "/api/v2/bench?x=1")
}
