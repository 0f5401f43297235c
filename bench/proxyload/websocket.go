package main

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/apigetaway/getaway/bench/internal/wsecho"
)

// measure runs one closed-loop measurement of t for d with conns
// connections: gen for HTTP targets, runWS for WebSocket ones.
func measure(ctx context.Context, gen generator, t target, conns int, d time.Duration) (result, error) {
	if t.ws {
		return runWS(ctx, t, conns, d)
	}
	return gen.run(ctx, t, conns, d)
}

// wsHeader is the handshake header of a WebSocket target: its session
// cookie. No Origin, as from a non-browser client, which the gateway
// accepts.
func wsHeader(t target) http.Header {
	h := http.Header{}
	if t.sid != "" {
		h.Set("Cookie", t.cookieKey()+"="+t.sid)
	}
	return h
}

// runWS opens conns sockets to t (not timed) and has each send echoBody
// and wait for its echo, one round trip after the other, for d. Refused
// handshakes count as bad statuses, other failed sockets as socket errors.
func runWS(ctx context.Context, t target, conns int, d time.Duration) (result, error) {
	res, err := wsecho.Run(ctx, t.url, wsHeader(t), conns, echoBody, d)
	if err != nil {
		return result{}, err
	}
	return result{
		requests:     res.Trips,
		elapsed:      res.Elapsed,
		rps:          res.PerSecond(),
		p50:          percentile(res.Latencies, 50),
		p99:          percentile(res.Latencies, 99),
		badStatus:    res.Refused,
		socketErrors: res.Failed,
	}, nil
}

// probeWS checks that t upgrades and echoes echoBody once, and returns the
// message's size.
func probeWS(ctx context.Context, t target) (int, error) {
	c, err := wsecho.Dial(ctx, t.url, wsHeader(t))
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if err := wsecho.RoundTrip(c, echoBody); err != nil {
		return 0, err
	}
	return len(echoBody), nil
}

// isRefused reports whether err is a WebSocket handshake answered with
// status.
func isRefused(err error, status int) bool {
	he, ok := errors.AsType[*wsecho.HandshakeError](err)
	return ok && he.Status == status
}
