package upstream

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// File is the parsed, validated and normalised content of config.yml.
//
// A File returned by ParseFile or LoadFile is normalised: hosts and URL
// schemes are lower-case, default ports and trailing slashes are removed, and
// Mappings is never nil. Marshalling it (YAML or JSON) and parsing the result
// yields an equal File. A File is a plain value: it is not safe to modify
// while another goroutine reads it; use Clone to get a copy to change.
type File struct {
	// DefaultBackend receives the requests that no mapping matches.
	// Optional; empty means such requests get no route (Lookup returns nil).
	// An http or https URL, normalised like Mapping.Backend.
	DefaultBackend string `yaml:"defaultBackend,omitempty" json:"defaultBackend,omitempty"`
	// AllowedOrigins are the browser origins (scheme://host[:port]) allowed
	// for CORS and as login redirect targets, merged with ALLOWED_ORIGINS.
	// Normalised to lower case without default port or trailing slash.
	// Every origin listed here can read API responses with the user's
	// session, so list only front ends you control.
	AllowedOrigins []string `yaml:"allowedOrigins,omitempty" json:"allowedOrigins,omitempty"`
	// Mappings are the routing rules, tried in file order (see Table.Lookup).
	Mappings []Mapping `yaml:"mappings" json:"mappings"`
}

// Mapping is one routing rule of config.yml.
type Mapping struct {
	// FrontendHost is the host name or IP literal the request's Host header
	// must match, case-insensitively and ignoring one trailing dot.
	// Required. Normalised to lower case without trailing dot; an IPv6
	// literal is stored without brackets in its canonical (RFC 5952) form.
	FrontendHost string `yaml:"frontendHost" json:"frontendHost"`
	// FrontendPort, when set (1-65535), restricts the mapping to requests on
	// that port; a Host header without a port counts as 80 for http and 443
	// for https. 0 (the default) matches any port.
	FrontendPort int `yaml:"frontendPort,omitempty" json:"frontendPort,omitempty"`
	// PathPrefix, when set, restricts the mapping to request paths (after
	// /api) equal to it or below it on a segment boundary: "/v2" matches
	// "/v2" and "/v2/x" but not "/v2x". Case-sensitive, and compared with
	// the path as the proxy passes it to Table.Lookup. Normalised without
	// trailing slash; "/" alone means no prefix. Default "" (any path).
	PathPrefix string `yaml:"pathPrefix,omitempty" json:"pathPrefix,omitempty"`
	// Backend is the http or https URL requests are proxied to. Required.
	// Normalised: lower-case scheme and host, no default port, no trailing
	// slash. A path is kept as written and must be percent-encoded ASCII.
	// User info, query and fragment are refused.
	Backend string `yaml:"backend" json:"backend"`
	// PreserveHost sends the client's Host header to the backend instead of
	// the backend's own host. Default false.
	PreserveHost bool `yaml:"preserveHost,omitempty" json:"preserveHost,omitempty"`
	// ForwardAccessToken sends the session's OIDC access token to the
	// backend as "Authorization: Bearer". Default false: the token never
	// leaves the gateway unless a mapping asks for it.
	ForwardAccessToken bool `yaml:"forwardAccessToken,omitempty" json:"forwardAccessToken,omitempty"`
	// HealthPath is the path the health checker requests on Backend.
	// Optional; when set it must start with "/" and may carry a query.
	HealthPath string `yaml:"healthPath,omitempty" json:"healthPath,omitempty"`
}

// ConfigError reports every problem found in a configuration file. ParseFile
// and LoadFile return it (use errors.As); the running configuration should
// stay in force when it is returned.
type ConfigError struct {
	// File is the file name as given to ParseFile or LoadFile.
	File string
	// Problems lists every problem found: decoding problems first, then
	// validation problems in field order. Never empty.
	Problems []Problem
}

// Problem is one thing wrong in a configuration file.
type Problem struct {
	// Field is the path of the offending value, like "mappings[2].backend",
	// or "" for a problem with the whole file, such as a YAML syntax error.
	Field string
	// Reason says what is wrong, in lower case without a trailing period.
	Reason string
}

