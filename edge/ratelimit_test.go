package edge

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apigetaway/getaway/sessioncache/redistest"
	"github.com/apigetaway/getaway/upstream"
	"github.com/fasthttp/router"
	"github.com/redis/rueidis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// fakeClock is a settable clock. It starts at the beginning of a minute,
// so a test's requests fall in one window until it advances.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

var perMinute60 = RateLimit{Requests: 60, Window: time.Minute}

func newIPLimiter(rl RateLimit, maxKeys int, store counterStore, clk *fakeClock, log *zap.Logger) *limiter[netip.Addr] {
	return newLimiter("auth", rl, maxKeys, store, clk.Now, hashAddr, addrText, log)
}

// startLimitedGateway runs the whole server with cfg, its proxy following
// cfg's trusted proxies, and Deps completed by complete (Auth is allowAll
// unless it says otherwise).
func startLimitedGateway(t testing.TB, configYAML string, cfg Config, complete func(d *Deps)) *gateway {
	t.Helper()
	f, err := upstream.ParseFile("config.yml", []byte(configYAML))
	require.NoError(t, err)
	p, err := upstream.NewProxy(upstream.ProxyConfig{ForwardedFor: NewClientIPPolicy(cfg.TrustedProxies)}, f, zap.NewNop())
	require.NoError(t, err)
	deps := Deps{Proxy: p, Auth: allowAll}
	if complete != nil {
		complete(&deps)
	}
	s, err := New(cfg, deps)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ln) }()
	t.Cleanup(func() { _ = s.Shutdown(context.Background()); <-done })
	return &gateway{URL: "http://" + ln.Addr().String(), Addr: ln.Addr().String(), Server: s, Proxy: p}
}

// loginStub stands in for sign-in: /auth/login answers 302 to an IdP.
func loginStub(r *router.Router) {
	r.GET("/auth/login", func(ctx *fasthttp.RequestCtx) {
		ctx.Redirect("https://idp.example/authorize", fasthttp.StatusFound)
	})
}

func withClock(clk *fakeClock, then func(d *Deps)) func(d *Deps) {
	return func(d *Deps) {
		d.now = clk.Now
		d.Routes = loginStub
		if then != nil {
			then(d)
		}
	}
}

// assertRateLimited checks a 429 of the limiter.
func assertRateLimited(t *testing.T, resp *http.Response, body string, limit, retryAfter string) {
	t.Helper()
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	assert.JSONEq(t, `{"error":"rate_limited"}`, body)
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	assert.Equal(t, retryAfter, resp.Header.Get("Retry-After"))
	assert.Equal(t, limit, resp.Header.Get("RateLimit-Limit"))
	assert.Equal(t, "0", resp.Header.Get("RateLimit-Remaining"))
	assert.Equal(t, retryAfter, resp.Header.Get("RateLimit-Reset"))
}

func TestParseRateLimit(t *testing.T) {
	tests := []struct {
		in      string
		want    RateLimit
		wantErr bool
	}{
		{in: "60/m", want: RateLimit{Requests: 60, Window: time.Minute}},
		{in: " 10 / s ", want: RateLimit{Requests: 10, Window: time.Second}},
		{in: "1000/hour", want: RateLimit{Requests: 1000, Window: time.Hour}},
		{in: "5/30s", want: RateLimit{Requests: 5, Window: 30 * time.Second}},
		{in: "0", want: RateLimit{Off: true}},
		{in: "off", want: RateLimit{Off: true}},
		{in: "60", wantErr: true},
		{in: "0/m", wantErr: true},
		{in: "-1/m", wantErr: true},
		{in: "x/m", wantErr: true},
		{in: "10/fortnight", wantErr: true},
		{in: "10/500ms", wantErr: true},
		{in: "10/48h", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseRateLimit(tc.in)
			if tc.wantErr {
				assert.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
			again, err := ParseRateLimit(got.String())
			require.NoError(t, err)
			assert.Equal(t, got, again, "String round-trips")
		})
	}
}

