package edge

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/apigetaway/getaway/authflow"
	"github.com/apigetaway/getaway/authflow/testidp"
	"github.com/apigetaway/getaway/sessioncache"
	"github.com/apigetaway/getaway/upstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
)

const adminToken = "ops-token-0123456789abcdef"

// adminGateway is a gateway with sign-in (a real IdP), the admin API and a
// config file on disk.
type adminGateway struct {
	*gateway
	idp        *testidp.IdP
	configPath string
	applied    atomic.Int64
	sid        string // a signed-in user's session, for /api requests
}

// api answers GET /api/x as the signed-in user: which backend served it.
func (ag *adminGateway) api(t *testing.T) string {
	t.Helper()
	resp, body := do(t, http.MethodGet, ag.URL+"/api/x", http.Header{"Cookie": {"sid=" + ag.sid}}, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	return body
}

func startAdminGateway(t *testing.T, configYAML string) *adminGateway {
	t.Helper()
	idp, err := testidp.Start(testidp.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = idp.Close() })
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yml")
	require.NoError(t, os.WriteFile(path, []byte(configYAML), 0o644))
	store, err := sessioncache.NewMemory(sessioncache.Config{})
	require.NoError(t, err)
	t.Cleanup(store.Close)

	ag := &adminGateway{idp: idp, configPath: path}
	// The auth config needs the gateway's address: deps are completed once
	// the listener is bound.
	ag.gateway = startGatewayWith(t, configYAML, func(base string, p *upstream.Proxy, d *Deps) {
		require.NoError(t, idp.AddRedirectURI(base+"/auth/callback"))
		auth, err := authflow.New(context.Background(), authflow.Config{
			AppBaseURL: base, Issuer: idp.Issuer(), ClientID: "getaway", ClientSecret: "getaway-secret",
			Cookie: authflow.CookieConfig{Insecure: true},
		}, store, OriginPolicy(nil, p), zap.NewNop())
		require.NoError(t, err)
		d.Auth = auth
		d.Routes = auth.Register
		d.Admin = AdminDeps{
			Authorizer: authflow.NewAdmin(authflow.AdminConfig{
				Tokens: map[string]string{"ops": adminToken},
				Emails: []string{idp.Email()},
			}, auth),
			ConfigPath:     path,
			MaxConfigBytes: 64 << 10,
			Health:         func() any { return map[string]any{"http://b": map[string]any{"status": "up"}} },
			Applied:        func(*upstream.File) { ag.applied.Add(1) },
		}
	})
	ag.sid, err = idp.SignInThrough(context.Background(), ag.URL, testidp.OtherUsername, testidp.Password, "sid")
	require.NoError(t, err)
	return ag
}

// startGatewayWith is startGateway with deps completed once the listen
// address is known.
func startGatewayWith(t *testing.T, configYAML string, complete func(base string, p *upstream.Proxy, d *Deps)) *gateway {
	t.Helper()
	f, err := upstream.ParseFile("config.yml", []byte(configYAML))
	require.NoError(t, err)
	p, err := upstream.NewProxy(upstream.ProxyConfig{}, f, zap.NewNop())
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	base := "http://" + ln.Addr().String()
	deps := Deps{Proxy: p}
	complete(base, p, &deps)
	s, err := New(Config{}, deps)
	require.NoError(t, err)
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ln) }()
	t.Cleanup(func() { _ = s.Shutdown(context.Background()); <-done })
	return &gateway{URL: base, Addr: ln.Addr().String(), Server: s, Proxy: p}
}

func TestAdminAuthorizationMatrix(t *testing.T) {
	be := startBackend(t, nil)
	cfg := fmt.Sprintf("defaultBackend: %q\n", be.URL)
	ag := startAdminGateway(t, cfg)
	ctx := context.Background()
	adminSID, err := ag.idp.SignInThrough(ctx, ag.URL, ag.idp.Username(), testidp.Password, "sid")
	require.NoError(t, err)
	userSID, err := ag.idp.SignInThrough(ctx, ag.URL, testidp.OtherUsername, testidp.Password, "sid")
	require.NoError(t, err)

	routes := []struct {
		method, path, body string
	}{
		{http.MethodGet, "/admin/config", ""},
		{http.MethodPut, "/admin/config", cfg},
		{http.MethodPost, "/admin/config/reload", ""},
		{http.MethodGet, "/admin/health", ""},
		{http.MethodGet, "/admin/metrics", ""},
	}
	callers := []struct {
		name   string
		header http.Header
		want   int
	}{
		{"no credentials", nil, http.StatusUnauthorized},
		{"bad token", http.Header{"Authorization": {"Bearer wrong-token-0123456789"}}, http.StatusUnauthorized},
		{"token without bearer", http.Header{"Authorization": {adminToken}}, http.StatusUnauthorized},
		{"good token", http.Header{"Authorization": {"Bearer " + adminToken}}, http.StatusOK},
		{"signed-in non-admin", http.Header{"Cookie": {"sid=" + userSID}}, http.StatusForbidden},
		{"signed-in admin", http.Header{"Cookie": {"sid=" + adminSID}}, http.StatusOK},
		{"forged cookie", http.Header{"Cookie": {"sid=" + strings.Repeat("x", 43)}}, http.StatusUnauthorized},
	}
	for _, rt := range routes {
		for _, c := range callers {
			t.Run(rt.method+" "+rt.path+" "+c.name, func(t *testing.T) {
				h := http.Header{"Content-Type": {"application/yaml"}}
				for k, v := range c.header {
					h[k] = v
				}
				resp, body := do(t, rt.method, ag.URL+rt.path, h, strings.NewReader(rt.body))
				assert.Equal(t, c.want, resp.StatusCode, body)
			})
		}
	}

	t.Run("admin cookie from a foreign site is refused (CSRF)", func(t *testing.T) {
		resp, _ := do(t, http.MethodPost, ag.URL+"/admin/config/reload", http.Header{
			"Cookie": {"sid=" + adminSID}, "Origin": {"https://evil.test"}, "Sec-Fetch-Site": {"cross-site"},
		}, nil)
		assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	})
}

