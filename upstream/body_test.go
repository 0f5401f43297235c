package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
)

// Request bodies through Forward (issue 6): trailers never reach the
// backend, and a body the client sent broken is the client's error
// (ErrBadRequestBody), not the backend's. A real client writes raw bytes to
// a fasthttp server streaming request bodies (as edge's does) that calls
// Forward, in front of a real fasthttp backend on loopback.

// bodySeen is one request as the backend received it.
type bodySeen struct {
	header  [][2]string // lower-case name and value, header section only
	trailer string      // the trailer section as fasthttp parsed it
	body    string
	bodyErr string // the body could not be read to its end
}

// bodyBackend records every request; a request counts once its head is in.
type bodyBackend struct {
	URL   string
	conns atomic.Int64

	mu   sync.Mutex
	seen []bodySeen
	done int // requests whose body was read to its end or its error
}

func startBodyBackend(t *testing.T) *bodyBackend {
	t.Helper()
	b := &bodyBackend{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &fasthttp.Server{
		StreamRequestBody: true,
		Handler: func(ctx *fasthttp.RequestCtx) {
			var s bodySeen
			for k, v := range ctx.Request.Header.All() {
				s.header = append(s.header, [2]string{strings.ToLower(string(k)), string(v)})
			}
			b.mu.Lock()
			i := len(b.seen)
			b.seen = append(b.seen, s)
			b.mu.Unlock()
			body, err := io.ReadAll(ctx.RequestBodyStream())
			b.mu.Lock()
			b.seen[i].body = string(body)
			if err != nil {
				b.seen[i].bodyErr = err.Error()
			}
			b.seen[i].trailer = string(ctx.Request.Header.TrailerHeader())
			b.done++
			b.mu.Unlock()
			ctx.SetBodyString("ok")
		},
		ConnState: func(_ net.Conn, st fasthttp.ConnState) {
			if st == fasthttp.StateNew {
				b.conns.Add(1)
			}
		},
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	b.URL = "http://" + ln.Addr().String()
	return b
}

// requests waits until the backend has read n requests to their end (or
// their error) and returns them; it fails if more arrive.
func (b *bodyBackend) requests(t *testing.T, n int) []bodySeen {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b.mu.Lock()
		done, seen := b.done, append([]bodySeen(nil), b.seen...)
		b.mu.Unlock()
		if done >= n && len(seen) == done {
			require.Len(t, seen, n, "requests the backend received")
			return seen
		}
		if time.Now().After(deadline) {
			t.Fatalf("the backend read %d of %d requests (%d begun)", done, n, len(seen))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (b *bodyBackend) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.seen)
}

// countingObserver counts the passive health reports.
type countingObserver struct{ failures, successes atomic.Int64 }

func (o *countingObserver) ReportFailure(string) { o.failures.Add(1) }
func (o *countingObserver) ReportSuccess(string) { o.successes.Add(1) }

// bodyGateway is a fasthttp server whose every request goes through
// Forward; errs gets Forward's error of each request (nil included).
type bodyGateway struct {
	addr string
	obs  *countingObserver
	errs chan error
}

func startBodyGateway(t *testing.T, backendURL string) *bodyGateway {
	t.Helper()
	f, err := ParseFile("config.yml", []byte(fmt.Sprintf("defaultBackend: %q\n", backendURL)))
	require.NoError(t, err)
	g := &bodyGateway{obs: &countingObserver{}, errs: make(chan error, 16)}
	p, err := NewProxy(ProxyConfig{Observer: g.obs}, f, zap.NewNop())
	require.NoError(t, err)
	srv := &fasthttp.Server{
		StreamRequestBody: true,
		Handler: func(ctx *fasthttp.RequestCtx) {
			err := p.Forward(ctx, &wsTestUser)
			g.errs <- err
			if err != nil {
				ctx.Response.Reset()
				ctx.SetStatusCode(fasthttp.StatusBadGateway)
				if errors.Is(err, ErrBadRequestBody) {
					ctx.SetStatusCode(fasthttp.StatusBadRequest)
				}
			}
		},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Shutdown()
		<-done
		p.Close()
	})
	g.addr = ln.Addr().String()
	return g
}

// send writes raw, half-closes, and returns the status of the answer (0 if
// none came) and Forward's error.
func (g *bodyGateway) send(t *testing.T, raw string) (int, error) {
	t.Helper()
	c, err := net.Dial("tcp", g.addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	go func() {
		if _, err := io.WriteString(c, raw); err == nil {
			_ = c.(*net.TCPConn).CloseWrite()
		}
	}()
	status := 0
	if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		status = resp.StatusCode
	}
	select {
	case err := <-g.errs:
		return status, err
	case <-time.After(5 * time.Second):
		t.Fatal("Forward was not called")
		return 0, nil
	}
}

const bodyEvil = "evil-3f9c"

func chunkedPost(body string, extra ...string) string {
	return "POST /api/upload HTTP/1.1\r\nHost: gw.test\r\n" + strings.Join(extra, "") +
		"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + body
}

// chunk frames s as one chunk.
func chunk(s string) string { return fmt.Sprintf("%x\r\n%s\r\n", len(s), s) }

func TestForwardDropsRequestTrailers(t *testing.T) {
	big := strings.Repeat("a", PrefetchSize) // with the second chunk, past the prefetch
	tests := []struct {
		name, raw, body string
		// headKept is a header section field the client sent under the
		// name of one of its trailer fields: it is no trailer, and stays.
		headKept string
	}{
		{
			name: "declared, body prefetched whole",
			raw:  chunkedPost(chunk("hello")+"0\r\nX-User-Email: "+bodyEvil+"\r\nX-Extra: "+bodyEvil+"\r\n\r\n", "Trailer: X-User-Email, X-Extra\r\n"),
			body: "hello",
		},
		{
			name: "undeclared, body prefetched whole",
			raw:  chunkedPost(chunk("hello") + "0\r\nx-user-role: " + bodyEvil + "\r\nX-Extra: " + bodyEvil + "\r\n\r\n"),
			body: "hello",
		},
		{
			name: "declared, body streamed past the prefetch",
			raw:  chunkedPost(chunk(big)+chunk("tail")+"0\r\nX-User-Email: "+bodyEvil+"\r\nX-Extra: "+bodyEvil+"\r\n\r\n", "Trailer: X-User-Email, X-Extra\r\n"),
			body: big + "tail",
		},
		{
			name: "undeclared, body streamed past the prefetch",
			raw:  chunkedPost(chunk(big) + chunk("tail") + "0\r\nx-user-sub: " + bodyEvil + "\r\nX-Extra: " + bodyEvil + "\r\n\r\n"),
			body: big + "tail",
		},
		{
			name:     "a header field of a trailer field's name stays, body prefetched whole",
			raw:      chunkedPost(chunk("hello")+"0\r\nX-Note: "+bodyEvil+"\r\n\r\n", "X-Note: head\r\n"),
			body:     "hello",
			headKept: "x-note",
		},
		{
			name:     "a header field of a trailer field's name stays, body streamed",
			raw:      chunkedPost(chunk(big)+chunk("tail")+"0\r\nX-Note: "+bodyEvil+"\r\n\r\n", "X-Note: head\r\n"),
			body:     big + "tail",
			headKept: "x-note",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			be := startBodyBackend(t)
			gw := startBodyGateway(t, be.URL)
			status, err := gw.send(t, tc.raw)
			require.NoError(t, err)
			assert.Equal(t, http.StatusOK, status)
			seen := be.requests(t, 1)[0]
			assert.Equal(t, tc.body, seen.body, "body the backend got")
			assert.Empty(t, seen.bodyErr)
			assert.Equal(t, "\r\n", seen.trailer, "trailer section the backend got")
			var users []string
			for _, kv := range seen.header {
				assert.NotContains(t, kv[1], bodyEvil, "%s reached the backend", kv[0])
				assert.NotEqual(t, "trailer", kv[0], "the Trailer header reached the backend")
				if strings.HasPrefix(kv[0], "x-user-") {
					users = append(users, kv[0]+"="+kv[1])
				}
				if kv[0] == tc.headKept {
					assert.Equal(t, "head", kv[1])
					tc.headKept = ""
				}
			}
			assert.Empty(t, tc.headKept, "the header section's %s was dropped", tc.headKept)
			assert.ElementsMatch(t, []string{"x-user-email=" + wsTestUser.Email, "x-user-sub=" + wsTestUser.Sub, "x-user-name=" + wsTestUser.Name}, users)
		})
	}
}