func TestLimiterInProcess(t *testing.T) {
	clk := newFakeClock()
	clk.Advance(15 * time.Second) // 45 s left in the window
	l := newIPLimiter(perMinute60, 1000, nil, clk, zap.NewNop())
	ip := netip.MustParseAddr("198.51.100.7")
	for i := range 60 {
		d := l.allow(ip)
		require.True(t, d.allowed, "request %d", i+1)
		assert.Equal(t, int64(60), d.limit)
		assert.Equal(t, int64(59-i), d.remaining)
		assert.Equal(t, 45*time.Second, d.reset)
	}
	d := l.allow(ip)
	assert.False(t, d.allowed, "the 61st")
	assert.Equal(t, int64(0), d.remaining)
	assert.Equal(t, 45*time.Second, d.reset)

	clk.Advance(44*time.Second + 500*time.Millisecond)
	d = l.allow(ip)
	assert.False(t, d.allowed, "still the same window")
	assert.Equal(t, int64(1), resetSeconds(d.reset))

	clk.Advance(500 * time.Millisecond) // the window rolls
	for i := range 60 {
		require.True(t, l.allow(ip).allowed, "request %d of the next window", i+1)
	}
	assert.False(t, l.allow(ip).allowed)
}

func TestLimiterKeysAreIsolated(t *testing.T) {
	clk := newFakeClock()
	l := newIPLimiter(RateLimit{Requests: 2, Window: time.Minute}, 1000, nil, clk, zap.NewNop())
	spend := func(a netip.Addr) {
		for range 2 {
			require.True(t, l.allow(a).allowed)
		}
		require.False(t, l.allow(a).allowed)
	}
	spend(rateKeyIP(netip.MustParseAddr("198.51.100.7")))
	assert.True(t, l.allow(rateKeyIP(netip.MustParseAddr("198.51.100.8"))).allowed, "another IPv4 address")

	// IPv6: one /64 is one client; the next /64 is another.
	spend(rateKeyIP(netip.MustParseAddr("2001:db8:0:1::1")))
	assert.False(t, l.allow(rateKeyIP(netip.MustParseAddr("2001:db8:0:1:ffff:ffff:ffff:ffff"))).allowed, "same /64")
	assert.True(t, l.allow(rateKeyIP(netip.MustParseAddr("2001:db8:0:2::1"))).allowed, "another /64")
}

func TestLimiterPerSubject(t *testing.T) {
	clk := newFakeClock()
	l := newLimiter("api", RateLimit{Requests: 3, Window: time.Minute}, 1000, nil, clk.Now, hashString, stringText, zap.NewNop())
	for range 3 {
		require.True(t, l.allow("alice").allowed)
	}
	assert.False(t, l.allow("alice").allowed)
	assert.True(t, l.allow("bob").allowed)
}

func TestLimiterMemoryIsBounded(t *testing.T) {
	clk := newFakeClock()
	const maxKeys = 640 // 10 per shard
	// An hour's window, so the 100 s the flood takes stay in one.
	l := newIPLimiter(RateLimit{Requests: 60, Window: time.Hour}, maxKeys, nil, clk, zap.NewNop())
	hot := netip.MustParseAddr("198.51.100.7")
	hotAllowed := 0
	for i := range 100_000 {
		clk.Advance(time.Millisecond) // within one minute: lastSeen orders the keys
		if i%10 == 0 {
			if l.allow(hot).allowed {
				hotAllowed++
			}
		}
		var b [4]byte
		b[0], b[1], b[2], b[3] = 10, byte(i>>16), byte(i>>8), byte(i)
		require.True(t, l.allow(netip.AddrFrom4(b)).allowed)
	}
	assert.LessOrEqual(t, l.len(), maxKeys, "keys tracked")
	assert.Equal(t, 60, hotAllowed, "a flood of other addresses does not reset a client that keeps sending")
}

func TestLimiterDropsIdleKeys(t *testing.T) {
	clk := newFakeClock()
	l := newIPLimiter(perMinute60, 100_000, nil, clk, zap.NewNop())
	for i := range 200 {
		l.allow(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}))
	}
	require.Equal(t, 200, l.len())
	clk.Advance(2 * time.Minute) // a whole window without them
	for i := range 2000 {
		l.allow(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}))
	}
	assert.Equal(t, 2000, l.len(), "the idle keys are gone")
}

