package upstream

import (
	"bytes"
	"errors"
	"net"

	"github.com/valyala/fasthttp"
)

// Identity is the verified user on whose behalf a request is proxied. The
// proxy turns it into the trusted x-user-* headers; it never reads identity
// from the client's headers.
type Identity struct {
	Sub   string
	Email string
	Name  string
	// AccessToken is sent as "Authorization: Bearer ..." only to backends
	// whose mapping sets forwardAccessToken.
	AccessToken string
}

// Header names the proxy sets. Backends may trust them: every client header
// starting with x-user- is removed before they are set.
const (
	HeaderUserEmail = "X-User-Email"
	HeaderUserSub   = "X-User-Sub"
	HeaderUserName  = "X-User-Name"
)

var userHeaderPrefix = []byte("x-user-")

// stripped are the headers the proxy removes: first the connection-scoped
// headers of RFC 9110 section 7.6.1 plus the legacy ones proxies remove (as
// net/http/httputil does), removed both ways; then, from requests only, the
// client's claims about where it came from, which only the gateway may make
// (it sets X-Forwarded-* itself). Names are in fasthttp's canonical form.
var stripped = [...][]byte{
	[]byte(fasthttp.HeaderConnection),
	[]byte("Proxy-Connection"),
	[]byte(fasthttp.HeaderKeepAlive),
	[]byte(fasthttp.HeaderProxyAuthenticate),
	[]byte(fasthttp.HeaderProxyAuthorization),
	[]byte(fasthttp.HeaderTE),
	[]byte(fasthttp.HeaderTrailer),
	[]byte(fasthttp.HeaderTransferEncoding),
	[]byte(fasthttp.HeaderUpgrade),
	// Request only, from here on.
	[]byte(fasthttp.HeaderForwarded),
	[]byte(fasthttp.HeaderXForwardedFor),
	[]byte(fasthttp.HeaderXForwardedProto),
	[]byte(fasthttp.HeaderXForwardedHost),
	[]byte("X-Real-Ip"),
	[]byte("X-Client-Ip"),
	[]byte("True-Client-Ip"),
	[]byte("Cf-Connecting-Ip"),
}

const (
	connectionHeader = 0 // index of Connection in stripped
	hopByHopCount    = 9 // stripped[:hopByHopCount] are the hop-by-hop headers
)

// strippedIndex returns the index of name in stripped[:n], any letter case,
// or -1. It switches on the length first: most names are rejected at once.
func strippedIndex(name []byte, n int) int {
	switch len(name) {
	case 2, 7, 9, 10, 11, 14, 15, 16, 17, 18, 19:
		for i, h := range stripped[:n] {
			if len(h) == len(name) && bytes.EqualFold(h, name) {
				return i
			}
		}
	}
	return -1
}

// headerSet is the part of fasthttp's request and response headers that the
// removal needs.
type headerSet interface {
	Peek(key string) []byte
	DelBytes(key []byte)
}

var (
	_ headerSet = (*fasthttp.RequestHeader)(nil)
	_ headerSet = (*fasthttp.ResponseHeader)(nil)
)

// foundHeaders records which of stripped a message carries.
type foundHeaders [len(stripped)]bool

// removeRequestHeaders deletes, in every copy, the request's hop-by-hop
// headers, every header named in its Connection (RFC 9110 section 7.6.1),
// and the client's forwarding claims. It runs before the gateway sets its
// own, so Connection cannot name them away.
func removeRequestHeaders(h *fasthttp.RequestHeader) {
	var found foundHeaders
	for k := range h.All() {
		if i := strippedIndex(k, len(stripped)); i >= 0 {
			found[i] = true
		}
	}
	removeFound(h, found)
}

// removeResponseHopByHop deletes a response's hop-by-hop headers and the
// headers its Connection names.
func removeResponseHopByHop(h *fasthttp.ResponseHeader) {
	var found foundHeaders
	for k := range h.All() {
		if i := strippedIndex(k, hopByHopCount); i >= 0 {
			found[i] = true
		}
	}
	removeFound(h, found)
}

// removeFound deletes the headers found and the headers the Connection
// header names. Only what is there is deleted: each deletion costs a key
// normalisation.
func removeFound(h headerSet, found foundHeaders) {
	if found[connectionHeader] {
		if v := h.Peek(fasthttp.HeaderConnection); namesOtherHeaders(v) {
			// Deleting reorders the stored headers under Peek's result:
			// walk a copy. Rare (custom hop-by-hop headers), so it may
			// allocate.
			list := append([]byte(nil), v...)
			for len(list) > 0 {
				var name []byte
				name, list = nextToken(list)
				if len(name) > 0 {
					h.DelBytes(name)
				}
			}
		}
	}
	for i, ok := range found {
		if ok {
			h.DelBytes(stripped[i])
		}
	}
}

// namesOtherHeaders reports whether a Connection value lists anything but
// the options keep-alive and close (and the hop-by-hop names themselves).
func namesOtherHeaders(v []byte) bool {
	for len(v) > 0 {
		var name []byte
		name, v = nextToken(v)
		if len(name) > 0 && strippedIndex(name, hopByHopCount) < 0 &&
			!bytes.EqualFold(name, []byte("close")) && !bytes.EqualFold(name, []byte("keep-alive")) {
			return true
		}
	}
	return false
}

// nextToken splits a comma-separated header list: it returns the first
// element without surrounding spaces and the rest after the comma.
func nextToken(list []byte) (token, rest []byte) {
	token, rest, _ = bytes.Cut(list, []byte{','})
	return bytes.TrimSpace(token), rest
}

