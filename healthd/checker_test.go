package healthd

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// startRun runs c.Run in a goroutine and returns a function that cancels
// it and waits (boundedly) for Run to return.
func startRun(t *testing.T, c *Checker) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx)
	}()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after its context was cancelled")
		}
	}
	t.Cleanup(stop)
	return stop
}

func TestRunChecksRepeatedlyAndFollowsTargets(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	a, b := newTestBackend(t), newTestBackend(t)
	b.set(func(b *testBackend) { b.status = http.StatusServiceUnavailable })
	c := newTestChecker(t, Config{Interval: 5 * time.Millisecond, Timeout: 2 * time.Second})
	c.SetTargets([]Target{{URL: a.URL(), HealthPath: "/healthz"}})
	stop := startRun(t, c)

	eventually(t, "a to be checked three times", func() bool { return a.hits.Load() >= 3 })
	assert.Equal(t, StatusUp, c.Snapshot()[a.URL()].Status)
	assert.Equal(t, "HEAD /healthz", a.seen()[0])

	// Add b while running: it is checked at once, a keeps its state.
	c.SetTargets([]Target{{URL: a.URL(), HealthPath: "/healthz"}, {URL: b.URL()}})
	eventually(t, "b to be checked", func() bool { return b.hits.Load() >= 2 })
	eventually(t, "b to be down", func() bool { return c.Snapshot()[b.URL()].Status == StatusDown })
	assert.Equal(t, StatusUp, c.Snapshot()[a.URL()].Status)

	// A changed healthPath applies from the next check.
	c.SetTargets([]Target{{URL: a.URL(), HealthPath: "/ready"}, {URL: b.URL()}})
	eventually(t, "a to be checked at its new path", func() bool {
		seen := a.seen()
		return seen[len(seen)-1] == "HEAD /ready"
	})

	// Drop a: its state goes at once and its checks stop.
	c.SetTargets([]Target{{URL: b.URL()}})
	snap := c.Snapshot()
	assert.NotContains(t, snap, a.URL())
	assert.Contains(t, snap, b.URL())
	hitsAtDrop := a.hits.Load()
	bHits := b.hits.Load()
	eventually(t, "b to be checked three more times", func() bool { return b.hits.Load() >= bHits+3 })
	assert.LessOrEqual(t, a.hits.Load(), hitsAtDrop+1, "a is no longer checked (one check may have been in flight)")

	stop()
	_, err := c.CheckNow(context.Background(), b.URL())
	require.NoError(t, err, "checks still work after Run returned")
	a.stop()
	b.stop()
	goleak.VerifyNone(t, ignore)
}

// Run returns promptly on cancel even with a check in progress against a
// backend that never answers, and records nothing for the cut check.
func TestRunStopsWithHangingBackend(t *testing.T) {
	be := newTestBackend(t)
	be.set(func(b *testBackend) { b.hang = true })
	c := newTestChecker(t, Config{Interval: time.Hour, Timeout: time.Hour})
	c.SetTargets([]Target{{URL: be.URL()}})
	stop := startRun(t, c)
	eventually(t, "the first check to reach the backend", func() bool { return be.hits.Load() == 1 })
	stop()
	assert.Equal(t, StatusUnknown, c.Snapshot()[be.URL()].Status)
}

// Targets set after Run returned are not checked in the background.
func TestSetTargetsAfterRun(t *testing.T) {
	be := newTestBackend(t)
	c := newTestChecker(t, Config{Interval: time.Millisecond})
	stop := startRun(t, c)
	stop()
	c.SetTargets([]Target{{URL: be.URL()}})
	assert.Equal(t, StatusUnknown, c.Snapshot()[be.URL()].Status)
	assert.Zero(t, be.hits.Load())
	assert.PanicsWithValue(t, "healthd: Checker.Run called twice", func() { c.Run(context.Background()) })
}

// A panic in one check neither ends the loop nor the process.
func TestRunSurvivesPanics(t *testing.T) {
	be := newTestBackend(t)
	be.set(func(b *testBackend) { b.status = http.StatusInternalServerError })
	c := newTestChecker(t, Config{Interval: 5 * time.Millisecond, AppriseURL: "http://127.0.0.1:1/notify/k"},
		WithLease(panicLease{}))
	c.SetTargets([]Target{{URL: be.URL()}})
	startRun(t, c)
	eventually(t, "checks to go on after panics", func() bool { return be.hits.Load() >= 3 })
}

func TestSetTargetsSkipsEmptyAndRepeated(t *testing.T) {
	c := newTestChecker(t, Config{})
	c.SetTargets([]Target{{URL: ""}, {URL: "http://a", HealthPath: "/one"}, {URL: "http://a", HealthPath: "/two"}})
	m := *c.backends.Load()
	require.Len(t, m, 1)
	assert.Equal(t, "/one", m["http://a"].target.HealthPath)
}
