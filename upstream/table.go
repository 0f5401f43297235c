package upstream

// maxHostLen is the longest Host name (without port) Lookup considers; a
// DNS name has at most 253 characters, so longer hosts match no mapping.
const maxHostLen = 255

// Table is a routing table compiled from a File. It is immutable once built
// and safe for concurrent use; a reload compiles a new Table and swaps it in.
type Table struct {
	hosts    map[string][]tableEntry // by normalised frontendHost, file order
	fallback *Route                  // defaultBackend, nil when unset
	backends []string                // File.Backends()
}

// tableEntry is one mapping in a host's candidate list.
type tableEntry struct {
	port   int    // 0 = any port
	prefix string // "" = host-only mapping
	route  *Route
}

// Route is what a lookup yields. Routes are immutable and shared by every
// request that matches them: never modify one.
type Route struct {
	// Backend is the normalised backend URL, the same string as in
	// File.Backends.
	Backend string
	// BackendIndex is the index of Backend in the table's Backends.
	BackendIndex int
	// Mapping is the index of the matched mapping in File.Mappings, or -1
	// for defaultBackend.
	Mapping int
	// PreserveHost and ForwardAccessToken are copied from the mapping; both
	// are false for defaultBackend.
	PreserveHost, ForwardAccessToken bool
}

// Compile builds the routing table of f, which must come from ParseFile or
// LoadFile (Compile relies on its normalisation). A nil f routes nothing.
func Compile(f *File) *Table {
	t := &Table{hosts: make(map[string][]tableEntry)}
	if f == nil {
		return t
	}
	t.backends = f.Backends()
	index := make(map[string]int, len(t.backends))
	for i, b := range t.backends {
		index[b] = i
	}
	if f.DefaultBackend != "" {
		t.fallback = &Route{Backend: f.DefaultBackend, BackendIndex: index[f.DefaultBackend], Mapping: -1}
	}
	for i, m := range f.Mappings {
		r := &Route{
			Backend:            m.Backend,
			BackendIndex:       index[m.Backend],
			Mapping:            i,
			PreserveHost:       m.PreserveHost,
			ForwardAccessToken: m.ForwardAccessToken,
		}
		t.hosts[m.FrontendHost] = append(t.hosts[m.FrontendHost], tableEntry{port: m.FrontendPort, prefix: m.PathPrefix, route: r})
	}
	return t
}

// Backends returns a copy of the distinct backend URLs of the table, as
// File.Backends; Route.BackendIndex indexes it.
func (t *Table) Backends() []string {
	if t == nil {
		return nil
	}
	return append([]string(nil), t.backends...)
}

// Lookup resolves a request to its route, or returns nil when no mapping
// matches and there is no defaultBackend. It does not allocate.
//
// host is the raw Host header ("name", "name:port", "[v6]" or "[v6]:port",
// any case, one trailing dot ignored). defaultPort is the port to assume when
// host carries none: 80 or 443 by the request's scheme. A malformed host or
// port matches no mapping, so the request goes to defaultBackend. path is the
// request path after /api, starting with "/", without query; it is compared
// byte for byte with the prefixes, so pass the same form (raw or decoded)
// the configured prefixes are written in.
//
// The mappings of the host are tried in file order, skipping those whose
// frontendPort is set and differs: the first with a matching pathPrefix
// wins at once; failing that, the first without pathPrefix; failing that,
// defaultBackend.
func (t *Table) Lookup(host []byte, defaultPort int, path []byte) *Route {
	if t == nil {
		return nil
	}
	name, port, ok := splitHostPort(host, defaultPort)
	if !ok || len(name) > maxHostLen {
		return t.fallback
	}
	var buf [maxHostLen]byte
	for i, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	// Indexing a map with string(bytes) does not allocate.
	entries := t.hosts[string(buf[:len(name)])]
	var hostOnly *Route
	for i := range entries {
		e := &entries[i]
		switch {
		case e.port != 0 && e.port != port:
		case e.prefix == "":
			if hostOnly == nil {
				hostOnly = e.route
			}
		case hasPathPrefix(path, e.prefix):
			return e.route
		}
	}
	if hostOnly != nil {
		return hostOnly
	}
	return t.fallback
}

// splitHostPort splits a Host header into the name (without brackets and
// without one trailing dot) and the port, defaultPort when none is given
// ("name" or "name:"). ok is false when the port is not a number from 1 to
// 65535 or the brackets of an IPv6 literal are malformed.
func splitHostPort(host []byte, defaultPort int) (name []byte, port int, ok bool) {
	var rest []byte
	if len(host) > 0 && host[0] == '[' {
		end := -1
		for i, c := range host {
			if c == ']' {
				end = i
				break
			}
		}
		if end < 0 {
			return nil, 0, false
		}
		name, rest = host[1:end], host[end+1:]
		if len(rest) > 0 {
			if rest[0] != ':' {
				return nil, 0, false
			}
			rest = rest[1:]
		}
	} else {
		name = host
		for i, c := range host {
			if c == ':' {
				name, rest = host[:i], host[i+1:]
				break
			}
		}
	}
	if n := len(name); n > 0 && name[n-1] == '.' {
		name = name[:n-1]
	}
	if len(rest) == 0 {
		return name, defaultPort, true
	}
	for _, c := range rest {
		if c < '0' || c > '9' {
			return nil, 0, false
		}
		port = port*10 + int(c-'0')
		if port > 65535 {
			return nil, 0, false
		}
	}
	if port == 0 {
		return nil, 0, false
	}
	return name, port, true
}

// hasPathPrefix reports whether path is prefix or lies below it: prefix
// (non-empty, no trailing slash) followed by nothing or by "/".
func hasPathPrefix(path []byte, prefix string) bool {
	return len(path) >= len(prefix) &&
		string(path[:len(prefix)]) == prefix &&
		(len(path) == len(prefix) || path[len(prefix)] == '/')
}
