package edge

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/apigetaway/getaway/upstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
)

// helmetHeaders is the security header set every gateway answer must carry,
// written out here (not read from securityDefaults) so that dropping or
// weakening one in the code makes a test fail.
var helmetHeaders = map[string]string{
	"Content-Security-Policy":           "default-src 'self';base-uri 'self';font-src 'self' https: data:;form-action 'self';frame-ancestors 'self';img-src 'self' data:;object-src 'none';script-src 'self';script-src-attr 'none';style-src 'self' https: 'unsafe-inline';upgrade-insecure-requests",
	"Cross-Origin-Opener-Policy":        "same-origin",
	"Cross-Origin-Resource-Policy":      "same-site",
	"Origin-Agent-Cluster":              "?1",
	"Referrer-Policy":                   "no-referrer",
	"Strict-Transport-Security":         "max-age=31536000; includeSubDomains",
	"X-Content-Type-Options":            "nosniff",
	"X-Dns-Prefetch-Control":            "off",
	"X-Download-Options":                "noopen",
	"X-Frame-Options":                   "SAMEORIGIN",
	"X-Permitted-Cross-Domain-Policies": "none",
	"X-Xss-Protection":                  "0",
}

// assertHelmet checks that h carries each security header exactly once,
// with our value.
func assertHelmet(t *testing.T, h http.Header) {
	t.Helper()
	for k, v := range helmetHeaders {
		assert.Equal(t, []string{v}, h.Values(k), "security header %s", k)
	}
}

// defaultBackendYAML is a config.yml sending every /api request to url.
func defaultBackendYAML(url string) string { return fmt.Sprintf("defaultBackend: %q\n", url) }

func TestRecoverPanicAnswers500AndKeepsServing(t *testing.T) {
	be := startBackend(t, nil)
	var calls atomic.Int64
	auth := AuthenticatorFunc(func(ctx *fasthttp.RequestCtx) (upstream.Identity, bool) {
		if strings.HasPrefix(string(ctx.Path()), "/api/panic") {
			calls.Add(1)
			panic("authenticator exploded")
		}
		return testUser, true
	})
	gw := startGateway(t, defaultBackendYAML(be.URL), withAuth(auth))

	tests := []struct {
		name     string
		clientID string // X-Request-Id sent by the client, "" for none
	}{
		{"generated request id", ""},
		{"client request id kept", "panic-trace-1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.clientID != "" {
				h.Set(HeaderRequestID, tc.clientID)
			}
			resp, body := do(t, http.MethodGet, gw.URL+"/api/panic", h, nil)
			require.Equal(t, http.StatusInternalServerError, resp.StatusCode, body)
			assert.JSONEq(t, `{"error":"Internal Server Error"}`, body)
			assert.NotContains(t, body, "exploded", "panic value leaked to the client")
			assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
			id := resp.Header.Get(HeaderRequestID)
			require.NotEmpty(t, id, "500 without X-Request-Id")
			assert.True(t, validRequestID([]byte(id)), "request id %q", id)
			if tc.clientID != "" {
				assert.Equal(t, tc.clientID, id)
			}
			assertHelmet(t, resp.Header)

			// The process survived and the server still serves, proxied
			// requests included.
			resp, body = do(t, http.MethodGet, gw.URL+"/api/after", nil, nil)
			require.Equal(t, http.StatusOK, resp.StatusCode, body)
			assert.Equal(t, "/after", body)
		})
	}
	assert.EqualValues(t, len(tests), calls.Load())
	assert.EqualValues(t, len(tests), be.hits.Load(), "only the requests after the panics reach the backend")
}

