package edge

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apigetaway/getaway/upstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
)

func TestProxyRewritesPathAndKeepsQuery(t *testing.T) {
	be := startBackend(t, nil)
	based := startBackend(t, nil)
	gw := startGateway(t, fmt.Sprintf(`
defaultBackend: %q
mappings:
  - frontendHost: based.test
    backend: %q
`, be.URL, based.URL+"/base/"))

	tests := []struct {
		name, host, target, want string
	}{
		{"bare api", "", "/api", "/"},
		{"api slash", "", "/api/", "/"},
		{"encoded slash and repeated keys", "", "/api/a%2Fb?x=1&x=2", "/a%2Fb?x=1&x=2"},
		{"query byte for byte", "", "/api/s?q=a+b&e=%20&k&=v&x=%7e", "/s?q=a+b&e=%20&k&=v&x=%7e"},
		{"query on bare api", "", "/api?x=1", "/?x=1"},
		{"backend base path", "based.test", "/api/x/y?z=1", "/base/x/y?z=1"},
		{"backend base path, bare api", "based.test", "/api", "/base/"},
		{"unicode kept encoded", "", "/api/%E6%9D%8E?n=%E9%9B%B7", "/%E6%9D%8E?n=%E9%9B%B7"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.host != "" {
				h.Set("Host", tc.host)
			}
			resp, body := do(t, http.MethodGet, gw.URL+tc.target, h, nil)
			require.Equal(t, http.StatusOK, resp.StatusCode, body)
			assert.Equal(t, tc.want, body)
		})
	}
}

func TestProxyRefusesNonCanonicalTargets(t *testing.T) {
	be := startBackend(t, nil)
	gw := startGateway(t, fmt.Sprintf("defaultBackend: %q\n", be.URL))
	for _, target := range []string{
		"/api/x/../admin",
		"/api/./x",
		"/api/%2e%2e/x",
		"/api/.%2E/x",
		"/api/x%00y",
		"http://evil.test/api/x",
	} {
		t.Run(target, func(t *testing.T) {
			out := rawRequest(t, gw.Addr, "GET "+target+" HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n")
			// Either the router never sees /api (dot segments resolved away:
			// a 404) or the proxy refuses the target (400); never forwarded.
			assert.Regexp(t, `^HTTP/1\.1 (400|404) `, out)
		})
	}
	assert.Zero(t, be.hits.Load(), "a non-canonical target reached the backend")
}

func TestProxyHeaderHygiene(t *testing.T) {
	be := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.Set("Connection", "X-Bar")
		ctx.Response.Header.Set("X-Bar", "secret-hop")
		ctx.Response.Header.Set("Keep-Alive", "timeout=5")
		ctx.Response.Header.Set("X-Kept", "yes")
		ctx.SetBodyString("ok")
	})
	gw := startGateway(t, fmt.Sprintf(`
defaultBackend: %q
mappings:
  - frontendHost: relay.test
    backend: %q
    forwardAccessToken: true
  - frontendHost: keep.test
    backend: %q
    preserveHost: true
`, be.URL, be.URL, be.URL))

	send := func(t *testing.T, host string, extra http.Header) *fasthttp.Request {
		h := http.Header{
			"Host":                {host},
			"Connection":          {"X-Foo, keep-alive"},
			"X-Foo":               {"hop"},
			"Keep-Alive":          {"timeout=5"},
			"Proxy-Authorization": {"Basic Zm9vOmJhcg=="},
			"Te":                  {"trailers"},
			"Upgrade":             {"h2c"},
			"Forwarded":           {"for=6.6.6.6;host=evil.test"},
			"X-Forwarded-For":     {"6.6.6.6"},
			"X-Forwarded-Host":    {"evil.test"},
			"X-Forwarded-Proto":   {"https"},
			"X-User-Email":        {"mallory@evil.test"},
			"x-user-sub":          {"root"},
			"X-USER-NAME":         {"Mallory", "Second"},
			"X-User-Groups":       {"admins"},
			"Cookie":              {"sid=session-secret; theme=dark"},
			"Authorization":       {"Bearer client-token"},
		}
		for k, v := range extra {
			h[k] = v
		}
		resp, body := do(t, http.MethodGet, gw.URL+"/api/h", h, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		assert.Empty(t, resp.Header.Get("X-Bar"), "header named in the backend's Connection leaked")
		assert.Empty(t, resp.Header.Get("Keep-Alive"))
		assert.Equal(t, "yes", resp.Header.Get("X-Kept"))
		return be.lastRequest(t)
	}

	t.Run("default backend", func(t *testing.T) {
		req := send(t, "app.test", nil)
		for _, k := range []string{"X-Foo", "Keep-Alive", "Proxy-Authorization", "Te", "Upgrade", "Forwarded", "X-User-Groups"} {
			assert.Empty(t, req.Header.Peek(k), "%s reached the backend", k)
		}
		assert.NotContains(t, strings.ToLower(string(req.Header.Peek("Connection"))), "x-foo")
		var userHeaders []string
		for k, v := range req.Header.All() {
			if bytes.HasPrefix(bytes.ToLower(k), []byte("x-user-")) {
				userHeaders = append(userHeaders, string(k)+"="+string(v))
			}
		}
		assert.ElementsMatch(t, []string{"X-User-Email=alice@example.com", "X-User-Sub=user-1", "X-User-Name=Alice"}, userHeaders)
		assert.Equal(t, "127.0.0.1", string(req.Header.Peek("X-Forwarded-For")))
		assert.Equal(t, "http", string(req.Header.Peek("X-Forwarded-Proto")))
		assert.Equal(t, "app.test", string(req.Header.Peek("X-Forwarded-Host")))
		assert.Equal(t, be.Addr, string(req.Header.Host()), "client Host must not reach the backend")
		assert.Equal(t, "theme=dark", string(req.Header.Peek("Cookie")))
		assert.Equal(t, "Bearer client-token", string(req.Header.Peek("Authorization")), "client Authorization passes as is")
		assert.NotEmpty(t, req.Header.Peek(HeaderRequestID))
	})
	t.Run("token relay", func(t *testing.T) {
		req := send(t, "relay.test", nil)
		assert.Equal(t, "Bearer access-token-1", string(req.Header.Peek("Authorization")))
	})
	t.Run("preserve host", func(t *testing.T) {
		req := send(t, "keep.test", nil)
		assert.Equal(t, "keep.test", string(req.Header.Host()))
	})
}

