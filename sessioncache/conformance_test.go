package sessioncache

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apigetaway/getaway/sessioncache/redistest"
)

// The conformance suite: every Store implementation must pass it. It is
// run for Memory, Redis (single node) and Redis (cluster).

func TestMemoryConformance(t *testing.T) {
	runStoreConformance(t, memoryHarness)
}

func TestRedisConformance(t *testing.T) {
	nodes := []*redistest.Server{shared.Server(t)}
	runStoreConformance(t, redisHarness(nodes))
}

func TestRedisClusterConformance(t *testing.T) {
	nodes := shared.Cluster(t)
	runStoreConformance(t, redisHarness(nodes))
}

// testClock is the clock a store under test sees: real time plus an offset
// that tests move forward.
type testClock struct{ off atomic.Int64 }

func (c *testClock) now() time.Time              { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *testClock) advance(d time.Duration)     { c.off.Add(int64(d)) }
func (c *testClock) unix() int64                 { return c.now().Unix() }
func (c *testClock) after(d time.Duration) int64 { return c.now().Add(d).Unix() }

// harness is a Store under test plus control over time as the store sees it.
type harness struct {
	Store
	clock *testClock
	// elapse moves the store's time forward by d: its clock and, for Redis,
	// every TTL it stored (keys whose TTL runs out are deleted), so nothing
	// waits for real time to pass.
	elapse func(t *testing.T, d time.Duration)
	// sessionTTL returns the remaining life of the session under id, or a
	// negative value when there is none.
	sessionTTL func(t *testing.T, id string) time.Duration
	// settle waits for the store's background work to finish (Redis: the
	// queued touches; Memory: runs the sweep).
	settle func(t *testing.T)
	// keys lists the store's keys in the backend; nil for Memory.
	keys func(t *testing.T) []string
}

type harnessFactory func(t *testing.T, cfg Config) *harness

func memoryHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	clock := &testClock{}
	m, err := newMemory(cfg, clock.now, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return &harness{
		Store:  m,
		clock:  clock,
		elapse: func(_ *testing.T, d time.Duration) { clock.advance(d) },
		sessionTTL: func(_ *testing.T, id string) time.Duration {
			sh := m.shard(id)
			sh.mu.RLock()
			e := sh.m[id]
			sh.mu.RUnlock()
			if e == nil {
				return -1
			}
			return time.Duration(min(e.expires.Load(), e.absNs) - clock.now().UnixNano())
		},
		settle: func(*testing.T) { m.sweep() },
	}
}

var prefixSeq atomic.Int64

// uniquePrefix gives each store under test its own keys on the shared servers.
func uniquePrefix() string { return fmt.Sprintf("t%d:", prefixSeq.Add(1)) }

