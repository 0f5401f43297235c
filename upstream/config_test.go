package upstream

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

// mustParse parses a configuration that the test expects to be valid.
func mustParse(t *testing.T, src string) *File {
	t.Helper()
	f, err := ParseFile("config.yml", []byte(src))
	require.NoError(t, err)
	require.NotNil(t, f)
	return f
}

// parseProblems parses a configuration that the test expects to be invalid
// and returns its problems.
func parseProblems(t *testing.T, src string) (*ConfigError, []Problem) {
	t.Helper()
	f, err := ParseFile("config.yml", []byte(src))
	require.Error(t, err)
	assert.Nil(t, f)
	var cerr *ConfigError
	require.ErrorAs(t, err, &cerr)
	require.NotEmpty(t, cerr.Problems)
	assert.Equal(t, "config.yml", cerr.File)
	return cerr, cerr.Problems
}

func TestLoadFileDesignExample(t *testing.T) {
	f, err := LoadFile(filepath.Join("testdata", "config.yml"))
	require.NoError(t, err)
	assert.Equal(t, &File{
		DefaultBackend: "http://backend-service:4070",
		AllowedOrigins: []string{"https://app.example.com"},
		Mappings: []Mapping{
			{FrontendHost: "app.example.com", Backend: "http://backend-a:7001"},
			{FrontendHost: "api.example.com", FrontendPort: 443, PathPrefix: "/v2", Backend: "http://backend-b:8080"},
		},
	}, f)
	assert.Equal(t, []string{"http://backend-service:4070", "http://backend-a:7001", "http://backend-b:8080"}, f.Backends())
}

func TestLoadFileErrors(t *testing.T) {
	t.Run("missing file", func(t *testing.T) {
		_, err := LoadFile(filepath.Join(t.TempDir(), "nope.yml"))
		require.ErrorIs(t, err, fs.ErrNotExist)
	})
	t.Run("invalid file is named by its path", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "bad.yml")
		require.NoError(t, os.WriteFile(path, []byte("mappings:\n  - frontendHost: a.example\n    backend: ftp://x\n"), 0o600))
		_, err := LoadFile(path)
		var cerr *ConfigError
		require.ErrorAs(t, err, &cerr)
		assert.Equal(t, path+": mappings[0].backend: scheme must be http or https", err.Error())
	})
}

func TestParseFileNormalises(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want *File
	}{
		{
			name: "empty file",
			src:  "",
			want: &File{Mappings: []Mapping{}},
		},
		{
			name: "only comments",
			src:  "# nothing yet\n",
			want: &File{Mappings: []Mapping{}},
		},
		{
			name: "null document",
			src:  "---\n~\n",
			want: &File{Mappings: []Mapping{}},
		},
		{
			name: "empty lists",
			src:  "allowedOrigins: []\nmappings: []\n",
			want: &File{Mappings: []Mapping{}},
		},
		{
			name: "hosts, schemes and default ports",
			src: `
defaultBackend: HTTPS://Backend.Example:443/
allowedOrigins: ["HTTPS://App.Example.COM:443/", "http://localhost:3000"]
mappings:
  - frontendHost: App.Example.COM.
    backend: http://Backend-A:80/base/a%2Fb/
  - frontendHost: "[::1]"
    frontendPort: 8443
    pathPrefix: /v2/
    backend: "http://[0:0::1]:8080"
  - frontendHost: "::FFFF:7F00:1"
    pathPrefix: /
    backend: http://127.0.0.1:07001
  - frontendHost: my_service
    backend: https://my_backend:8443
    preserveHost: true
    forwardAccessToken: true
    healthPath: /healthz?full=1
`,
			want: &File{
				DefaultBackend: "https://backend.example",
				AllowedOrigins: []string{"https://app.example.com", "http://localhost:3000"},
				Mappings: []Mapping{
					{FrontendHost: "app.example.com", Backend: "http://backend-a/base/a%2Fb"},
					{FrontendHost: "::1", FrontendPort: 8443, PathPrefix: "/v2", Backend: "http://[::1]:8080"},
					{FrontendHost: "::ffff:127.0.0.1", Backend: "http://127.0.0.1:7001"},
					{
						FrontendHost: "my_service", Backend: "https://my_backend:8443",
						PreserveHost: true, ForwardAccessToken: true, HealthPath: "/healthz?full=1",
					},
				},
			},
		},
		{
			name: "same host with different ports or prefixes",
			src: `
mappings:
  - {frontendHost: a.example, backend: http://a}
  - {frontendHost: a.example, frontendPort: 8080, backend: http://b}
  - {frontendHost: a.example, pathPrefix: /x, backend: http://c}
  - {frontendHost: a.example, pathPrefix: /x/y, backend: http://c}
`,
			want: &File{Mappings: []Mapping{
				{FrontendHost: "a.example", Backend: "http://a"},
				{FrontendHost: "a.example", FrontendPort: 8080, Backend: "http://b"},
				{FrontendHost: "a.example", PathPrefix: "/x", Backend: "http://c"},
				{FrontendHost: "a.example", PathPrefix: "/x/y", Backend: "http://c"},
			}},
		},
		{
			name: "anchors and aliases",
			src: `
defaultBackend: &b http://shared:9000
mappings:
  - {frontendHost: a.example, backend: *b}
`,
			want: &File{DefaultBackend: "http://shared:9000", Mappings: []Mapping{
				{FrontendHost: "a.example", Backend: "http://shared:9000"},
			}},
		},
		{
			name: "explicit port zero means any port",
			src:  "mappings: [{frontendHost: a.example, frontendPort: 0, backend: http://a}]",
			want: &File{Mappings: []Mapping{{FrontendHost: "a.example", Backend: "http://a"}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, mustParse(t, tt.src))
		})
	}
}

