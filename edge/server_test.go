package edge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
)

func TestHealthz(t *testing.T) {
	be := startBackend(t, nil)
	gw := startGateway(t, defaultBackendYAML(be.URL), withAuth(DenyAll))
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		t.Run(method, func(t *testing.T) {
			resp, body := do(t, method, gw.URL+"/healthz", nil, nil)
			require.Equal(t, http.StatusOK, resp.StatusCode, body)
			assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
			if method == http.MethodGet {
				assert.JSONEq(t, `{"ok":true}`, body)
			} else {
				assert.Empty(t, body)
			}
		})
	}
	// Health is the gateway's own: no authentication, no backend.
	assert.Zero(t, be.hits.Load())
}

// readyBody is the JSON /readyz answers.
type readyBody struct {
	OK      bool     `json:"ok"`
	Error   string   `json:"error"`
	Failing []string `json:"failing"`
}

func TestReadyz(t *testing.T) {
	// The error text holds what must never reach a client: an address.
	failing := func(context.Context) error {
		return errors.New("dial tcp 10.1.2.3:6379: connect: connection refused")
	}
	passing := func(context.Context) error { return nil }
	var sawDeadline bool
	var mu sync.Mutex
	withDeadline := func(ctx context.Context) error {
		_, ok := ctx.Deadline()
		mu.Lock()
		sawDeadline = ok
		mu.Unlock()
		return nil
	}

	tests := []struct {
		name        string
		checks      []ReadinessCheck
		wantStatus  int
		wantFailing []string
	}{
		{"no checks", nil, http.StatusOK, nil},
		{"one passing", []ReadinessCheck{{Name: "redis", Check: passing}}, http.StatusOK, nil},
		{"one failing", []ReadinessCheck{{Name: "redis", Check: failing}}, http.StatusServiceUnavailable, []string{"redis"}},
		{"passing and failing", []ReadinessCheck{{Name: "oidc", Check: passing}, {Name: "redis", Check: failing}}, http.StatusServiceUnavailable, []string{"redis"}},
		{"two failing", []ReadinessCheck{{Name: "redis", Check: failing}, {Name: "oidc", Check: failing}}, http.StatusServiceUnavailable, []string{"redis", "oidc"}},
		{"bounded context", []ReadinessCheck{{Name: "deadline", Check: withDeadline}}, http.StatusOK, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			be := startBackend(t, nil)
			gw := startGateway(t, defaultBackendYAML(be.URL), withReady(tc.checks...))
			resp, body := do(t, http.MethodGet, gw.URL+"/readyz", nil, nil)
			require.Equal(t, tc.wantStatus, resp.StatusCode, body)
			assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
			if tc.wantStatus == http.StatusOK {
				assert.JSONEq(t, `{"ok":true}`, body)
			} else {
				var got readyBody
				require.NoError(t, json.Unmarshal([]byte(body), &got), body)
				assert.False(t, got.OK)
				assert.Equal(t, tc.wantFailing, got.Failing)
				assert.NotContains(t, body, "10.1.2.3")
				assert.NotContains(t, body, "6379")
				assert.NotContains(t, body, "connection refused")
			}
			head, headBody := do(t, http.MethodHead, gw.URL+"/readyz", nil, nil)
			assert.Equal(t, tc.wantStatus, head.StatusCode)
			assert.Empty(t, headBody)
		})
	}
	mu.Lock()
	defer mu.Unlock()
	assert.True(t, sawDeadline, "readiness checks must get a context with a deadline")
}

func TestUnknownRoute(t *testing.T) {
	be := startBackend(t, nil)
	gw := startGateway(t, defaultBackendYAML(be.URL))
	tests := []struct{ name, method, path, accept string }{
		{"GET", http.MethodGet, "/nope", ""},
		{"browser navigation without public dir", http.MethodGet, "/nope", browserAccept},
		{"root", http.MethodGet, "/", browserAccept},
		{"POST", http.MethodPost, "/nope", ""},
		{"DELETE on healthz", http.MethodDelete, "/healthz", ""},
		{"trailing slash on healthz", http.MethodGet, "/healthz/", ""},
		{"api lookalike", http.MethodGet, "/apix", ""},
		{"auth typo", http.MethodGet, "/auth/logn", browserAccept},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.accept != "" {
				h.Set("Accept", tc.accept)
			}
			resp, body := do(t, tc.method, gw.URL+tc.path, h, nil)
			require.Equal(t, http.StatusNotFound, resp.StatusCode, body)
			assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
			assert.JSONEq(t, `{"error":"Not Found"}`, body)
		})
	}
	assert.Zero(t, be.hits.Load())
}

