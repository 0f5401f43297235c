package main

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/apigetaway/getaway/authflow/testidp"
	"github.com/apigetaway/getaway/bench/internal/gatewayproc"
	"github.com/valyala/fasthttp"
)

// cookieName is the gateway's session cookie (SESSION_COOKIE_NAME is left
// at its default).
const cookieName = "sid"

// browser signs in through the gateway as a browser would and makes API
// requests with the session cookie, over one keep-alive connection.
type browser struct {
	hc   *fasthttp.HostClient
	base string
	idp  *testidp.IdP
}

func newBrowser(g *gatewayproc.Gateway, idp *testidp.IdP) *browser {
	return &browser{
		hc:   &fasthttp.HostClient{Addr: g.Addr, MaxConns: 1, ReadTimeout: requestTimeout, WriteTimeout: requestTimeout},
		base: g.Base,
		idp:  idp,
	}
}

func (b *browser) close() { b.hc.CloseIdleConnections() }

// get requests url with the session cookie sid (none when empty) and
// passes the response to check.
func (b *browser) get(url, sid string, check func(*fasthttp.Response) error) error {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(url)
	if sid != "" {
		req.Header.SetCookie(cookieName, sid)
	}
	if err := b.hc.DoTimeout(req, resp, requestTimeout); err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	if err := check(resp); err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	return nil
}

// signIn goes through the gateway's login: GET /auth/login (302 to the
// provider), the provider's login form (testidp's Login), GET of the
// gateway's callback (302 with the session cookie). It returns the session
// id.
func (b *browser) signIn(ctx context.Context) (string, error) {
	var authorize string
	err := b.get(b.base+"/auth/login", "", func(resp *fasthttp.Response) error {
		if resp.StatusCode() != fasthttp.StatusFound {
			return fmt.Errorf("status %d, want 302: %s", resp.StatusCode(), snippet(resp.Body()))
		}
		authorize = string(resp.Header.Peek(fasthttp.HeaderLocation))
		return nil
	})
	if err != nil {
		return "", err
	}
	callback, err := b.idp.Login(ctx, authorize, b.idp.Username(), testidp.Password)
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(callback, b.base+"/") {
		return "", fmt.Errorf("the provider redirected to %s, not to the gateway", callback)
	}
	var sid string
	err = b.get(callback, "", func(resp *fasthttp.Response) error {
		if resp.StatusCode() != fasthttp.StatusFound {
			return fmt.Errorf("status %d, want 302: %s", resp.StatusCode(), snippet(resp.Body()))
		}
		c := fasthttp.AcquireCookie()
		defer fasthttp.ReleaseCookie(c)
		c.SetKey(cookieName)
		if !resp.Header.Cookie(c) || len(c.Value()) == 0 {
			return fmt.Errorf("no %s cookie set", cookieName)
		}
		sid = string(c.Value())
		return nil
	})
	return sid, err
}

// api requests url with session sid and checks that it answers 200 with
// the backend's body. It returns how long the request took.
func (b *browser) api(url, sid string) (time.Duration, error) {
	t0 := time.Now()
	var d time.Duration
	err := b.get(url, sid, func(resp *fasthttp.Response) error {
		d = time.Since(t0)
		return checkEcho(resp)
	})
	return d, err
}

// checkEcho accepts a 200 with exactly echoBody.
func checkEcho(resp *fasthttp.Response) error {
	if resp.StatusCode() != fasthttp.StatusOK {
		return fmt.Errorf("status %d, want 200: %s", resp.StatusCode(), snippet(resp.Body()))
	}
	if !bytes.Equal(resp.Body(), echoBody) {
		return fmt.Errorf("unexpected body %s", snippet(resp.Body()))
	}
	return nil
}

// snippet quotes the start of a body for an error message.
func snippet(b []byte) string {
	const limit = 200
	if len(b) > limit {
		return strconv.Quote(string(b[:limit])) + "..."
	}
	return strconv.Quote(string(b))
}

// coldResult is the latency of the first API request of fresh sessions.
type coldResult struct {
	n        int             // sign-ins attempted
	failures []string        // what went wrong, one per failed sign-in or request
	first    []time.Duration // first request after each sign-in, sorted
	second   []time.Duration // the request right after it, sorted
	signIn   []time.Duration // the whole sign-in, sorted
	redis    *redisUse       // commands per sign-in and two requests; nil without Redis
}

// measureCold signs in n times, one after the other, and times the first
// API request of each new session (the session is not yet in the gateway's
// process cache: it was just written) and, for comparison, the second one.
// All requests go over one warm keep-alive connection, so no connect is
// timed.
func measureCold(ctx context.Context, b *browser, apiURL string, n int) *coldResult {
	r := &coldResult{n: n}
	for range n {
		if ctx.Err() != nil {
			break
		}
		t0 := time.Now()
		sid, err := b.signIn(ctx)
		if err != nil {
			r.failures = append(r.failures, "sign-in: "+err.Error())
			continue
		}
		r.signIn = append(r.signIn, time.Since(t0))
		d, err := b.api(apiURL, sid)
		if err != nil {
			r.failures = append(r.failures, "first request: "+err.Error())
			continue
		}
		r.first = append(r.first, d)
		if d, err = b.api(apiURL, sid); err != nil {
			r.failures = append(r.failures, "second request: "+err.Error())
			continue
		}
		r.second = append(r.second, d)
	}
	slices.Sort(r.first)
	slices.Sort(r.second)
	slices.Sort(r.signIn)
	return r
}
