package edge

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apigetaway/getaway/upstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// syncBuffer collects the access log; the server writes it while tests
// read it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Sync() error { return nil }

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines returns the JSON lines written so far, decoded.
func (b *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &m), l)
		out = append(out, m)
	}
	return out
}

// withAccessLog turns the access log on, into buf, at sample.
func withAccessLog(buf *syncBuffer, sample float64) gatewayOption {
	return func(o *gatewayOpts) {
		o.deps.AccessLog = NewAccessLogger(buf)
		o.cfg.AccessLogSample = sample
	}
}

func TestAccessLogFields(t *testing.T) {
	be := startBackend(t, nil) // echoes the request target
	var log syncBuffer
	gw := startGateway(t, defaultBackendYAML(be.URL), withAccessLog(&log, 1))

	resp, body := do(t, http.MethodGet, gw.URL+"/api/items/7?code=SECRET-CODE&state=SECRET-STATE", http.Header{
		"Cookie":          {"sid=SECRET-SID; theme=dark"},
		"Authorization":   {"Bearer SECRET-BEARER"},
		"User-Agent":      {"test-agent/1.0"},
		HeaderRequestID:   {"req-fields-1"},
		"Traceparent":     {validTraceparent},
		"X-Forwarded-For": {"203.0.113.9"}, // not a trusted proxy: ignored
	}, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, "SECRET-CODE", "the backend got the query")

	lines := log.lines(t)
	require.Len(t, lines, 1)
	l := lines[0]
	assert.Equal(t, "access", l["logger"])
	assert.Equal(t, "request", l["msg"])
	assert.Equal(t, "info", l["level"])
	assert.NotEmpty(t, l["ts"])
	assert.Equal(t, "GET", l["method"])
	assert.Equal(t, "/api/items/7", l["path"], "the path the client asked for, without the query")
	assert.Equal(t, float64(200), l["status"])
	assert.Equal(t, "api", l["group"])
	assert.Equal(t, "req-fields-1", l["request_id"])
	assert.Equal(t, validTraceID, l["trace_id"])
	assert.Equal(t, "127.0.0.1", l["client_ip"])
	assert.Equal(t, "test-agent/1.0", l["user_agent"])
	assert.Equal(t, float64(len(body)), l["bytes_out"])
	assert.Contains(t, l, "duration_ms")
	assert.NotContains(t, log.String(), "SECRET", "no cookie, token or query value is logged")
	assert.NotContains(t, log.String(), "theme=dark")
}

func TestAccessLogGeneratedTraceID(t *testing.T) {
	be := startBackend(t, nil)
	var log syncBuffer
	gw := startGateway(t, defaultBackendYAML(be.URL), withAccessLog(&log, 1))
	resp, _ := do(t, http.MethodGet, gw.URL+"/api/x", nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	lines := log.lines(t)
	require.Len(t, lines, 1)
	tp := string(be.lastRequest(t).Header.Peek("Traceparent"))
	require.Len(t, tp, traceparentLen)
	assert.Equal(t, tp[3:35], lines[0]["trace_id"], "the log's trace-id is the one the backend got")
	assert.Equal(t, resp.Header.Get(HeaderRequestID), lines[0]["request_id"])
}

func TestAccessLogSampling(t *testing.T) {
	be := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/fail" {
			ctx.SetStatusCode(fasthttp.StatusInternalServerError)
		}
	})
	var log syncBuffer
	gw := startGateway(t, defaultBackendYAML(be.URL), withAccessLog(&log, 0), withConfig(func(c *Config) {
		c.AuthRateLimit = RateLimit{Requests: 1, Window: time.Hour}
	}))
	for _, path := range []string{"/api/ok", "/healthz", "/nothing", "/auth/x"} {
		resp, _ := do(t, http.MethodGet, gw.URL+path, nil, nil)
		require.Less(t, resp.StatusCode, 500, path)
	}
	assert.Empty(t, log.lines(t), "sample 0 logs no 2xx or 4xx")

	resp, _ := do(t, http.MethodGet, gw.URL+"/api/fail?code=SECRET", http.Header{"Authorization": {"Bearer SECRET"}}, nil)
	require.Equal(t, http.StatusInternalServerError, resp.StatusCode)
	resp, _ = do(t, http.MethodGet, gw.URL+"/auth/x", nil, nil)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)

	lines := log.lines(t)
	require.Len(t, lines, 2, "5xx and 429 are always logged")
	assert.Equal(t, float64(500), lines[0]["status"])
	assert.Equal(t, "/api/fail", lines[0]["path"])
	assert.Equal(t, float64(429), lines[1]["status"])
	assert.Equal(t, "auth", lines[1]["group"])
	assert.NotContains(t, log.String(), "SECRET")
}