// Error returns the file name once, then the problems joined with "; ", as in
// "config.yml: mappings[2].backend: scheme must be http or https".
func (e *ConfigError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(": ")
	}
	if len(e.Problems) == 0 {
		b.WriteString("invalid configuration")
	}
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString("; ")
		}
		if p.Field != "" {
			b.WriteString(p.Field)
			b.WriteString(": ")
		}
		b.WriteString(p.Reason)
	}
	return b.String()
}

// LoadFile reads the configuration file at path and parses it with
// ParseFile, naming it path in messages. A read failure is returned wrapped
// (errors.Is(err, fs.ErrNotExist) works); a bad file yields a *ConfigError.
func LoadFile(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return ParseFile(path, data)
}

// ParseFile decodes data, a single YAML document (JSON is accepted, being
// YAML), strictly: unknown and duplicate keys, values of the wrong type and
// further documents are errors. It then validates and normalises the result.
// name is the file name used in messages. On any problem it returns a nil
// *File and a *ConfigError listing all problems found. An empty document is
// valid and routes nothing.
func ParseFile(name string, data []byte) (*File, error) {
	var ps problemList
	raw := decodeFile(data, &ps)
	f := normaliseFile(raw, &ps)
	if len(ps.list) > 0 {
		return nil, &ConfigError{File: name, Problems: ps.list}
	}
	return f, nil
}

// Backends returns the distinct backend URLs of f: DefaultBackend first when
// set, then the mappings' backends in file order. Table.Backends returns the
// same list, and Route.BackendIndex indexes it.
func (f *File) Backends() []string {
	var out []string
	seen := make(map[string]bool)
	add := func(b string) {
		if b != "" && !seen[b] {
			seen[b] = true
			out = append(out, b)
		}
	}
	add(f.DefaultBackend)
	for _, m := range f.Mappings {
		add(m.Backend)
	}
	return out
}

// Clone returns a deep copy of f; changing it leaves f untouched.
func (f *File) Clone() *File {
	if f == nil {
		return nil
	}
	c := *f
	c.AllowedOrigins = slices.Clone(f.AllowedOrigins)
	c.Mappings = slices.Clone(f.Mappings)
	return &c
}

// maxProblems bounds the problems reported for one file. It also bounds the
// work spent on a hostile one: a list of aliases to one large mapping would
// otherwise yield problems quadratic in the size of the file.
const maxProblems = 100

// problemList collects problems. A value that could not be decoded is marked
// broken, so that validation does not report it a second time (a port that
// is not a number is not also "out of range"), nor anything below it.
type problemList struct {
	list   []Problem
	broken map[string]bool
}

// add records a problem unless field or one of its parents is broken. After
// maxProblems, it records that it stopped, then nothing more.
func (ps *problemList) add(field, reason string) {
	switch {
	case ps.full() || ps.covered(field):
	case len(ps.list) == maxProblems:
		ps.list = append(ps.list, Problem{Reason: fmt.Sprintf("too many problems, stopped after %d", maxProblems)})
	default:
		ps.list = append(ps.list, Problem{Field: field, Reason: reason})
	}
}

// full reports whether add has stopped recording; decoding and validation
// stop early then.
func (ps *problemList) full() bool {
	return len(ps.list) > maxProblems
}

// addBroken records a problem and marks field broken.
func (ps *problemList) addBroken(field, reason string) {
	ps.add(field, reason)
	if ps.broken == nil {
		ps.broken = make(map[string]bool)
	}
	ps.broken[field] = true
}

// mentions reports whether a problem is recorded for field or below it.
func (ps *problemList) mentions(field string) bool {
	for _, p := range ps.list {
		if p.Field == field || strings.HasPrefix(p.Field, field+".") || strings.HasPrefix(p.Field, field+"[") {
			return true
		}
	}
	return false
}

// covered reports whether field or a parent of it ("mappings[1]" for
// "mappings[1].backend") is broken. Whole-file problems cover nothing.
func (ps *problemList) covered(field string) bool {
	if field == "" || len(ps.broken) == 0 {
		return false
	}
	for i := 0; i < len(field); i++ {
		if (field[i] == '.' || field[i] == '[') && ps.broken[field[:i]] {
			return true
		}
	}
	return ps.broken[field]
}