func TestRequestID(t *testing.T) {
	be := startBackend(t, nil)
	gw := startGateway(t, defaultBackendYAML(be.URL))

	// send makes one proxied request and returns the id the client got back
	// and the id the backend saw.
	send := func(t *testing.T, clientID *string) (got, backendSaw string) {
		t.Helper()
		h := http.Header{}
		if clientID != nil {
			h.Set(HeaderRequestID, *clientID)
		}
		resp, body := do(t, http.MethodGet, gw.URL+"/api/rid", h, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		require.Len(t, resp.Header.Values(HeaderRequestID), 1)
		return resp.Header.Get(HeaderRequestID), string(be.lastRequest(t).Header.Peek(HeaderRequestID))
	}
	ptr := func(s string) *string { return &s }

	tests := []struct {
		name     string
		clientID *string
		keep     bool
	}{
		{"absent", nil, false},
		{"empty", ptr(""), false},
		{"well formed", ptr("abc-123.x:y_z"), true},
		{"128 characters", ptr(strings.Repeat("a", 128)), true},
		{"129 characters", ptr(strings.Repeat("a", 129)), false},
		{"space", ptr("abc 123"), false},
		{"markup", ptr("<script>"), false},
		{"non-ASCII", ptr("café-42"), false},
		{"slash", ptr("a/b"), false},
		{"quote", ptr(`a"b`), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, backendSaw := send(t, tc.clientID)
			require.NotEmpty(t, got)
			assert.True(t, validRequestID([]byte(got)), "returned id %q is not well formed", got)
			assert.Equal(t, got, backendSaw, "backend and client must see the same id")
			if tc.keep {
				assert.Equal(t, *tc.clientID, got)
			} else if tc.clientID != nil {
				assert.NotEqual(t, *tc.clientID, got)
			}
		})
	}

	t.Run("unique per request", func(t *testing.T) {
		seen := map[string]bool{}
		for i := 0; i < 20; i++ {
			got, _ := send(t, nil)
			assert.False(t, seen[got], "id %q handed out twice", got)
			seen[got] = true
		}
	})

	t.Run("gateway's own answers", func(t *testing.T) {
		for _, path := range []string{"/healthz", "/nope"} {
			resp, _ := do(t, http.MethodGet, gw.URL+path, http.Header{HeaderRequestID: {"own-1"}}, nil)
			assert.Equal(t, "own-1", resp.Header.Get(HeaderRequestID), path)
		}
	})
}

func TestSecurityHeaders(t *testing.T) {
	plain := startBackend(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("plain") })
	own := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.Set("Content-Security-Policy", "default-src 'none'")
		ctx.Response.Header.Set("X-Frame-Options", "DENY")
		ctx.SetBodyString("own")
	})
	deny := AuthenticatorFunc(func(ctx *fasthttp.RequestCtx) (upstream.Identity, bool) {
		if string(ctx.Path()) == "/api/deny" {
			return DenyAll.Authenticate(ctx)
		}
		return testUser, true
	})
	gw := startGateway(t, fmt.Sprintf(`
defaultBackend: %q
mappings:
  - frontendHost: own.test
    backend: %q
`, plain.URL, own.URL), withAuth(deny))

	t.Run("full set on every answer", func(t *testing.T) {
		tests := []struct {
			name, method, path string
			status             int
		}{
			{"healthz", http.MethodGet, "/healthz", http.StatusOK},
			{"healthz HEAD", http.MethodHead, "/healthz", http.StatusOK},
			{"not found", http.MethodGet, "/nope", http.StatusNotFound},
			{"unauthorized", http.MethodGet, "/api/deny", http.StatusUnauthorized},
			{"proxied", http.MethodGet, "/api/x", http.StatusOK},
			{"bad path", http.MethodGet, "/api/%00", http.StatusBadRequest},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				resp, body := do(t, tc.method, gw.URL+tc.path, nil, nil)
				require.Equal(t, tc.status, resp.StatusCode, body)
				assertHelmet(t, resp.Header)
			})
		}
	})

	t.Run("backend's own value wins", func(t *testing.T) {
		resp, body := do(t, http.MethodGet, gw.URL+"/api/x", http.Header{"Host": {"own.test"}}, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		require.Equal(t, "own", body)
		assert.Equal(t, []string{"default-src 'none'"}, resp.Header.Values("Content-Security-Policy"))
		assert.Equal(t, []string{"DENY"}, resp.Header.Values("X-Frame-Options"))
		// The headers the backend did not set are still ours.
		for k, v := range helmetHeaders {
			if k == "Content-Security-Policy" || k == "X-Frame-Options" {
				continue
			}
			assert.Equal(t, []string{v}, resp.Header.Values(k), k)
		}
	})
}