// TestRateLimitAuthGateway: 61 GET /auth/login from one IP; the 61st is
// 429, /api is not affected, and the next window admits again.
func TestRateLimitAuthGateway(t *testing.T) {
	be := startBackend(t, nil)
	clk := newFakeClock()
	gw := startLimitedGateway(t, defaultBackendYAML(be.URL), Config{}, withClock(clk, nil))
	for i := range 60 {
		resp, _ := do(t, http.MethodGet, gw.URL+"/auth/login", nil, nil)
		require.Equal(t, http.StatusFound, resp.StatusCode, "request %d", i+1)
		assert.Equal(t, "60", resp.Header.Get("RateLimit-Limit"))
		assert.Equal(t, strconv.Itoa(59-i), resp.Header.Get("RateLimit-Remaining"))
		assert.Equal(t, "60", resp.Header.Get("RateLimit-Reset"))
	}
	resp, body := do(t, http.MethodGet, gw.URL+"/auth/login", nil, nil)
	assertRateLimited(t, resp, body, "60", "60")
	assertHelmet(t, resp.Header)
	// Other spellings of the path reach the same routes, and the limit.
	for _, target := range []string{"//auth/login", "/%61uth/login", "/x/../auth/login", "/auth/callback", "/auth"} {
		raw := rawRequest(t, gw.Addr, "GET "+target+" HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n")
		assert.True(t, strings.HasPrefix(raw, "HTTP/1.1 429 "), "%s: %s", target, raw)
	}

	resp, _ = do(t, http.MethodGet, gw.URL+"/api/x", nil, nil)
	assert.Equal(t, http.StatusOK, resp.StatusCode, "/api is not limited by /auth")
	assert.Empty(t, resp.Header.Get("RateLimit-Limit"))
	resp, _ = do(t, http.MethodGet, gw.URL+"/healthz", nil, nil)
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	clk.Advance(time.Minute)
	resp, _ = do(t, http.MethodGet, gw.URL+"/auth/login", nil, nil)
	assert.Equal(t, http.StatusFound, resp.StatusCode, "the next window")
}

func TestRateLimitAuthOff(t *testing.T) {
	clk := newFakeClock()
	gw := startLimitedGateway(t, defaultBackendYAML("http://127.0.0.1:1"), Config{AuthRateLimit: RateLimit{Off: true}}, withClock(clk, nil))
	for range 100 {
		resp, _ := do(t, http.MethodGet, gw.URL+"/auth/login", nil, nil)
		require.Equal(t, http.StatusFound, resp.StatusCode)
		require.Empty(t, resp.Header.Get("RateLimit-Limit"))
	}
}

// TestRateLimitAuthKeyedByClientIP: the key is the client IP as
// ClientIPPolicy finds it; a client cannot escape its limit through
// X-Forwarded-For.
func TestRateLimitAuthKeyedByClientIP(t *testing.T) {
	limit := Config{AuthRateLimit: RateLimit{Requests: 5, Window: time.Minute}}
	get := func(t *testing.T, gw *gateway, xff ...string) (*http.Response, string) {
		t.Helper()
		h := http.Header{}
		for _, v := range xff {
			h.Add(fasthttp.HeaderXForwardedFor, v)
		}
		return do(t, http.MethodGet, gw.URL+"/auth/login", h, nil)
	}

	t.Run("untrusted peer: X-Forwarded-For changes nothing", func(t *testing.T) {
		gw := startLimitedGateway(t, defaultBackendYAML("http://127.0.0.1:1"), limit, withClock(newFakeClock(), nil))
		for i := range 5 {
			resp, _ := get(t, gw, fmt.Sprintf("203.0.113.%d", i))
			require.Equal(t, http.StatusFound, resp.StatusCode)
		}
		resp, body := get(t, gw, "198.51.100.1")
		assertRateLimited(t, resp, body, "5", "60")
	})

	t.Run("trusted peer: the right-most untrusted entry", func(t *testing.T) {
		cfg := limit
		cfg.TrustedProxies = mustPrefixes(t, "127.0.0.1, 10.0.0.0/8")
		gw := startLimitedGateway(t, defaultBackendYAML("http://127.0.0.1:1"), cfg, withClock(newFakeClock(), nil))
		for range 5 {
			resp, _ := get(t, gw, "203.0.113.1, 10.0.0.2")
			require.Equal(t, http.StatusFound, resp.StatusCode)
		}
		resp, body := get(t, gw, "203.0.113.1")
		assertRateLimited(t, resp, body, "5", "60")
		resp, body = get(t, gw, "6.6.6.6, 203.0.113.1", "10.0.0.9")
		assertRateLimited(t, resp, body, "5", "60") // a spoofed prefix does not help

		resp, _ = get(t, gw, "203.0.113.2")
		assert.Equal(t, http.StatusFound, resp.StatusCode, "another client behind the proxy")
		resp, _ = get(t, gw)
		assert.Equal(t, http.StatusFound, resp.StatusCode, "the proxy itself")
		resp, _ = get(t, gw, "203.0.113.1:4711")
		assert.Equal(t, http.StatusFound, resp.StatusCode, "malformed: the proxy's own key")
	})
}

