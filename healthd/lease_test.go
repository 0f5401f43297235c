package healthd

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apigetaway/getaway/sessioncache/redistest"
	"github.com/redis/rueidis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testLeaseSemantics is what every Lease must do. key must be unused.
func testLeaseSemantics(t *testing.T, l Lease, key string) {
	ctx := context.Background()
	ttl := time.Hour

	cur, claimed, err := l.Claim(ctx, key, "a", ttl)
	require.NoError(t, err)
	assert.True(t, claimed, "first claim")
	assert.Equal(t, "a", cur)

	cur, claimed, err = l.Claim(ctx, key, "b", ttl)
	require.NoError(t, err)
	assert.False(t, claimed, "second claim")
	assert.Equal(t, "a", cur, "the value in force is the first one")

	require.NoError(t, l.Release(ctx, key, "b"))
	_, claimed, err = l.Claim(ctx, key, "c", ttl)
	require.NoError(t, err)
	assert.False(t, claimed, "release with another value leaves the key")

	require.NoError(t, l.Release(ctx, key, "a"))
	require.NoError(t, l.Release(ctx, key, "a"), "releasing twice is harmless")
	cur, claimed, err = l.Claim(ctx, key, "d", ttl)
	require.NoError(t, err)
	assert.True(t, claimed, "claim after release")
	assert.Equal(t, "d", cur)

	// Concurrent claims of one key: exactly one wins, and all see its value.
	race := key + ":race"
	var wins atomic.Int32
	values := make([]string, 16)
	var wg sync.WaitGroup
	for i := range values {
		wg.Go(func() {
			cur, claimed, err := l.Claim(ctx, race, strconv.Itoa(i), ttl)
			assert.NoError(t, err)
			if claimed {
				wins.Add(1)
			}
			values[i] = cur
		})
	}
	wg.Wait()
	assert.Equal(t, int32(1), wins.Load())
	for _, v := range values {
		assert.Equal(t, values[0], v)
	}
}

func TestMemoryLease(t *testing.T) {
	testLeaseSemantics(t, NewMemoryLease(), "k")
}

func TestMemoryLeaseExpiry(t *testing.T) {
	clk := newFakeClock()
	l := NewMemoryLease()
	l.now = clk.Now
	ctx := context.Background()
	_, claimed, err := l.Claim(ctx, "k", "a", time.Hour)
	require.NoError(t, err)
	require.True(t, claimed)
	clk.Set(time.Hour - time.Millisecond)
	_, claimed, _ = l.Claim(ctx, "k", "b", time.Hour)
	assert.False(t, claimed, "not expired yet")
	clk.Set(time.Hour)
	cur, claimed, _ := l.Claim(ctx, "k", "c", time.Hour)
	assert.True(t, claimed, "expired after ttl")
	assert.Equal(t, "c", cur)
}

// newRedisClient starts a redis-server of the test's own (skipped when not
// installed, unless CI=true) and returns a client for it.
func newRedisClient(t *testing.T) (rueidis.Client, *redistest.Server) {
	t.Helper()
	srv := redistest.Start(t)
	client, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress:  []string{srv.Addr()},
		DisableCache: true,
	})
	require.NoError(t, err)
	t.Cleanup(client.Close)
	return client, srv
}

func TestRedisLease(t *testing.T) {
	client, srv := newRedisClient(t)
	l := NewRedisLease(client)
	testLeaseSemantics(t, l, "getaway:healthd:test")

	// The ttl is set in milliseconds (SET ... NX PX).
	ctx := context.Background()
	_, claimed, err := l.Claim(ctx, "ttl", "v", 90*time.Second)
	require.NoError(t, err)
	require.True(t, claimed)
	pttl, err := srv.Do("PTTL", "ttl")
	require.NoError(t, err)
	assert.InDelta(t, 90_000, pttl, 5_000)

	// A claim survives the client: a new client (a restarted gateway)
	// sees it.
	other, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr()}, DisableCache: true})
	require.NoError(t, err)
	defer other.Close()
	cur, claimed, err := NewRedisLease(other).Claim(ctx, "ttl", "w", time.Minute)
	require.NoError(t, err)
	assert.False(t, claimed)
	assert.Equal(t, "v", cur)
}

func TestRedisLeaseExpiry(t *testing.T) {
	client, _ := newRedisClient(t)
	l := NewRedisLease(client)
	ctx := context.Background()
	_, claimed, err := l.Claim(ctx, "short", "a", 20*time.Millisecond)
	require.NoError(t, err)
	require.True(t, claimed)
	eventually(t, "the claim to expire", func() bool {
		_, claimed, err := l.Claim(ctx, "short", "b", time.Minute)
		require.NoError(t, err)
		return claimed
	})
}

func TestRedisLeaseUnavailable(t *testing.T) {
	client, srv := newRedisClient(t)
	srv.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	l := NewRedisLease(client)
	_, claimed, err := l.Claim(ctx, "k", "v", time.Minute)
	require.Error(t, err)
	assert.False(t, claimed)
	require.Error(t, l.Release(ctx, "k", "v"))
}

// Two instances sharing one Redis send one notification between them.
func TestNotifyTwoInstancesRedisLease(t *testing.T) {
	client, _ := newRedisClient(t)
	testTwoInstances(t, NewRedisLease(client))
}
