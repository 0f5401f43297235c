package upstream

import (
	"fmt"
	"strings"
)

// Diff summarises the change from old to new on one line for the change
// log, e.g. `defaultBackend http://a -> http://b; +mapping app.example.com
// -> http://x; -allowedOrigin https://old.example.com`. It returns
// "no change" when the two route the same.
func Diff(old, new *File) string {
	if old == nil {
		old = &File{}
	}
	var parts []string
	if old.DefaultBackend != new.DefaultBackend {
		parts = append(parts, fmt.Sprintf("defaultBackend %s -> %s", orNone(old.DefaultBackend), orNone(new.DefaultBackend)))
	}
	parts = append(parts, setDiff("allowedOrigin", old.AllowedOrigins, new.AllowedOrigins)...)
	parts = append(parts, setDiff("mapping", mappingLines(old.Mappings), mappingLines(new.Mappings))...)
	if len(parts) == 0 {
		if fmt.Sprint(mappingLines(old.Mappings)) != fmt.Sprint(mappingLines(new.Mappings)) {
			return "mappings reordered"
		}
		return "no change"
	}
	return strings.Join(parts, "; ")
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// mappingLines renders each mapping as one comparable line.
func mappingLines(ms []Mapping) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		s := m.FrontendHost
		if m.FrontendPort != 0 {
			s += fmt.Sprintf(":%d", m.FrontendPort)
		}
		s += m.PathPrefix + " -> " + m.Backend
		if m.PreserveHost {
			s += " preserveHost"
		}
		if m.ForwardAccessToken {
			s += " forwardAccessToken"
		}
		if m.HealthPath != "" {
			s += " healthPath=" + m.HealthPath
		}
		out[i] = s
	}
	return out
}

// setDiff lists what b adds to a (+) and what it drops (-).
func setDiff(what string, a, b []string) []string {
	in := func(xs []string, x string) bool {
		for _, y := range xs {
			if y == x {
				return true
			}
		}
		return false
	}
	var out []string
	for _, x := range b {
		if !in(a, x) {
			out = append(out, "+"+what+" "+x)
		}
	}
	for _, x := range a {
		if !in(b, x) {
			out = append(out, "-"+what+" "+x)
		}
	}
	return out
}
