package sessioncache

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apigetaway/getaway/sessioncache/redistest"
	"github.com/redis/rueidis"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// Behaviour only the Redis store has: invalidation between instances,
// steady-state command count, outages, the no-tracking fallback, cluster
// detection.

func single(t testing.TB) []*redistest.Server { return []*redistest.Server{shared.Server(t)} }

// Two stores on one server are two gateway instances: a delete on one must
// stop the other from serving the session from its memory, within the
// invalidation latency, and close its watchers.
func TestRedisInvalidationAcrossInstances(t *testing.T) {
	ctx := context.Background()
	nodes := single(t)
	prefix := uniquePrefix()
	a := newTestRedis(t, nodes, Config{KeyPrefix: prefix}, nil)
	b := newTestRedis(t, nodes, Config{KeyPrefix: prefix}, nil)

	mustPut(t, a, "sid", testSession("alice"))
	first := mustGet(t, b, "sid")
	if again := mustGet(t, b, "sid"); again != first {
		t.Fatal("B's second GetSession was not served from process memory")
	}
	gone, cancel := b.Watch("sid")
	defer cancel()
	waitFor(t, time.Second, "B's first check of the watched session", func() bool { return b.watchChecks.Load() >= 1 })
	if isClosed(gone) {
		t.Fatal("watch of a live session closed")
	}

	// A replaces the session (a token refresh): B sees the new version, and
	// its watch stays open.
	checks := b.watchChecks.Load()
	v2 := testSession("alice")
	v2.Version = 2
	mustPut(t, a, "sid", v2)
	waitFor(t, time.Second, "B sees version 2", func() bool {
		s, err := b.GetSession(ctx, "sid")
		return err == nil && s.Version == 2
	})
	waitFor(t, time.Second, "B re-checks the watched session", func() bool { return b.watchChecks.Load() > checks })
	if isClosed(gone) {
		t.Fatal("replacing the session closed its watch")
	}

	// A deletes it: B refuses it and closes its watchers.
	start := time.Now()
	if err := a.DeleteSession(ctx, "sid"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "B refuses the session deleted on A", func() bool {
		_, err := b.GetSession(ctx, "sid")
		return errors.Is(err, ErrNotFound)
	})
	refused := time.Since(start)
	waitClosed(t, gone, time.Second, "session deleted on another instance")
	t.Logf("deleted on A: refused on B after %v, B's watch closed after %v", refused, time.Since(start))
}

// DESIGN.md section 4: < 1 Redis command per 1,000 authenticated requests
// in steady state. Here: 10,000 lookups of a cached session.
func TestRedisSteadyStateCommands(t *testing.T) {
	srv := redistest.Start(t) // its own server: nothing else may count
	r := newTestRedis(t, []*redistest.Server{srv}, Config{}, nil)
	mustPut(t, r, "sid", testSession("alice"))
	want := mustGet(t, r, "sid") // warm-up: the one fetch
	r.drainJobs(t)
	if st := r.Stats(); st != (Stats{Misses: 1}) {
		t.Fatalf("after the first lookup: Stats %+v, want one miss", st)
	}

	before := srv.CommandStats(t)
	const lookups = 10_000
	for range lookups {
		if got := mustGet(t, r, "sid"); got != want {
			t.Fatal("GetSession was not served from process memory")
		}
	}
	r.drainJobs(t)
	after := srv.CommandStats(t)

	total := int64(0)
	var detail []string
	for name, n := range after {
		// Our own INFO calls, and rueidis' keep-alive PINGs on idle
		// connections, are not caused by the lookups.
		if name == "info" || name == "ping" {
			continue
		}
		if d := n - before[name]; d > 0 {
			total += d
			detail = append(detail, name+"="+strconv.FormatInt(d, 10))
		}
	}
	t.Logf("%d lookups caused %d Redis commands %v", lookups, total, detail)
	if st := r.Stats(); st != (Stats{Hits: lookups, Misses: 1}) {
		t.Fatalf("Stats %+v, want %d hits and the one miss", st, lookups)
	}
	if total >= 10 {
		t.Fatalf("%d lookups of a cached session caused %d Redis commands (%v), want < 10", lookups, total, detail)
	}
}

