package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apigetaway/getaway/authflow/testidp"
	"github.com/apigetaway/getaway/bench/internal/wsecho"
	"github.com/fasthttp/websocket"
	"github.com/valyala/fasthttp"
)

// The pace of the activities besides the /api requests.
const (
	signInEvery   = 2 * time.Second // a fresh sign-in, a request, a logout
	wsEvery       = 500 * time.Millisecond
	wsChurners    = 2                // goroutines opening, using and closing sockets
	wsTrips       = 10               // round trips per socket
	reloadEvery   = 15 * time.Second // PUT of the same config
	opTimeout     = 10 * time.Second
	cookieName    = "sid"
	apiPath       = "/api/soak"
	adminTokenLen = 16 // random bytes, hex-encoded
)

// Activity names, in the report's order.
var activities = []string{"api", "sign-in", "logout", "websocket", "admin-reload"}

// load drives the gateway and counts what it did and what failed.
type load struct {
	base, wsURL string
	idp         *testidp.IdP
	sids        []string // the long-lived sessions
	adminToken  string
	config      []byte // the gateway's config.yml, PUT back as it is
	conns       int
	rate        float64 // /api requests per second, all connections; 0: as fast as they go

	ops  atomic.Int64
	done map[string]*atomic.Int64 // by activity

	mu       sync.Mutex
	errs     map[string]int64  // by kind: "api: status 502"
	firstErr map[string]string // an example of each kind
}

func newLoad() *load {
	l := &load{done: map[string]*atomic.Int64{}, errs: map[string]int64{}, firstErr: map[string]string{}}
	for _, a := range activities {
		l.done[a] = new(atomic.Int64)
	}
	return l
}

// ok counts one operation of activity a.
func (l *load) ok(a string) {
	l.ops.Add(1)
	l.done[a].Add(1)
}

// fail counts an error of kind, unless ctx has ended (the load is
// stopping and cut it short).
func (l *load) fail(ctx context.Context, kind string, err error) {
	if ctx.Err() != nil {
		return
	}
	l.ops.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs[kind]++
	if _, ok := l.firstErr[kind]; !ok && err != nil {
		l.firstErr[kind] = err.Error()
	}
}

func (l *load) errorCount() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var n int64
	for _, c := range l.errs {
		n += c
	}
	return n
}

// errorKinds lists "kind: count (first: ...)" sorted by kind.
func (l *load) errorKinds() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for k, n := range l.errs {
		out = append(out, fmt.Sprintf("%s: %d (first: %s)", k, n, l.firstErr[k]))
	}
	sort.Strings(out)
	return out
}

// run drives every activity until ctx ends and returns when all stopped.
func (l *load) run(ctx context.Context) {
	var wg sync.WaitGroup
	hc := &fasthttp.HostClient{
		Addr: strings.TrimPrefix(l.base, "http://"), MaxConns: l.conns,
		ReadTimeout: opTimeout, WriteTimeout: opTimeout,
	}
	defer hc.CloseIdleConnections()
	for i := range l.conns {
		wg.Go(func() { l.apiWorker(ctx, hc, l.sids[i%len(l.sids)]) })
	}
	wg.Go(func() { l.every(ctx, signInEvery, l.signInOut) })
	for i := range wsChurners {
		sid := l.sids[i%len(l.sids)]
		wg.Go(func() { l.every(ctx, wsEvery, func(ctx context.Context) { l.wsChurn(ctx, sid) }) })
	}
	wg.Go(func() { l.every(ctx, reloadEvery, l.reload) })
	wg.Wait()
}