func TestParseFileJSON(t *testing.T) {
	src := `{
  "defaultBackend": "http://backend-service:4070",
  "allowedOrigins": ["https://app.example.com"],
  "mappings": [
    {"frontendHost": "app.example.com", "backend": "http://backend-a:7001"},
    {"frontendHost": "api.example.com", "frontendPort": 443, "pathPrefix": "/v2",
     "backend": "http://backend-b:8080", "preserveHost": true}
  ]
}`
	f := mustParse(t, src)
	require.Len(t, f.Mappings, 2)
	assert.Equal(t, Mapping{
		FrontendHost: "api.example.com", FrontendPort: 443, PathPrefix: "/v2",
		Backend: "http://backend-b:8080", PreserveHost: true,
	}, f.Mappings[1])

	// What GET /admin/config shows can be sent back with PUT.
	out, err := json.Marshal(f)
	require.NoError(t, err)
	again := mustParse(t, string(out))
	assert.Equal(t, f, again)

	_, problems := parseProblems(t, `{"mappings": [{"frontendHost": "a.example", "backend": "http://a", "extra": 1}]}`)
	assert.Equal(t, "mappings[0].extra", problems[0].Field)
}

func TestParseFileProblems(t *testing.T) {
	// mapping returns a one-mapping file with the given extra lines.
	mapping := func(lines string) string {
		return "mappings:\n  - " + strings.ReplaceAll(strings.TrimSpace(lines), "\n", "\n    ") + "\n"
	}
	tests := []struct {
		name   string
		src    string
		field  string
		reason string // a part of the reason
	}{
		{"yaml syntax", "mappings: [\n", "", "yaml: line"},
		{"tab indentation", "mappings:\n\t- frontendHost: a\n", "", "yaml: line"},
		{"second document", "mappings: []\n---\nmappings: []\n", "", "only one yaml document"},
		{"top level is a list", "- a\n", "", "must be a mapping"},
		{"unknown top-level key", "defaultbackend: http://a\n", "defaultbackend", `unknown key "defaultbackend" (line 1)`},
		{"unknown mapping key", mapping("frontendHost: a.example\nbackend: http://a\nbackendUrl: http://b"), "mappings[0].backendUrl", `unknown key "backendUrl"`},
		{"duplicate key", mapping("frontendHost: a.example\nbackend: http://a\nbackend: http://b"), "mappings[0].backend", `duplicate key "backend"`},
		{"mappings not a list", "mappings: {frontendHost: a}\n", "mappings", "must be a list of mappings"},
		{"mapping not a mapping", "mappings: [a.example]\n", "mappings[0]", "must be a mapping"},
		{"allowedOrigins not a list", "allowedOrigins: https://a.example\n", "allowedOrigins", "must be a list of strings"},
		{"port not a number", mapping("frontendHost: a.example\nfrontendPort: https\nbackend: http://a"), "mappings[0].frontendPort", "must be an integer"},
		{"flag not a bool", mapping("frontendHost: a.example\npreserveHost: maybe\nbackend: http://a"), "mappings[0].preserveHost", "must be true or false"},
		{"host not a string", mapping("frontendHost: [a]\nbackend: http://a"), "mappings[0].frontendHost", "must be a string"},

		{"defaultBackend scheme", "defaultBackend: ftp://files\n", "defaultBackend", "scheme must be http or https"},
		{"defaultBackend without scheme", "defaultBackend: backend:4070\n", "defaultBackend", "scheme must be http or https"},

		{"frontendHost missing", mapping("backend: http://a"), "mappings[0].frontendHost", "is required"},
		{"frontendHost with scheme", mapping("frontendHost: https://a.example\nbackend: http://a"), "mappings[0].frontendHost", "not a url"},
		{"frontendHost with path", mapping("frontendHost: a.example/x\nbackend: http://a"), "mappings[0].frontendHost", "without a path"},
		{"frontendHost with port", mapping("frontendHost: a.example:8443\nbackend: http://a"), "mappings[0].frontendHost", "put the port in frontendPort"},
		{"frontendHost ipv6 with port", mapping(`frontendHost: "[::1]:8443"` + "\nbackend: http://a"), "mappings[0].frontendHost", "put the port in frontendPort"},
		{"frontendHost ipv4 with port", mapping("frontendHost: 127.0.0.1:80\nbackend: http://a"), "mappings[0].frontendHost", "put the port in frontendPort"},
		{"frontendHost wildcard", mapping(`frontendHost: "*.example.com"` + "\nbackend: http://a"), "mappings[0].frontendHost", "must be a dns name or ip address"},
		{"frontendHost bad ipv4", mapping("frontendHost: 256.1.1.1\nbackend: http://a"), "mappings[0].frontendHost", "must be a dns name or ip address"},
		{"frontendHost ipv6 zone", mapping(`frontendHost: "fe80::1%eth0"` + "\nbackend: http://a"), "mappings[0].frontendHost", "zones"},
		{"frontendHost ipv4 in brackets", mapping(`frontendHost: "[127.0.0.1]"` + "\nbackend: http://a"), "mappings[0].frontendHost", "only ipv6"},
		{"frontendHost label too long", mapping("frontendHost: " + strings.Repeat("a", 64) + ".example\nbackend: http://a"), "mappings[0].frontendHost", "must be a dns name"},

		{"frontendPort negative", mapping("frontendHost: a.example\nfrontendPort: -1\nbackend: http://a"), "mappings[0].frontendPort", "must be between 1 and 65535"},
		{"frontendPort too large", mapping("frontendHost: a.example\nfrontendPort: 65536\nbackend: http://a"), "mappings[0].frontendPort", "must be between 1 and 65535"},

		{"pathPrefix relative", mapping("frontendHost: a.example\npathPrefix: v2\nbackend: http://a"), "mappings[0].pathPrefix", "must start with /"},
		{"pathPrefix query", mapping("frontendHost: a.example\npathPrefix: /v2?x=1\nbackend: http://a"), "mappings[0].pathPrefix", "must not contain ? or #"},
		{"pathPrefix fragment", mapping(`frontendHost: a.example` + "\npathPrefix: \"/v2#x\"\nbackend: http://a"), "mappings[0].pathPrefix", "must not contain ? or #"},
		{"pathPrefix dot dot", mapping("frontendHost: a.example\npathPrefix: /v2/../admin\nbackend: http://a"), "mappings[0].pathPrefix", ".. segments"},
		{"pathPrefix whitespace", mapping(`frontendHost: a.example` + "\npathPrefix: \"/v 2\"\nbackend: http://a"), "mappings[0].pathPrefix", "whitespace"},
		{"pathPrefix control", mapping(`frontendHost: a.example` + "\npathPrefix: \"/v2\\x01\"\nbackend: http://a"), "mappings[0].pathPrefix", "invisible"},
		{"pathPrefix format character", mapping(`frontendHost: a.example` + "\npathPrefix: \"/v2\\ufeff\"\nbackend: http://a"), "mappings[0].pathPrefix", "invisible"},
		{"backend whitespace", mapping(`frontendHost: a.example` + "\nbackend: \"http://a/b c\""), "mappings[0].backend", "whitespace"},

		{"backend missing", mapping("frontendHost: a.example"), "mappings[0].backend", "is required"},
		{"backend scheme", mapping("frontendHost: a.example\nbackend: ws://a"), "mappings[0].backend", "scheme must be http or https"},
		{"backend relative", mapping("frontendHost: a.example\nbackend: /x"), "mappings[0].backend", "scheme must be http or https"},
		{"backend without host", mapping("frontendHost: a.example\nbackend: http:///x"), "mappings[0].backend", "with a host"},
		{"backend opaque", mapping("frontendHost: a.example\nbackend: http:a"), "mappings[0].backend", "with a host"},
		{"backend port zero", mapping("frontendHost: a.example\nbackend: http://a:0"), "mappings[0].backend", "port must be between 1 and 65535"},
		{"backend port too large", mapping("frontendHost: a.example\nbackend: http://a:70000"), "mappings[0].backend", "port must be between 1 and 65535"},
		{"backend port empty", mapping("frontendHost: a.example\nbackend: 'http://a:'"), "mappings[0].backend", "port must be between 1 and 65535"},
		{"backend port not a number", mapping("frontendHost: a.example\nbackend: http://a:x"), "mappings[0].backend", "invalid url"},
		{"backend user info", mapping("frontendHost: a.example\nbackend: http://user:pw@a"), "mappings[0].backend", "user info"},
		{"backend query", mapping("frontendHost: a.example\nbackend: http://a/?x=1"), "mappings[0].backend", "query"},
		{"backend empty query", mapping("frontendHost: a.example\nbackend: http://a/?"), "mappings[0].backend", "query"},
		{"backend fragment", mapping(`frontendHost: a.example` + "\nbackend: \"http://a/#x\""), "mappings[0].backend", "fragment"},
		{"backend path not encoded", mapping("frontendHost: a.example\nbackend: http://a/caf\u00e9"), "mappings[0].backend", "percent-encoded ascii, like /caf%C3%A9"},
		{"backend bad host", mapping("frontendHost: a.example\nbackend: http://a..b"), "mappings[0].backend", "must be a dns name"},

		{"healthPath relative", mapping("frontendHost: a.example\nbackend: http://a\nhealthPath: healthz"), "mappings[0].healthPath", "must start with /"},

		{"origin with path", "allowedOrigins: [https://app.example.com/app]\n", "allowedOrigins[0]", "without a path"},
		{"origin with query", "allowedOrigins: ['https://app.example.com?x']\n", "allowedOrigins[0]", "query"},
		{"origin scheme", "allowedOrigins: [app.example.com]\n", "allowedOrigins[0]", "scheme must be http or https"},
		{"origin wildcard", "allowedOrigins: ['*']\n", "allowedOrigins[0]", "scheme must be http or https"},
		{"origin empty", "allowedOrigins: ['']\n", "allowedOrigins[0]", "must not be empty"},

		{"duplicate mapping", `
mappings:
  - {frontendHost: a.example, pathPrefix: /v2, backend: http://a}
  - {frontendHost: b.example, backend: http://b}
  - {frontendHost: A.example., pathPrefix: /v2/, backend: http://c}
`, "mappings[2]", "duplicates mappings[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cerr, problems := parseProblems(t, tt.src)
			require.Len(t, problems, 1, "%v", cerr)
			assert.Equal(t, tt.field, problems[0].Field)
			assert.Contains(t, problems[0].Reason, tt.reason)
			assert.Contains(t, cerr.Error(), "config.yml: "+tt.field)
			assert.Equal(t, strings.ToLower(problems[0].Reason[:1]), problems[0].Reason[:1], "reasons start in lower case")
			assert.False(t, strings.HasSuffix(problems[0].Reason, "."), "reasons have no trailing period")
		})
	}
}

