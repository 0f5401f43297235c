package upstream

import (
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// compileSrc parses and compiles a configuration the test expects to be valid.
func compileSrc(t testing.TB, src string) *Table {
	t.Helper()
	f, err := ParseFile("config.yml", []byte(src))
	require.NoError(t, err)
	return Compile(f)
}

// routeTo describes an expected route by its backend and mapping index.
type routeTo struct {
	backend string
	mapping int
}

func TestTableLookupDesignExample(t *testing.T) {
	f, err := LoadFile(filepath.Join("testdata", "config.yml"))
	require.NoError(t, err)
	table := Compile(f)
	require.Equal(t, f.Backends(), table.Backends())

	const (
		def = "http://backend-service:4070"
		a   = "http://backend-a:7001"
		b   = "http://backend-b:8080"
	)
	tests := []struct {
		name        string
		host        string
		defaultPort int
		path        string
		want        routeTo
	}{
		{"host match", "app.example.com", 443, "/users", routeTo{a, 0}},
		{"host match any port", "app.example.com:8080", 80, "/", routeTo{a, 0}},
		{"host case", "APP.Example.COM", 443, "/", routeTo{a, 0}},
		{"trailing dot", "app.example.com.", 443, "/", routeTo{a, 0}},
		{"trailing dot and port", "app.example.com.:8443", 443, "/", routeTo{a, 0}},
		{"two trailing dots", "app.example.com..", 443, "/", routeTo{def, -1}},
		{"port and prefix", "api.example.com:443", 80, "/v2/orders", routeTo{b, 1}},
		{"default port used for the mapping's port", "api.example.com", 443, "/v2", routeTo{b, 1}},
		{"default port differs", "api.example.com", 80, "/v2", routeTo{def, -1}},
		{"explicit port differs", "api.example.com:8443", 443, "/v2", routeTo{def, -1}},
		{"prefix with trailing slash", "api.example.com", 443, "/v2/", routeTo{b, 1}},
		{"prefix is not a segment", "api.example.com", 443, "/v2x", routeTo{def, -1}},
		{"prefix case-sensitive", "api.example.com", 443, "/V2", routeTo{def, -1}},
		{"prefix host without prefix path", "api.example.com", 443, "/v1", routeTo{def, -1}},
		{"unknown host", "other.example.com", 443, "/v2", routeTo{def, -1}},
		{"empty host", "", 443, "/", routeTo{def, -1}},
		{"malformed port", "app.example.com:http", 443, "/", routeTo{def, -1}},
		{"port out of range", "app.example.com:65536", 443, "/", routeTo{def, -1}},
		{"port zero", "app.example.com:0", 443, "/", routeTo{def, -1}},
		{"empty port means default", "api.example.com:", 443, "/v2", routeTo{b, 1}},
		{"host with path characters", "app.example.com/x", 443, "/", routeTo{def, -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := table.Lookup([]byte(tt.host), tt.defaultPort, []byte(tt.path))
			require.NotNil(t, r)
			assert.Equal(t, tt.want, routeTo{r.Backend, r.Mapping})
			assert.Equal(t, r.Backend, table.Backends()[r.BackendIndex])
		})
	}
}

func TestTableLookupOrder(t *testing.T) {
	table := compileSrc(t, `
mappings:
  - {frontendHost: a.example, backend: http://first}                       # 0
  - {frontendHost: a.example, frontendPort: 80, backend: http://second}   # 1, never: 0 wins
  - {frontendHost: a.example, pathPrefix: /v2, backend: http://v2}         # 2
  - {frontendHost: a.example, pathPrefix: /v2/admin, backend: http://adm}  # 3, never: 2 matches first
  - {frontendHost: b.example, frontendPort: 8080, backend: http://b8080}   # 4
  - {frontendHost: b.example, backend: http://b}                           # 5
  - {frontendHost: b.example, frontendPort: 8080, pathPrefix: /x, backend: http://bx}  # 6
  - {frontendHost: "::1", backend: http://v6}                              # 7
  - {frontendHost: "[::1]", frontendPort: 8443, pathPrefix: /s, backend: http://v6s}  # 8
  - {frontendHost: 127.0.0.1, frontendPort: 80, backend: http://v4}        # 9
  - {frontendHost: c.example, pathPrefix: /only, backend: http://c}       # 10
`)
	tests := []struct {
		name        string
		host        string
		defaultPort int
		path        string
		want        *routeTo // nil: no route
	}{
		{"first host-only match wins", "a.example", 80, "/x", &routeTo{"http://first", 0}},
		{"later prefix beats earlier host-only", "a.example", 80, "/v2/users", &routeTo{"http://v2", 2}},
		{"first matching prefix wins", "a.example", 80, "/v2/admin", &routeTo{"http://v2", 2}},
		{"prefix boundary", "a.example", 80, "/v2x", &routeTo{"http://first", 0}},
		{"port-specific host-only first", "b.example:8080", 80, "/", &routeTo{"http://b8080", 4}},
		{"port-specific skipped on other port", "b.example:9090", 80, "/", &routeTo{"http://b", 5}},
		{"port-specific prefix still wins", "b.example:8080", 80, "/x/1", &routeTo{"http://bx", 6}},
		{"port-specific prefix needs its port", "b.example", 80, "/x/1", &routeTo{"http://b", 5}},
		{"ipv6 without port", "[::1]", 443, "/", &routeTo{"http://v6", 7}},
		{"ipv6 with port", "[::1]:8080", 443, "/", &routeTo{"http://v6", 7}},
		{"ipv6 with port and prefix", "[::1]:8443", 80, "/s", &routeTo{"http://v6s", 8}},
		{"ipv6 default port and prefix", "[::1]", 8443, "/s/t", &routeTo{"http://v6s", 8}},
		{"ipv6 unclosed", "[::1:8443", 80, "/s", nil},
		{"ipv6 junk after bracket", "[::1]x", 80, "/", nil},
		{"ipv6 without brackets", "::1", 80, "/", nil},
		{"ipv4 with matching port", "127.0.0.1:80", 443, "/", &routeTo{"http://v4", 9}},
		{"ipv4 default port", "127.0.0.1", 80, "/", &routeTo{"http://v4", 9}},
		{"ipv4 other port", "127.0.0.1:81", 80, "/", nil},
		{"prefix only, no match, no default", "c.example", 80, "/other", nil},
		{"prefix only, match", "c.example", 80, "/only", &routeTo{"http://c", 10}},
		{"unknown host without default", "d.example", 80, "/", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := table.Lookup([]byte(tt.host), tt.defaultPort, []byte(tt.path))
			if tt.want == nil {
				assert.Nil(t, r)
				return
			}
			require.NotNil(t, r)
			assert.Equal(t, *tt.want, routeTo{r.Backend, r.Mapping})
		})
	}
}