func TestDropTrailersOfABufferedBody(t *testing.T) {
	// A body read whole before Forward (not streamed) has its trailer
	// section parsed into the header already.
	raw := "POST /upload HTTP/1.1\r\nHost: gw.test\r\nTrailer: X-User-Email\r\nX-Note: head\r\nTransfer-Encoding: chunked\r\n\r\n" +
		chunk("hello") + "0\r\nX-User-Email: " + bodyEvil + "\r\nX-Note: " + bodyEvil + "\r\nX-Other: " + bodyEvil + "\r\n\r\n"
	var req fasthttp.Request
	require.NoError(t, req.Read(bufioReader(raw)))
	require.Contains(t, string(req.Header.TrailerHeader()), bodyEvil, "the trailer section was not parsed: the test proves nothing")

	require.NoError(t, dropTrailers(&req.Header))
	assert.Equal(t, "\r\n", string(req.Header.TrailerHeader()))
	assert.Empty(t, req.Header.Peek(fasthttp.HeaderTrailer))
	assert.Empty(t, req.Header.Peek("X-Other"))
	assert.Empty(t, req.Header.Peek("X-User-Email"))
	assert.Equal(t, "head", string(req.Header.Peek("X-Note")))

	// What fasthttp would write to a backend: no trailer, no Trailer.
	var out bytes.Buffer
	w := bufio.NewWriter(&out)
	require.NoError(t, req.Write(w))
	require.NoError(t, w.Flush())
	assert.NotContains(t, out.String(), bodyEvil)
	assert.NotContains(t, strings.ToLower(out.String()), "trailer:")
	assert.True(t, strings.HasSuffix(out.String(), "\r\n\r\nhello"), "request written: %q", out.String())

	// Nothing to drop: nothing changes.
	req.Reset()
	require.NoError(t, req.Header.Read(bufioReader("GET / HTTP/1.1\r\nHost: a\r\nX-Note: head\r\n\r\n")))
	require.NoError(t, dropTrailers(&req.Header))
	assert.Equal(t, "head", string(req.Header.Peek("X-Note")))
}