func TestCORSActualRequests(t *testing.T) {
	const (
		envOrigin     = "https://app.example.com"
		fileOrigin    = "https://cfg.example.com"
		foreignOrigin = "https://evil.example.net"
	)
	// The backend plays a careless CORS implementation: it answers
	// "Access-Control-Allow-Origin: *" or reflects whatever Origin came in,
	// with credentials.
	be := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		switch string(ctx.Path()) {
		case "/star":
			ctx.Response.Header.Set("Access-Control-Allow-Origin", "*")
		case "/reflect":
			ctx.Response.Header.SetBytesV("Access-Control-Allow-Origin", ctx.Request.Header.Peek("Origin"))
			ctx.Response.Header.Set("Access-Control-Allow-Credentials", "true")
		}
		ctx.SetBodyString("ok")
	})
	yaml := func(origins ...string) string {
		y := defaultBackendYAML(be.URL)
		if len(origins) > 0 {
			y += fmt.Sprintf("allowedOrigins: [%q]\n", origins[0])
		}
		return y
	}
	gw := startGateway(t, yaml(fileOrigin), withConfig(func(c *Config) { c.AllowedOrigins = []string{envOrigin} }))

	get := func(t *testing.T, path, origin string) *http.Response {
		t.Helper()
		resp, body := do(t, http.MethodGet, gw.URL+path, http.Header{"Origin": {origin}}, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		return resp
	}
	assertAllowed := func(t *testing.T, resp *http.Response, origin string) {
		t.Helper()
		assert.Equal(t, []string{origin}, resp.Header.Values("Access-Control-Allow-Origin"))
		assert.Equal(t, []string{"true"}, resp.Header.Values("Access-Control-Allow-Credentials"))
		assert.True(t, varyHas(resp.Header, "Origin"), "Vary %q lacks Origin", resp.Header.Values("Vary"))
	}
	assertRefused := func(t *testing.T, resp *http.Response) {
		t.Helper()
		assert.Empty(t, resp.Header.Values("Access-Control-Allow-Origin"))
		assert.Empty(t, resp.Header.Values("Access-Control-Allow-Credentials"))
	}

	tests := []struct {
		name, path, origin string
		allowed            bool
	}{
		{"env origin, proxied", "/api/x", envOrigin, true},
		{"env origin, gateway's own route", "/healthz", envOrigin, true},
		{"config.yml origin", "/api/x", fileOrigin, true},
		{"env origin over backend star", "/api/star", envOrigin, true},
		{"env origin over backend reflection", "/api/reflect", envOrigin, true},
		{"foreign origin", "/api/x", foreignOrigin, false},
		{"foreign origin, backend star", "/api/star", foreignOrigin, false},
		{"foreign origin, backend reflects", "/api/reflect", foreignOrigin, false},
		{"foreign origin, gateway's own route", "/healthz", foreignOrigin, false},
		{"origin differing in port", "/api/x", envOrigin + ":8443", false},
		{"origin differing in scheme", "/api/x", "http://app.example.com", false},
		{"null origin", "/api/reflect", "null", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := get(t, tc.path, tc.origin)
			if tc.allowed {
				assertAllowed(t, resp, tc.origin)
			} else {
				assertRefused(t, resp)
			}
		})
	}

	t.Run("config.yml origins are live", func(t *testing.T) {
		assertAllowed(t, get(t, "/api/x", fileOrigin), fileOrigin)
		f, err := upstream.ParseFile("config.yml", []byte(yaml()))
		require.NoError(t, err)
		_, err = gw.Proxy.Apply(f)
		require.NoError(t, err)
		assertRefused(t, get(t, "/api/x", fileOrigin))
		// The environment's origins do not depend on config.yml.
		assertAllowed(t, get(t, "/api/x", envOrigin), envOrigin)

		f, err = upstream.ParseFile("config.yml", []byte(yaml(fileOrigin)))
		require.NoError(t, err)
		_, err = gw.Proxy.Apply(f)
		require.NoError(t, err)
		assertAllowed(t, get(t, "/api/x", fileOrigin), fileOrigin)
	})
}

