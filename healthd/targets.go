package healthd

import (
	"net/url"
	"strings"

	"github.com/apigetaway/getaway/upstream"
)

// Target is one backend to check.
type Target struct {
	// URL is the backend's base URL as config.yml names it (normalised, as
	// upstream.File.Backends returns it). It is the key of the backend in
	// Snapshot, ReportFailure and ReportSuccess.
	URL string
	// HealthPath, when set, is appended to URL for the check ("/healthz",
	// "/status?full=1"); empty checks URL itself.
	HealthPath string
}

// probeURL returns the URL a check requests.
func (t Target) probeURL() string { return t.URL + t.HealthPath }

// TargetsFrom returns the backends of f to check: the defaultBackend and
// every mapping's backend, in the order of f.Backends, without duplicates
// (two spellings of one URL, such as "HTTP://B:80/" and "http://b", are one
// backend). The healthPath of the first mapping, in file order, that sets
// one for a backend applies to it, the defaultBackend included; a backend
// without one is checked at its own URL. A nil f has no targets.
func TargetsFrom(f *upstream.File) []Target {
	if f == nil {
		return nil
	}
	paths := make(map[string]string)
	for _, m := range f.Mappings {
		key := normaliseURL(m.Backend)
		if _, ok := paths[key]; !ok && m.HealthPath != "" {
			paths[key] = m.HealthPath
		}
	}
	var out []Target
	seen := make(map[string]bool)
	for _, b := range f.Backends() {
		key := normaliseURL(b)
		if key == "" || seen[key] {
			continue
		}
		seen[key] = true
		out = append(out, Target{URL: key, HealthPath: paths[key]})
	}
	return out
}

// normaliseURL returns the form of a backend URL upstream.ParseFile gives
// it: lower-case scheme and host, no default port, no trailing slash. A
// File from ParseFile is normalised already, so this only matters for Files
// built by hand, and then only so that one backend is not checked twice.
// A URL it cannot parse is returned as it is.
func normaliseURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return strings.TrimRight(raw, "/")
	}
	scheme := strings.ToLower(u.Scheme)
	host := strings.ToLower(u.Host)
	switch {
	case scheme == "http" && strings.HasSuffix(host, ":80"):
		host = strings.TrimSuffix(host, ":80")
	case scheme == "https" && strings.HasSuffix(host, ":443"):
		host = strings.TrimSuffix(host, ":443")
	}
	path := u.EscapedPath()
	return scheme + "://" + host + strings.TrimRight(path, "/")
}