func TestAccessLogPanicAndGatewayErrors(t *testing.T) {
	var log syncBuffer
	dead := "http://" + freePort(t)
	gw := startGateway(t, defaultBackendYAML(dead), withAccessLog(&log, 0))
	resp, _ := do(t, http.MethodGet, gw.URL+"/api/x", nil, nil)
	require.Equal(t, http.StatusBadGateway, resp.StatusCode)

	var panicLog syncBuffer
	pg := startGateway(t, defaultBackendYAML(dead), withAccessLog(&panicLog, 0), withAuth(AuthenticatorFunc(func(*fasthttp.RequestCtx) (upstream.Identity, bool) {
		panic("boom")
	})))
	resp, _ = do(t, http.MethodGet, pg.URL+"/api/x", nil, nil)
	require.Equal(t, http.StatusInternalServerError, resp.StatusCode)

	lines := log.lines(t)
	require.Len(t, lines, 1)
	assert.Equal(t, float64(502), lines[0]["status"])
	lines = panicLog.lines(t)
	require.Len(t, lines, 1)
	assert.Equal(t, float64(500), lines[0]["status"])
	assert.Equal(t, resp.Header.Get(HeaderRequestID), lines[0]["request_id"])
}

func TestAccessLogUserAgentCut(t *testing.T) {
	be := startBackend(t, nil)
	var log syncBuffer
	gw := startGateway(t, defaultBackendYAML(be.URL), withAccessLog(&log, 1))
	resp, _ := do(t, http.MethodGet, gw.URL+"/api/x", http.Header{"User-Agent": {strings.Repeat("a", 1000)}}, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	lines := log.lines(t)
	require.Len(t, lines, 1)
	assert.Equal(t, strings.Repeat("a", maxLoggedUserAgent), lines[0]["user_agent"])
}

func TestAccessLogWants(t *testing.T) {
	var buf syncBuffer
	logger := NewAccessLogger(zapcore.AddSync(&buf))
	assert.Nil(t, newAccessLog(nil, 1), "no logger: no access log")

	all := newAccessLog(logger, 1)
	none := newAccessLog(logger, 0)
	half := newAccessLog(logger, 0.5)
	taken := 0
	for range 1000 {
		assert.True(t, all.wants(200))
		assert.False(t, none.wants(200))
		assert.False(t, none.wants(404))
		if half.wants(200) {
			taken++
		}
	}
	assert.True(t, taken > 0 && taken < 1000, "half sampled %d of 1000", taken)
	for _, status := range []int{500, 502, 504, 429} {
		assert.True(t, none.wants(status), "status %d", status)
	}
}

// BenchmarkProxyGatewayAccessLog is BenchmarkProxyGateway with every
// request written to the access log (ACCESS_LOG_SAMPLE=1), encoded as in
// production and discarded: the cost of logging, without the write
// system call.
func BenchmarkProxyGatewayAccessLog(b *testing.B) {
	ln := benchBackend(b)
	f, err := upstream.ParseFile("config.yml", []byte(`
defaultBackend: "http://backend"
`))
	require.NoError(b, err)
	p, err := upstream.NewProxy(upstream.ProxyConfig{Pool: upstream.PoolConfig{
		Dial: func(string) (net.Conn, error) { return ln.Dial() },
	}}, f, zap.NewNop())
	require.NoError(b, err)
	s, err := New(Config{AccessLogSample: 1}, Deps{Proxy: p, Auth: allowAll, AccessLog: NewAccessLogger(zapcore.AddSync(io.Discard))})
	require.NoError(b, err)
	runHandler(b, s.Handler(), "/api/v2/bench?x=1")
}
