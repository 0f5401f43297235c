package upstream

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

// FuzzParseFile checks that ParseFile never panics, that what it accepts
// compiles and survives a YAML and a JSON round trip unchanged, and that
// yaml.v3's own strict decoder (KnownFields) accepts the same input.
//
// The seeds are small on purpose: the fuzzer minimises every new input it
// finds interesting, which takes long for inputs of some kilobytes.
func FuzzParseFile(f *testing.F) {
	design, err := os.ReadFile(filepath.Join("testdata", "config.yml"))
	require.NoError(f, err)
	for _, s := range []string{
		string(design),
		"",
		"mappings: []\n",
		`{"defaultBackend": "https://B:443/x/", "mappings": [{"frontendHost": "[::1]", "frontendPort": 8080, "backend": "http://a"}]}`,
		"defaultBackend: &d http://d\nmappings:\n  - {frontendHost: a.example., pathPrefix: /v2/, backend: *d, preserveHost: true}\n",
		"allowedOrigins: [HTTPS://App.Example:443/]\nmappings: [{frontendHost: x, backend: 'http://x:8080', healthPath: /h?x=1, forwardAccessToken: true}]\n",
		"mappings:\n  - frontendHost: a:80\n    backend: ftp://x\n  - ~\n",
		"mappings: [{frontendHost: a, backend: http://a}, {frontendHost: A., backend: http://b}]\n",
		"mappings: !!map {}\n",
		"a: 1\n---\nb: 2\n",
		"mappings: &m [*m]\n",
		"defaultBackend: !!binary aHR0cDovL2E=\n",
		"mappings: [{frontendHost: x, backend: 'HTTP://A.b:80/%7e/a%2Fb/c%20/%C3%BC//'}]\n",
		"mappings: [{frontendHost: '::FFFF:7F00:1', pathPrefix: /\u00fc/, backend: 'http://[::FFFF:1.2.3.4]:08080'}]\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := ParseFile("fuzz.yml", data)
		if err != nil {
			require.Nil(t, file)
			var cerr *ConfigError
			require.ErrorAs(t, err, &cerr)
			require.NotEmpty(t, cerr.Problems)
			return
		}
		require.NotNil(t, file)

		table := Compile(file)
		require.Equal(t, file.Backends(), table.Backends())
		for i, m := range file.Mappings {
			host, port, path := m.FrontendHost, m.FrontendPort, m.PathPrefix
			if strings.Contains(host, ":") {
				host = "[" + host + "]"
			}
			if port == 0 {
				port = 443
			}
			if path == "" {
				path = "/"
			}
			r := table.Lookup([]byte(host), port, []byte(path))
			require.NotNil(t, r, "mappings[%d] is unreachable with its own host, port and prefix", i)
			require.Equal(t, r.Backend, table.Backends()[r.BackendIndex])
		}

		out, err := yaml.Marshal(file)
		require.NoError(t, err)
		again, err := ParseFile("again.yml", out)
		require.NoError(t, err, "%s", out)
		require.Equal(t, file, again, "%s", out)

		out, err = json.Marshal(file)
		require.NoError(t, err)
		again, err = ParseFile("again.json", out)
		require.NoError(t, err, "%s", out)
		require.Equal(t, file, again, "%s", out)

		// The node walk in decodeFile must not accept what yaml.v3's strict
		// decoding refuses, nor read it differently.
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		var raw File
		if err := dec.Decode(&raw); !errors.Is(err, io.EOF) {
			require.NoError(t, err)
		}
		var ps problemList
		require.Equal(t, file, normaliseFile(raw, &ps))
		require.Empty(t, ps.list)
	})
}

// lookupTable is the configuration FuzzLookup routes with, once as it is
// and once without defaultBackend.
const lookupTable = `
defaultBackend: http://default
mappings:
  - {frontendHost: a.example, backend: http://first}
  - {frontendHost: a.example, frontendPort: 80, backend: http://second}
  - {frontendHost: a.example, pathPrefix: /v2, backend: http://v2}
  - {frontendHost: a.example, pathPrefix: /v2/admin, backend: http://adm}
  - {frontendHost: b.example, frontendPort: 8080, backend: http://b8080}
  - {frontendHost: b.example, backend: http://b, preserveHost: true}
  - {frontendHost: b.example, frontendPort: 8080, pathPrefix: /x, backend: http://bx}
  - {frontendHost: "::1", backend: http://v6, forwardAccessToken: true}
  - {frontendHost: "[::1]", frontendPort: 8443, pathPrefix: /s, backend: http://v6s}
  - {frontendHost: 127.0.0.1, frontendPort: 80, backend: http://v4}
  - {frontendHost: c.example, pathPrefix: /only, backend: http://c}
  - {frontendHost: c.example, pathPrefix: /only/more, backend: http://default}
`

