package edge

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Access log (observability): one JSON line per logged request, on its own
// logger (stdout, named "access"), apart from the process log. A request
// is logged when it is sampled (Config.AccessLogSample, env
// ACCESS_LOG_SAMPLE, a fraction decided by a fast random draw) or when its
// answer is a 5xx or a 429, which are always logged. The fields are
// method, path (the canonical path the client asked for, never the query
// string: queries carry codes and states), status, duration_ms,
// bytes_out, client_ip, request_id, trace_id, group and user_agent (cut
// to 256 bytes). Cookies, Authorization, tokens and queries are never
// logged. A request not logged costs one random draw and no allocation.

// maxLoggedPath and maxLoggedUserAgent cut long values; the path is copied
// (on the stack) before the handlers run because the proxy rewrites it.
const (
	maxLoggedPath      = 512
	maxLoggedUserAgent = 256
)

// NewAccessLogger returns the access logger: JSON lines on w (the process
// passes os.Stdout), ISO 8601 times, named "access".
func NewAccessLogger(w zapcore.WriteSyncer) *zap.Logger {
	enc := zap.NewProductionEncoderConfig()
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	core := zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.Lock(w), zapcore.InfoLevel)
	return zap.New(core).Named("access")
}

// accessLog decides which requests are logged and writes them.
type accessLog struct {
	log *zap.Logger
	// A request is sampled when a uniform random uint64 is below
	// threshold; all means every request (sample 1).
	threshold uint64
	all       bool
}

// newAccessLog returns nil (no access log) when log is nil.
func newAccessLog(log *zap.Logger, sample float64) *accessLog {
	if log == nil {
		return nil
	}
	a := &accessLog{log: log}
	switch {
	case sample >= 1:
		a.all = true
	case sample > 0:
		a.threshold = uint64(sample * math.MaxUint64)
	}
	return a
}

// wants reports whether a request answered with status is logged.
func (a *accessLog) wants(status int) bool {
	if status >= 500 || status == fasthttp.StatusTooManyRequests || a.all {
		return true
	}
	return a.threshold != 0 && rand.Uint64() < a.threshold
}

// accessEntry is what is known of a request before its handlers run.
type accessEntry struct {
	group   routeGroup
	trace   traceID
	pathLen int
	path    [maxLoggedPath]byte
}

// write logs ctx's request. The client IP is computed now: after the
// proxy's rewrite of X-Forwarded-For the policy finds the same client.
func (a *accessLog) write(ctx *fasthttp.RequestCtx, e *accessEntry, status int, d time.Duration, clientIP *ClientIPPolicy) {
	ce := a.log.Check(zap.InfoLevel, "request")
	if ce == nil {
		return
	}
	// A streamed body (proxied) is sent after the handlers return: its
	// Content-Length, or -1 when the backend did not say.
	bytesOut := len(ctx.Response.Body())
	if ctx.Response.IsBodyStream() {
		bytesOut = max(ctx.Response.Header.ContentLength(), -1)
	}
	ua := ctx.Request.Header.UserAgent()
	if len(ua) > maxLoggedUserAgent {
		ua = ua[:maxLoggedUserAgent]
	}
	var ipBuf [64]byte
	ce.Write(
		zap.String("method", string(ctx.Method())),
		zap.String("path", string(e.path[:e.pathLen])),
		zap.Int("status", status),
		zap.Float64("duration_ms", float64(d.Microseconds())/1000),
		zap.Int("bytes_out", bytesOut),
		zap.String("client_ip", string(clientIP.ClientIP(ctx).AppendTo(ipBuf[:0]))),
		zap.String("request_id", string(ctx.Response.Header.Peek(HeaderRequestID))),
		zap.String("trace_id", string(e.trace[:])),
		zap.String("group", e.group.String()),
		zap.String("user_agent", string(ua)),
	)
}