// decodeFile reads the single YAML document in data into a File without
// validating the values. yaml.v3's own strict mode (Decoder.KnownFields)
// reports unknown keys and type errors with a line number only, so the
// document is decoded into nodes and walked here to name the field of every
// problem; scalars are still converted by yaml.v3 (Node.Decode).
func decodeFile(data []byte, ps *problemList) File {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if !errors.Is(err, io.EOF) { // io.EOF: empty file or only comments
			ps.add("", err.Error())
		}
		return File{}
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		ps.add("", err.Error())
	default:
		ps.add("", fmt.Sprintf("only one yaml document is allowed, found another (line %d)", extra.Line))
	}
	if len(doc.Content) == 0 {
		return File{}
	}
	var f File
	root := yamlDeref(doc.Content[0])
	if yamlIsNull(root) {
		return f
	}
	if root.Kind != yaml.MappingNode {
		ps.add("", fmt.Sprintf("must be a mapping with the keys defaultBackend, allowedOrigins and mappings (line %d)", root.Line))
		return f
	}
	decodeKeys(root, "", ps, func(key string, v *yaml.Node, field string) bool {
		switch key {
		case "defaultBackend":
			decodeScalar(v, field, ps, &f.DefaultBackend, "a string")
		case "allowedOrigins":
			f.AllowedOrigins = decodeStrings(v, field, ps)
		case "mappings":
			f.Mappings = decodeMappings(v, field, ps)
		default:
			return false
		}
		return true
	})
	return f
}

// decodeMappings decodes the mappings list.
func decodeMappings(n *yaml.Node, field string, ps *problemList) []Mapping {
	n = yamlDeref(n)
	if yamlIsNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		ps.addBroken(field, fmt.Sprintf("must be a list of mappings (line %d)", n.Line))
		return nil
	}
	out := make([]Mapping, len(n.Content))
	for i, item := range n.Content {
		if ps.full() {
			break
		}
		m := &out[i]
		itemField := fmt.Sprintf("%s[%d]", field, i)
		item = yamlDeref(item)
		if yamlIsNull(item) {
			continue // validation reports the missing fields
		}
		if item.Kind != yaml.MappingNode {
			ps.addBroken(itemField, fmt.Sprintf("must be a mapping with frontendHost and backend (line %d)", item.Line))
			continue
		}
		decodeKeys(item, itemField, ps, func(key string, v *yaml.Node, field string) bool {
			switch key {
			case "frontendHost":
				decodeScalar(v, field, ps, &m.FrontendHost, "a string")
			case "frontendPort":
				decodeScalar(v, field, ps, &m.FrontendPort, "an integer")
			case "pathPrefix":
				decodeScalar(v, field, ps, &m.PathPrefix, "a string")
			case "backend":
				decodeScalar(v, field, ps, &m.Backend, "a string")
			case "preserveHost":
				decodeScalar(v, field, ps, &m.PreserveHost, "true or false")
			case "forwardAccessToken":
				decodeScalar(v, field, ps, &m.ForwardAccessToken, "true or false")
			case "healthPath":
				decodeScalar(v, field, ps, &m.HealthPath, "a string")
			default:
				return false
			}
			return true
		})
	}
	return out
}

// decodeKeys calls known for each key of the mapping node n, with the value
// node and the key's field path; known returns false for an unknown key.
// Unknown, duplicate and non-string keys are reported.
func decodeKeys(n *yaml.Node, prefix string, ps *problemList, known func(key string, v *yaml.Node, field string) bool) {
	seen := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content) && !ps.full(); i += 2 {
		k, v := yamlDeref(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			ps.add(prefix, fmt.Sprintf("keys must be strings (line %d)", k.Line))
			continue
		}
		field := k.Value
		if prefix != "" {
			field = prefix + "." + k.Value
		}
		if line, dup := seen[k.Value]; dup {
			ps.add(field, fmt.Sprintf("duplicate key %q (line %d), first defined at line %d", k.Value, k.Line, line))
			continue
		}
		seen[k.Value] = k.Line
		if !known(k.Value, v, field) {
			ps.add(field, fmt.Sprintf("unknown key %q (line %d)", k.Value, k.Line))
		}
	}
}

