package upstream

import (
	"bytes"

	"github.com/valyala/fasthttp"
)

// The session cookie is read and removed on the Cookie lines as the client
// sent them. fasthttp's own cookie parsing is lossy for forwarding: once it
// has parsed a request's cookies it writes them back without the values it
// finds invalid (a '"' or '\' inside, raw JSON for instance), without the
// quotes around a value, and a nameless item "=sid=x" as "sid=x". So
// nothing on the proxy path asks fasthttp for a cookie before the rewrite,
// and the rewrite replaces the client's Cookie lines with one line that
// fasthttp writes byte for byte: the client's items, less the session
// cookie and the nameless items, joined by "; ", added as a plain header.

// CookieValue returns the value of the first cookie named name on h's
// Cookie lines, as sent (surrounding spaces and tabs removed, quotes
// kept), or nil. Unlike RequestHeader.Cookie it leaves the lines unparsed,
// so that the proxy forwards the other cookies unchanged; call it, not
// Cookie, on a request that may be proxied.
func CookieValue(h *fasthttp.RequestHeader, name []byte) []byte {
	for _, line := range h.PeekAll(fasthttp.HeaderCookie) {
		for len(line) > 0 {
			var item []byte
			item, line = nextCookieItem(line)
			if k, v, ok := bytes.Cut(item, []byte{'='}); ok && bytes.Equal(trimOWS(k), name) {
				return trimOWS(v)
			}
		}
	}
	return nil
}

// stripCookies replaces h's Cookie lines with one line holding their
// items, except those named name and the nameless ones, each as sent. It
// returns buf, grown as needed, for reuse. A request without a Cookie line
// is left alone.
func stripCookies(h *fasthttp.RequestHeader, name, buf []byte) []byte {
	lines := h.PeekAll(fasthttp.HeaderCookie)
	if len(lines) == 0 {
		return buf
	}
	out := buf[:0]
	for _, line := range lines {
		for len(line) > 0 {
			var item []byte
			item, line = nextCookieItem(line)
			item = trimOWS(item)
			if len(item) == 0 {
				continue
			}
			k, _, ok := bytes.Cut(item, []byte{'='})
			k = trimOWS(k)
			// A nameless item would read as another pair once joined
			// ("=sid=x" as sid=x), and "sid" alone as a pair to some.
			if !ok || len(k) == 0 || bytes.Equal(k, name) {
				continue
			}
			if len(out) > 0 {
				out = append(out, ';', ' ')
			}
			out = append(out, item...)
		}
	}
	// Del drops the lines unparsed; DelAllCookies, with nothing left to
	// parse, then marks the cookies parsed, so that fasthttp never parses
	// the new line. That one is added as a plain header, which fasthttp
	// keeps and writes as it is; as a special one it would be parsed.
	h.Del(fasthttp.HeaderCookie)
	h.DelAllCookies()
	if len(out) > 0 {
		special := !h.DisableSpecialHeader()
		h.AddBytesKV(strCookie, out)
		if special {
			h.EnableSpecialHeader()
		}
	}
	return out
}

var strCookie = []byte(fasthttp.HeaderCookie)

// nextCookieItem splits line at its first ';'.
func nextCookieItem(line []byte) (item, rest []byte) {
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		return line[:i], line[i+1:]
	}
	return line, nil
}

// trimOWS removes spaces and tabs around b.
func trimOWS(b []byte) []byte { return bytes.Trim(b, " \t") }
