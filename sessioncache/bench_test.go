package sessioncache

import (
	"context"
	"testing"
)

// sessionID has the shape of authflow's ids: 32 random bytes, base64url.
const benchSessionID = "q3Yx8zV1mK0pT7wR2nL5cB9dF4hJ6gA1sE8uI0oP2yQ"

func BenchmarkMemoryGetSession(b *testing.B) {
	m, err := NewMemory(Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	mustPut(b, m, benchSessionID, testSession("alice"))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.GetSession(ctx, benchSessionID); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMemoryGetSessionParallel(b *testing.B) {
	m, err := NewMemory(Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	mustPut(b, m, benchSessionID, testSession("alice"))
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := m.GetSession(ctx, benchSessionID); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkRedisGetSessionHit is the hot path: a session served from the
// decoded layer in process memory, no Redis round trip.
func BenchmarkRedisGetSessionHit(b *testing.B) {
	r := newTestRedis(b, single(b), Config{}, nil)
	mustPut(b, r, benchSessionID, testSession("alice"))
	mustGet(b, r, benchSessionID)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.GetSession(ctx, benchSessionID); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRedisGetSessionHitParallel(b *testing.B) {
	r := newTestRedis(b, single(b), Config{}, nil)
	mustPut(b, r, benchSessionID, testSession("alice"))
	mustGet(b, r, benchSessionID)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := r.GetSession(ctx, benchSessionID); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkRedisGetSessionClientCacheHit is what the decoded layer saves:
// a hit in the rueidis client-side cache, which still copies and decodes.
func BenchmarkRedisGetSessionClientCacheHit(b *testing.B) {
	r := newTestRedis(b, single(b), Config{}, nil)
	mustPut(b, r, benchSessionID, testSession("alice"))
	mustGet(b, r, benchSessionID)
	d := digestOf(benchSessionID)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		r.local.invalidate(d)
		if _, err := r.GetSession(ctx, benchSessionID); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRedisGetSessionUncached is the fallback without client-side
// caching: one GET round trip per lookup.
func BenchmarkRedisGetSessionUncached(b *testing.B) {
	r := newTestRedis(b, single(b), Config{DisableClientCache: true}, nil)
	mustPut(b, r, benchSessionID, testSession("alice"))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.GetSession(ctx, benchSessionID); err != nil {
			b.Fatal(err)
		}
	}
}
