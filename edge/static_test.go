package edge

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apigetaway/getaway/upstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

// Contents with markers a response can be searched for. index.html and
// app.js are large and repetitive enough to be worth compressing.
var (
	indexHTML = "<!doctype html><title>spa-index-7f3a</title>\n" + strings.Repeat("<p>lorem ipsum dolor sit amet</p>\n", 300)
	appJS     = "console.log('app-js-91c2');\n" + strings.Repeat("console.log('lorem ipsum');\n", 300)
)

const (
	subPageHTML = "<p>sub-page-55d0</p>"
	dotEnv      = "SECRET_ENV=env-secret-3b8e"
	outsideFile = "outside-secret-c4d1"
)

// publicFixture is a public directory and, next to it (outside), a secret.
type publicFixture struct {
	Dir    string // the public directory
	Secret string // path of secret.txt, in Dir's parent
}

// newPublicDir creates public/{index.html,app.js,sub/page.html,.env} and
// secret.txt beside public/ in a temporary directory.
func newPublicDir(t *testing.T) publicFixture {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, "public")
	files := map[string]string{
		"public/index.html":    indexHTML,
		"public/app.js":        appJS,
		"public/sub/page.html": subPageHTML,
		"public/.env":          dotEnv,
		"secret.txt":           outsideFile,
	}
	for name, content := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	}
	return publicFixture{Dir: dir, Secret: filepath.Join(root, "secret.txt")}
}

// startStaticGateway runs a gateway serving fx.Dir, with DenyAll on /api.
func startStaticGateway(t *testing.T, fx publicFixture) (*gateway, *backend) {
	t.Helper()
	be := startBackend(t, nil)
	gw := startGateway(t, defaultBackendYAML(be.URL),
		withAuth(DenyAll),
		withConfig(func(c *Config) { c.PublicDir = fx.Dir }))
	return gw, be
}

// browserAccept is what a browser sends when navigating.
const browserAccept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"

func TestStaticServesFiles(t *testing.T) {
	fx := newPublicDir(t)
	gw, _ := startStaticGateway(t, fx)

	tests := []struct {
		name, method, path, accept string
		wantType                   string // substring of Content-Type
		wantBody                   string
	}{
		{"script", http.MethodGet, "/app.js", "*/*", "javascript", appJS},
		{"root is index.html", http.MethodGet, "/", browserAccept, "text/html", indexHTML},
		{"index.html by name", http.MethodGet, "/index.html", browserAccept, "text/html", indexHTML},
		{"nested file", http.MethodGet, "/sub/page.html", browserAccept, "text/html", subPageHTML},
		{"nested file, no Accept", http.MethodGet, "/sub/page.html", "", "text/html", subPageHTML},
		{"HEAD of a file", http.MethodHead, "/app.js", "*/*", "javascript", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.accept != "" {
				h.Set("Accept", tc.accept)
			}
			resp, body := do(t, tc.method, gw.URL+tc.path, h, nil)
			require.Equal(t, http.StatusOK, resp.StatusCode, body)
			assert.Contains(t, resp.Header.Get("Content-Type"), tc.wantType)
			assert.Equal(t, tc.wantBody, body)
			assertHelmet(t, resp.Header)
			assert.NotEmpty(t, resp.Header.Get(HeaderRequestID))
		})
	}
}