func TestAdminRoutesOffWithoutAdmins(t *testing.T) {
	be := startBackend(t, nil)
	gw := startGateway(t, fmt.Sprintf("defaultBackend: %q\n", be.URL))
	for _, p := range []string{"/admin/config", "/admin/health", "/admin/metrics"} {
		resp, body := do(t, http.MethodGet, gw.URL+p, http.Header{"Authorization": {"Bearer " + adminToken}}, nil)
		assert.Equal(t, http.StatusNotFound, resp.StatusCode)
		assert.JSONEq(t, `{"error":"Not Found"}`, body)
	}
}

func TestAdminMetrics(t *testing.T) {
	be := startBackend(t, nil)
	ag := startAdminGateway(t, fmt.Sprintf("defaultBackend: %q\n", be.URL))
	admin := http.Header{"Authorization": {"Bearer " + adminToken}}
	before := scrape(t, ag.URL+"/admin/metrics", admin)
	ag.api(t)
	after := scrape(t, ag.URL+"/admin/metrics", admin)
	series := requestsSeries("api", "2xx")
	assert.Equal(t, float64(1), after[series]-before[series])
	// The first scrape itself was an admin request answered 200.
	assert.GreaterOrEqual(t, after[requestsSeries("admin", "2xx")], float64(1))

	resp, body := do(t, http.MethodGet, ag.URL+"/admin/metrics", admin, nil)
	assert.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
	assert.Contains(t, resp.Header.Get("Content-Type"), "version=0.0.4")
	assert.Contains(t, body, "# TYPE getaway_http_requests_total counter")
	assert.Contains(t, body, "# TYPE getaway_http_request_duration_seconds histogram")
}