// decodeStrings decodes a list of strings; null is an empty list.
func decodeStrings(n *yaml.Node, field string, ps *problemList) []string {
	n = yamlDeref(n)
	if yamlIsNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		ps.addBroken(field, fmt.Sprintf("must be a list of strings (line %d)", n.Line))
		return nil
	}
	out := make([]string, len(n.Content))
	for i, item := range n.Content {
		decodeScalar(item, fmt.Sprintf("%s[%d]", field, i), ps, &out[i], "a string")
	}
	return out
}

// decodeScalar converts the scalar node n into out (a *string, *int or
// *bool) the way yaml.v3 would; null leaves out at its zero value. want
// describes the expected type for the message.
func decodeScalar(n *yaml.Node, field string, ps *problemList, out any, want string) {
	n = yamlDeref(n)
	if n.Kind != yaml.ScalarNode || n.Decode(out) != nil {
		ps.addBroken(field, fmt.Sprintf("must be %s (line %d)", want, n.Line))
	}
}

// yamlDeref follows an alias (*name) to the node it stands for.
func yamlDeref(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

// yamlIsNull reports whether n is a null scalar (~, null or nothing).
func yamlIsNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// routeKey identifies what a mapping matches; two mappings with the same key
// would make the later one unreachable.
type routeKey struct {
	host   string
	port   int
	prefix string
}

// normaliseFile validates raw and returns its normalised form, recording a
// problem for every invalid value. Values already reported as broken by the
// decoder are not checked again.
func normaliseFile(raw File, ps *problemList) *File {
	f := &File{Mappings: make([]Mapping, 0, len(raw.Mappings))}
	if raw.DefaultBackend != "" {
		var reason string
		f.DefaultBackend, reason = normaliseURL(raw.DefaultBackend, false)
		if reason != "" {
			ps.add("defaultBackend", reason)
		}
	}
	for i, o := range raw.AllowedOrigins {
		origin, reason := normaliseOrigin(o)
		if reason != "" {
			ps.add(fmt.Sprintf("allowedOrigins[%d]", i), reason)
		}
		f.AllowedOrigins = append(f.AllowedOrigins, origin)
	}
	first := make(map[routeKey]int, len(raw.Mappings))
	for i, m := range raw.Mappings {
		if ps.full() {
			break
		}
		field := fmt.Sprintf("mappings[%d]", i)
		m = normaliseMapping(m, field, ps)
		f.Mappings = append(f.Mappings, m)
		if ps.mentions(field) {
			continue // only valid mappings are compared, to avoid guesses
		}
		key := routeKey{m.FrontendHost, m.FrontendPort, m.PathPrefix}
		if j, dup := first[key]; dup {
			ps.add(field, fmt.Sprintf("duplicates mappings[%d] (same frontendHost, frontendPort and pathPrefix)", j))
		} else {
			first[key] = i
		}
	}
	return f
}

// normaliseMapping validates m, found at field, and returns it normalised.
func normaliseMapping(m Mapping, field string, ps *problemList) Mapping {
	var reason string
	if m.FrontendHost, reason = normaliseFrontendHost(m.FrontendHost); reason != "" {
		ps.add(field+".frontendHost", reason)
	}
	if m.FrontendPort < 0 || m.FrontendPort > 65535 {
		ps.add(field+".frontendPort", "must be between 1 and 65535")
	}
	if m.PathPrefix, reason = normalisePathPrefix(m.PathPrefix); reason != "" {
		ps.add(field+".pathPrefix", reason)
	}
	if m.Backend == "" {
		ps.add(field+".backend", "is required")
	} else if m.Backend, reason = normaliseURL(m.Backend, false); reason != "" {
		ps.add(field+".backend", reason)
	}
	if reason = checkHealthPath(m.HealthPath); reason != "" {
		ps.add(field+".healthPath", reason)
	}
	return m
}

// normaliseFrontendHost checks a mapping's frontendHost and returns it
// lower-case, without trailing dot, and without brackets for IPv6.
func normaliseFrontendHost(s string) (string, string) {
	const portHint = "must not contain a port, put the port in frontendPort"
	switch {
	case s == "":
		return "", "is required"
	case strings.Contains(s, "://"):
		return "", "must be a host name, not a url"
	case strings.ContainsAny(s, "/?#"):
		return "", "must be a host name without a path"
	}
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		switch {
		case end < 0:
			return "", "invalid ipv6 address"
		case end+1 < len(s) && s[end+1] == ':':
			return "", portHint
		case end+1 < len(s):
			return "", "must be a dns name or ip address"
		}
		ip, reason := parseIPLiteral(s[1:end])
		if reason == "" && !ip.Is6() {
			reason = "only ipv6 addresses go in brackets"
		}
		if reason != "" {
			return "", reason
		}
		return ip.String(), ""
	}
	if strings.Contains(s, ":") {
		if _, err := netip.ParseAddr(s); err == nil { // IPv6 without brackets
			ip, reason := parseIPLiteral(s)
			if reason != "" {
				return "", reason
			}
			return ip.String(), ""
		}
		host, port, _ := strings.Cut(s, ":")
		if _, reason := normaliseHostName(host); reason == "" && isDigits(port) {
			return "", portHint
		}
		return "", "must be a dns name or ip address"
	}
	return normaliseHostName(s)
}