// While Redis is down, lookups fail fast with ErrUnavailable (503), never
// ErrNotFound (401) and never a stale session; once it is back, the store
// works again without being recreated.
func TestRedisUnavailableWhileDown(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	r := newTestRedis(t, []*redistest.Server{srv}, Config{CommandTimeout: defaultCommandTimeout}, nil)
	mustPut(t, r, "sid", testSession("alice"))
	mustGet(t, r, "sid")
	gone, cancel := r.Watch("sid")
	defer cancel()
	waitFor(t, time.Second, "first check of the watched session", func() bool { return r.watchChecks.Load() >= 1 })

	srv.Kill()
	waitFor(t, 2*time.Second, "GetSession fails with ErrUnavailable after Redis died", func() bool {
		_, err := r.GetSession(ctx, "sid")
		if errors.Is(err, ErrNotFound) {
			t.Fatalf("GetSession reported the session gone while Redis is down: %v", err)
		}
		return errors.Is(err, ErrUnavailable)
	})
	for range 3 {
		start := time.Now()
		if _, err := r.GetSession(ctx, "sid"); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("GetSession while Redis is down: %v, want ErrUnavailable", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("GetSession while Redis is down took %v, want <= 2s", d)
		}
	}
	if err := r.Ping(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Ping while Redis is down: %v, want ErrUnavailable", err)
	}
	if err := r.PutSession(ctx, "other", testSession("bob")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("PutSession while Redis is down: %v, want ErrUnavailable", err)
	}
	if isClosed(gone) {
		t.Fatal("watch closed while Redis is down: the session may still exist")
	}

	srv.Restart(t)
	waitFor(t, 5*time.Second, "the store works again after Redis restarted", func() bool {
		return r.PutSession(ctx, "sid-new", testSession("bob")) == nil
	})
	mustGet(t, r, "sid-new")
	// The restarted server kept nothing (no persistence): the old session
	// is gone, and its watcher learns it from the re-check.
	mustNotFound(t, r, "sid")
	waitClosed(t, gone, 5*time.Second, "session lost in the restart")
}

// With client-side caching off there is nothing to invalidate: every
// lookup asks Redis, so a delete on one instance is seen by the next
// lookup on another, and Watch polls.
func TestRedisWithoutClientCache(t *testing.T) {
	ctx := context.Background()
	nodes := single(t)
	cfg := Config{KeyPrefix: uniquePrefix(), DisableClientCache: true}
	a := newTestRedis(t, nodes, cfg, nil)
	b := newTestRedis(t, nodes, cfg, nil)
	if a.cached || b.cached {
		t.Fatal("DisableClientCache did not turn client-side caching off")
	}
	mustPut(t, a, "sid", testSession("alice"))
	mustGet(t, b, "sid")
	mustGet(t, b, "sid")
	if st := b.Stats(); st != (Stats{Misses: 2}) {
		t.Fatalf("without client-side caching: Stats %+v, want every lookup a miss", st)
	}
	gone, cancel := b.Watch("sid")
	defer cancel()
	if err := a.DeleteSession(ctx, "sid"); err != nil {
		t.Fatal(err)
	}
	mustNotFound(t, b, "sid") // at once: no cache to wait for
	waitClosed(t, gone, time.Second, "session deleted on another instance (polled)")
}