func TestAdminPutConfig(t *testing.T) {
	a := startBackend(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("a") })
	b := startBackend(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("b") })
	ag := startAdminGateway(t, fmt.Sprintf("defaultBackend: %q\n", a.URL))
	token := http.Header{"Authorization": {"Bearer " + adminToken}}
	with := func(kv ...string) http.Header {
		h := token.Clone()
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}

	resp, body := do(t, http.MethodGet, ag.URL+"/admin/config", token, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, body, a.URL)
	tag := resp.Header.Get("ETag")
	require.NotEmpty(t, tag)

	t.Run("invalid configs are refused with every detail", func(t *testing.T) {
		tests := []struct{ name, ct, body, detail string }{
			{"bad scheme", "application/json", `{"mappings":[{"frontendHost":"a.test","backend":"ftp://x"}]}`, "mappings[0].backend: scheme must be http or https"},
			{"unknown key", "application/yaml", "defaultBackend: http://x\nbackends: []\n", "backends"},
			{"missing host", "application/yaml", "mappings:\n  - backend: http://x\n", "mappings[0].frontendHost"},
			{"bad port", "application/json", `{"mappings":[{"frontendHost":"a.test","frontendPort":70000,"backend":"http://x"}]}`, "mappings[0].frontendPort"},
			{"not yaml", "application/yaml", "{[", ""},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				resp, body := do(t, http.MethodPut, ag.URL+"/admin/config", with("Content-Type", tc.ct), strings.NewReader(tc.body))
				assert.Equal(t, http.StatusBadRequest, resp.StatusCode, body)
				assert.Contains(t, body, `"error":"invalid_config"`)
				assert.Contains(t, body, tc.detail)
			})
		}
		resp, _ := do(t, http.MethodPut, ag.URL+"/admin/config", with("Content-Type", "text/plain"), strings.NewReader("x"))
		assert.Equal(t, http.StatusUnsupportedMediaType, resp.StatusCode)
		resp, _ = do(t, http.MethodPut, ag.URL+"/admin/config", with("Content-Type", "application/yaml"), strings.NewReader("# "+strings.Repeat("x", 80<<10)))
		assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
		body := ag.api(t)
		assert.Equal(t, "a", body, "a refused config changed routing")
		assert.Zero(t, ag.applied.Load())
	})

	t.Run("stale If-Match changes nothing", func(t *testing.T) {
		resp, _ := do(t, http.MethodPut, ag.URL+"/admin/config", with("Content-Type", "application/yaml", "If-Match", `"stale"`),
			strings.NewReader(fmt.Sprintf("defaultBackend: %q\n", b.URL)))
		assert.Equal(t, http.StatusPreconditionFailed, resp.StatusCode)
		body := ag.api(t)
		assert.Equal(t, "a", body)
	})

	t.Run("valid config is written, kept as .bak and in force", func(t *testing.T) {
		before, err := os.ReadFile(ag.configPath)
		require.NoError(t, err)
		resp, body := do(t, http.MethodPut, ag.URL+"/admin/config", with("Content-Type", "application/json", "If-Match", tag),
			strings.NewReader(fmt.Sprintf(`{"defaultBackend":%q}`, b.URL)))
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		assert.Contains(t, body, `"ok":true`)
		assert.Contains(t, body, `"persisted":true`)
		assert.NotEqual(t, tag, resp.Header.Get("ETag"))
		got := ag.api(t)
		assert.Equal(t, "b", got)
		onDisk, err := upstream.LoadFile(ag.configPath)
		require.NoError(t, err)
		assert.Equal(t, b.URL, onDisk.DefaultBackend)
		bak, err := os.ReadFile(ag.configPath + ".bak")
		require.NoError(t, err)
		assert.Equal(t, string(before), string(bak))
		assert.EqualValues(t, 1, ag.applied.Load())
	})

	t.Run("read-only file: applied, not persisted", func(t *testing.T) {
		require.NoError(t, os.Chmod(ag.configPath, 0o444))
		t.Cleanup(func() { _ = os.Chmod(ag.configPath, 0o644) })
		resp, body := do(t, http.MethodPut, ag.URL+"/admin/config", with("Content-Type", "application/yaml"),
			strings.NewReader(fmt.Sprintf("defaultBackend: %q\n", a.URL)))
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		assert.Contains(t, body, `"persisted":false`)
		got := ag.api(t)
		assert.Equal(t, "a", got)
	})
}

func TestAdminReload(t *testing.T) {
	a := startBackend(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("a") })
	b := startBackend(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("b") })
	ag := startAdminGateway(t, fmt.Sprintf("defaultBackend: %q\n", a.URL))
	token := http.Header{"Authorization": {"Bearer " + adminToken}}

	require.NoError(t, os.WriteFile(ag.configPath, []byte("defaultBackend: ftp://broken\nextra: 1\n"), 0o644))
	resp, body := do(t, http.MethodPost, ag.URL+"/admin/config/reload", token, nil)
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	assert.Contains(t, body, "defaultBackend: scheme must be http or https")
	assert.Contains(t, body, "extra")
	got := ag.api(t)
	assert.Equal(t, "a", got, "a broken file changed routing")

	require.NoError(t, os.WriteFile(ag.configPath, []byte(fmt.Sprintf("defaultBackend: %q\n", b.URL)), 0o644))
	resp, body = do(t, http.MethodPost, ag.URL+"/admin/config/reload", token, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Contains(t, body, `"ok":true`)
	got = ag.api(t)
	assert.Equal(t, "b", got)

	resp, body = do(t, http.MethodGet, ag.URL+"/admin/health", token, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.JSONEq(t, `{"http://b":{"status":"up"}}`, body)
}

func TestAdminPutUnderLoadLosesNoRequest(t *testing.T) {
	a := startBackend(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("a") })
	b := startBackend(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("b") })
	ag := startAdminGateway(t, fmt.Sprintf("defaultBackend: %q\n", a.URL))
	token := http.Header{"Authorization": {"Bearer " + adminToken}, "Content-Type": {"application/yaml"}}

	stop := make(chan struct{})
	var failed, served atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ { // bounded
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest(http.MethodGet, ag.URL+"/api/x", nil)
				req.Header.Set("Cookie", "sid="+ag.sid)
				resp, err := testClient.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					failed.Add(1)
				}
				served.Add(1)
			}
		}()
	}
	for i := 0; i < 20; i++ {
		target := a.URL
		if i%2 == 0 {
			target = b.URL
		}
		resp, body := do(t, http.MethodPut, ag.URL+"/admin/config", token, strings.NewReader(fmt.Sprintf("defaultBackend: %q\n", target)))
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
	}
	close(stop)
	wg.Wait()
	assert.Zero(t, failed.Load(), "requests failed during config changes")
	assert.Positive(t, served.Load())
}