func TestProxyIdentityHeadersCarryAnyName(t *testing.T) {
	be := startBackend(t, nil)
	tests := []struct{ name, in, want string }{
		{"chinese", "李雷", "李雷"},
		{"accents", "José Ñúñez", "José Ñúñez"},
		{"crlf injection", "Eve\r\nX-Admin: true", "EveX-Admin: true"},
		{"controls", "a\x00b\x7fc\td", "abcd"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			auth := AuthenticatorFunc(func(*fasthttp.RequestCtx) (upstream.Identity, bool) {
				return upstream.Identity{Sub: "s", Email: "e@example.com", Name: tc.in}, true
			})
			gw := startGateway(t, fmt.Sprintf("defaultBackend: %q\n", be.URL), withAuth(auth))
			resp, body := do(t, http.MethodGet, gw.URL+"/api/x", nil, nil)
			require.Equal(t, http.StatusOK, resp.StatusCode, body)
			req := be.lastRequest(t)
			assert.Equal(t, tc.want, string(req.Header.Peek("X-User-Name")))
			assert.Empty(t, req.Header.Peek("X-Admin"))
		})
	}
}

func TestProxyDenyAllUntilSignInExists(t *testing.T) {
	be := startBackend(t, nil)
	gw := startGateway(t, fmt.Sprintf("defaultBackend: %q\n", be.URL), withAuth(DenyAll))
	for _, target := range []string{"/api", "/api/", "/api/x?y=1"} {
		resp, body := do(t, http.MethodGet, gw.URL+target, nil, nil)
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
		assert.JSONEq(t, `{"error":"Unauthorized"}`, body)
	}
	assert.Zero(t, be.hits.Load())
}

func TestProxyNoRoute(t *testing.T) {
	be := startBackend(t, nil)
	gw := startGateway(t, fmt.Sprintf("mappings:\n  - frontendHost: only.test\n    backend: %q\n", be.URL))
	resp, body := do(t, http.MethodGet, gw.URL+"/api/x", http.Header{"Host": {"other.test"}}, nil)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	assert.JSONEq(t, `{"error":"Not Found"}`, body)
	assert.Zero(t, be.hits.Load())
}

func TestProxyBadGateway(t *testing.T) {
	// A port that was just free: connections are refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := ln.Addr().String()
	require.NoError(t, ln.Close())

	// A backend that resets the connection after reading the request.
	resetLn, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = resetLn.Close() })
	go func() {
		for {
			c, err := resetLn.Accept()
			if err != nil {
				return
			}
			_, _ = c.Read(make([]byte, 4096))
			_ = c.(*net.TCPConn).SetLinger(0)
			_ = c.Close()
		}
	}()

	for name, addr := range map[string]string{"refused": dead, "reset": resetLn.Addr().String()} {
		t.Run(name, func(t *testing.T) {
			gw := startGateway(t, fmt.Sprintf("defaultBackend: %q\n", "http://"+addr))
			resp, body := do(t, http.MethodGet, gw.URL+"/api/x", nil, nil)
			assert.Equal(t, http.StatusBadGateway, resp.StatusCode)
			assert.JSONEq(t, `{"error":"bad_gateway"}`, body)
			assert.NotContains(t, body, "127.0.0.1")
		})
	}
}