func TestParseFileReportsAllProblems(t *testing.T) {
	src := `
defaultBackend: ftp://x
allowedOrigins: [https://ok.example, "https://bad.example/path"]
unknown: 1
mappings:
  - frontendHost: a.example:8080
    frontendPort: 70000
    backend: http://a
  - frontendHost: b.example
    frontendPort: nope
    backend: gopher://b
  - frontendHost: b.example
    backend: http://b
    healthPath: x
  - ~
`
	cerr, problems := parseProblems(t, src)
	fields := make([]string, len(problems))
	for i, p := range problems {
		fields[i] = p.Field
	}
	assert.Equal(t, []string{
		"unknown",
		"mappings[1].frontendPort", // decoding problems come first
		"defaultBackend",
		"allowedOrigins[1]",
		"mappings[0].frontendHost",
		"mappings[0].frontendPort",
		"mappings[1].backend",
		"mappings[2].healthPath",
		"mappings[3].frontendHost",
		"mappings[3].backend",
	}, fields)
	// mappings[2] would duplicate mappings[1], but mappings with problems
	// are not compared, so no duplicate is claimed.
	assert.Equal(t, strings.Count(cerr.Error(), "; ")+1, len(problems))
	assert.True(t, strings.HasPrefix(cerr.Error(), `config.yml: unknown: unknown key "unknown" (line 4); mappings[1].frontendPort: must be an integer (line 10); defaultBackend: scheme must be http or https; `), cerr.Error())
}

