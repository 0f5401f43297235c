package authflow

import (
	"net/url"
	"strings"

	"github.com/apigetaway/getaway/upstream"
)

// SafeNext returns next when it is a local path the browser may be sent to
// after signing in, else "/". A local path starts with one "/", and neither
// it nor its percent-decoded form starts with "//", holds a backslash, a
// control character or white space. Since the gateway always prefixes the
// chosen frontend origin, such a path cannot leave that origin.
func SafeNext(next string) string {
	if !localPath(next) {
		return "/"
	}
	if dec, err := url.PathUnescape(next); err != nil || !localPath(dec) {
		return "/"
	}
	return next
}

func localPath(p string) bool {
	if len(p) == 0 || len(p) > 2048 || p[0] != '/' || strings.HasPrefix(p, "//") {
		return false
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c == '\\' || c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// originOf returns the scheme://host[:port] of an absolute URL, or "".
func originOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

// trustedOrigin reports whether origin is the gateway's own or an allowed one.
func (a *Auth) trustedOrigin(origin []byte) bool {
	return string(origin) == a.ownOrigin || a.allows(origin)
}

// frontendOrigin picks where the browser returns after signing in: the
// frontend_host parameter when it is trusted (ok is false when it is given
// but not trusted), else a trusted Origin or Referer, else the gateway's
// own origin.
func (a *Auth) frontendOrigin(param string, origin, referer []byte) (string, bool) {
	if param != "" {
		o, err := upstream.NormalizeOrigin(param)
		if err != nil || !a.trustedOrigin([]byte(o)) {
			return "", false
		}
		return o, true
	}
	for _, cand := range []string{string(origin), originOf(string(referer))} {
		if cand == "" {
			continue
		}
		if o, err := upstream.NormalizeOrigin(cand); err == nil && a.trustedOrigin([]byte(o)) {
			return o, true
		}
	}
	return a.ownOrigin, true
}
