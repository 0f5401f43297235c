package edge

import (
	"bufio"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
)

// One canonical path drives routing, authentication and static files.

// parsedCtx is a RequestCtx holding GET target as a server would parse it.
func parsedCtx(t *testing.T, target string) *fasthttp.RequestCtx {
	t.Helper()
	ctx := new(fasthttp.RequestCtx)
	raw := "GET " + target + " HTTP/1.1\r\nHost: gw.test\r\n\r\n"
	require.NoError(t, ctx.Request.Read(bufio.NewReader(strings.NewReader(raw))))
	return ctx
}

func TestCanonicalizePath(t *testing.T) {
	tests := []struct {
		name, target string
		path         string // the canonical path: ctx.Path(), static files, rate limits
		routed       string // what the router matches: path, escaped where needed
		query        string // kept byte for byte
	}{
		{"already canonical", "/admin/config?a=1", "/admin/config", "/admin/config", "a=1"},
		{"percent-encoded letter", "/%61dmin/config", "/admin/config", "/admin/config", ""},
		{"dot segments", "/x/../admin/./config", "/admin/config", "/admin/config", ""},
		{"duplicate slashes", "//admin//config", "/admin/config", "/admin/config", ""},
		{"encoded slash", "/admin%2Fconfig", "/admin/config", "/admin/config", ""},
		{"query kept as sent", "/x/../auth/%6Cogin?next=/a%2Fb&x=1&x=2", "/auth/login", "/auth/login", "next=/a%2Fb&x=1&x=2"},
		{"case is kept", "/%41DMIN/config", "/ADMIN/config", "/ADMIN/config", ""},
		// Decoded once only: %2561 is the three characters %61, never "a",
		// and the router sees it escaped again.
		{"encoded percent", "/admin/%2563onfig", "/admin/%63onfig", "/admin/%2563onfig", ""},
		// A decoded '?' or '#' stays in the path: it never starts a query.
		{"encoded question mark", "/admin/config%3Fx=1", "/admin/config?x=1", "/admin/config%3Fx=1", ""},
		{"encoded hash", "/admin/config%23x", "/admin/config#x", "/admin/config%23x", ""},
		{"space and UTF-8", "/a%20b/caf%C3%A9", "/a b/café", "/a%20b/caf%C3%A9", ""},
		// Not a separator here (Linux); kept as a character.
		{"encoded backslash", "/a/..%5Cadmin", "/a/..\\admin", "/a/..%5Cadmin", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := parsedCtx(t, tc.target)
			require.True(t, canonicalizePath(ctx))
			u := ctx.Request.URI()
			assert.Equal(t, tc.path, string(u.Path()))
			assert.Equal(t, tc.routed, string(u.PathOriginal()), "the raw path, which the router matches")
			assert.Equal(t, tc.query, string(u.QueryString()))
			assert.True(t, canonicalizePath(ctx), "idempotent")
			assert.Equal(t, tc.path, string(u.Path()))
			assert.Equal(t, tc.routed, string(u.PathOriginal()))
		})
	}
}

func TestCanonicalizePathAllocatesNothingWhenCanonical(t *testing.T) {
	ctx := parsedCtx(t, "/admin/config?x=1")
	allocs := testing.AllocsPerRun(100, func() { canonicalizePath(ctx) })
	assert.Zero(t, allocs)
}

