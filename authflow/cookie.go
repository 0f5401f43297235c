package authflow

import (
	"time"

	"github.com/apigetaway/getaway/upstream"
	"github.com/valyala/fasthttp"
)

// setSessionCookie sets the session cookie to id, with maxAge (0 deletes
// it). HttpOnly always; Secure unless turned off; SameSite as configured;
// host-only unless a domain is configured; never derived from the request.
func (a *Auth) setSessionCookie(ctx *fasthttp.RequestCtx, id string, maxAge time.Duration) {
	c := fasthttp.AcquireCookie()
	defer fasthttp.ReleaseCookie(c)
	c.SetKey(a.cfg.Cookie.Name)
	c.SetValue(id)
	c.SetPath("/")
	c.SetHTTPOnly(true)
	c.SetSecure(!a.cfg.Cookie.Insecure)
	c.SetSameSite(a.cookieSite)
	if a.cfg.Cookie.Domain != "" {
		c.SetDomain(a.cfg.Cookie.Domain)
	}
	if maxAge > 0 {
		c.SetMaxAge(int(maxAge / time.Second))
	} else {
		c.SetExpire(fasthttp.CookieExpireDelete)
		c.SetMaxAge(-1)
	}
	ctx.Response.Header.SetCookie(c)
}

// sessionID returns the session cookie's value, or nil. A value longer than
// any id the gateway issues is ignored. The Cookie lines are read as sent
// and left unparsed, so that the proxy forwards the other cookies
// unchanged (see upstream.CookieValue).
func (a *Auth) sessionID(ctx *fasthttp.RequestCtx) []byte {
	v := upstream.CookieValue(&ctx.Request.Header, []byte(a.cfg.Cookie.Name))
	if len(v) == 0 || len(v) > 128 {
		return nil
	}
	return v
}