// errTrailerLeft is returned if a trailer field survives dropTrailers,
// which fasthttp's header API does not let happen today: the request then
// fails rather than carry it.
var errTrailerLeft = errors.New("upstream: a request trailer field could not be removed")

// dropTrailers removes the fields of a request's trailer section and the
// names its Trailer header announced, keeping the header section's own
// fields. The proxy never forwards request trailers (issue 6): fasthttp
// writes the trailer fields it parsed after the last chunk, and a backend
// may read them as headers (fasthttp's Peek falls back to them), so a
// client's x-user-* or X-Forwarded-For there would pass for the gateway's.
//
// It runs before the request is rewritten (for a body already read) and
// when a streamed body ends, after the head went out. Without trailers it
// costs two slice checks and no allocation.
func dropTrailers(h *fasthttp.RequestHeader) error {
	names := 0
	for range h.Trailers() {
		names++
	}
	if names == 0 && len(h.TrailerHeader()) == len("\r\n") {
		return nil
	}
	// Rare, so copies are fine. Deleting a name deletes its header
	// section fields too: keep them aside and put them back.
	trailerNames := make([][]byte, 0, names)
	for name := range h.Trailers() {
		trailerNames = append(trailerNames, append([]byte(nil), name...))
	}
	var kept [][2][]byte
	for k, v := range h.All() {
		for _, name := range trailerNames {
			if bytes.EqualFold(k, name) {
				kept = append(kept, [2][]byte{append([]byte(nil), k...), append([]byte(nil), v...)})
				break
			}
		}
	}
	for _, name := range trailerNames {
		h.DelBytes(name)
	}
	if len(h.TrailerHeader()) != len("\r\n") {
		// A field under no announced name: forgetting the names below
		// would move it into the header section.
		return errTrailerLeft
	}
	// With the trailer section empty, forgetting the announced names
	// moves nothing into the header section.
	h.Del(fasthttp.HeaderTrailer)
	for _, kv := range kept {
		h.AddBytesKV(kv[0], kv[1])
	}
	for range h.Trailers() {
		return errTrailerLeft
	}
	return nil
}

// removeUserHeaders deletes every request header whose name starts with
// x-user- in any letter case, in any number of copies.
func removeUserHeaders(h *fasthttp.RequestHeader) {
	// Most requests carry none: look before collecting, so they cost no
	// allocation.
	found := 0
	for k := range h.All() {
		if hasPrefixFold(k, userHeaderPrefix) {
			found++
		}
	}
	if found == 0 {
		return
	}
	names := make([][]byte, 0, found)
	for k := range h.All() {
		if hasPrefixFold(k, userHeaderPrefix) {
			names = append(names, append([]byte(nil), k...))
		}
	}
	for _, k := range names {
		h.DelBytes(k)
	}
}

func hasPrefixFold(s, prefix []byte) bool {
	return len(s) >= len(prefix) && bytes.EqualFold(s[:len(prefix)], prefix)
}

// SanitizeHeaderValue returns v without the bytes a header value cannot
// carry: CR, LF, NUL and every other control character. Other bytes,
// non-ASCII UTF-8 included, pass as they are, so "José" and "李雷" arrive
// intact. A clean value is returned without copying.
func SanitizeHeaderValue(v string) string {
	clean := true
	for i := 0; i < len(v); i++ {
		if isControl(v[i]) {
			clean = false
			break
		}
	}
	if clean {
		return v
	}
	out := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		if !isControl(v[i]) {
			out = append(out, v[i])
		}
	}
	return string(out)
}

func isControl(c byte) bool { return c < 0x20 || c == 0x7f }

// Canonical names of the headers the proxy sets, so that setting one costs
// no key normalisation.
var (
	keyUserEmail      = []byte(HeaderUserEmail)
	keyUserSub        = []byte(HeaderUserSub)
	keyUserName       = []byte(HeaderUserName)
	keyForwardedFor   = []byte(fasthttp.HeaderXForwardedFor)
	keyForwardedProto = []byte(fasthttp.HeaderXForwardedProto)
	keyForwardedHost  = []byte(fasthttp.HeaderXForwardedHost)
	keyAuthorization  = []byte(fasthttp.HeaderAuthorization)
	valueHTTP         = []byte("http")
	valueHTTPS        = []byte("https")
)

// setIdentity replaces the client's identity headers with the verified ones.
// buf is scratch space; the extended buffer is returned for reuse.
func setIdentity(h *fasthttp.RequestHeader, id *Identity, buf []byte) []byte {
	removeUserHeaders(h)
	if id == nil {
		return buf
	}
	buf = setIfNotEmpty(h, keyUserEmail, id.Email, buf)
	buf = setIfNotEmpty(h, keyUserSub, id.Sub, buf)
	return setIfNotEmpty(h, keyUserName, id.Name, buf)
}

// setIfNotEmpty sets the canonical header k to v, sanitised, unless that
// leaves nothing. v goes through buf, which is returned.
func setIfNotEmpty(h *fasthttp.RequestHeader, k []byte, v string, buf []byte) []byte {
	if v = SanitizeHeaderValue(v); v != "" {
		buf = append(buf[:0], v...)
		h.SetCanonical(k, buf)
	}
	return buf
}

// appendClientIP appends the IP of the peer that sent ctx's request.
func appendClientIP(dst []byte, ctx *fasthttp.RequestCtx) []byte {
	if a, ok := ctx.RemoteAddr().(*net.TCPAddr); ok {
		if ap := a.AddrPort(); ap.IsValid() {
			return ap.Addr().Unmap().AppendTo(dst)
		}
	}
	return append(dst, ctx.RemoteIP().String()...)
}