func TestRateLimitAPIPerUser(t *testing.T) {
	be := startBackend(t, nil)
	clk := newFakeClock()
	bySub := AuthenticatorFunc(func(ctx *fasthttp.RequestCtx) (upstream.Identity, bool) {
		return upstream.Identity{Sub: string(ctx.Request.Header.Peek("X-Test-Sub"))}, true
	})
	cfg := Config{APIRateLimitPerUser: RateLimit{Requests: 3, Window: time.Minute}}
	gw := startLimitedGateway(t, defaultBackendYAML(be.URL), cfg, withClock(clk, func(d *Deps) { d.Auth = bySub }))
	as := func(sub string) (*http.Response, string) {
		return do(t, http.MethodGet, gw.URL+"/api/x", http.Header{"X-Test-Sub": {sub}}, nil)
	}
	for range 3 {
		resp, _ := as("alice")
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	resp, body := as("alice")
	assertRateLimited(t, resp, body, "3", "60")
	assert.Equal(t, int64(3), be.hits.Load(), "the refused request never reached the backend")

	resp, _ = as("bob")
	assert.Equal(t, http.StatusOK, resp.StatusCode, "another subject")
	resp, _ = do(t, http.MethodGet, gw.URL+"/auth/login", nil, nil)
	assert.Equal(t, http.StatusFound, resp.StatusCode, "/auth has its own limit")
	clk.Advance(time.Minute)
	resp, _ = as("alice")
	assert.Equal(t, http.StatusOK, resp.StatusCode, "the next window")
}

// Shared limits on a real redis-server.

func redisClient(t testing.TB, srv *redistest.Server) rueidis.Client {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr()}, DisableCache: true})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

// sendWoken plays the background sender of l when it was woken: what run
// does, synchronously.
func sendWoken[K comparable](l *limiter[K]) {
	select {
	case <-l.wake:
		l.flush(context.Background())
	default:
	}
}

// counterKey is the Redis key of key's count in the window of now.
func counterKey(l *limiter[netip.Addr], key netip.Addr, now time.Time) string {
	sum := sha256.Sum256([]byte(key.String()))
	return l.prefix + hex.EncodeToString(sum[:]) + "}:" + strconv.FormatInt(now.UnixMilli()/l.windowMs, 10)
}

func TestRateLimitRedisShared(t *testing.T) {
	srv := redistest.Start(t)
	ip := netip.MustParseAddr("198.51.100.7")
	const share = 3 // ceil(60/20)
	for i, background := range []bool{true, false} {
		t.Run(fmt.Sprintf("background sends %v", background), func(t *testing.T) {
			clk := newFakeClock()
			clk.Advance(time.Duration(i) * time.Hour) // a fresh window each
			a := newIPLimiter(perMinute60, 1000, newRedisCounters(redisClient(t, srv)), clk, zap.NewNop())
			b := newIPLimiter(perMinute60, 1000, newRedisCounters(redisClient(t, srv)), clk, zap.NewNop())
			allowed := 0
			for i := range 200 {
				l := a
				if i%2 == 1 {
					l = b
				}
				if l.allow(ip).allowed {
					allowed++
				}
				if background {
					sendWoken(l)
				}
			}
			t.Logf("two instances admitted %d", allowed)
			assert.GreaterOrEqual(t, allowed, 60)
			assert.LessOrEqual(t, allowed, 60+(2-1)*share, "the documented bound: L + (N-1)*S")
			assert.False(t, a.down.Load() || b.down.Load())

			key := counterKey(a, ip, clk.Now())
			n, err := srv.Do("GET", key)
			require.NoError(t, err)
			count, _ := strconv.Atoi(n.(string))
			assert.LessOrEqual(t, count, allowed)
			assert.Greater(t, count, 60-2*share, "Redis has all but the unsent")
			ttl, err := srv.Do("PTTL", key)
			require.NoError(t, err)
			assert.Greater(t, ttl.(int64), int64(0))
			assert.LessOrEqual(t, ttl.(int64), int64(70_000), "the window's end plus 10 s")

			clk.Advance(time.Minute)
			assert.True(t, a.allow(ip).allowed, "the next window")
			assert.True(t, b.allow(ip).allowed, "the next window")
		})
	}
}