// varyHas reports whether one of h's Vary headers lists name.
func varyHas(h http.Header, name string) bool {
	for _, v := range h.Values("Vary") {
		for _, item := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(item), name) {
				return true
			}
		}
	}
	return false
}

func TestCORSPreflight(t *testing.T) {
	const (
		allowed = "https://app.example.com"
		foreign = "https://evil.example.net"
	)
	be := startBackend(t, nil)
	gw := startGateway(t, defaultBackendYAML(be.URL), withConfig(func(c *Config) { c.AllowedOrigins = []string{allowed} }))

	tests := []struct {
		name           string
		path           string
		origin         string
		method         string // Access-Control-Request-Method
		reqHeaders     string // Access-Control-Request-Headers, "" for none
		wantStatus     int
		wantAllowHdrs  string // expected Access-Control-Allow-Headers, "" for absent
		wantCORSHeader bool
	}{
		{"allowed, no headers", "/api/items", allowed, "PUT", "", http.StatusNoContent, "", true},
		{"allowed, headers echoed", "/api/items", allowed, "POST", "Content-Type, X-Custom-Header", http.StatusNoContent, "Content-Type, X-Custom-Header", true},
		{"allowed, gateway route", "/auth/logout", allowed, "POST", "content-type", http.StatusNoContent, "content-type", true},
		{"allowed, semicolon not echoed", "/api/items", allowed, "POST", "X-A;evil=1", http.StatusNoContent, "", true},
		{"allowed, markup not echoed", "/api/items", allowed, "POST", "X-A, <script>", http.StatusNoContent, "", true},
		{"allowed, quote not echoed", "/api/items", allowed, "POST", `X-A, "b"`, http.StatusNoContent, "", true},
		{"allowed, non-ASCII not echoed", "/api/items", allowed, "POST", "X-Café", http.StatusNoContent, "", true},
		{"foreign", "/api/items", foreign, "PUT", "Content-Type", http.StatusForbidden, "", false},
		{"foreign, gateway route", "/healthz", foreign, "GET", "", http.StatusForbidden, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := be.hits.Load()
			h := http.Header{"Origin": {tc.origin}, "Access-Control-Request-Method": {tc.method}}
			if tc.reqHeaders != "" {
				h.Set("Access-Control-Request-Headers", tc.reqHeaders)
			}
			resp, body := do(t, http.MethodOptions, gw.URL+tc.path, h, nil)
			require.Equal(t, tc.wantStatus, resp.StatusCode, body)
			assert.Equal(t, before, be.hits.Load(), "the backend saw a preflight")
			assert.Equal(t, tc.wantAllowHdrs, resp.Header.Get("Access-Control-Allow-Headers"))
			if !tc.wantCORSHeader {
				assert.JSONEq(t, `{"error":"Forbidden"}`, body)
				for _, k := range []string{"Access-Control-Allow-Origin", "Access-Control-Allow-Credentials", "Access-Control-Allow-Methods", "Access-Control-Allow-Headers", "Access-Control-Max-Age"} {
					assert.Empty(t, resp.Header.Values(k), k)
				}
				return
			}
			assert.Empty(t, body)
			assert.Equal(t, []string{tc.origin}, resp.Header.Values("Access-Control-Allow-Origin"))
			assert.Equal(t, "true", resp.Header.Get("Access-Control-Allow-Credentials"))
			methods := resp.Header.Get("Access-Control-Allow-Methods")
			for _, m := range []string{"GET", "POST", "PUT", "PATCH", "DELETE"} {
				assert.Contains(t, methods, m)
			}
			maxAge, err := strconv.Atoi(resp.Header.Get("Access-Control-Max-Age"))
			require.NoError(t, err, "Access-Control-Max-Age %q", resp.Header.Get("Access-Control-Max-Age"))
			assert.Positive(t, maxAge)
			assert.True(t, varyHas(resp.Header, "Origin"))
		})
	}

	t.Run("plain OPTIONS is not a preflight", func(t *testing.T) {
		before := be.hits.Load()
		resp, body := do(t, http.MethodOptions, gw.URL+"/api/items", http.Header{"Origin": {allowed}}, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		assert.Equal(t, "/items", body, "answered by the backend")
		assert.Equal(t, before+1, be.hits.Load())
		assert.Equal(t, http.MethodOptions, string(be.lastRequest(t).Header.Method()))
		assert.Empty(t, resp.Header.Get("Access-Control-Allow-Methods"))
		assert.Empty(t, resp.Header.Get("Access-Control-Max-Age"))
		assert.Equal(t, allowed, resp.Header.Get("Access-Control-Allow-Origin"))
	})
}