func TestProxyGatewayTimeout(t *testing.T) {
	release := make(chan struct{})
	be := startBackend(t, func(ctx *fasthttp.RequestCtx) { <-release })
	t.Cleanup(func() { close(release) })
	gw := startGateway(t, fmt.Sprintf("defaultBackend: %q\n", be.URL),
		withPool(func(p *upstream.PoolConfig) { p.ResponseTimeout = 300 * time.Millisecond }))
	resp, body := do(t, http.MethodGet, gw.URL+"/api/slow", nil, nil)
	assert.Equal(t, http.StatusGatewayTimeout, resp.StatusCode)
	assert.JSONEq(t, `{"error":"gateway_timeout"}`, body)
}

func TestProxyReusesBackendConnections(t *testing.T) {
	be := startBackend(t, nil)
	gw := startGateway(t, fmt.Sprintf("defaultBackend: %q\n", be.URL))
	for i := 0; i < 100; i++ {
		resp, _ := do(t, http.MethodGet, fmt.Sprintf("%s/api/n/%d", gw.URL, i), nil, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	assert.EqualValues(t, 100, be.hits.Load())
	assert.LessOrEqual(t, be.conns.Load(), int64(3), "backend connections are not reused")
}

func TestProxyHTTPSBackend(t *testing.T) {
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "tls %s %s", r.URL.RequestURI(), r.Header.Get("X-User-Email"))
	}))
	t.Cleanup(ts.Close)
	roots := x509.NewCertPool()
	roots.AddCert(ts.Certificate())
	gw := startGateway(t, fmt.Sprintf("defaultBackend: %q\n", ts.URL),
		withPool(func(p *upstream.PoolConfig) { p.TLSConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12} }))
	resp, body := do(t, http.MethodGet, gw.URL+"/api/secure?x=1", nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Equal(t, "tls /secure?x=1 alice@example.com", body)
}

func TestProxyRejectsContentLengthWithTransferEncoding(t *testing.T) {
	be := startBackend(t, nil)
	gw := startGateway(t, fmt.Sprintf("defaultBackend: %q\n", be.URL))
	out := rawRequest(t, gw.Addr, "POST /api/x HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /api/smuggled HTTP/1.1\r\nHost: gw.test\r\n\r\n")
	assert.True(t, strings.HasPrefix(out, "HTTP/1.1 400 "), out)
	assert.NotContains(t, out, "smuggled")
	assert.Zero(t, be.hits.Load(), "an ambiguous request reached the backend")

	// The same with the headers the other way round and odd case.
	out = rawRequest(t, gw.Addr, "POST /api/x HTTP/1.1\r\nHost: gw.test\r\ntransfer-encoding: chunked\r\ncontent-LENGTH: 3\r\n\r\n0\r\n\r\n")
	assert.True(t, strings.HasPrefix(out, "HTTP/1.1 400 "), out)
	assert.Zero(t, be.hits.Load())
}

func TestProxyBadRequestBody(t *testing.T) {
	be := startBackend(t, nil)
	gw := startGateway(t, fmt.Sprintf("defaultBackend: %q\n", be.URL))
	head := "POST /api/upload HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n"
	valid := strings.Repeat("a", upstream.PrefetchSize+1024)
	next := "GET /api/next HTTP/1.1\r\nHost: gw.test\r\n\r\n"
	tests := []struct {
		name, body string
		hits       int64 // requests the backend gets
	}{
		{name: "chunk size not hex", body: "zz\r\nhello\r\n0\r\n\r\n"},
		{name: "chunk longer than its size", body: "5\r\nhello\r\n3\r\nhello\r\n0\r\n\r\n"},
		// Past the prefetch the backend has the head and the valid
		// prefix, cut short; the client's answer is the same.
		{name: "chunk longer than its size past the prefetch", body: fmt.Sprintf("%x\r\n%s\r\n3\r\nhello\r\n0\r\n\r\n", len(valid), valid), hits: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := be.hits.Load()
			// A request follows on the connection: it must not be
			// served, the end of the broken body being unknown.
			out := rawRequest(t, gw.Addr, head+tc.body+next)
			assert.True(t, strings.HasPrefix(out, "HTTP/1.1 400 "), out)
			assert.Contains(t, out, `{"error":"bad_request"}`)
			assert.Contains(t, strings.ToLower(out), "\r\nconnection: close\r\n")
			assert.Equal(t, 1, strings.Count(out, "HTTP/1.1 "), "answers on the connection: %s", out)
			// The backend may run its handler after the gateway answered.
			deadline := time.Now().Add(5 * time.Second)
			for be.hits.Load()-before < tc.hits && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			assert.Equal(t, tc.hits, be.hits.Load()-before, "requests the backend got")
		})
	}
}

