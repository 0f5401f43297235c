package edge

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"runtime/debug"
	"strconv"
	"sync/atomic"

	"github.com/apigetaway/getaway/upstream"
	"github.com/bytedance/sonic"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
)

// HeaderRequestID carries the request id to the backend and back to the
// client.
const HeaderRequestID = "X-Request-Id"

// chain wraps the router in the middleware, outermost first:
//
//  0. observe (metrics.go): classifies the request, ensures a valid W3C
//     traceparent before anything can forward it, and when the rest is
//     done counts the answer and writes the access log. It is outside
//     recoverPanic so that a panic is counted and logged as the 500 it
//     becomes, and it does nothing that can panic.
//  1. recoverPanic: fasthttp does not recover panics, so it comes first and
//     turns one into a 500 for the client and one log line.
//  2. requestID: every later step, the backend and the logs see the id.
//  3. securityHeaders: set after the inner handlers return, so they reach
//     every answer (errors included) while a backend's own header wins.
//  4. rejectAmbiguousFraming: a request that could be read two ways is
//     refused before anything acts on it.
//  5. cors: preflights are answered here, before authentication, and
//     credentialed CORS headers are set only for allowed origins (a 429
//     below gets them too, so an allowed SPA can read it).
//  6. rateLimitAuth (when AuthRateLimit is on): /auth/* per client IP
//     (ClientIPPolicy: the peer, or X-Forwarded-For past trusted proxies),
//     before sign-in does any work; preflights are not counted. The
//     per-user /api limit is not here: it needs the subject, so serveAPI
//     applies it after authentication.
//  7. the router: /healthz, /readyz, /api/* (authentication, the per-user
//     limit, then the proxy), and the not-found handler with static files.
func (s *Server) chain(h fasthttp.RequestHandler) fasthttp.RequestHandler {
	if s.limits.auth != nil {
		h = s.rateLimitAuth(h)
	}
	h = s.cors(h)
	h = rejectAmbiguousFraming(h)
	h = securityHeaders(h)
	h = requestID(h)
	h = s.recoverPanic(h)
	h = s.observe(h)
	return h
}

func (s *Server) recoverPanic(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		defer func() {
			if v := recover(); v != nil {
				s.log.Error("panic serving request",
					zap.Any("panic", v),
					zap.ByteString("request_id", ctx.Request.Header.Peek(HeaderRequestID)),
					zap.ByteString("stack", debug.Stack()))
				id := append([]byte(nil), ctx.Request.Header.Peek(HeaderRequestID)...)
				ctx.Response.Reset()
				writeJSON(ctx, fasthttp.StatusInternalServerError, bodyInternal)
				ctx.Response.Header.SetBytesV(HeaderRequestID, id)
				setSecurityHeaders(&ctx.Response.Header)
				ctx.SetConnectionClose()
			}
		}()
		next(ctx)
	}
}

// Generated request ids are a random per-process prefix and a counter:
// unique and cheap (no syscall, no allocation per request).
var (
	requestIDPrefix  = newRequestIDPrefix()
	requestIDCounter atomic.Uint64
)

func newRequestIDPrefix() string {
	var raw [8]byte
	_, _ = rand.Read(raw[:])
	return hex.EncodeToString(raw[:])
}

// requestID keeps a well-formed X-Request-Id from the client, else makes
// one, and passes it to the backend and back to the client.
func requestID(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		id := ctx.Request.Header.Peek(HeaderRequestID)
		if len(id) > 0 && countRawHeader(ctx.Request.Header.RawHeaders(), requestIDColon) > 1 {
			// Several ids: Set below would replace the first only, and
			// the others would reach the backend unchecked.
			ctx.Request.Header.Del(HeaderRequestID)
			id = nil
		}
		if !validRequestID(id) {
			var buf [40]byte
			b := append(buf[:0], requestIDPrefix...)
			b = append(b, '-')
			b = strconv.AppendUint(b, requestIDCounter.Add(1), 36)
			ctx.Request.Header.SetBytesV(HeaderRequestID, b)
		}
		next(ctx)
		// The proxy replaced the response with the backend's: set it last.
		ctx.Response.Header.SetBytesV(HeaderRequestID, ctx.Request.Header.Peek(HeaderRequestID))
	}
}