// TestRateLimitRedisConcurrent runs two instances' limiters, their senders
// and many requests at once (for the race detector) and checks the bound.
func TestRateLimitRedisConcurrent(t *testing.T) {
	srv := redistest.Start(t)
	clk := newFakeClock()
	core, logs := observer.New(zapcore.WarnLevel)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	var limiters []*limiter[netip.Addr]
	for range 2 {
		l := newIPLimiter(perMinute60, 1000, newRedisCounters(redisClient(t, srv)), clk, zap.New(core))
		limiters = append(limiters, l)
		wg.Add(1)
		go func() { defer wg.Done(); l.run(ctx) }()
	}
	ip := netip.MustParseAddr("198.51.100.7")
	var allowed atomic.Int64
	var req sync.WaitGroup
	for g := range 8 {
		req.Add(1)
		go func() {
			defer req.Done()
			for range 100 {
				if limiters[g%2].allow(ip).allowed {
					allowed.Add(1)
				}
			}
		}()
	}
	req.Wait()
	assert.GreaterOrEqual(t, allowed.Load(), int64(60))
	if logs.Len() > 0 {
		t.Logf("redis answered late (%s): per-instance limits applied, bound not checked", logs.All()[0].Message)
		return
	}
	assert.LessOrEqual(t, allowed.Load(), int64(60+3))
}

func TestRateLimitRedisDownFailsOpenLocally(t *testing.T) {
	srv := redistest.Start(t)
	clk := newFakeClock()
	core, logs := observer.New(zapcore.InfoLevel)
	l := newIPLimiter(perMinute60, 1000, newRedisCounters(redisClient(t, srv)), clk, zap.New(core))
	ip := netip.MustParseAddr("198.51.100.7")
	for range 10 {
		require.True(t, l.allow(ip).allowed)
		sendWoken(l)
	}
	require.False(t, l.down.Load())

	srv.Kill()
	allowed := 10
	for range 100 {
		if l.allow(ip).allowed {
			allowed++
		}
		sendWoken(l)
	}
	assert.True(t, l.down.Load())
	assert.Equal(t, 60, allowed, "per instance, the limit still holds")
	for range 5 {
		l.flush(context.Background()) // the retries of the background sender
	}
	warns := logs.FilterMessage("rate limit counters unavailable: limiting per instance until redis answers")
	assert.Equal(t, 1, warns.Len(), "logged once")

	srv.Restart(t)
	require.Eventually(t, func() bool {
		l.flush(context.Background())
		return !l.down.Load()
	}, 10*time.Second, 20*time.Millisecond)
	assert.Equal(t, 1, logs.FilterMessage("rate limit counters available again").Len())
	// The restarted server (no persistence) lost the 9 it had counted;
	// the 51 it had not (1 from before the outage, 50 during it) were
	// sent when it came back.
	n, err := srv.Do("GET", counterKey(l, ip, clk.Now()))
	require.NoError(t, err)
	assert.Equal(t, "51", n)
}

