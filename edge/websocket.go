package edge

import (
	"bytes"
	"errors"

	"github.com/apigetaway/getaway/authflow"
	"github.com/apigetaway/getaway/upstream"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
)

// WebSocket upgrades on /api/* (issue 5). serveAPI sends them here: they
// are authenticated like HTTP requests, their Origin is checked (cross-site
// WebSocket hijacking: a browser sends the cookie with an upgrade from any
// site, and CORS does not apply), and upstream.WebSocketProxy relays them.

// UpgradeAuthenticator is an Authenticator that also vouches for WebSocket
// upgrades. *authflow.Auth is one. For an Authenticator that is not, edge
// checks Origin itself (an allowed origin, or the request's own host) and
// the socket is not tied to any session.
type UpgradeAuthenticator interface {
	// AuthenticateUpgrade is Authenticate for an upgrade: it also refuses
	// (403) an Origin that is neither the gateway's own nor allowed, and
	// returns with the identity the end of its session. On refusal it has
	// written the answer and returns false; it then watches nothing.
	AuthenticateUpgrade(ctx *fasthttp.RequestCtx) (upstream.Identity, upstream.SessionEnd, bool)
}

var _ UpgradeAuthenticator = (*authflow.Auth)(nil)

var bodyUnavailable = []byte(`{"error":"unavailable"}`)

// serveWebSocket authenticates and relays an /api upgrade. Nothing reaches
// the backend before the client is authenticated and its Origin accepted.
func (s *Server) serveWebSocket(ctx *fasthttp.RequestCtx) {
	var (
		id  upstream.Identity
		end upstream.SessionEnd
		ok  bool
	)
	if ua, is := s.auth.(UpgradeAuthenticator); is {
		id, end, ok = ua.AuthenticateUpgrade(ctx)
	} else {
		if !s.upgradeOriginAllowed(ctx) {
			writeJSON(ctx, fasthttp.StatusForbidden, bodyForbidden)
			return
		}
		id, ok = s.auth.Authenticate(ctx)
	}
	if !ok {
		return
	}
	if err := s.ws.Forward(ctx, &id, end); err != nil {
		s.failWebSocket(ctx, err)
	}
}

// upgradeOriginAllowed is the Origin rule for Authenticators that do not
// check upgrades themselves: an allowed origin or one naming the request's
// own host; without Origin (not a browser), Sec-Fetch-Site, if sent, must
// say same-origin or none, as for HTTP.
func (s *Server) upgradeOriginAllowed(ctx *fasthttp.RequestCtx) bool {
	origin := ctx.Request.Header.Peek(fasthttp.HeaderOrigin)
	if len(origin) == 0 {
		site := ctx.Request.Header.Peek("Sec-Fetch-Site")
		return len(site) == 0 || string(site) == "same-origin" || string(site) == "none"
	}
	if s.allowsOrigin(origin) {
		return true
	}
	i := bytes.Index(origin, []byte("://"))
	host := ctx.Request.Header.Host()
	return i >= 0 && len(host) > 0 && bytes.EqualFold(origin[i+3:], host)
}

// failWebSocket answers an upgrade that was not relayed: the backend's own
// refusal as it gave it, else the status of statusOf (502 when the backend
// is unreachable, 504 on timeout, ...), logged once there.
func (s *Server) failWebSocket(ctx *fasthttp.RequestCtx, err error) {
	var refused *upstream.UpgradeRefusedError
	switch {
	case errors.As(err, &refused):
		ctx.Response.Reset()
		ctx.SetStatusCode(refused.StatusCode)
		if refused.ContentType != "" {
			ctx.SetContentType(refused.ContentType)
		}
		ctx.SetBody(refused.Body)
		if ce := s.log.Check(zap.DebugLevel, "backend refused websocket upgrade"); ce != nil {
			ce.Write(zap.Int("status", refused.StatusCode))
		}
	case errors.Is(err, upstream.ErrBadHandshake):
		ctx.Response.Reset()
		writeJSON(ctx, fasthttp.StatusBadRequest, bodyBadRequest)
	case errors.Is(err, upstream.ErrShuttingDown):
		ctx.Response.Reset()
		writeJSON(ctx, fasthttp.StatusServiceUnavailable, bodyUnavailable)
	default:
		s.failProxy(ctx, err)
	}
}
