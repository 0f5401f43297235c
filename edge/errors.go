package edge

import (
	"errors"
	"net"

	"github.com/apigetaway/getaway/upstream"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
)

// JSON bodies of the gateway's own error responses. They carry a stable code
// and never an internal detail such as a backend address.
var (
	bodyBadRequest    = []byte(`{"error":"bad_request"}`)
	bodyUnauthorized  = []byte(`{"error":"Unauthorized"}`)
	bodyForbidden     = []byte(`{"error":"Forbidden"}`)
	bodyNotFound      = []byte(`{"error":"Not Found"}`)
	bodyTooLarge      = []byte(`{"error":"payload_too_large"}`)
	bodyInternal      = []byte(`{"error":"Internal Server Error"}`)
	bodyBadGateway    = []byte(`{"error":"bad_gateway"}`)
	bodyGatewayTimout = []byte(`{"error":"gateway_timeout"}`)
)

// statusOf maps an error from the proxy path to the client's status and
// body. It is the only place that does: 400 for a request that must not be
// forwarded and for a request body the client sent broken (a timeout
// reading it included: the client's, not the backend's), 404 for no route,
// 504 for every timeout (answer, dial or a full pool), 502 for anything else
// the backend exchange did.
func statusOf(err error) (int, []byte) {
	var netErr net.Error
	switch {
	case errors.Is(err, upstream.ErrBadPath),
		errors.Is(err, upstream.ErrBadRequestBody):
		return fasthttp.StatusBadRequest, bodyBadRequest
	case errors.Is(err, upstream.ErrNoRoute):
		return fasthttp.StatusNotFound, bodyNotFound
	case errors.Is(err, fasthttp.ErrTimeout),
		errors.Is(err, fasthttp.ErrDialTimeout),
		errors.Is(err, fasthttp.ErrNoFreeConns),
		errors.As(err, &netErr) && netErr.Timeout():
		return fasthttp.StatusGatewayTimeout, bodyGatewayTimout
	default:
		return fasthttp.StatusBadGateway, bodyBadGateway
	}
}

// writeJSON replaces ctx's response with a JSON body.
func writeJSON(ctx *fasthttp.RequestCtx, status int, body []byte) {
	ctx.Response.ResetBody()
	ctx.Response.SetStatusCode(status)
	ctx.Response.Header.SetContentType("application/json")
	ctx.Response.SetBodyRaw(body)
}

// failProxy answers a failed proxy attempt and logs it once, here.
func (s *Server) failProxy(ctx *fasthttp.RequestCtx, err error) {
	status, body := statusOf(err)
	// The backend's partial response, if any, must not leak through.
	ctx.Response.Reset()
	writeJSON(ctx, status, body)
	if errors.Is(err, upstream.ErrBadRequestBody) {
		// Where the body ends, and so where the next request starts,
		// is unknown.
		ctx.SetConnectionClose()
	}
	if status >= 500 {
		if ce := s.log.Check(zap.WarnLevel, "proxy request failed"); ce != nil {
			ce.Write(zap.Int("status", status), zap.ByteString("request_id", ctx.Response.Header.Peek(HeaderRequestID)), zap.Error(err))
		}
	}
}