// TestRateLimitRedisCost measures Redis commands per 1,000 requests on the
// limited path (each key's background send played at once when woken).
func TestRateLimitRedisCost(t *testing.T) {
	srv := redistest.Start(t)
	client := redisClient(t, srv)
	scenarios := []struct {
		name      string
		rl        RateLimit
		instances int
		keys      int   // requests go round-robin over the keys; a key's next request to the next instance
		sent      int64 // EVALSHA (and EVAL) expected at most
	}{
		{name: "one client flooding /auth, one instance", rl: perMinute60, instances: 1, keys: 1, sent: 21},
		{name: "one client flooding /auth, two instances", rl: perMinute60, instances: 2, keys: 1, sent: 22},
		{name: "1000 clients, one request each", rl: perMinute60, instances: 2, keys: 1000, sent: 0},
		{name: "500 clients, two requests each (sign-in)", rl: perMinute60, instances: 2, keys: 500, sent: 0},
		{name: "100 clients, ten requests each, two instances", rl: perMinute60, instances: 2, keys: 100, sent: 200},
		{name: "one user at 600/m on /api, one instance", rl: RateLimit{Requests: 600, Window: time.Minute}, instances: 1, keys: 1, sent: 21},
	}
	for i, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			clk := newFakeClock()
			clk.Advance(time.Duration(i) * time.Hour) // fresh windows
			var ls []*limiter[netip.Addr]
			for range sc.instances {
				ls = append(ls, newIPLimiter(sc.rl, 100_000, newRedisCounters(client), clk, zap.NewNop()))
			}
			before, beforeAll := scriptCalls(srv.CommandStats(t)), srv.CommandCalls(t)
			allowed := 0
			for r := range 1000 {
				l := ls[(r/sc.keys)%sc.instances]
				key := netip.AddrFrom4([4]byte{203, 0, byte((r % sc.keys) >> 8), byte(r % sc.keys)})
				if l.allow(key).allowed {
					allowed++
				}
				sendWoken(l)
			}
			sent := scriptCalls(srv.CommandStats(t)) - before
			all := srv.CommandCalls(t) - beforeAll
			t.Logf("%-46s %4d admitted: %3d commands sent, %3d run by Redis (script internals too) per 1,000 requests",
				sc.name, allowed, sent, all)
			assert.LessOrEqual(t, sent, sc.sent)
		})
	}
}

// scriptCalls is the number of scripts run: the commands the limiter sends.
func scriptCalls(stats map[string]int64) int64 { return stats["evalsha"] + stats["eval"] }

// fakeCounters is a counterStore in memory that answers at once.
type fakeCounters struct {
	mu sync.Mutex
	m  map[string]int64
}

func (f *fakeCounters) add(_ context.Context, ops []counterOp) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range ops {
		f.m[ops[i].key] += ops[i].n
		ops[i].total = f.m[ops[i].key]
	}
}

// BenchmarkRateLimitAllow is one request below the limit of a known key:
// in process, and shared (with a store answering at once, its sender
// running), one goroutine and all.
func BenchmarkRateLimitAllow(b *testing.B) {
	huge := RateLimit{Requests: 1_000_000_000, Window: 24 * time.Hour}
	ip := netip.MustParseAddr("198.51.100.7")
	run := func(b *testing.B, store counterStore, parallel bool) {
		l := newLimiter("auth", huge, 100_000, store, time.Now, hashAddr, addrText, zap.NewNop())
		if store != nil {
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); l.run(ctx) }()
			b.Cleanup(func() { cancel(); <-done })
		}
		l.allow(ip)
		b.ReportAllocs()
		b.ResetTimer()
		if !parallel {
			for b.Loop() {
				if !l.allow(ip).allowed {
					b.Fatal("refused")
				}
			}
			return
		}
		var n atomic.Uint32
		b.RunParallel(func(pb *testing.PB) {
			// One key per goroutine, as distinct clients are.
			k := netip.AddrFrom4([4]byte{198, 51, 100, byte(n.Add(1))})
			for pb.Next() {
				if !l.allow(k).allowed {
					b.Error("refused")
					return
				}
			}
		})
	}
	b.Run("in-process", func(b *testing.B) { run(b, nil, false) })
	b.Run("shared", func(b *testing.B) { run(b, &fakeCounters{m: map[string]int64{}}, false) })
	b.Run("in-process-parallel", func(b *testing.B) { run(b, nil, true) })
	b.Run("shared-parallel", func(b *testing.B) { run(b, &fakeCounters{m: map[string]int64{}}, true) })
}