func TestForwardBadRequestBody(t *testing.T) {
	big := strings.Repeat("a", PrefetchSize+1024)
	tests := []struct {
		name string
		raw  string
		// prefix: the backend gets the head and this much of the body,
		// cut short; 0: it gets no request at all.
		prefix int
		// contentLength of a body with one; 0 for a chunked body.
		contentLength int
	}{
		{name: "chunk size not hex", raw: chunkedPost("zz\r\nhello\r\n0\r\n\r\n")},
		{name: "negative chunk size", raw: chunkedPost("-5\r\nhello\r\n0\r\n\r\n")},
		{name: "chunk size overflowing 64 bits", raw: chunkedPost("10000000000000005\r\nhello\r\n0\r\n\r\n")},
		{name: "bare LF framing", raw: chunkedPost("5\nhello\n0\n\n")},
		{name: "first chunk longer than its size", raw: chunkedPost("3\r\nhello\r\n0\r\n\r\n")},
		{name: "second chunk longer than its size", raw: chunkedPost(chunk("hello") + "3\r\n" + bodyEvil + "\r\n0\r\n\r\n")},
		{name: "forbidden trailer field", raw: chunkedPost(chunk("hello") + "0\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n")},
		{name: "chunked body cut short", raw: chunkedPost(chunk("hello") + "5\r\nhel")},
		{
			name:   "chunk longer than its size past the prefetch",
			raw:    chunkedPost(chunk(big) + "3\r\n" + bodyEvil + "\r\n0\r\n\r\n"),
			prefix: len(big),
		},
		{
			// fasthttp reads up to 8 KiB of a Content-Length body before
			// the handler runs (the backend's too): past that, the body
			// streams.
			name:          "Content-Length body cut short",
			raw:           "POST /api/upload HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 40000\r\nConnection: close\r\n\r\n" + big + big,
			prefix:        2 * len(big),
			contentLength: 40000,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			be := startBodyBackend(t)
			gw := startBodyGateway(t, be.URL)
			status, err := gw.send(t, tc.raw)
			require.ErrorIs(t, err, ErrBadRequestBody)
			assert.Equal(t, http.StatusBadRequest, status)
			assert.Zero(t, gw.obs.failures.Load(), "the client's broken body was blamed on the backend")
			if tc.prefix == 0 {
				assert.Zero(t, be.count(), "the backend got a request")
				assert.Zero(t, be.conns.Load(), "the backend was contacted")
				return
			}
			seen := be.requests(t, 1)[0]
			// The valid prefix only, cut short, and none of the bad
			// bytes. A chunked body misses its last chunk: the backend
			// reads an error. A fasthttp backend reads the end of a
			// Content-Length body cut short as its end: it is short.
			if tc.contentLength == 0 {
				assert.NotEmpty(t, seen.bodyErr, "the backend read a complete body")
			} else {
				assert.Less(t, len(seen.body), tc.contentLength, "the backend read a complete body")
			}
			assert.LessOrEqual(t, len(seen.body), tc.prefix)
			assert.Equal(t, strings.Repeat("a", len(seen.body)), seen.body, "body the backend got is not a prefix of the valid data")
			assert.NotContains(t, seen.body, bodyEvil)

			// The backend's connection was closed, not reused: the next
			// request opens another.
			status, err = gw.send(t, chunkedPost(chunk("again")+"0\r\n\r\n"))
			require.NoError(t, err)
			assert.Equal(t, http.StatusOK, status)
			assert.Equal(t, "again", be.requests(t, 2)[1].body)
			assert.Equal(t, int64(2), be.conns.Load(), "backend connections")
		})
	}
}

func TestForwardBackendErrorWithBodyIsNotTheClients(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	down := "http://" + ln.Addr().String()
	require.NoError(t, ln.Close()) // connection refused from now on
	gw := startBodyGateway(t, down)
	for _, raw := range []string{
		chunkedPost(chunk("hello") + "0\r\n\r\n"),
		"POST /api/upload HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
	} {
		status, err := gw.send(t, raw)
		require.Error(t, err)
		assert.NotErrorIs(t, err, ErrBadRequestBody)
		assert.Equal(t, http.StatusBadGateway, status)
	}
	assert.Equal(t, int64(2), gw.obs.failures.Load(), "backend failures reported")
}
