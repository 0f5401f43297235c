package authflow

import (
	"bytes"
	"time"

	"github.com/apigetaway/getaway/sessioncache"
	"github.com/apigetaway/getaway/upstream"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
)

// SessionWatcher reports the end of a session; sessioncache.Store
// satisfies it (see its Watch). WebSockets need it: a socket must end with
// the session that authorised it.
type SessionWatcher interface {
	Watch(id string) (gone <-chan struct{}, cancel func())
}

var _ SessionWatcher = (sessioncache.Store)(nil)

// AuthenticateUpgrade is Authenticate for a WebSocket upgrade on /api/*
// (issue 5): the same cookie, session cache and refresh, after a stricter
// Origin check, and it returns the end of the session for the relay to
// close the socket (1008) when the session is deleted on any instance or
// expires. On refusal it writes the answer (401, 403 or 503) and returns
// false, watching nothing. Otherwise the caller must call the returned
// SessionEnd's Stop when the socket is closed (upstream.WebSocketProxy
// does).
//
// When the store cannot watch sessions, upgrades are refused with 503: a
// socket that would outlive a logout is not opened.
func (a *Auth) AuthenticateUpgrade(ctx *fasthttp.RequestCtx) (upstream.Identity, upstream.SessionEnd, bool) {
	if a.upgradeOriginRefused(ctx) {
		writeBody(ctx, fasthttp.StatusForbidden, bodyForbidden)
		return upstream.Identity{}, upstream.SessionEnd{}, false
	}
	watcher, ok := a.store.(SessionWatcher)
	if !ok {
		a.log.Warn("websocket refused: the session store cannot watch sessions")
		writeBody(ctx, fasthttp.StatusServiceUnavailable, bodyUnavailable)
		return upstream.Identity{}, upstream.SessionEnd{}, false
	}
	sess, ok := a.session(ctx)
	if !ok {
		return upstream.Identity{}, upstream.SessionEnd{}, false
	}
	// Watching starts after the look-up: a session deleted in between is
	// reported at once (Watch checks that it still exists).
	gone, stop := watcher.Watch(string(a.sessionID(ctx)))
	end := upstream.SessionEnd{Gone: gone, Stop: stop}
	if sess.AbsoluteExpiresAt != 0 {
		end.Deadline = time.Unix(sess.AbsoluteExpiresAt, 0)
	}
	if ce := a.log.Check(zap.DebugLevel, "websocket authorised"); ce != nil {
		ce.Write(zap.String("sub", sess.Sub))
	}
	id := upstream.Identity{Sub: sess.Sub, Email: sess.Email, Name: sess.Name, AccessToken: sess.AccessToken}
	return id, end, true
}

// upgradeOriginRefused applies to upgrades the protection against
// cross-site WebSocket hijacking: browsers send the session cookie with an
// upgrade from any site (SameSite=Lax does not stop a same-site one) and
// CORS does not apply, so the Origin a browser always sends must be the
// gateway's own or an allowed one. A request without Origin (not a
// browser) follows the rule of crossOriginRefused: Sec-Fetch-Site, if
// sent, must be same-origin or none.
func (a *Auth) upgradeOriginRefused(ctx *fasthttp.RequestCtx) bool {
	if origin := ctx.Request.Header.Peek(fasthttp.HeaderOrigin); len(origin) > 0 {
		return !a.trustedOrigin(origin)
	}
	site := ctx.Request.Header.Peek("Sec-Fetch-Site")
	return len(site) > 0 && !bytes.Equal(site, []byte("same-origin")) && !bytes.Equal(site, []byte("none"))
}