// FuzzLookup compares Table.Lookup with referenceLookup, a plain scan of the
// mappings in file order. FuzzParseFile covers other configurations: it
// checks that each mapping it accepts is reachable.
func FuzzLookup(f *testing.F) {
	withDefault, err := ParseFile("lookup.yml", []byte(lookupTable))
	require.NoError(f, err)
	withoutDefault := withDefault.Clone()
	withoutDefault.DefaultBackend = ""
	files := map[bool]*File{true: withDefault, false: withoutDefault}
	tables := map[bool]*Table{true: Compile(withDefault), false: Compile(withoutDefault)}

	for _, req := range []struct {
		host, path string
		https      bool
	}{
		{"a.example", "/", true},
		{"A.Example.:80", "/v2/x", false},
		{"a.example", "/v2x", true},
		{"a.example:80", "/v2/admin", false},
		{"b.example:08080", "/x", false},
		{"b.example:8080", "/x/", false},
		{"[::1]:8443", "/s", true},
		{"[::1]", "/", false},
		{"[::1]:", "/", false},
		{"127.0.0.1:", "/", false},
		{"c.example", "/only/more/x", true},
		{"a.example:99999", "/", true},
		{"a.example:-1", "/", true},
		{"[::1", "/", true},
		{"::1", "/", true},
		{"", "/", true},
	} {
		f.Add([]byte(req.host), []byte(req.path), req.https, true)
		f.Add([]byte(req.host), []byte(req.path), req.https, false)
	}
	f.Fuzz(func(t *testing.T, host, path []byte, https, hasDefault bool) {
		file, table := files[hasDefault], tables[hasDefault]
		defaultPort := 80
		if https {
			defaultPort = 443
		}
		got := table.Lookup(host, defaultPort, path)
		want := referenceLookup(file, string(host), defaultPort, string(path))
		if want == noRoute {
			require.Nil(t, got)
			return
		}
		require.NotNil(t, got)
		require.Equal(t, want, got.Mapping)
		backends := table.Backends()
		require.True(t, got.BackendIndex >= 0 && got.BackendIndex < len(backends), "backend index %d out of range", got.BackendIndex)
		require.Equal(t, backends[got.BackendIndex], got.Backend)
		if want == -1 {
			require.Equal(t, Route{Backend: file.DefaultBackend, BackendIndex: got.BackendIndex, Mapping: -1}, *got)
			return
		}
		m := file.Mappings[want]
		require.Equal(t, Route{
			Backend: m.Backend, BackendIndex: got.BackendIndex, Mapping: want,
			PreserveHost: m.PreserveHost, ForwardAccessToken: m.ForwardAccessToken,
		}, *got)
	})
}

// noRoute is what referenceLookup returns when nothing matches.
const noRoute = -2

// referenceLookup is the routing rule of DESIGN.md section 2 written as
// plainly as possible: the index of the mapping that host and path select,
// -1 for defaultBackend, or noRoute.
func referenceLookup(f *File, host string, defaultPort int, path string) int {
	fallback := noRoute
	if f.DefaultBackend != "" {
		fallback = -1
	}
	name, port, ok := referenceSplitHost(host, defaultPort)
	if !ok {
		return fallback
	}
	hostOnly := noRoute
	for i, m := range f.Mappings {
		if m.FrontendHost != name || m.FrontendPort != 0 && m.FrontendPort != port {
			continue
		}
		if m.PathPrefix == "" {
			if hostOnly == noRoute {
				hostOnly = i
			}
			continue
		}
		if path == m.PathPrefix || strings.HasPrefix(path, m.PathPrefix+"/") {
			return i
		}
	}
	if hostOnly != noRoute {
		return hostOnly
	}
	return fallback
}

// referenceSplitHost splits a Host header into its lower-case name and its
// port, as referenceLookup needs them.
func referenceSplitHost(host string, defaultPort int) (string, int, bool) {
	var name, port string
	if strings.HasPrefix(host, "[") {
		end := strings.Index(host, "]")
		if end < 0 {
			return "", 0, false
		}
		name = host[1:end]
		switch rest := host[end+1:]; {
		case rest == "":
		case rest[0] == ':':
			port = rest[1:]
		default:
			return "", 0, false
		}
	} else {
		name, port, _ = strings.Cut(host, ":")
	}
	n := defaultPort
	if port != "" {
		if strings.Trim(port, "0123456789") != "" {
			return "", 0, false
		}
		v, err := strconv.Atoi(port)
		if err != nil || v < 1 || v > 65535 {
			return "", 0, false
		}
		n = v
	}
	for i := 0; i < len(name); i++ {
		if name[i] >= 0x80 {
			// Configured hosts are ASCII; strings.ToLower would fold some
			// non-ASCII letters (the Kelvin sign) into ASCII ones.
			return "", n, true
		}
	}
	return strings.ToLower(strings.TrimSuffix(name, ".")), n, true
}