// validRequestID accepts 1 to 128 characters of [A-Za-z0-9._:-], so an id
// from the client can go into logs and headers as it is.
func validRequestID(id []byte) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for _, c := range id {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// securityDefaults is Helmet's default header set, with
// Cross-Origin-Resource-Policy relaxed to same-site so a SPA on a sibling
// host can load what the gateway serves. Names are in fasthttp's canonical
// form, so they are set without normalising on every request.
var securityDefaults = [...]struct{ k, v []byte }{
	{[]byte("Content-Security-Policy"), []byte("default-src 'self';base-uri 'self';font-src 'self' https: data:;form-action 'self';frame-ancestors 'self';img-src 'self' data:;object-src 'none';script-src 'self';script-src-attr 'none';style-src 'self' https: 'unsafe-inline';upgrade-insecure-requests")},
	{[]byte("Cross-Origin-Opener-Policy"), []byte("same-origin")},
	{[]byte("Cross-Origin-Resource-Policy"), []byte("same-site")},
	{[]byte("Origin-Agent-Cluster"), []byte("?1")},
	{[]byte("Referrer-Policy"), []byte("no-referrer")},
	{[]byte("Strict-Transport-Security"), []byte("max-age=31536000; includeSubDomains")},
	{[]byte("X-Content-Type-Options"), []byte("nosniff")},
	{[]byte("X-Dns-Prefetch-Control"), []byte("off")},
	{[]byte("X-Download-Options"), []byte("noopen")},
	{[]byte("X-Frame-Options"), []byte("SAMEORIGIN")},
	{[]byte("X-Permitted-Cross-Domain-Policies"), []byte("none")},
	{[]byte("X-Xss-Protection"), []byte("0")},
}

func securityHeaders(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		next(ctx)
		setSecurityHeaders(&ctx.Response.Header)
	}
}

// securityByLen lists, for each name length, the indices in
// securityDefaults of the names of that length: most response headers are
// told apart from them by their length alone.
var securityByLen = func() (t [64][]uint8) {
	for i, d := range securityDefaults {
		t[len(d.k)] = append(t[len(d.k)], uint8(i))
	}
	return t
}()

// setSecurityHeaders adds each default header the response lacks; a
// backend's own value of the same header wins. One pass over the response
// headers finds what is there.
func setSecurityHeaders(h *fasthttp.ResponseHeader) {
	var present [len(securityDefaults)]bool
	for k := range h.All() {
		if len(k) >= len(securityByLen) {
			continue
		}
		for _, i := range securityByLen[len(k)] {
			if bytes.EqualFold(k, securityDefaults[i].k) {
				present[i] = true
				break
			}
		}
	}
	for i := range securityDefaults {
		if !present[i] {
			h.SetCanonical(securityDefaults[i].k, securityDefaults[i].v)
		}
	}
}

var (
	contentLengthColon = []byte("content-length:")
	requestIDColon     = []byte("x-request-id:")
)

// rejectAmbiguousFraming answers 400 to a request that could be read two
// ways: both Transfer-Encoding and Content-Length (RFC 9112 section 6.3: a
// smuggling attempt; fasthttp reads it as chunked and drops the length, the
// raw head still shows it), or a folded header line (obs-fold, RFC 9112
// section 5.2: fasthttp joins it to the line before, another server may
// not).
func rejectAmbiguousFraming(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		raw := ctx.Request.Header.RawHeaders()
		if (ctx.Request.Header.ContentLength() == -1 && hasRawHeader(raw, contentLengthColon)) || hasFoldedLine(raw) {
			writeJSON(ctx, fasthttp.StatusBadRequest, bodyBadRequest)
			ctx.SetConnectionClose()
			return
		}
		next(ctx)
	}
}

// hasFoldedLine reports a header line that starts with a space or a tab.
func hasFoldedLine(raw []byte) bool {
	return len(raw) > 0 && (raw[0] == ' ' || raw[0] == '\t') ||
		bytes.Contains(raw, []byte("\n ")) || bytes.Contains(raw, []byte("\n\t"))
}