// A server without client tracking (here: CLIENT disabled, as some proxies
// and managed offerings do) makes NewRedis fall back to uncached reads and
// warn once.
func TestRedisFallsBackWithoutTracking(t *testing.T) {
	srv := redistest.Start(t, "--rename-command", "CLIENT", "")
	core, logs := observer.New(zap.WarnLevel)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := newRedis(ctx, srv.URL(), Config{KeyPrefix: uniquePrefix()}, zap.New(core), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.cached {
		t.Fatal("client-side caching on although the server cannot track")
	}
	if n := logs.FilterMessageSnippet("client-side caching").Len(); n != 1 {
		t.Fatalf("%d fallback warnings, want 1: %v", n, logs.All())
	}
	mustPut(t, r, "sid", testSession("alice"))
	mustGet(t, r, "sid")
	if err := r.DeleteSession(ctx, "sid"); err != nil {
		t.Fatal(err)
	}
	mustNotFound(t, r, "sid")
}

// A gateway whose clock is ahead of the TTL (or a session stored with a
// later TTL by mistake) still never serves a session past its absolute
// expiry, and deletes it.
func TestRedisPastAbsoluteExpiryIsDeleted(t *testing.T) {
	nodes := single(t)
	clock := &testClock{}
	r := newTestRedis(t, nodes, Config{}, clock)
	s := testSession("alice")
	s.AbsoluteExpiresAt = clock.after(time.Hour)
	mustPut(t, r, "sid", s)
	mustGet(t, r, "sid")
	clock.advance(time.Hour + time.Second) // the key's TTL is untouched
	mustNotFound(t, r, "sid")
	r.drainJobs(t)
	key := r.keys.sessionKey(digestOf("sid"))
	if n, err := nodes[0].Do("EXISTS", key); err != nil || n.(int64) != 0 {
		t.Fatalf("EXISTS session = %v, %v; want it deleted", n, err)
	}
	userKey := r.keys.userKey(digestOf("alice"))
	if n, err := nodes[0].Do("SISMEMBER", userKey, digestOf("sid").String()); err != nil || n.(int64) != 0 {
		t.Fatalf("SISMEMBER = %v, %v; want the session removed from its user's index", n, err)
	}
}

// The touch script extends a session once per interval however many
// instances ask, and never revives a deleted one.
func TestRedisTouchScript(t *testing.T) {
	ctx := context.Background()
	nodes := single(t)
	r := newTestRedis(t, nodes, Config{}, nil)
	mustPut(t, r, "sid", testSession("alice"))
	key := r.keys.sessionKey(digestOf("sid"))
	touch := func() int64 {
		t.Helper()
		n, err := touchScript.Exec(ctx, r.client, []string{key},
			[]string{strconv.FormatInt((8 * time.Hour).Milliseconds(), 10), strconv.FormatInt((5 * time.Minute).Milliseconds(), 10)}).AsInt64()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := touch(); n != 0 {
		t.Fatal("touch of a fresh session extended it")
	}
	if _, err := nodes[0].Do("PEXPIRE", key, strconv.FormatInt((7*time.Hour).Milliseconds(), 10)); err != nil {
		t.Fatal(err)
	}
	if n := touch(); n != 1 {
		t.Fatal("touch of an hour-old session did not extend it")
	}
	if n := touch(); n != 0 {
		t.Fatal("second touch within the interval extended it again")
	}
	if err := r.DeleteSession(ctx, "sid"); err != nil {
		t.Fatal(err)
	}
	if n := touch(); n != 0 {
		t.Fatal("touch of a deleted session")
	}
	if n, _ := nodes[0].Do("EXISTS", key); n.(int64) != 0 {
		t.Fatal("touch revived a deleted session")
	}
}

func TestRedisClusterDetection(t *testing.T) {
	nodes := shared.Cluster(t)
	for _, tc := range []struct {
		name  string
		nodes []*redistest.Server
	}{
		{"all nodes", nodes},
		{"one node", nodes[1:2]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRedis(t, tc.nodes, Config{}, nil)
			if m := r.client.Mode(); m != rueidis.ClientModeCluster {
				t.Fatalf("mode = %q, want cluster", m)
			}
			// Sessions spread over the slots of all three nodes.
			for i := range 30 {
				id := "sid-" + strconv.Itoa(i)
				mustPut(t, r, id, testSession("alice"))
				mustGet(t, r, id)
			}
			if n, err := r.DeleteUserSessions(context.Background(), "alice"); n != 30 || err != nil {
				t.Fatalf("DeleteUserSessions = %d, %v; want 30", n, err)
			}
		})
	}
}

func TestParseRedisURL(t *testing.T) {
	for _, tc := range []struct {
		name       string
		url        string
		addrs      []string
		tls        bool
		serverName string
		user, pass string
		db         int
		dial       time.Duration
	}{
		{name: "plain", url: "redis://127.0.0.1:6379", addrs: []string{"127.0.0.1:6379"}},
		{name: "default port", url: "redis://cache", addrs: []string{"cache:6379"}},
		{name: "tls with auth and db", url: "rediss://app:s3cret@cache.example.com:6380/2",
			addrs: []string{"cache.example.com:6380"}, tls: true, serverName: "cache.example.com", user: "app", pass: "s3cret", db: 2},
		{name: "cluster list", url: "redis://h1:7000,h2:7001,h3:7002",
			addrs: []string{"h1:7000", "h2:7001", "h3:7002"}},
		{name: "cluster list with tls, auth and options", url: "rediss://:pw@h1:7000, h2:7001?dial_timeout=1s",
			addrs: []string{"h1:7000", "h2:7001"}, tls: true, pass: "pw", dial: time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opt, err := parseRedisURL(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(opt.InitAddress, " ") != strings.Join(tc.addrs, " ") {
				t.Errorf("InitAddress = %q, want %q", opt.InitAddress, tc.addrs)
			}
			if (opt.TLSConfig != nil) != tc.tls {
				t.Errorf("TLS = %v, want %v", opt.TLSConfig != nil, tc.tls)
			}
			if opt.TLSConfig != nil && opt.TLSConfig.ServerName != tc.serverName {
				t.Errorf("ServerName = %q, want %q", opt.TLSConfig.ServerName, tc.serverName)
			}
			if opt.Username != tc.user || opt.Password != tc.pass || opt.SelectDB != tc.db || opt.Dialer.Timeout != tc.dial {
				t.Errorf("user, password, db, dial timeout = %q, %q, %d, %v", opt.Username, opt.Password, opt.SelectDB, opt.Dialer.Timeout)
			}
		})
	}
	for _, bad := range []string{
		"127.0.0.1:6379",
		"http://cache:6379",
		"redis://h1:7000,,h2:7001",
		"redis://app:hunter2@cache:notaport",
	} {
		if _, err := parseRedisURL(bad); err == nil {
			t.Errorf("parseRedisURL(%q) succeeded", bad)
		} else if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error for %q reveals the password: %v", bad, err)
		}
	}
}

func TestNewRedisErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := NewRedis(ctx, "redis://127.0.0.1:1", Config{IdleTimeout: -time.Second}, nil); err == nil ||
		!strings.Contains(err.Error(), "idleTimeout") {
		t.Errorf("invalid config: %v", err)
	}
	// A loopback port that was free a moment ago: nothing listens there.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	start := time.Now()
	_, err = NewRedis(ctx, "redis://app:hunter2@127.0.0.1:"+strconv.Itoa(port), Config{}, nil)
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("nothing listening: %v, want ErrUnavailable", err)
	}
	if err != nil && strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error reveals the password: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("NewRedis with nothing listening took %v", d)
	}
}

// The decoded layer never keeps more than MaxCachedSessions.
func TestRedisLocalCacheBounded(t *testing.T) {
	r := newTestRedis(t, single(t), Config{MaxCachedSessions: localShardCount}, nil)
	for i := range 300 {
		id := "sid-" + strconv.Itoa(i)
		mustPut(t, r, id, testSession("user-"+strconv.Itoa(i)))
		if got := mustGet(t, r, id); got.Sub != "user-"+strconv.Itoa(i) {
			t.Fatalf("GetSession(%s).Sub = %q", id, got.Sub)
		}
	}
	if n := r.local.len(); n > localShardCount {
		t.Fatalf("local layer holds %d records, want <= %d", n, localShardCount)
	}
}

// An invalidation that arrives between the fetch and the insert must keep
// the fetched (possibly stale) value out of the decoded layer; a lost
// connection (nil invalidation) drops everything.
func TestLocalCacheGenerations(t *testing.T) {
	var c localCache
	c.init(100)
	d := digestOf("sid")
	e := &localEntry{s: testSession("alice"), expires: time.Now().Add(time.Minute).UnixNano()}

	gen := c.generation(d)
	c.invalidate(d) // arrives while "fetching"
	if rec := c.store(d, gen, e); rec.val.Load() != nil {
		t.Fatal("stored a value fetched before an invalidation")
	}
	gen = c.generation(d)
	if rec := c.store(d, gen, e); rec.val.Load() != e {
		t.Fatal("did not store a value fetched after the last invalidation")
	}
	gen = c.generation(d)
	c.flush()
	if c.lookup(d).val.Load() != nil {
		t.Fatal("flush kept a value")
	}
	if rec := c.store(d, gen, e); rec.val.Load() != nil {
		t.Fatal("stored a value fetched before a flush")
	}
}

// A lost connection flushes the decoded layer (rueidis calls
// OnInvalidations with nil).
func TestRedisFlushOnNilInvalidation(t *testing.T) {
	r := newTestRedis(t, single(t), Config{}, nil)
	mustPut(t, r, "sid", testSession("alice"))
	mustGet(t, r, "sid")
	if rec := r.local.lookup(digestOf("sid")); rec == nil || rec.val.Load() == nil {
		t.Fatal("session not cached after GetSession")
	}
	r.onInvalidations(nil)
	if r.local.lookup(digestOf("sid")).val.Load() != nil {
		t.Fatal("nil invalidation kept the cached session")
	}
}

// Close stops every goroutine the store (and rueidis) started.
func TestRedisCloseStopsGoroutines(t *testing.T) {
	nodes := single(t) // the shared server's reaper goroutine predates the check
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ctx := context.Background()
	r := newTestRedis(t, nodes, Config{}, nil)
	mustPut(t, r, "sid", testSession("alice"))
	mustGet(t, r, "sid")
	_, cancel := r.Watch("sid")
	defer cancel()
	release, ok, err := r.AcquireRefreshLock(ctx, "sid", time.Second)
	if err != nil || !ok {
		t.Fatalf("AcquireRefreshLock = %v, %v", ok, err)
	}
	release()
	r.Close()
}
