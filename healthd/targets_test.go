package healthd

import (
	"testing"

	"github.com/apigetaway/getaway/upstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTargetsFrom(t *testing.T) {
	tests := []struct {
		name string
		yml  string
		want []Target
	}{
		{
			name: "default and mappings, deduplicated, in file order",
			yml: `
defaultBackend: "http://backend-service:4070"
mappings:
  - frontendHost: app.example.com
    backend: "http://backend-a:7001"
  - frontendHost: api.example.com
    pathPrefix: /v2
    backend: "http://backend-b:8080"
  - frontendHost: other.example.com
    backend: "HTTP://Backend-A:7001/"
`,
			want: []Target{
				{URL: "http://backend-service:4070"},
				{URL: "http://backend-a:7001"},
				{URL: "http://backend-b:8080"},
			},
		},
		{
			name: "healthPath applies to its backend, first one wins",
			yml: `
mappings:
  - frontendHost: a.example.com
    backend: "http://backend-a:7001"
  - frontendHost: b.example.com
    backend: "http://backend-a:7001"
    healthPath: /healthz?full=1
  - frontendHost: c.example.com
    backend: "http://backend-a:7001"
    healthPath: /other
  - frontendHost: d.example.com
    backend: "https://backend-d/base"
    healthPath: /status
`,
			want: []Target{
				{URL: "http://backend-a:7001", HealthPath: "/healthz?full=1"},
				{URL: "https://backend-d/base", HealthPath: "/status"},
			},
		},
		{
			name: "default backend takes a mapping's healthPath",
			yml: `
defaultBackend: "http://backend-a:7001"
mappings:
  - frontendHost: a.example.com
    backend: "http://backend-a:7001"
    healthPath: /ping
`,
			want: []Target{{URL: "http://backend-a:7001", HealthPath: "/ping"}},
		},
		{
			name: "default backend alone",
			yml:  `defaultBackend: "http://only:1"`,
			want: []Target{{URL: "http://only:1"}},
		},
		{
			name: "empty file",
			yml:  ``,
			want: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := upstream.ParseFile("config.yml", []byte(tt.yml))
			require.NoError(t, err)
			assert.Equal(t, tt.want, TargetsFrom(f))
		})
	}
}

// A File built by hand (not through ParseFile) is normalised too, so that
// one backend is never checked twice.
func TestTargetsFromUnnormalisedFile(t *testing.T) {
	f := &upstream.File{
		DefaultBackend: "HTTP://B:80/",
		Mappings: []upstream.Mapping{
			{FrontendHost: "x", Backend: "http://b"},
			{FrontendHost: "y", Backend: "https://c:443/p/", HealthPath: "/h"},
			{FrontendHost: "z", Backend: "https://C/p"},
		},
	}
	assert.Equal(t, []Target{
		{URL: "http://b"},
		{URL: "https://c/p", HealthPath: "/h"},
	}, TargetsFrom(f))
	assert.Nil(t, TargetsFrom(nil))
}

func TestTargetProbeURL(t *testing.T) {
	assert.Equal(t, "http://b:1", Target{URL: "http://b:1"}.probeURL())
	assert.Equal(t, "http://b:1/base/healthz?x=1", Target{URL: "http://b:1/base", HealthPath: "/healthz?x=1"}.probeURL())
}