// every calls f now and then every period until ctx ends.
func (l *load) every(ctx context.Context, period time.Duration, f func(context.Context)) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		f(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// apiWorker sends GET /api/soak with session sid, one after the other,
// paced to its share of l.rate, and checks for the backend's body.
func (l *load) apiWorker(ctx context.Context, hc *fasthttp.HostClient, sid string) {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(l.base + apiPath)
	req.Header.SetCookie(cookieName, sid)
	var interval time.Duration
	if l.rate > 0 {
		interval = time.Duration(float64(l.conns) / l.rate * float64(time.Second))
	}
	next := time.Now()
	for ctx.Err() == nil {
		if interval > 0 {
			next = next.Add(interval)
			if d := time.Until(next); d > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(d):
				}
			} else if d < -time.Second {
				next = time.Now() // fell behind: no burst to catch up
			}
		}
		if err := hc.DoTimeout(req, resp, opTimeout); err != nil {
			l.fail(ctx, "api: transport", err)
			continue
		}
		switch {
		case resp.StatusCode() != fasthttp.StatusOK:
			l.fail(ctx, fmt.Sprintf("api: status %d", resp.StatusCode()), fmt.Errorf("body %.200q", resp.Body()))
		case !bytes.Equal(resp.Body(), echoBody):
			l.fail(ctx, "api: wrong body", fmt.Errorf("body %.200q", resp.Body()))
		default:
			l.ok("api")
		}
	}
}

// httpClient is for the less frequent requests: sign-in checks, logout,
// admin; it follows no redirect.
var httpClient = &http.Client{Timeout: opTimeout, CheckRedirect: func(*http.Request, []*http.Request) error {
	return http.ErrUseLastResponse
}}

// do sends one request and returns its status.
func do(ctx context.Context, method, url string, body []byte, header http.Header) (int, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, nil
}

func cookie(sid string) http.Header { return http.Header{"Cookie": {cookieName + "=" + sid}} }

// signInOut signs a new session in through the gateway and the provider's
// form, uses it once, logs it out and checks that it no longer works.
func (l *load) signInOut(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 3*opTimeout)
	defer cancel()
	sid, err := l.idp.SignInThrough(ctx, l.base, l.idp.Username(), testidp.Password, cookieName)
	if err != nil {
		l.fail(ctx, "sign-in", err)
		return
	}
	if status, err := do(ctx, http.MethodGet, l.base+apiPath, nil, cookie(sid)); err != nil || status != http.StatusOK {
		l.fail(ctx, "sign-in: first request", fmt.Errorf("status %d, %v", status, err))
		return
	}
	l.ok("sign-in")
	if status, err := do(ctx, http.MethodPost, l.base+"/auth/logout", nil, cookie(sid)); err != nil || status != http.StatusNoContent {
		l.fail(ctx, "logout", fmt.Errorf("status %d, want 204, %v", status, err))
		return
	}
	if status, err := do(ctx, http.MethodGet, l.base+apiPath, nil, cookie(sid)); err != nil || status != http.StatusUnauthorized {
		l.fail(ctx, "logout: session still open", fmt.Errorf("status %d after logout, want 401, %v", status, err))
		return
	}
	l.ok("logout")
}

// wsChurn opens a socket with session sid, makes wsTrips round trips and
// closes it with a close frame.
func (l *load) wsChurn(ctx context.Context, sid string) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	c, err := wsecho.Dial(ctx, l.wsURL, cookie(sid))
	if err != nil {
		l.fail(ctx, "websocket: dial", err)
		return
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(opTimeout))
	for range wsTrips {
		if err := wsecho.RoundTrip(c, echoBody); err != nil {
			l.fail(ctx, "websocket: echo", err)
			return
		}
	}
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
	if err := c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second)); err != nil {
		l.fail(ctx, "websocket: close", err)
		return
	}
	l.ok("websocket")
}

// reload PUTs the gateway's own config back through the admin API, with
// the admin token: the routing stays the same, the reload path runs.
func (l *load) reload(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	h := http.Header{"Authorization": {"Bearer " + l.adminToken}, "Content-Type": {"application/yaml"}}
	status, err := do(ctx, http.MethodPut, l.base+"/admin/config", l.config, h)
	if err != nil || status != http.StatusOK {
		l.fail(ctx, "admin-reload", fmt.Errorf("status %d, want 200, %v", status, err))
		return
	}
	l.ok("admin-reload")
}
