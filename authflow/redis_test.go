package authflow_test

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apigetaway/getaway/sessioncache"
	"github.com/apigetaway/getaway/sessioncache/redistest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
)

// Sign-in with Redis sessions (DESIGN.md sections 4 and 5): each test runs
// its own redis-server (skipped when it is not installed, unless CI=true),
// and each gateway instance of a stack has its own store on it, with its
// own connections and process-memory cache, as separate gateway processes
// would. The tests run in parallel: most of their time is spent waiting
// (for a token to go stale, for Redis to come back).

// redisStores is a stackOptions.stores giving every instance its own
// sessioncache.NewRedis store on srv, with the default configuration.
func redisStores(srv *redistest.Server) func(t *testing.T, i int) sessioncache.Store {
	return func(t *testing.T, _ int) sessioncache.Store {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		store, err := sessioncache.NewRedis(ctx, srv.URL(), sessioncache.Config{}, nil)
		require.NoError(t, err)
		t.Cleanup(store.Close)
		return store
	}
}

// A session created on A works on B; a logout on A is refused on B within
// the invalidation latency (DESIGN.md section 4: within 100 ms), although B
// serves the session from its process memory.
func TestRedisSessionAcrossInstances(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	s := startStack(t, stackOptions{instances: 2, stores: redisStores(srv)})
	a, b := s.gws[0], s.gws[1]
	sid := s.login(t) // on A

	// B reads the session from Redis once, then from its memory.
	for range 3 {
		r := send(t, http.MethodGet, b.URL+"/api/x", sid, nil)
		require.Equal(t, http.StatusOK, r.status, r.body)
		require.Equal(t, s.idp.Email(), s.backend.header("X-User-Email"))
	}
	require.Equal(t, http.StatusOK, send(t, http.MethodGet, a.URL+"/api/x", sid, nil).status)

	r := send(t, http.MethodPost, a.URL+"/auth/logout", sid, nil)
	require.Equal(t, http.StatusNoContent, r.status, r.body)
	loggedOut := time.Now()
	deadline := loggedOut.Add(time.Second)
	polls := 0
	for {
		r = send(t, http.MethodGet, b.URL+"/api/x", sid, nil)
		polls++
		if r.status == http.StatusUnauthorized {
			break
		}
		require.Equal(t, http.StatusOK, r.status, "B while the logout propagates: %s", r.body)
		require.False(t, time.Now().After(deadline), "B still serves the session 1s after the logout on A")
	}
	delay := time.Since(loggedOut)
	assert.JSONEq(t, `{"error":"Unauthorized"}`, r.body)
	t.Logf("logout on A: refused on B after %v (%d requests to B)", delay, polls)
	if delay > 100*time.Millisecond {
		t.Logf("slower than the 100ms of DESIGN.md section 4 (a loaded machine?)")
	}
	assert.Equal(t, http.StatusUnauthorized, send(t, http.MethodGet, a.URL+"/api/x", sid, nil).status)
}

// TestRefreshOnceAcrossInstances with Redis stores: the refresh lock and
// the refreshed session travel through Redis.
func TestRedisRefreshOnceAcrossInstances(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	s := startStack(t, stackOptions{accessTTL: 65 * time.Second, refreshSkew: 60 * time.Second, instances: 2, stores: redisStores(srv)})
	sid := s.login(t)
	// Both instances hold the session in memory before it goes stale.
	for _, gw := range s.gws {
		require.Equal(t, http.StatusOK, send(t, http.MethodGet, gw.URL+"/api/x", sid, nil).status)
	}
	waitStale(t, s, sid, 60*time.Second)
	before := s.idp.TokenRequests("refresh_token")
	var wg sync.WaitGroup
	for i := range 20 {
		gw := s.gws[i%2]
		wg.Go(func() {
			assert.Equal(t, http.StatusOK, send(t, http.MethodGet, gw.URL+"/api/x", sid, nil).status)
		})
	}
	wg.Wait()
	assert.Equal(t, before+1, s.idp.TokenRequests("refresh_token"), "two instances sharing Redis must share one refresh")
	// Both serve the refreshed session without refreshing again.
	for _, gw := range s.gws {
		assert.Equal(t, http.StatusOK, send(t, http.MethodGet, gw.URL+"/api/x", sid, nil).status)
	}
	assert.Equal(t, before+1, s.idp.TokenRequests("refresh_token"))
}

