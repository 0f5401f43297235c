package healthd

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A backend that answers 200, then 500, then goes away, then comes back,
// driven synchronously by CheckNow with a fake clock.
func TestCheckNowLifecycle(t *testing.T) {
	be := newTestBackend(t)
	clk := newFakeClock()
	c := newTestChecker(t, Config{Timeout: 2 * time.Second}, WithClock(clk.Now))
	c.SetTargets([]Target{{URL: be.URL()}})
	ctx := context.Background()

	st := c.Snapshot()[be.URL()]
	assert.Equal(t, Status{Status: StatusUnknown}, st, "before the first check")

	st, err := c.CheckNow(ctx, be.URL())
	require.NoError(t, err)
	assert.Equal(t, StatusUp, st.Status)
	assert.Equal(t, ms(0), *st.LastUp)
	assert.Equal(t, ms(0), *st.LastCheck)
	assert.Nil(t, st.FirstDownAt)
	require.NotNil(t, st.LatencyMs)
	assert.GreaterOrEqual(t, *st.LatencyMs, int64(0))
	assert.Less(t, *st.LatencyMs, int64(2000))
	assert.False(t, st.NotifiedDown)

	be.set(func(b *testBackend) { b.status = http.StatusInternalServerError })
	clk.Set(time.Minute)
	st, err = c.CheckNow(ctx, be.URL())
	require.NoError(t, err)
	assert.Equal(t, StatusDown, st.Status)
	assert.Equal(t, ms(0), *st.LastUp, "lastUp stays at the last good check")
	assert.Equal(t, ms(time.Minute), *st.FirstDownAt)
	assert.Equal(t, ms(time.Minute), *st.LastCheck)
	assert.Nil(t, st.LatencyMs, "no latency while down")

	be.stop() // connection refused from now on
	clk.Set(2 * time.Minute)
	st, err = c.CheckNow(ctx, be.URL())
	require.NoError(t, err)
	assert.Equal(t, StatusDown, st.Status)
	assert.Equal(t, ms(time.Minute), *st.FirstDownAt, "still the same outage")
	assert.Equal(t, ms(2*time.Minute), *st.LastCheck)
	b := (*c.backends.Load())[be.URL()]
	b.mu.Lock()
	reason := b.st.reason
	b.mu.Unlock()
	assert.Contains(t, reason, "connection refused")

	be.set(func(b *testBackend) { b.status = http.StatusOK })
	be.restart()
	clk.Set(3 * time.Minute)
	st, err = c.CheckNow(ctx, be.URL())
	require.NoError(t, err)
	assert.Equal(t, StatusUp, st.Status)
	assert.Equal(t, ms(3*time.Minute), *st.LastUp)
	assert.Nil(t, st.FirstDownAt, "recovery ends the outage")
	assert.NotNil(t, st.LatencyMs)

	assert.Equal(t, map[string]Status{be.URL(): st}, c.Snapshot())
	for _, r := range be.seen() {
		assert.Equal(t, "HEAD /", r, "a healthy backend only sees HEAD")
	}
}

func TestCheckStatusCodes(t *testing.T) {
	tests := []struct {
		status int
		want   string
	}{
		{http.StatusOK, StatusUp},
		{http.StatusNoContent, StatusUp},
		{http.StatusMovedPermanently, StatusUp},
		{http.StatusFound, StatusUp},
		{http.StatusNotModified, StatusUp},
		{http.StatusBadRequest, StatusDown},
		{http.StatusUnauthorized, StatusDown},
		{http.StatusNotFound, StatusDown},
		{http.StatusInternalServerError, StatusDown},
		{http.StatusServiceUnavailable, StatusDown},
	}
	be := newTestBackend(t)
	c := newTestChecker(t, Config{})
	c.SetTargets([]Target{{URL: be.URL()}})
	for _, tt := range tests {
		t.Run(http.StatusText(tt.status), func(t *testing.T) {
			be.set(func(b *testBackend) { b.status = tt.status })
			st, err := c.CheckNow(context.Background(), be.URL())
			require.NoError(t, err)
			assert.Equal(t, tt.want, st.Status)
		})
	}
}