// countRawHeader counts the lines of raw (a request head's header lines)
// that start with name (lower-case, colon included), in any case.
func countRawHeader(raw, name []byte) int {
	n := 0
	for len(raw) > 0 {
		line := raw
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			raw = nil
		}
		if len(line) >= len(name) && bytes.EqualFold(line[:len(name)], name) {
			n++
		}
	}
	return n
}

// hasRawHeader reports whether raw (a request head's header lines) has a
// line starting with name (lower-case, colon included), in any case.
func hasRawHeader(raw, name []byte) bool { return countRawHeader(raw, name) > 0 }

const corsMethods = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"

// cors answers preflights and marks responses to allowed origins. The
// gateway is the CORS authority for everything it serves: a backend's own
// Access-Control-* headers never reach a browser of a foreign origin.
func (s *Server) cors(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		origin := ctx.Request.Header.Peek(fasthttp.HeaderOrigin)
		if len(origin) == 0 {
			next(ctx)
			// The answer depends on Origin even when there is none: a
			// shared cache must not serve it to an allowed origin.
			ctx.Response.Header.Add(fasthttp.HeaderVary, fasthttp.HeaderOrigin)
			return
		}
		allowed := s.allowsOrigin(origin)
		if ctx.IsOptions() && len(ctx.Request.Header.Peek(fasthttp.HeaderAccessControlRequestMethod)) > 0 {
			s.preflight(ctx, origin, allowed)
			return
		}
		next(ctx)
		h := &ctx.Response.Header
		h.Add(fasthttp.HeaderVary, fasthttp.HeaderOrigin)
		if allowed {
			h.SetBytesV(fasthttp.HeaderAccessControlAllowOrigin, origin)
			h.Set(fasthttp.HeaderAccessControlAllowCredentials, "true")
			return
		}
		h.Del(fasthttp.HeaderAccessControlAllowOrigin)
		h.Del(fasthttp.HeaderAccessControlAllowCredentials)
	}
}

func (s *Server) preflight(ctx *fasthttp.RequestCtx, origin []byte, allowed bool) {
	h := &ctx.Response.Header
	h.Set(fasthttp.HeaderVary, "Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
	if !allowed {
		writeJSON(ctx, fasthttp.StatusForbidden, bodyForbidden)
		return
	}
	ctx.SetStatusCode(fasthttp.StatusNoContent)
	h.SetBytesV(fasthttp.HeaderAccessControlAllowOrigin, origin)
	h.Set(fasthttp.HeaderAccessControlAllowCredentials, "true")
	h.Set(fasthttp.HeaderAccessControlAllowMethods, corsMethods)
	if req := ctx.Request.Header.Peek(fasthttp.HeaderAccessControlRequestHeaders); len(req) > 0 && validTokenList(req) {
		h.SetBytesV(fasthttp.HeaderAccessControlAllowHeaders, req)
	}
	h.Set(fasthttp.HeaderAccessControlMaxAge, "600")
}

// OriginPolicy returns the test of whether a browser origin may use the
// gateway with credentials: one of env (ALLOWED_ORIGINS, normalised) or of
// the allowedOrigins of the routing in force, so a config reload changes it
// at once. It allocates nothing per call.
func OriginPolicy(env []string, proxy *upstream.Proxy) func(origin []byte) bool {
	set := make(map[string]struct{}, len(env))
	for _, o := range env {
		set[o] = struct{}{}
	}
	return func(origin []byte) bool {
		if _, ok := set[string(origin)]; ok {
			return true
		}
		return proxy.Routing().AllowsOrigin(origin)
	}
}

// validTokenList reports whether v is a comma list of HTTP header names, so
// echoing it back cannot inject anything.
func validTokenList(v []byte) bool {
	for _, c := range v {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '-', c == '_', c == '.', c == ',', c == ' ':
		default:
			return false
		}
	}
	return true
}

// marshalJSON encodes v for a response body.
func marshalJSON(v any) ([]byte, error) { return sonic.Marshal(v) }