func TestHasRawHeader(t *testing.T) {
	name := []byte("content-length:")
	tests := []struct {
		name string
		raw  string
		want bool
	}{
		{"empty", "", false},
		{"present", "Host: a\r\nContent-Length: 5\r\n", true},
		{"first line", "Content-Length: 5\r\nHost: a\r\n", true},
		{"odd case", "Host: a\r\ncONTENT-lENGTH: 5\r\n", true},
		{"no space after colon", "Host: a\r\ncontent-length:5\r\n", true},
		{"last line without newline", "Host: a\r\nContent-Length: 5", true},
		{"bare LF lines", "Host: a\nContent-Length: 5\n", true},
		{"absent", "Host: a\r\nTransfer-Encoding: chunked\r\n", false},
		{"longer name", "Host: a\r\nContent-Length-X: 5\r\n", false},
		{"name as suffix", "Host: a\r\nX-Content-Length: 5\r\n", false},
		{"name inside a value", "X-Note: content-length: 5\r\n", false},
		{"space before colon", "Content-Length : 5\r\n", false},
		{"shorter than name", "Content-Len\r\n", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, hasRawHeader([]byte(tc.raw), name))
		})
	}
}

func TestValidRequestID(t *testing.T) {
	tests := []struct {
		name string
		id   string
		want bool
	}{
		{"empty", "", false},
		{"one character", "a", true},
		{"every allowed class", "AZaz09._:-", true},
		{"uuid", "3f2504e0-4f89-11d3-9a0c-0305e82c3301", true},
		{"128", strings.Repeat("x", 128), true},
		{"129", strings.Repeat("x", 129), false},
		{"space", "a b", false},
		{"tab", "a\tb", false},
		{"CR LF", "a\r\nb", false},
		{"NUL", "a\x00b", false},
		{"markup", "<script>", false},
		{"slash", "a/b", false},
		{"quote", `a"b`, false},
		{"percent", "a%20b", false},
		{"non-ASCII", "é", false},
		{"DEL", "a\x7f", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, validRequestID([]byte(tc.id)))
		})
	}
}

func TestValidTokenList(t *testing.T) {
	tests := []struct {
		name string
		list string
		want bool
	}{
		{"one name", "Content-Type", true},
		{"list with spaces", "Content-Type, X-Custom-Header,authorization", true},
		{"underscore and dot", "x_a.b", true},
		{"semicolon", "X-A;b=1", false},
		{"CR LF", "X-A\r\nSet-Cookie: a=b", false},
		{"tab", "X-A,\tX-B", false},
		{"colon", "X-A: 1", false},
		{"quote", `"X-A"`, false},
		{"angle brackets", "<script>", false},
		{"non-ASCII", "X-Café", false},
		{"NUL", "X-A\x00", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, validTokenList([]byte(tc.list)))
		})
	}
}
