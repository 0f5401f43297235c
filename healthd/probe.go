package healthd

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"time"
)

// probeResult is what one check found.
type probeResult struct {
	up      bool
	latency time.Duration // the whole check, fallback GET included
	// reason says why the backend is down ("HTTP 503", the dial error);
	// empty when up.
	reason string
}

// userAgent identifies the checks in backend logs.
const userAgent = "getaway-healthd/1"

// newProbeClient returns the HTTP client for checks. Redirects are not
// followed: a 3xx answer is itself a sign of life (status < 400 is up, as
// in the Node version), and following it could lead the check to another
// host. Keep-alive is off, so that each check also proves the backend still
// accepts connections, and no idle connection (nor its goroutines) outlives
// a check. Proxy environment variables are ignored: the proxy reaches
// backends directly, and so must its health checks.
func newProbeClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                  nil,
			DialContext:            (&net.Dialer{KeepAlive: -1}).DialContext,
			DisableKeepAlives:      true,
			DisableCompression:     true,
			MaxResponseHeaderBytes: 64 << 10,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// probe checks one backend: HEAD target, then GET when the backend answers
// 405 (Method Not Allowed) or 501 (Not Implemented) to HEAD, all within
// c.cfg.Timeout. Latency is measured on the monotonic clock, never the
// injected one.
func (c *Checker) probe(ctx context.Context, target string) probeResult {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	start := time.Now()
	code, err := c.request(ctx, http.MethodHead, target)
	if err == nil && (code == http.StatusMethodNotAllowed || code == http.StatusNotImplemented) {
		code, err = c.request(ctx, http.MethodGet, target)
	}
	r := probeResult{latency: time.Since(start)}
	switch {
	case err != nil:
		r.reason = err.Error()
	case code >= http.StatusBadRequest:
		r.reason = "HTTP " + strconv.Itoa(code)
	default:
		r.up = true
	}
	return r
}

// request sends one check request and returns the status code. The body
// is not read: the connection is not reused.
func (c *Checker) request(ctx context.Context, method, target string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, method, target, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("User-Agent", userAgent)
	req.Close = true
	resp, err := c.probeClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