func TestTableRouteFields(t *testing.T) {
	table := compileSrc(t, `
defaultBackend: http://d
mappings:
  - {frontendHost: a.example, backend: http://a, preserveHost: true}
  - {frontendHost: b.example, backend: http://d, forwardAccessToken: true}
`)
	assert.Equal(t, []string{"http://d", "http://a"}, table.Backends())
	tests := []struct {
		name string
		host string
		want Route
	}{
		{"default", "x.example", Route{Backend: "http://d", BackendIndex: 0, Mapping: -1}},
		{"preserve host", "a.example", Route{Backend: "http://a", BackendIndex: 1, Mapping: 0, PreserveHost: true}},
		{"shared backend", "b.example", Route{Backend: "http://d", BackendIndex: 0, Mapping: 1, ForwardAccessToken: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := table.Lookup([]byte(tt.host), 443, []byte("/"))
			require.NotNil(t, r)
			assert.Equal(t, tt.want, *r)
		})
	}
}

func TestTableLookupEdgeCases(t *testing.T) {
	t.Run("nil file routes nothing", func(t *testing.T) {
		table := Compile(nil)
		assert.Nil(t, table.Lookup([]byte("a.example"), 80, []byte("/")))
		assert.Empty(t, table.Backends())
	})
	t.Run("nil table routes nothing", func(t *testing.T) {
		var table *Table
		assert.Nil(t, table.Lookup([]byte("a.example"), 80, []byte("/")))
		assert.Nil(t, table.Backends())
	})
	t.Run("empty config", func(t *testing.T) {
		assert.Nil(t, compileSrc(t, "").Lookup([]byte("a.example"), 80, []byte("/")))
	})
	t.Run("overlong host falls to default", func(t *testing.T) {
		table := compileSrc(t, "defaultBackend: http://d\nmappings: [{frontendHost: a.example, backend: http://a}]")
		host := make([]byte, 300)
		for i := range host {
			host[i] = 'a'
		}
		r := table.Lookup(host, 80, []byte("/"))
		require.NotNil(t, r)
		assert.Equal(t, -1, r.Mapping)
	})
	t.Run("backends is a copy", func(t *testing.T) {
		table := compileSrc(t, "defaultBackend: http://d")
		table.Backends()[0] = "changed"
		assert.Equal(t, []string{"http://d"}, table.Backends())
	})
	t.Run("lookup does not allocate", func(t *testing.T) {
		table := compileSrc(t, benchConfig)
		host, path := []byte("API.example.com:443"), []byte("/v2/orders/1")
		allocs := testing.AllocsPerRun(100, func() {
			table.Lookup(host, 443, path)
		})
		assert.Zero(t, allocs)
	})
}

// benchConfig is the DESIGN example plus 50 more hosts, so that the table
// is not trivially small.
var benchConfig = func() string {
	src := `
defaultBackend: "http://backend-service:4070"
mappings:
  - frontendHost: "app.example.com"
    backend: "http://backend-a:7001"
  - frontendHost: "api.example.com"
    backend: "http://backend-c:9000"
  - frontendHost: "api.example.com"
    frontendPort: 443
    pathPrefix: "/v2"
    backend: "http://backend-b:8080"
`
	for i := range 50 {
		n := strconv.Itoa(i)
		src += "  - {frontendHost: host" + n + ".example.com, pathPrefix: /p" + n + ", backend: http://b" + n + "}\n"
	}
	return src
}()

func BenchmarkTableLookup(b *testing.B) {
	table := compileSrc(b, benchConfig)
	requests := []struct {
		host, path []byte
	}{
		{[]byte("app.example.com"), []byte("/users/42")},
		{[]byte("API.Example.com:443"), []byte("/v2/orders/1")},
		{[]byte("api.example.com"), []byte("/v1/orders/1")},
		{[]byte("host7.example.com"), []byte("/p7/x")},
		{[]byte("unknown.example.com"), []byte("/")},
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r := requests[i%len(requests)]
		if table.Lookup(r.host, 443, r.path) == nil {
			b.Fatal("no route")
		}
	}
}