// TestCanonicalPathReachesTheSameRoute asks each route through several
// spellings of its path: each reaches the same handler with the same guard.
func TestCanonicalPathReachesTheSameRoute(t *testing.T) {
	be := startBackend(t, nil)
	cfg := fmt.Sprintf("defaultBackend: %q\n", be.URL)
	ag := startAdminGateway(t, cfg)
	token := http.Header{"Authorization": {"Bearer " + adminToken}}
	nonAdmin := http.Header{"Cookie": {"sid=" + ag.sid}}

	t.Run("admin", func(t *testing.T) {
		forms := []struct{ method, path string }{
			{http.MethodGet, "/admin/config"}, // the canonical form, for comparison
			{http.MethodGet, "/%61dmin/config"},
			{http.MethodGet, "/admin/%63onfig"},
			{http.MethodGet, "/%61%64%6D%69%6E/config"},
			{http.MethodGet, "/admin/../admin/config"},
			{http.MethodGet, "/x/../admin/config"},
			{http.MethodGet, "/admin/./config"},
			{http.MethodGet, "//admin/config"},
			{http.MethodGet, "/admin//config"},
			{http.MethodGet, "/admin%2Fconfig"},
			{http.MethodGet, "/api/../admin/config"},
			{http.MethodGet, "/whoami/..%2Fadmin/config"},
			{http.MethodPost, "/%61dmin/config/reload"},
			{http.MethodGet, "/admin/%68ealth"},
		}
		for _, f := range forms {
			t.Run(f.method+" "+f.path, func(t *testing.T) {
				resp, body := doRaw(t, ag.gateway, f.method, f.path, nil)
				assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "no credentials: %s", body)
				resp, body = doRaw(t, ag.gateway, f.method, f.path, nonAdmin)
				assert.Equal(t, http.StatusForbidden, resp.StatusCode, "signed in, not an admin: %s", body)
				resp, body = doRaw(t, ag.gateway, f.method, f.path, token)
				assert.Equal(t, http.StatusOK, resp.StatusCode, "admin token: %s", body)
				assert.Equal(t, "no-store", resp.Header.Get("Cache-Control"), "the admin guard answered")
			})
		}
	})

	t.Run("healthz and whoami", func(t *testing.T) {
		for _, p := range []string{"/healthz", "/%68ealthz", "/x/../healthz", "//healthz"} {
			resp, body := doRaw(t, ag.gateway, http.MethodGet, p, nil)
			assert.Equal(t, http.StatusOK, resp.StatusCode, p)
			assert.JSONEq(t, `{"ok":true}`, body, p)
		}
		for _, p := range []string{"/whoami/me", "/whoami/%6De", "/whoami/x/../me"} {
			resp, body := doRaw(t, ag.gateway, http.MethodGet, p, nil)
			assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "%s without a session: %s", p, body)
			resp, body = doRaw(t, ag.gateway, http.MethodGet, p, nonAdmin)
			assert.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", p, body)
			assert.Contains(t, body, `"sub"`, p)
		}
	})

	t.Run("sign-in keeps the query", func(t *testing.T) {
		for _, p := range []string{"/auth/login", "/auth/%6Cogin", "/auth/../auth/login", "//auth/login"} {
			resp, body := doRaw(t, ag.gateway, http.MethodGet, p+"?next=/after", nil)
			require.Equal(t, http.StatusFound, resp.StatusCode, "%s: %s", p, body)
			loc, err := url.Parse(resp.Header.Get("Location"))
			require.NoError(t, err)
			assert.Equal(t, ag.idp.Issuer(), loc.Scheme+"://"+loc.Host, "%s: redirected to the IdP", p)
			// The query reached the handler: a foreign frontend_host is
			// refused. (Encoded: fasthttp reads a target that starts with
			// "//" and holds "://" anywhere as scheme-relative, "auth"
			// being its host.)
			resp, body = doRaw(t, ag.gateway, http.MethodGet, p+"?frontend_host=https%3A%2F%2Fevil.test", nil)
			assert.Equal(t, http.StatusBadRequest, resp.StatusCode, "%s: %s", p, body)
			assert.Contains(t, body, "frontend_host", p)
		}
	})

	t.Run("not the same path", func(t *testing.T) {
		// Paths are case-sensitive, decoded once, and a decoded '?' is
		// part of the path: none of these is /admin/config or /api/x.
		for _, p := range []string{"/ADMIN/config", "/Admin/config", "/%41dmin/config", "/admin/%2563onfig", "/admin/config%3F", "/API/x", "/Api/x"} {
			resp, body := doRaw(t, ag.gateway, http.MethodGet, p, token)
			assert.Equal(t, http.StatusNotFound, resp.StatusCode, "%s: %s", p, body)
			assert.JSONEq(t, `{"error":"Not Found"}`, body, p)
		}
		assert.Zero(t, be.hits.Load(), "none reached the backend")
	})
}

// doRaw sends method target as written on the request line (net/http
// would clean or re-encode it) and returns the answer.
func doRaw(t *testing.T, gw *gateway, method, target string, header http.Header) (*http.Response, string) {
	t.Helper()
	c := dialGateway(t, gw.Addr)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", method, target, gw.Addr)
	for k, vs := range header {
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	if method == http.MethodPost || method == http.MethodPut {
		b.WriteString("Content-Length: 0\r\n")
	}
	b.WriteString("\r\n")
	_, err := c.Write([]byte(b.String()))
	require.NoError(t, err)
	resp, err := http.ReadResponse(c.r, nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	var body strings.Builder
	_, err = bufio.NewReader(resp.Body).WriteTo(&body)
	require.NoError(t, err)
	return resp, body.String()
}