// normaliseHostName checks a host without port or brackets: an IPv4
// literal or a DNS name (lower-cased, one trailing dot removed).
func normaliseHostName(s string) (string, string) {
	if ip, err := netip.ParseAddr(s); err == nil && ip.Is4() {
		return ip.String(), ""
	}
	name := strings.ToLower(strings.TrimSuffix(s, "."))
	if reason := checkDNSName(name); reason != "" {
		return "", reason
	}
	return name, ""
}

// parseIPLiteral parses an IP address without brackets, refusing zones.
func parseIPLiteral(s string) (netip.Addr, string) {
	ip, err := netip.ParseAddr(s)
	switch {
	case err != nil:
		return netip.Addr{}, "invalid ip address"
	case ip.Zone() != "":
		return netip.Addr{}, "ipv6 zones are not supported"
	}
	return ip, ""
}

// checkDNSName checks a lower-case host name without trailing dot: labels
// of 1 to 63 letters, digits, hyphens (not first or last) and underscores
// (container names use them), 253 characters at most, and a last label that
// is not all digits (that would be a malformed IPv4 address).
func checkDNSName(name string) string {
	const reason = "must be a dns name or ip address"
	if name == "" || len(name) > 253 {
		return reason
	}
	labels := strings.Split(name, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return reason
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return reason
			}
		}
	}
	if isDigits(labels[len(labels)-1]) {
		return reason
	}
	return ""
}

// NormalizeOrigin checks a browser origin, scheme://host[:port], and returns
// it as browsers send it in Origin: lower-case, without default port or
// trailing slash. The error is the reason alone, without a field name.
func NormalizeOrigin(s string) (string, error) {
	o, reason := normaliseOrigin(s)
	if reason != "" {
		return "", errors.New(reason)
	}
	return o, nil
}

// normaliseOrigin checks a browser origin, scheme://host[:port], and
// returns it normalised like a backend URL.
func normaliseOrigin(s string) (string, string) {
	if s == "" {
		return "", "must not be empty"
	}
	return normaliseURL(s, true)
}