func TestStatusOf(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		status int
	}{
		{"bad path", upstream.ErrBadPath, http.StatusBadRequest},
		{"bad body", fmt.Errorf("%w: %w", upstream.ErrBadRequestBody, io.ErrUnexpectedEOF), http.StatusBadRequest},
		// A timeout reading the client's body is the client's, not the
		// backend's.
		{"bad body by a read timeout", fmt.Errorf("%w: %w", upstream.ErrBadRequestBody, os.ErrDeadlineExceeded), http.StatusBadRequest},
		{"no route", upstream.ErrNoRoute, http.StatusNotFound},
		{"backend timeout", fasthttp.ErrTimeout, http.StatusGatewayTimeout},
		{"backend net timeout", os.ErrDeadlineExceeded, http.StatusGatewayTimeout},
		{"anything else", io.ErrUnexpectedEOF, http.StatusBadGateway},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, _ := statusOf(tc.err)
			assert.Equal(t, tc.status, status)
		})
	}
}

// patternReader yields n bytes of a repeating pattern without holding them.
type patternReader struct{ left int64 }

func (r *patternReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	for i := range p {
		p[i] = byte('a' + i%26)
	}
	r.left -= int64(len(p))
	return len(p), nil
}

// heapPeak samples the heap in use until stop is closed and returns the
// highest value seen.
func heapPeak(stop <-chan struct{}) <-chan uint64 {
	out := make(chan uint64, 1)
	go func() {
		var peak uint64
		var ms runtime.MemStats
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-stop:
				out <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return out
}

func TestProxyStreamsLargeBodiesWithBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 2 x 256 MiB")
	}
	const size = 256 << 20
	const budget = 64 << 20 // far below the body size: nothing is buffered whole
	var received atomic.Int64
	be := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		if ctx.IsPost() {
			n, err := io.Copy(io.Discard, ctx.RequestBodyStream())
			if err != nil {
				ctx.SetStatusCode(fasthttp.StatusInternalServerError)
				return
			}
			received.Store(n)
			ctx.SetBodyString("stored")
			return
		}
		ctx.SetBodyStream(&patternReader{left: size}, -1)
	})
	gw := startGateway(t, fmt.Sprintf("defaultBackend: %q\n", be.URL))

	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)

	t.Run("upload", func(t *testing.T) {
		stop := make(chan struct{})
		peak := heapPeak(stop)
		req, err := http.NewRequest(http.MethodPost, gw.URL+"/api/upload", &patternReader{left: size})
		require.NoError(t, err)
		req.ContentLength = size
		resp, err := testClient.Do(req)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		close(stop)
		require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
		assert.EqualValues(t, size, received.Load())
		assert.Less(t, int64(<-peak)-int64(base.HeapInuse), int64(budget), "upload was buffered")
	})
	t.Run("download", func(t *testing.T) {
		stop := make(chan struct{})
		peak := heapPeak(stop)
		resp, err := testClient.Get(gw.URL + "/api/download")
		require.NoError(t, err)
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		close(stop)
		require.NoError(t, err)
		assert.EqualValues(t, size, n)
		assert.Less(t, int64(<-peak)-int64(base.HeapInuse), int64(budget), "download was buffered")
	})
}

func TestProxyReloadKeepsRequestsFlowing(t *testing.T) {
	a := startBackend(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("a") })
	b := startBackend(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("b") })
	gw := startGateway(t, fmt.Sprintf("defaultBackend: %q\n", a.URL))
	_, body := do(t, http.MethodGet, gw.URL+"/api/x", nil, nil)
	require.Equal(t, "a", body)

	f, err := upstream.ParseFile("config.yml", []byte(fmt.Sprintf("defaultBackend: %q\n", b.URL)))
	require.NoError(t, err)
	r, err := gw.Proxy.Apply(f)
	require.NoError(t, err)
	assert.EqualValues(t, 2, r.Version)
	_, body = do(t, http.MethodGet, gw.URL+"/api/x", nil, nil)
	assert.Equal(t, "b", body)
}