// A redirect is an answer below 400 (up), and is not followed: following it
// here would reach a path that answers 500.
func TestCheckDoesNotFollowRedirects(t *testing.T) {
	be := newTestBackend(t)
	be.set(func(b *testBackend) { b.status = http.StatusFound; b.location = "/elsewhere" })
	c := newTestChecker(t, Config{})
	c.SetTargets([]Target{{URL: be.URL(), HealthPath: "/healthz"}})
	st, err := c.CheckNow(context.Background(), be.URL())
	require.NoError(t, err)
	assert.Equal(t, StatusUp, st.Status)
	assert.Equal(t, []string{"HEAD /healthz"}, be.seen())
}

func TestCheckHeadFallsBackToGet(t *testing.T) {
	tests := []struct {
		name       string
		headStatus int
		getStatus  int
		want       string
	}{
		{"405 then GET 200", http.StatusMethodNotAllowed, http.StatusOK, StatusUp},
		{"501 then GET 204", http.StatusNotImplemented, http.StatusNoContent, StatusUp},
		{"405 then GET 503", http.StatusMethodNotAllowed, http.StatusServiceUnavailable, StatusDown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			be := newTestBackend(t)
			be.set(func(b *testBackend) { b.headStatus = tt.headStatus; b.status = tt.getStatus })
			c := newTestChecker(t, Config{})
			c.SetTargets([]Target{{URL: be.URL(), HealthPath: "/healthz?full=1"}})
			st, err := c.CheckNow(context.Background(), be.URL())
			require.NoError(t, err)
			assert.Equal(t, tt.want, st.Status)
			assert.Equal(t, []string{"HEAD /healthz?full=1", "GET /healthz?full=1"}, be.seen())
		})
	}
	t.Run("other 4xx on HEAD is down, without GET", func(t *testing.T) {
		be := newTestBackend(t)
		be.set(func(b *testBackend) { b.headStatus = http.StatusForbidden })
		c := newTestChecker(t, Config{})
		c.SetTargets([]Target{{URL: be.URL()}})
		st, err := c.CheckNow(context.Background(), be.URL())
		require.NoError(t, err)
		assert.Equal(t, StatusDown, st.Status)
		assert.Equal(t, []string{"HEAD /"}, be.seen())
	})
}

// A backend that accepts the connection and never answers is down after
// Timeout.
func TestCheckTimeout(t *testing.T) {
	be := newTestBackend(t)
	be.set(func(b *testBackend) { b.hang = true })
	const timeout = 200 * time.Millisecond
	c := newTestChecker(t, Config{Timeout: timeout})
	c.SetTargets([]Target{{URL: be.URL()}})

	start := time.Now()
	st, err := c.CheckNow(context.Background(), be.URL())
	elapsed := time.Since(start)
	require.NoError(t, err)
	assert.Equal(t, StatusDown, st.Status)
	assert.GreaterOrEqual(t, elapsed, timeout)
	assert.Less(t, elapsed, 5*time.Second, "the check must end soon after Timeout")
	b := (*c.backends.Load())[be.URL()]
	b.mu.Lock()
	defer b.mu.Unlock()
	assert.Contains(t, b.st.reason, "deadline exceeded")
}

// A check cut short by its caller's context says nothing about the backend.
func TestCheckCancelledRecordsNothing(t *testing.T) {
	be := newTestBackend(t)
	be.set(func(b *testBackend) { b.hang = true })
	c := newTestChecker(t, Config{Timeout: time.Minute})
	c.SetTargets([]Target{{URL: be.URL()}})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		eventually(t, "the check to reach the backend", func() bool { return be.hits.Load() > 0 })
		cancel()
	}()
	st, err := c.CheckNow(ctx, be.URL())
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, Status{Status: StatusUnknown}, st)
}

func TestCheckNowUnknownBackend(t *testing.T) {
	c := newTestChecker(t, Config{})
	_, err := c.CheckNow(context.Background(), "http://nope")
	require.ErrorIs(t, err, ErrUnknownBackend)
}

func TestCheckAll(t *testing.T) {
	up, down := newTestBackend(t), newTestBackend(t)
	down.set(func(b *testBackend) { b.status = http.StatusBadGateway })
	c := newTestChecker(t, Config{})
	c.SetTargets([]Target{{URL: up.URL()}, {URL: down.URL()}})
	snap := c.CheckAll(context.Background())
	require.Len(t, snap, 2)
	assert.Equal(t, StatusUp, snap[up.URL()].Status)
	assert.Equal(t, StatusDown, snap[down.URL()].Status)
}