// normaliseURL checks an absolute http or https URL and returns it with
// lower-case scheme and host, without default port and without trailing
// slash. With origin set, no path is allowed.
func normaliseURL(raw string, origin bool) (string, string) {
	if strings.ContainsFunc(raw, isSpaceOrInvisible) {
		return "", "must not contain whitespace or invisible characters"
	}
	u, err := url.Parse(raw)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return "", "invalid url: " + err.Error()
	}
	scheme := strings.ToLower(u.Scheme)
	switch {
	case scheme != "http" && scheme != "https":
		return "", "scheme must be http or https"
	case u.Opaque != "" || u.Host == "":
		return "", "must be an absolute url with a host, like http://backend:8080"
	case u.User != nil:
		return "", "must not contain user info"
	case u.RawQuery != "" || u.ForceQuery:
		return "", "must not contain a query"
	case strings.Contains(raw, "#"):
		return "", "must not contain a fragment"
	}
	host, reason := normaliseURLHost(u)
	if reason != "" {
		return "", reason
	}
	port := u.Port()
	if port == "" && strings.HasSuffix(u.Host, ":") {
		return "", "port must be between 1 and 65535"
	}
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return "", "port must be between 1 and 65535"
		}
		if !(scheme == "http" && n == 80 || scheme == "https" && n == 443) {
			host += ":" + strconv.Itoa(n)
		}
	}
	// The path is kept as written, so "a%2Fb" stays one segment; url.URL
	// would re-encode it from the decoded form when the raw form mixes
	// escapes with characters that need escaping.
	path := ""
	if i := strings.IndexByte(raw[len(u.Scheme)+len("://"):], '/'); i >= 0 {
		path = raw[len(u.Scheme)+len("://")+i:]
	}
	switch {
	case origin && path != "" && path != "/":
		return "", "must be an origin (scheme://host[:port]) without a path"
	case origin:
		path = ""
	case path != u.EscapedPath():
		return "", "path must be written percent-encoded ascii, like " + u.EscapedPath()
	}
	return scheme + "://" + host + strings.TrimRight(path, "/"), ""
}

// normaliseURLHost returns the normalised host of u for use in a URL:
// a lower-case name, an IPv4 address or a bracketed IPv6 address.
func normaliseURLHost(u *url.URL) (string, string) {
	name := u.Hostname()
	if strings.HasPrefix(u.Host, "[") {
		ip, reason := parseIPLiteral(name)
		if reason == "" && !ip.Is6() {
			reason = "only ipv6 addresses go in brackets"
		}
		if reason != "" {
			return "", reason
		}
		return "[" + ip.String() + "]", ""
	}
	if name == "" {
		return "", "must be an absolute url with a host, like http://backend:8080"
	}
	return normaliseHostName(name)
}

// normalisePathPrefix checks a mapping's pathPrefix and removes trailing
// slashes ("/" alone becomes "", no prefix). The proxy refuses request paths
// with "." or ".." segments, so a prefix with them could never match and is
// refused too.
func normalisePathPrefix(p string) (string, string) {
	if p == "" {
		return "", ""
	}
	if reason := checkPath(p); reason != "" {
		return "", reason
	}
	if strings.ContainsAny(p, "?#") {
		return "", "must not contain ? or #"
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "." || seg == ".." {
			return "", "must not contain . or .. segments"
		}
	}
	return strings.TrimRight(p, "/"), ""
}

// checkHealthPath checks a mapping's healthPath; a query is allowed.
func checkHealthPath(p string) string {
	if p == "" {
		return ""
	}
	if reason := checkPath(p); reason != "" {
		return reason
	}
	if strings.Contains(p, "#") {
		return "must not contain #"
	}
	return ""
}

// checkPath checks what every configured path needs: a leading slash, valid
// UTF-8 (it must survive a JSON round trip) and no whitespace or invisible
// characters (it ends up in a request line, and must read as it matches).
func checkPath(p string) string {
	switch {
	case !strings.HasPrefix(p, "/"):
		return "must start with /"
	case !utf8.ValidString(p):
		return "must be valid utf-8"
	case strings.ContainsFunc(p, isSpaceOrInvisible):
		return "must not contain whitespace or invisible characters"
	}
	return ""
}

// isSpaceOrInvisible reports whether r is whitespace, a control or format
// character, or otherwise not printable.
func isSpaceOrInvisible(r rune) bool {
	return r == ' ' || !unicode.IsPrint(r)
}

// isDigits reports whether s is a non-empty string of ASCII digits.
func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