func TestStaticSPAFallback(t *testing.T) {
	fx := newPublicDir(t)
	gw, be := startStaticGateway(t, fx)

	tests := []struct {
		name, method, path, accept string
		wantStatus                 int
		wantBody                   string // exact body; JSON bodies compared as JSON
	}{
		{"browser navigation", http.MethodGet, "/some/client/route", browserAccept, http.StatusOK, indexHTML},
		{"browser navigation, query", http.MethodGet, "/some/client/route?tab=2", browserAccept, http.StatusOK, indexHTML},
		{"missing file under a real dir", http.MethodGet, "/sub/missing", browserAccept, http.StatusOK, indexHTML},
		{"HEAD navigation", http.MethodHead, "/some/client/route", browserAccept, http.StatusOK, ""},
		{"API client", http.MethodGet, "/some/client/route", "application/json", http.StatusNotFound, `{"error":"Not Found"}`},
		{"no Accept", http.MethodGet, "/some/client/route", "", http.StatusNotFound, `{"error":"Not Found"}`},
		{"missing asset", http.MethodGet, "/missing.js", "*/*", http.StatusNotFound, `{"error":"Not Found"}`},
		{"POST", http.MethodPost, "/some/client/route", browserAccept, http.StatusNotFound, `{"error":"Not Found"}`},
		{"PUT", http.MethodPut, "/some/client/route", browserAccept, http.StatusNotFound, `{"error":"Not Found"}`},
		{"DELETE", http.MethodDelete, "/app.js", browserAccept, http.StatusNotFound, `{"error":"Not Found"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.accept != "" {
				h.Set("Accept", tc.accept)
			}
			resp, body := do(t, tc.method, gw.URL+tc.path, h, nil)
			require.Equal(t, tc.wantStatus, resp.StatusCode, body)
			if tc.wantStatus == http.StatusNotFound {
				assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
				assert.JSONEq(t, tc.wantBody, body)
				return
			}
			assert.Contains(t, resp.Header.Get("Content-Type"), "text/html")
			assert.Equal(t, tc.wantBody, body)
			assertHelmet(t, resp.Header)
		})
	}
	assert.Zero(t, be.hits.Load())
}

// A directory without index.html (public/sub/) is not a file to serve: a
// browser navigation there gets the SPA, anything else the JSON 404, never
// fasthttp's plain-text "Directory index is forbidden".
func TestStaticDirectoryWithoutIndex(t *testing.T) {
	fx := newPublicDir(t)
	gw, _ := startStaticGateway(t, fx)

	t.Run("trailing slash", func(t *testing.T) {
		tests := []struct {
			name, accept string
			wantStatus   int
			wantBody     string
		}{
			{"browser navigation", browserAccept, http.StatusOK, indexHTML},
			{"API client", "application/json", http.StatusNotFound, `{"error":"Not Found"}`},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				resp, body := do(t, http.MethodGet, gw.URL+"/sub/", http.Header{"Accept": {tc.accept}}, nil)
				require.Equal(t, tc.wantStatus, resp.StatusCode, body)
				if tc.wantStatus == http.StatusNotFound {
					assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
					assert.JSONEq(t, tc.wantBody, body)
					return
				}
				assert.Equal(t, tc.wantBody, body)
			})
		}
	})

	t.Run("no trailing slash", func(t *testing.T) {
		resp, body := do(t, http.MethodGet, gw.URL+"/sub", http.Header{"Accept": {browserAccept}, "Host": {"evil.test"}}, nil)
		if resp.StatusCode >= 300 && resp.StatusCode < 400 {
			// A redirect to the slash form is fine, but it must not be built
			// from the client's Host header.
			loc := resp.Header.Get("Location")
			assert.True(t, strings.HasPrefix(loc, "/") && !strings.HasPrefix(loc, "//"), "Location %q is not a local path", loc)
			return
		}
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		assert.Equal(t, indexHTML, body)
	})
}

func TestStaticNeverServesReservedPrefixes(t *testing.T) {
	fx := newPublicDir(t)
	gw, be := startStaticGateway(t, fx)

	tests := []struct {
		name, method, path string
		wantStatus         int
		wantBody           string
	}{
		{"auth below", http.MethodGet, "/auth/unknown", http.StatusNotFound, `{"error":"Not Found"}`},
		{"auth itself", http.MethodGet, "/auth", http.StatusNotFound, `{"error":"Not Found"}`},
		{"admin below", http.MethodGet, "/admin/x", http.StatusNotFound, `{"error":"Not Found"}`},
		{"admin itself", http.MethodGet, "/admin", http.StatusNotFound, `{"error":"Not Found"}`},
		{"admin HEAD", http.MethodHead, "/admin/x", http.StatusNotFound, ``},
		// /api belongs to the proxy: DenyAll answers, not static files.
		{"api below", http.MethodGet, "/api/some/route", http.StatusUnauthorized, `{"error":"Unauthorized"}`},
		{"api itself", http.MethodGet, "/api", http.StatusUnauthorized, `{"error":"Unauthorized"}`},
		// Only whole segments are reserved.
		{"authors is a client route", http.MethodGet, "/authors", http.StatusOK, indexHTML},
		{"administration is a client route", http.MethodGet, "/administration/x", http.StatusOK, indexHTML},
		{"apis is a client route", http.MethodGet, "/apis", http.StatusOK, indexHTML},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := do(t, tc.method, gw.URL+tc.path, http.Header{"Accept": {browserAccept}}, nil)
			require.Equal(t, tc.wantStatus, resp.StatusCode, body)
			if tc.wantStatus == http.StatusOK {
				assert.Equal(t, tc.wantBody, body)
				return
			}
			assert.NotContains(t, body, "spa-index", "index.html served under a reserved prefix")
			assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
			if tc.method != http.MethodHead {
				assert.JSONEq(t, tc.wantBody, body)
			}
		})
	}
	assert.Zero(t, be.hits.Load())
}

func TestStaticPathTraversal(t *testing.T) {
	fx := newPublicDir(t)
	gw, be := startStaticGateway(t, fx)

	for _, target := range []string{
		"/../secret.txt",
		"/%2e%2e/secret.txt",
		"/%2E%2E/secret.txt",
		"/sub/../../secret.txt",
		"/sub/%2e%2e/%2e%2e/secret.txt",
		"/..%2fsecret.txt",
		"/%2e%2e%2fsecret.txt",
		"/..%5csecret.txt",
		"//../secret.txt",
		"/./../secret.txt",
		"/../public/../secret.txt",
		"/" + strings.Repeat("../", 10) + "secret.txt",
		"../secret.txt",
	} {
		t.Run(target, func(t *testing.T) {
			for _, accept := range []string{browserAccept, "*/*"} {
				out := rawRequest(t, gw.Addr, "GET "+target+" HTTP/1.1\r\nHost: gw.test\r\nAccept: "+accept+"\r\nConnection: close\r\n\r\n")
				require.Regexp(t, `^HTTP/1\.1 \d{3} `, out)
				assert.NotContains(t, out, outsideFile, "file outside the public dir served")
				assert.NotRegexp(t, `^HTTP/1\.1 5`, out)
			}
		})
	}

	// Dot files are never served, whatever the spelling, and a browser
	// navigation gets no index.html in their place either.
	for _, target := range []string{
		"/.env",
		"/%2eenv",
		"/%2Eenv",
		"/sub/../.env",
		"//.env",
		"/sub/%2e%2e/.env",
	} {
		t.Run(target, func(t *testing.T) {
			for _, accept := range []string{browserAccept, "*/*"} {
				out := rawRequest(t, gw.Addr, "GET "+target+" HTTP/1.1\r\nHost: gw.test\r\nAccept: "+accept+"\r\nConnection: close\r\n\r\n")
				assert.Regexp(t, `^HTTP/1\.1 404 `, out)
				assert.NotContains(t, out, dotEnv)
				assert.NotContains(t, out, "env-secret")
				assert.NotContains(t, out, "spa-index")
			}
		})
	}
	assert.Zero(t, be.hits.Load())
}

func TestStaticFallbackLeavesPublicDirAlone(t *testing.T) {
	fx := newPublicDir(t)
	gw, _ := startStaticGateway(t, fx)
	list := func() []string {
		t.Helper()
		var names []string
		require.NoError(t, filepath.WalkDir(fx.Dir, func(p string, _ os.DirEntry, err error) error {
			names = append(names, p)
			return err
		}))
		return names
	}
	before := list()
	for _, enc := range []string{"gzip", "br", "zstd", "gzip, deflate, br, zstd"} {
		t.Run(enc, func(t *testing.T) {
			for _, path := range []string{"/client/route", "/app.js", "/"} {
				out := rawRequest(t, gw.Addr, "GET "+path+" HTTP/1.1\r\nHost: gw.test\r\nAccept: "+browserAccept+"\r\nAccept-Encoding: "+enc+"\r\nConnection: close\r\n\r\n")
				require.Regexp(t, `^HTTP/1\.1 200 `, out)
			}
		})
	}
	// Serving files must not write into the directory it serves (which may
	// be read-only, or shared).
	assert.Equal(t, before, list())
}

func TestStaticOff(t *testing.T) {
	t.Run("missing directory", func(t *testing.T) {
		be := startBackend(t, nil)
		missing := filepath.Join(t.TempDir(), "no-such-public")
		gw := startGateway(t, defaultBackendYAML(be.URL), withConfig(func(c *Config) { c.PublicDir = missing }))
		for _, path := range []string{"/", "/index.html", "/some/client/route"} {
			resp, body := do(t, http.MethodGet, gw.URL+path, http.Header{"Accept": {browserAccept}}, nil)
			assert.Equal(t, http.StatusNotFound, resp.StatusCode, path)
			assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
			assert.JSONEq(t, `{"error":"Not Found"}`, body)
		}
		// The rest of the gateway works.
		resp, _ := do(t, http.MethodGet, gw.URL+"/healthz", nil, nil)
		assert.Equal(t, http.StatusOK, resp.StatusCode)
	})

	t.Run("file instead of a directory", func(t *testing.T) {
		fx := newPublicDir(t)
		f, err := upstream.ParseFile("config.yml", []byte(`defaultBackend: "http://127.0.0.1:1"`))
		require.NoError(t, err)
		p, err := upstream.NewProxy(upstream.ProxyConfig{}, f, zap.NewNop())
		require.NoError(t, err)
		t.Cleanup(p.Close)
		s, err := New(Config{PublicDir: fx.Secret}, Deps{Proxy: p})
		require.Error(t, err)
		assert.Nil(t, s)
		assert.Contains(t, err.Error(), fx.Secret, "the error names the directory")
	})
}