func TestParseFileBrokenValueNotReportedTwice(t *testing.T) {
	_, problems := parseProblems(t, "mappings: [a, {frontendHost: b.example, backend: http://b}, [1]]\n")
	assert.Equal(t, []Problem{
		{Field: "mappings[0]", Reason: "must be a mapping with frontendHost and backend (line 1)"},
		{Field: "mappings[2]", Reason: "must be a mapping with frontendHost and backend (line 1)"},
	}, problems)
}

func TestParseFileStopsAfterMaxProblems(t *testing.T) {
	// One mapping with many unknown keys, aliased many times: without a
	// bound this reports (keys x aliases) problems.
	var src strings.Builder
	src.WriteString("x: &m {frontendHost: a.example, backend: http://a")
	for i := range 2000 {
		src.WriteString(", k" + strconv.Itoa(i) + ": 1")
	}
	src.WriteString("}\nmappings: [")
	for range 2000 {
		src.WriteString("*m, ")
	}
	src.WriteString("]\n")
	_, problems := parseProblems(t, src.String())
	require.Len(t, problems, maxProblems+1)
	assert.Equal(t, Problem{Reason: "too many problems, stopped after 100"}, problems[maxProblems])
}

func TestConfigErrorMessage(t *testing.T) {
	tests := []struct {
		name string
		err  *ConfigError
		want string
	}{
		{"one problem", &ConfigError{File: "config.yml", Problems: []Problem{{"mappings[2].backend", "scheme must be http or https"}}},
			"config.yml: mappings[2].backend: scheme must be http or https"},
		{"whole-file problem", &ConfigError{File: "config.yml", Problems: []Problem{{"", "yaml: line 1: did not find expected node content"}}},
			"config.yml: yaml: line 1: did not find expected node content"},
		{"several problems", &ConfigError{File: "c.yml", Problems: []Problem{{"a", "x"}, {"b", "y"}}},
			"c.yml: a: x; b: y"},
		{"no file name", &ConfigError{Problems: []Problem{{"a", "x"}}}, "a: x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.err.Error())
		})
	}
}