// DESIGN.md section 4: < 1 Redis command per 1,000 authenticated requests
// in steady state. Here: 10,000 requests over keep-alive connections cause
// fewer than 10 commands (CommandCalls: connection bookkeeping excluded).
func TestRedisSteadyStateCommands(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t) // its own server: nothing else may count
	s := startStack(t, stackOptions{stores: redisStores(srv)})
	gw := s.gws[0]
	sid := s.login(t)
	for range 3 { // warm-up: the session's one fetch
		require.Equal(t, http.StatusOK, send(t, http.MethodGet, gw.URL+"/api/x", sid, nil).status)
	}

	const (
		requests = 10_000
		workers  = 4
	)
	var dials atomic.Int64
	c := &fasthttp.HostClient{
		Addr:     strings.TrimPrefix(gw.URL, "http://"),
		MaxConns: workers,
		Dial: func(addr string) (net.Conn, error) {
			dials.Add(1)
			return fasthttp.DialTimeout(addr, 5*time.Second)
		},
	}
	t.Cleanup(c.CloseIdleConnections)
	hits := s.backend.hits.Load()

	before := srv.CommandCalls(t)
	require.Positive(t, before, "the login's commands were not counted: the count would prove nothing")
	beforeStats := srv.CommandStats(t)
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI(gw.URL + "/api/x")
			req.Header.SetCookie("sid", sid)
			for range requests / workers {
				if err := c.DoTimeout(req, resp, 10*time.Second); err != nil {
					t.Error(err)
					return
				}
				if resp.StatusCode() != http.StatusOK {
					t.Errorf("status %d: %s", resp.StatusCode(), resp.Body())
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	after := srv.CommandCalls(t)
	if t.Failed() {
		t.FailNow()
	}
	require.Equal(t, hits+requests, s.backend.hits.Load())

	n := after - before
	t.Logf("%d requests in %v over %d connections caused %d Redis commands: %.1f per 1,000 requests",
		requests, elapsed.Round(time.Millisecond), dials.Load(), n, float64(n)*1000/requests)
	assert.LessOrEqual(t, dials.Load(), int64(workers), "requests did not reuse keep-alive connections")
	if n >= 10 {
		var detail []string
		for name, calls := range srv.CommandStats(t) {
			if d := calls - beforeStats[name]; d > 0 {
				detail = append(detail, name+"="+strconv.FormatInt(d, 10))
			}
		}
		t.Fatalf("%d authenticated requests caused %d Redis commands, want < 10 (all calls, bookkeeping included: %v)", requests, n, detail)
	}
}

// While Redis is down a signed-in user gets 503 {"error":"unavailable"}
// (never 401: the session may be valid; never 500), each within the
// store's command timeout; once Redis is back, with the session it
// persisted, the same cookie works again.
func TestRedisOutage(t *testing.T) {
	t.Parallel()
	// An append-only file synced at each write: the session survives the kill.
	srv := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	s := startStack(t, stackOptions{stores: redisStores(srv)})
	gw := s.gws[0]
	sid := s.login(t)
	require.Equal(t, http.StatusOK, send(t, http.MethodGet, gw.URL+"/api/x", sid, nil).status)

	get := func() result {
		t.Helper()
		start := time.Now()
		r := send(t, http.MethodGet, gw.URL+"/api/x", sid, nil)
		require.LessOrEqual(t, time.Since(start), 3*time.Second, "one request while Redis is down or restarting")
		return r
	}

	srv.Kill()
	killed := time.Now()
	// Until the store sees its connection drop, it may still serve the
	// session from memory (200).
	deadline := killed.Add(3 * time.Second)
	served := 0
	for {
		r := get()
		if r.status == http.StatusServiceUnavailable {
			require.JSONEq(t, `{"error":"unavailable"}`, r.body)
			break
		}
		require.Equal(t, http.StatusOK, r.status, "while Redis is down: %s", r.body)
		require.False(t, time.Now().After(deadline), "still 200 3s after Redis died")
		served++
	}
	t.Logf("Redis killed: 503 after %v (%d requests served from memory before)", time.Since(killed), served)
	for range 3 {
		r := get()
		require.Equal(t, http.StatusServiceUnavailable, r.status, r.body)
		require.JSONEq(t, `{"error":"unavailable"}`, r.body)
	}

	srv.Restart(t)
	restarted := time.Now()
	deadline = restarted.Add(2 * time.Second)
	hits := s.backend.hits.Load()
	for {
		r := get()
		if r.status == http.StatusOK {
			break
		}
		require.Equal(t, http.StatusServiceUnavailable, r.status, "after the restart: %s", r.body)
		require.False(t, time.Now().After(deadline), "still 503 2s after Redis restarted")
	}
	t.Logf("Redis restarted: the session works again after %v", time.Since(restarted))
	assert.Equal(t, hits+1, s.backend.hits.Load())
	assert.Equal(t, s.idp.Email(), s.backend.header("X-User-Email"))
}