// newTestRedis returns a Redis store on nodes, closed at the end of the
// test. A zero cfg.KeyPrefix becomes a prefix unique to this store, and a
// zero cfg.CommandTimeout 5s: test machines can be loaded enough for the
// 2s default to flake (tests of timeouts set it explicitly).
func newTestRedis(t testing.TB, nodes []*redistest.Server, cfg Config, clock *testClock) *Redis {
	t.Helper()
	if cfg.KeyPrefix == "" {
		cfg.KeyPrefix = uniquePrefix()
	}
	if cfg.CommandTimeout == 0 {
		cfg.CommandTimeout = 5 * time.Second
	}
	if clock == nil {
		clock = &testClock{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := newRedis(ctx, redistest.ClusterURL(nodes), cfg, nil, clock.now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// drainJobs waits until every background job queued so far has run.
func (r *Redis) drainJobs(t testing.TB) {
	t.Helper()
	done := make(chan struct{})
	select {
	case r.jobs <- job{kind: jobBarrier, done: done}:
	case <-time.After(5 * time.Second):
		t.Fatal("job queue stuck")
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("background jobs did not finish within 5s")
	}
}

// redisHarness returns a factory of Redis stores on nodes. Their elapse
// rewrites the TTL of every key of the store.
func redisHarness(nodes []*redistest.Server) harnessFactory {
	return func(t *testing.T, cfg Config) *harness {
		t.Helper()
		return newRedisHarness(t, nodes, cfg)
	}
}

func newRedisHarness(t *testing.T, nodes []*redistest.Server, cfg Config) *harness {
	t.Helper()
	clock := &testClock{}
	if cfg.KeyPrefix == "" {
		cfg.KeyPrefix = uniquePrefix()
	}
	r := newTestRedis(t, nodes, cfg, clock)
	keysOf := func(t *testing.T, n *redistest.Server) []string {
		t.Helper()
		reply, err := n.Do("KEYS", cfg.KeyPrefix+"*")
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, k := range reply.([]any) {
			keys = append(keys, k.(string))
		}
		return keys
	}
	return &harness{
		Store: r,
		clock: clock,
		elapse: func(t *testing.T, d time.Duration) {
			t.Helper()
			clock.advance(d)
			for _, n := range nodes {
				for _, k := range keysOf(t, n) {
					reply, err := n.Do("PTTL", k)
					if err != nil {
						t.Fatal(err)
					}
					pttl := reply.(int64)
					if pttl < 0 {
						continue
					}
					if left := pttl - d.Milliseconds(); left > 0 {
						_, err = n.Do("PEXPIRE", k, fmt.Sprint(left))
					} else {
						_, err = n.Do("DEL", k)
					}
					if err != nil {
						t.Fatal(err)
					}
				}
			}
		},
		sessionTTL: func(t *testing.T, id string) time.Duration {
			t.Helper()
			reply, err := redistest.DoKeyed(nodes, "PTTL", r.keys.sessionKey(digestOf(id)))
			if err != nil {
				t.Fatal(err)
			}
			if ms := reply.(int64); ms >= 0 {
				return time.Duration(ms) * time.Millisecond
			}
			return -1
		},
		settle: func(t *testing.T) { r.drainJobs(t) },
		keys: func(t *testing.T) []string {
			var all []string
			for _, n := range nodes {
				all = append(all, keysOf(t, n)...)
			}
			return all
		},
	}
}

// waitFor polls cond until it holds, failing the test after within.
func waitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func waitClosed(t testing.TB, ch <-chan struct{}, within time.Duration, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(within):
		t.Fatalf("%s: watch channel not closed within %v", what, within)
	}
}

func testSession(sub string) *Session {
	return &Session{
		Sub:          sub,
		Email:        sub + "@example.com",
		Name:         "Test " + sub,
		Picture:      "https://example.com/" + sub + ".png",
		Groups:       []string{"admins", "users"},
		AccessToken:  "access-" + sub,
		RefreshToken: "refresh-" + sub,
		IDToken:      "id-" + sub,
		Version:      1,
	}
}

func mustGet(t testing.TB, s Store, id string) *Session {
	t.Helper()
	got, err := s.GetSession(context.Background(), id)
	if err != nil {
		t.Fatalf("GetSession: %v", err)
	}
	return got
}

func mustNotFound(t testing.TB, s Store, id string) {
	t.Helper()
	got, err := s.GetSession(context.Background(), id)
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetSession = %+v, %v; want ErrNotFound", got, err)
	}
}

func mustPut(t testing.TB, s Store, id string, sess *Session) {
	t.Helper()
	if err := s.PutSession(context.Background(), id, sess); err != nil {
		t.Fatalf("PutSession: %v", err)
	}
}

func runStoreConformance(t *testing.T, newHarness harnessFactory) {
	ctx := context.Background()

	t.Run("put get delete", func(t *testing.T) {
		h := newHarness(t, Config{})
		in := testSession("alice")
		mustPut(t, h, "sid-1", in)
		in.Email = "changed@example.com" // the store keeps a copy
		in.Groups[0] = "changed"

		got := mustGet(t, h, "sid-1")
		if got.Sub != "alice" || got.Email != "alice@example.com" || got.Name != "Test alice" ||
			got.Picture != "https://example.com/alice.png" || strings.Join(got.Groups, ",") != "admins,users" ||
			got.AccessToken != "access-alice" || got.RefreshToken != "refresh-alice" || got.IDToken != "id-alice" ||
			got.Version != 1 {
			t.Fatalf("GetSession = %+v", got)
		}
		if now := h.clock.unix(); got.CreatedAt < now-2 || got.CreatedAt > now {
			t.Errorf("CreatedAt = %d, want about %d", got.CreatedAt, now)
		}
		if want := got.CreatedAt + int64((7 * 24 * time.Hour).Seconds()); got.AbsoluteExpiresAt != want {
			t.Errorf("AbsoluteExpiresAt = %d, want CreatedAt+7d = %d", got.AbsoluteExpiresAt, want)
		}
		if err := h.DeleteSession(ctx, "sid-1"); err != nil {
			t.Fatal(err)
		}
		mustNotFound(t, h, "sid-1")
		if err := h.DeleteSession(ctx, "sid-1"); err != nil {
			t.Fatalf("deleting an absent session: %v", err)
		}
	})

	t.Run("not found", func(t *testing.T) {
		h := newHarness(t, Config{})
		for _, id := range []string{"never-existed", ""} {
			_, err := h.GetSession(ctx, id)
			if !errors.Is(err, ErrNotFound) || errors.Is(err, ErrUnavailable) {
				t.Errorf("GetSession(%q) error = %v, want ErrNotFound only", id, err)
			}
		}
		if _, err := h.TakeState(ctx, "never-existed"); !errors.Is(err, ErrNotFound) {
			t.Errorf("TakeState error = %v, want ErrNotFound", err)
		}
		if n, err := h.DeleteUserSessions(ctx, "nobody"); n != 0 || err != nil {
			t.Errorf("DeleteUserSessions = %d, %v; want 0, nil", n, err)
		}
		if err := h.Ping(ctx); err != nil {
			t.Errorf("Ping: %v", err)
		}
	})

	t.Run("put replaces and reads its own writes", func(t *testing.T) {
		h := newHarness(t, Config{})
		s := testSession("alice")
		mustPut(t, h, "sid", s)
		for v := int64(2); v <= 20; v++ {
			mustGet(t, h, "sid") // cache the previous version
			next := *s
			next.Version = v
			next.AccessToken = fmt.Sprintf("access-%d", v)
			mustPut(t, h, "sid", &next)
			if got := mustGet(t, h, "sid"); got.Version != v || got.AccessToken != next.AccessToken {
				t.Fatalf("after PutSession of version %d, GetSession = version %d", v, got.Version)
			}
		}
		if err := h.DeleteSession(ctx, "sid"); err != nil {
			t.Fatal(err)
		}
		mustNotFound(t, h, "sid")
	})

	t.Run("login state is single use", func(t *testing.T) {
		h := newHarness(t, Config{})
		in := &LoginState{Verifier: "verifier", Nonce: "nonce", Next: "/app?x=1", FrontendOrigin: "https://app.example.com", CreatedAt: h.clock.unix()}
		if err := h.PutState(ctx, "state-1", in); err != nil {
			t.Fatal(err)
		}
		got, err := h.TakeState(ctx, "state-1")
		if err != nil {
			t.Fatal(err)
		}
		if *got != *in {
			t.Fatalf("TakeState = %+v, want %+v", got, in)
		}
		if _, err := h.TakeState(ctx, "state-1"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("second TakeState error = %v, want ErrNotFound", err)
		}
	})

	t.Run("login state is taken once under concurrency", func(t *testing.T) {
		h := newHarness(t, Config{})
		if err := h.PutState(ctx, "contested", &LoginState{Verifier: "v", Nonce: "n"}); err != nil {
			t.Fatal(err)
		}
		const takers = 20
		var wins, misses atomic.Int32
		start := make(chan struct{})
		var wg sync.WaitGroup
		for range takers {
			wg.Go(func() {
				<-start
				st, err := h.TakeState(ctx, "contested")
				switch {
				case err == nil && st.Verifier == "v":
					wins.Add(1)
				case errors.Is(err, ErrNotFound):
					misses.Add(1)
				default:
					t.Errorf("TakeState = %+v, %v", st, err)
				}
			})
		}
		close(start)
		wg.Wait()
		if wins.Load() != 1 || misses.Load() != takers-1 {
			t.Fatalf("wins = %d, misses = %d; want 1 and %d", wins.Load(), misses.Load(), takers-1)
		}
	})

	t.Run("login state expires", func(t *testing.T) {
		h := newHarness(t, Config{StateTTL: 10 * time.Minute})
		for _, s := range []string{"early", "late"} {
			if err := h.PutState(ctx, s, &LoginState{Verifier: s}); err != nil {
				t.Fatal(err)
			}
		}
		h.elapse(t, 9*time.Minute)
		if _, err := h.TakeState(ctx, "early"); err != nil {
			t.Fatalf("TakeState after 9m of 10m: %v", err)
		}
		h.elapse(t, 2*time.Minute)
		if _, err := h.TakeState(ctx, "late"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("TakeState after 11m of 10m: error = %v, want ErrNotFound", err)
		}
	})

	t.Run("idle timeout rolls on use", func(t *testing.T) {
		h := newHarness(t, Config{IdleTimeout: 8 * time.Hour, TouchInterval: 5 * time.Minute})
		mustPut(t, h, "sid", testSession("alice"))
		if ttl := h.sessionTTL(t, "sid"); ttl < 8*time.Hour-time.Minute || ttl > 8*time.Hour {
			t.Fatalf("TTL after put = %v, want 8h", ttl)
		}
		h.elapse(t, time.Hour)
		mustGet(t, h, "sid") // touches: last touch (the put) is an hour old
		h.settle(t)
		if ttl := h.sessionTTL(t, "sid"); ttl < 8*time.Hour-time.Minute {
			t.Fatalf("TTL after use = %v, want rolled back to 8h", ttl)
		}
		// At most one touch per interval: a use a minute later changes nothing.
		h.elapse(t, time.Minute)
		mustGet(t, h, "sid")
		h.settle(t)
		if ttl := h.sessionTTL(t, "sid"); ttl > 8*time.Hour-30*time.Second {
			t.Fatalf("TTL after a second use within TouchInterval = %v, want it not extended", ttl)
		}
		// 7h30m after the touch: alive only because of it.
		h.elapse(t, 7*time.Hour+29*time.Minute)
		mustGet(t, h, "sid")
		h.settle(t)
		h.elapse(t, 8*time.Hour+time.Minute)
		mustNotFound(t, h, "sid")
	})

	t.Run("idle session expires", func(t *testing.T) {
		h := newHarness(t, Config{})
		mustPut(t, h, "sid", testSession("alice"))
		h.elapse(t, 8*time.Hour+time.Second)
		mustNotFound(t, h, "sid")
	})

	t.Run("absolute lifetime caps the idle timeout", func(t *testing.T) {
		h := newHarness(t, Config{})
		s := testSession("alice")
		s.CreatedAt = h.clock.unix()
		s.AbsoluteExpiresAt = h.clock.after(2 * time.Hour)
		mustPut(t, h, "sid", s)
		if ttl := h.sessionTTL(t, "sid"); ttl > 2*time.Hour || ttl < 2*time.Hour-time.Minute {
			t.Fatalf("TTL = %v, want 2h (the absolute expiry, not the 8h idle timeout)", ttl)
		}
		h.elapse(t, time.Hour)
		mustGet(t, h, "sid")
		h.settle(t)
		if ttl := h.sessionTTL(t, "sid"); ttl > time.Hour {
			t.Fatalf("TTL after use = %v, extended past the absolute expiry (1h left)", ttl)
		}
		h.elapse(t, time.Hour+time.Second)
		mustNotFound(t, h, "sid")
	})

	t.Run("absolute expiry is capped by AbsoluteLifetime", func(t *testing.T) {
		h := newHarness(t, Config{AbsoluteLifetime: 24 * time.Hour})
		s := testSession("alice")
		s.CreatedAt = h.clock.unix()
		s.AbsoluteExpiresAt = h.clock.after(30 * 24 * time.Hour)
		mustPut(t, h, "sid", s)
		if got := mustGet(t, h, "sid"); got.AbsoluteExpiresAt != s.CreatedAt+24*3600 {
			t.Fatalf("AbsoluteExpiresAt = %d, want CreatedAt+24h = %d", got.AbsoluteExpiresAt, s.CreatedAt+24*3600)
		}
	})

	t.Run("a session past its absolute expiry is not stored", func(t *testing.T) {
		h := newHarness(t, Config{})
		mustPut(t, h, "sid", testSession("alice"))
		old := testSession("alice")
		old.CreatedAt = h.clock.now().Add(-8 * 24 * time.Hour).Unix()
		mustPut(t, h, "sid", old)
		mustNotFound(t, h, "sid")
	})

	t.Run("refresh lock", func(t *testing.T) {
		h := newHarness(t, Config{})
		acquire := func(id string) (func(), bool) {
			t.Helper()
			release, ok, err := h.AcquireRefreshLock(ctx, id, 10*time.Second)
			if err != nil {
				t.Fatalf("AcquireRefreshLock: %v", err)
			}
			return release, ok
		}
		relA, ok := acquire("sid")
		if !ok {
			t.Fatal("first acquire failed")
		}
		relB, ok := acquire("sid")
		if ok {
			t.Fatal("second acquire succeeded while the lock is held")
		}
		relB() // a failed acquire's release is a no-op
		if _, ok := acquire("other-sid"); !ok {
			t.Fatal("the lock of another session is independent")
		}
		if _, ok := acquire("sid"); ok {
			t.Fatal("lock released by the loser's release")
		}
		relA()
		relC, ok := acquire("sid")
		if !ok {
			t.Fatal("acquire after release failed")
		}
		relA() // twice: must not release C's lock
		if _, ok := acquire("sid"); ok {
			t.Fatal("a second release of an old lock released the new holder's lock")
		}
		// C's lock expires and D takes it: C's late release must not free D's.
		h.elapse(t, 11*time.Second)
		_, ok = acquire("sid")
		if !ok {
			t.Fatal("acquire after the lock expired failed")
		}
		relC()
		if _, ok := acquire("sid"); ok {
			t.Fatal("release of an expired lock freed the next holder's lock")
		}
		if _, _, err := h.AcquireRefreshLock(ctx, "sid", 0); err == nil {
			t.Fatal("AcquireRefreshLock with ttl 0 succeeded")
		}
	})

	t.Run("delete user sessions", func(t *testing.T) {
		h := newHarness(t, Config{})
		for _, id := range []string{"a1", "a2", "a3"} {
			mustPut(t, h, id, testSession("alice"))
		}
		mustPut(t, h, "b1", testSession("bob"))
		mustGet(t, h, "a1") // cached
		gone, cancel := h.Watch("a1")
		defer cancel()
		if err := h.DeleteSession(ctx, "a2"); err != nil {
			t.Fatal(err)
		}
		n, err := h.DeleteUserSessions(ctx, "alice")
		if err != nil || n != 2 {
			t.Fatalf("DeleteUserSessions = %d, %v; want 2, nil", n, err)
		}
		for _, id := range []string{"a1", "a2", "a3"} {
			mustNotFound(t, h, id)
		}
		mustGet(t, h, "b1")
		waitClosed(t, gone, time.Second, "session deleted with its user")
		if n, err := h.DeleteUserSessions(ctx, "alice"); n != 0 || err != nil {
			t.Fatalf("second DeleteUserSessions = %d, %v; want 0, nil", n, err)
		}
	})

	t.Run("watch", func(t *testing.T) {
		h := newHarness(t, Config{})
		mustPut(t, h, "sid", testSession("alice"))
		mustGet(t, h, "sid")
		gone, cancel := h.Watch("sid")
		defer cancel()
		if isClosed(gone) {
			t.Fatal("watch of a live session closed at once")
		}
		if err := h.DeleteSession(ctx, "sid"); err != nil {
			t.Fatal(err)
		}
		waitClosed(t, gone, time.Second, "deleted session")
		cancel() // after close: no-op

		absent, cancelAbsent := h.Watch("never-existed")
		defer cancelAbsent()
		waitClosed(t, absent, time.Second, "absent session")

		mustPut(t, h, "sid2", testSession("alice"))
		cancelled, cancel2 := h.Watch("sid2")
		cancel2()
		cancel2()
		if err := h.DeleteSession(ctx, "sid2"); err != nil {
			t.Fatal(err)
		}
		if isClosed(cancelled) {
			t.Fatal("a cancelled watch was closed")
		}

		mustPut(t, h, "sid3", testSession("alice"))
		expiring, cancel3 := h.Watch("sid3")
		defer cancel3()
		h.elapse(t, 8*time.Hour+time.Second)
		h.settle(t)
		waitClosed(t, expiring, time.Second, "expired session")
	})

	t.Run("no raw identifiers in keys", func(t *testing.T) {
		h := newHarness(t, Config{})
		if h.keys == nil {
			t.Skip("store has no backend keys")
		}
		const id, sub, state = "RAW-SESSION-ID-0123", "RAW-SUBJECT-0123", "RAW-STATE-0123"
		mustPut(t, h, id, testSession(sub))
		mustGet(t, h, id)
		if err := h.PutState(ctx, state, &LoginState{Verifier: "v"}); err != nil {
			t.Fatal(err)
		}
		if _, ok, err := h.AcquireRefreshLock(ctx, id, time.Minute); !ok || err != nil {
			t.Fatalf("AcquireRefreshLock = %v, %v", ok, err)
		}
		keys := h.keys(t)
		if len(keys) != 4 {
			t.Errorf("keys = %q, want session, user index, state and lock", keys)
		}
		for _, k := range keys {
			for _, raw := range []string{id, sub, state} {
				if strings.Contains(k, raw) {
					t.Errorf("key %q contains the raw value %q", k, raw)
				}
			}
		}
		for _, raw := range []string{id, sub, state} {
			hex := digestOf(raw).String()
			found := false
			for _, k := range keys {
				found = found || strings.Contains(k, "{"+hex+"}")
			}
			if !found {
				t.Errorf("no key carries the digest of %q in a hash tag: %q", raw, keys)
			}
		}
	})

	t.Run("concurrent use", func(t *testing.T) {
		h := newHarness(t, Config{})
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := range 50 {
					id := fmt.Sprintf("sid-%d-%d", g, i%5)
					if err := h.PutSession(ctx, id, testSession(fmt.Sprintf("user-%d", g))); err != nil {
						t.Error(err)
						return
					}
					if _, err := h.GetSession(ctx, id); err != nil && !errors.Is(err, ErrNotFound) {
						t.Error(err)
						return
					}
					if i%7 == 0 {
						if err := h.DeleteSession(ctx, id); err != nil {
							t.Error(err)
							return
						}
					}
					if i%11 == 0 {
						gone, cancel := h.Watch(id)
						_ = isClosed(gone)
						cancel()
					}
				}
			})
		}
		wg.Wait()
	})

	t.Run("closed store is unavailable", func(t *testing.T) {
		h := newHarness(t, Config{})
		mustPut(t, h, "sid", testSession("alice"))
		mustGet(t, h, "sid")
		h.Close()
		h.Close() // twice is fine
		if _, err := h.GetSession(ctx, "sid"); !errors.Is(err, ErrUnavailable) {
			t.Errorf("GetSession after Close: %v, want ErrUnavailable", err)
		}
		if err := h.PutSession(ctx, "sid", testSession("alice")); !errors.Is(err, ErrUnavailable) {
			t.Errorf("PutSession after Close: %v, want ErrUnavailable", err)
		}
		if _, err := h.TakeState(ctx, "x"); !errors.Is(err, ErrUnavailable) {
			t.Errorf("TakeState after Close: %v, want ErrUnavailable", err)
		}
		if err := h.Ping(ctx); !errors.Is(err, ErrUnavailable) {
			t.Errorf("Ping after Close: %v, want ErrUnavailable", err)
		}
	})
}
