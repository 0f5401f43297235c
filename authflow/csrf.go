package authflow

import (
	"bytes"

	"github.com/valyala/fasthttp"
)

// crossOriginRefused applies the logic of Go's http.CrossOriginProtection,
// with the gateway's own and the allowed origins trusted, and answers 403
// when the request is refused. Safe methods always pass; a trusted Origin
// passes (a SPA on an allowed origin sends Sec-Fetch-Site same-site or
// cross-site); otherwise Sec-Fetch-Site must be same-origin or none; with
// no Sec-Fetch-Site, a request without Origin (a non-browser client)
// passes, and one whose Origin matches its Host passes.
func (a *Auth) crossOriginRefused(ctx *fasthttp.RequestCtx) bool {
	if ctx.IsGet() || ctx.IsHead() || ctx.IsOptions() {
		return false
	}
	origin := ctx.Request.Header.Peek(fasthttp.HeaderOrigin)
	if len(origin) > 0 && a.trustedOrigin(origin) {
		return false
	}
	refused := false
	if site := ctx.Request.Header.Peek("Sec-Fetch-Site"); len(site) > 0 {
		refused = !bytes.Equal(site, []byte("same-origin")) && !bytes.Equal(site, []byte("none"))
	} else if len(origin) > 0 {
		refused = !originMatchesHost(origin, ctx.Request.Header.Host())
	}
	if refused {
		writeBody(ctx, fasthttp.StatusForbidden, bodyForbidden)
	}
	return refused
}

// originMatchesHost reports whether origin's host[:port] equals host.
func originMatchesHost(origin, host []byte) bool {
	i := bytes.Index(origin, []byte("://"))
	return i >= 0 && len(host) > 0 && bytes.EqualFold(origin[i+3:], host)
}