func TestOversizedHeaderBlock(t *testing.T) {
	be := startBackend(t, nil)
	gw := startGateway(t, defaultBackendYAML(be.URL), withConfig(func(c *Config) { c.MaxHeaderBytes = 2048 }))

	tests := []struct {
		name    string
		size    int // bytes in one X-Big header value
		refused bool
	}{
		{"well under the limit", 1 << 10, false},
		// Between our limit and fasthttp's 4 KiB default buffer: refused
		// only if MaxHeaderBytes is applied.
		{"3 KiB", 3 << 10, true},
		{"4 KiB", 4 << 10, true},
		{"8 KiB", 8 << 10, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, target := range []string{"/healthz", "/api/x"} {
				before := be.hits.Load()
				out := rawRequest(t, gw.Addr, "GET "+target+" HTTP/1.1\r\nHost: gw.test\r\nX-Big: "+strings.Repeat("b", tc.size)+"\r\nConnection: close\r\n\r\n")
				if !tc.refused {
					assert.Regexp(t, `^HTTP/1\.1 200 `, out, target)
					continue
				}
				assert.Regexp(t, `^HTTP/1\.1 (431|400) `, out, target)
				assert.NotContains(t, out, "bbbbbbbb", "the request echoed back")
				assert.Equal(t, before, be.hits.Load(), "an oversized request reached the backend")
			}
			// The gateway keeps serving.
			resp, body := do(t, http.MethodGet, gw.URL+"/healthz", nil, nil)
			require.Equal(t, http.StatusOK, resp.StatusCode, body)
		})
	}
}

// connRefusedOrClosed reports whether addr refuses a new connection, or
// accepts it and closes it without answering a request.
func connRefusedOrClosed(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return true
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n"); err != nil {
		return true
	}
	n, err := c.Read(make([]byte, 1))
	return n == 0 && err != nil && !isTimeout(err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestGracefulShutdown(t *testing.T) {
	release := make(chan struct{})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	be := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		<-release
		ctx.SetBodyString("finished")
	})
	gw := startGateway(t, defaultBackendYAML(be.URL))
	// Registered after startGateway, so it runs before the gateway's own
	// cleanup: a failing test does not leave the shutdown waiting.
	t.Cleanup(unblock)

	type result struct {
		status int
		body   string
		err    error
	}
	inflight := make(chan result, 1)
	go func() {
		resp, err := testClient.Get(gw.URL + "/api/slow")
		if err != nil {
			inflight <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		inflight <- result{status: resp.StatusCode, body: string(b), err: err}
	}()
	require.Eventually(t, func() bool { return be.hits.Load() == 1 }, 10*time.Second, 5*time.Millisecond,
		"the request never reached the backend")

	shutdown := make(chan error, 1)
	go func() { shutdown <- gw.Server.Shutdown(context.Background()) }()

	require.Eventually(t, func() bool { return connRefusedOrClosed(gw.Addr) }, 10*time.Second, 10*time.Millisecond,
		"the gateway still accepts requests after Shutdown began")
	select {
	case err := <-shutdown:
		t.Fatalf("Shutdown returned (%v) while a request was in flight", err)
	case r := <-inflight:
		t.Fatalf("the in-flight request ended before the backend answered: %+v", r)
	default:
	}

	unblock()
	select {
	case r := <-inflight:
		require.NoError(t, r.err)
		assert.Equal(t, http.StatusOK, r.status)
		assert.Equal(t, "finished", r.body)
	case <-time.After(10 * time.Second):
		t.Fatal("the in-flight request did not complete")
	}
	select {
	case err := <-shutdown:
		assert.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return after the last request finished")
	}
	assert.EqualValues(t, 1, be.hits.Load())

	// A second Shutdown (startGateway's cleanup makes a third) is harmless.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	assert.NoError(t, gw.Server.Shutdown(ctx))
}

func TestShutdownTimeoutBoundsTheWait(t *testing.T) {
	release := make(chan struct{})
	be := startBackend(t, func(ctx *fasthttp.RequestCtx) { <-release })
	gw := startGateway(t, defaultBackendYAML(be.URL), withConfig(func(c *Config) { c.ShutdownTimeout = 200 * time.Millisecond }))

	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := testClient.Get(gw.URL + "/api/stuck")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	// Runs before the gateway's cleanup: release the backend, then wait for
	// the client to finish.
	t.Cleanup(func() { close(release); <-done })
	require.Eventually(t, func() bool { return be.hits.Load() == 1 }, 10*time.Second, 5*time.Millisecond)

	start := time.Now()
	err := gw.Server.Shutdown(context.Background())
	require.Error(t, err, "Shutdown reported success with a request still in flight")
	assert.True(t, errors.Is(err, context.DeadlineExceeded), "got %v", err)
	assert.Less(t, time.Since(start), 5*time.Second, fmt.Sprintf("ShutdownTimeout of %v not applied", 200*time.Millisecond))
}