func TestFileBackendsDeduplicates(t *testing.T) {
	f := mustParse(t, `
defaultBackend: http://b
mappings:
  - {frontendHost: a.example, backend: http://a}
  - {frontendHost: b.example, backend: "HTTP://B:80/"}
  - {frontendHost: c.example, backend: http://a}
  - {frontendHost: d.example, backend: http://c}
`)
	assert.Equal(t, []string{"http://b", "http://a", "http://c"}, f.Backends())
	assert.Nil(t, (&File{}).Backends())
}

func TestFileClone(t *testing.T) {
	f := mustParse(t, "allowedOrigins: [https://a.example]\nmappings: [{frontendHost: a.example, backend: http://a}]\n")
	c := f.Clone()
	require.Equal(t, f, c)
	c.AllowedOrigins[0] = "https://changed.example"
	c.Mappings[0].Backend = "http://changed"
	assert.Equal(t, "https://a.example", f.AllowedOrigins[0])
	assert.Equal(t, "http://a", f.Mappings[0].Backend)
	assert.Nil(t, (*File)(nil).Clone())
	assert.Equal(t, []Mapping{}, (&File{Mappings: []Mapping{}}).Clone().Mappings)
}

func TestParseFileYAMLRoundTrip(t *testing.T) {
	f := mustParse(t, `
defaultBackend: http://d
allowedOrigins: [https://a.example]
mappings:
  - {frontendHost: "::1", frontendPort: 8080, pathPrefix: /x, backend: "http://[::1]:9000/base", preserveHost: true, forwardAccessToken: true, healthPath: /h}
`)
	out, err := yaml.Marshal(f)
	require.NoError(t, err)
	assert.Equal(t, f, mustParse(t, string(out)))
}
