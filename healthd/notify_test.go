package healthd

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// notifyConfig is a Config sending to rcv with tiny retry waits.
func notifyConfig(rcv *appriseReceiver) Config {
	return Config{
		AppriseURL:      rcv.URL(),
		AppriseTags:     "ops, oncall",
		NotifyRetryBase: time.Millisecond,
		NotifyRetryMax:  2 * time.Millisecond,
		NotifyAttempts:  5,
		Timeout:         2 * time.Second,
	}
}

// checkAt sets the clock to t0+d and checks url on c.
func checkAt(t *testing.T, c *Checker, clk *fakeClock, d time.Duration, url string) Status {
	t.Helper()
	clk.Set(d)
	st, err := c.CheckNow(context.Background(), url)
	require.NoError(t, err)
	return st
}

func TestNotifyDownAfterThresholdThenRecovered(t *testing.T) {
	be := newTestBackend(t)
	be.set(func(b *testBackend) { b.status = http.StatusInternalServerError })
	rcv := newAppriseReceiver(t)
	clk := newFakeClock()
	c := newTestChecker(t, notifyConfig(rcv), WithClock(clk.Now))
	c.SetTargets([]Target{{URL: be.URL()}})

	st := checkAt(t, c, clk, 0, be.URL())
	assert.Equal(t, StatusDown, st.Status)
	assert.Equal(t, ms(0), *st.FirstDownAt)

	st = checkAt(t, c, clk, 5*time.Hour+59*time.Minute, be.URL())
	assert.False(t, st.NotifiedDown)
	waitIdle(t, c)
	assert.Empty(t, rcv.calls(), "no notification before NotifyDownAfter")

	st = checkAt(t, c, clk, 6*time.Hour, be.URL())
	assert.True(t, st.NotifiedDown)
	eventually(t, "the down notification", func() bool { return len(rcv.calls()) == 1 })
	down := rcv.calls()[0]
	assert.Equal(t, "/notify/gw-test", down.Path)
	assert.Equal(t, "application/json", down.ContentType)
	assert.Equal(t, "Backend down: "+be.URL(), down.Body.Title)
	assert.Equal(t, be.URL()+" has been down for 6h0m0s, since 2025-03-14T09:00:00Z. Last error: HTTP 500.", down.Body.Body)
	assert.Equal(t, "failure", down.Body.Type)
	assert.Equal(t, "ops, oncall", down.Body.Tag)

	for _, d := range []time.Duration{7 * time.Hour, 8 * time.Hour} {
		st = checkAt(t, c, clk, d, be.URL())
		assert.True(t, st.NotifiedDown)
	}
	waitIdle(t, c)
	assert.Len(t, rcv.calls(), 1, "down is sent once per outage")

	be.set(func(b *testBackend) { b.status = http.StatusOK })
	st = checkAt(t, c, clk, 8*time.Hour+30*time.Minute, be.URL())
	assert.Equal(t, StatusUp, st.Status)
	assert.False(t, st.NotifiedDown)
	eventually(t, "the recovered notification", func() bool { return len(rcv.calls()) == 2 })
	rec := rcv.calls()[1]
	assert.Equal(t, "Backend recovered: "+be.URL(), rec.Body.Title)
	assert.Equal(t, be.URL()+" is up again after 8h30m0s of downtime (down since 2025-03-14T09:00:00Z).", rec.Body.Body)
	assert.Equal(t, "success", rec.Body.Type)

	checkAt(t, c, clk, 9*time.Hour, be.URL())
	waitIdle(t, c)
	assert.Len(t, rcv.calls(), 2, "recovered is sent once")

	// A new outage is a new story: its own down after its own 6 hours.
	be.set(func(b *testBackend) { b.status = http.StatusServiceUnavailable })
	checkAt(t, c, clk, 10*time.Hour, be.URL())
	st = checkAt(t, c, clk, 16*time.Hour, be.URL())
	assert.True(t, st.NotifiedDown)
	assert.Equal(t, ms(10*time.Hour), *st.FirstDownAt)
	eventually(t, "the second outage's down notification", func() bool { return len(rcv.calls()) == 3 })
	assert.Contains(t, rcv.calls()[2].Body.Body, "since 2025-03-14T19:00:00Z")
}

// An outage shorter than NotifyDownAfter is never announced, nor its end.
func TestNotifyShortOutageIsSilent(t *testing.T) {
	be := newTestBackend(t)
	rcv := newAppriseReceiver(t)
	clk := newFakeClock()
	c := newTestChecker(t, notifyConfig(rcv), WithClock(clk.Now))
	c.SetTargets([]Target{{URL: be.URL()}})

	be.set(func(b *testBackend) { b.status = http.StatusInternalServerError })
	checkAt(t, c, clk, 0, be.URL())
	checkAt(t, c, clk, 5*time.Hour, be.URL())
	be.set(func(b *testBackend) { b.status = http.StatusOK })
	checkAt(t, c, clk, 5*time.Hour+time.Minute, be.URL())
	waitIdle(t, c)
	assert.Empty(t, rcv.calls())
	assert.Zero(t, rcv.attemptCount())
}

// An outage the proxy reported counts from the report, and its end through
// ReportSuccess sends "recovered" without waiting for a check.
func TestNotifyPassiveSignals(t *testing.T) {
	be := newTestBackend(t)
	be.set(func(b *testBackend) { b.status = http.StatusBadGateway })
	rcv := newAppriseReceiver(t)
	clk := newFakeClock()
	c := newTestChecker(t, notifyConfig(rcv), WithClock(clk.Now))
	c.SetTargets([]Target{{URL: be.URL()}})

	c.ReportFailure(be.URL())
	checkAt(t, c, clk, time.Minute, be.URL())
	st := checkAt(t, c, clk, 6*time.Hour, be.URL())
	assert.True(t, st.NotifiedDown, "the outage began with the report at t0")
	eventually(t, "down", func() bool { return len(rcv.calls()) == 1 })

	clk.Set(6*time.Hour + 5*time.Minute)
	c.ReportSuccess(be.URL())
	eventually(t, "recovered", func() bool { return len(rcv.calls()) == 2 })
	assert.Contains(t, rcv.calls()[1].Body.Body, "after 6h5m0s of downtime")
}

// Apprise failing twice: the notification arrives once, on the third try.
func TestNotifyRetriesWhenAppriseFails(t *testing.T) {
	be := newTestBackend(t)
	be.set(func(b *testBackend) { b.status = http.StatusInternalServerError })
	rcv := newAppriseReceiver(t)
	rcv.failNext(2)
	clk := newFakeClock()
	c := newTestChecker(t, notifyConfig(rcv), WithClock(clk.Now))
	c.SetTargets([]Target{{URL: be.URL()}})

	checkAt(t, c, clk, 0, be.URL())
	checkAt(t, c, clk, 6*time.Hour, be.URL())
	eventually(t, "delivery after retries", func() bool { return len(rcv.calls()) == 1 })
	waitIdle(t, c)
	assert.Equal(t, 3, rcv.attemptCount())
	assert.Len(t, rcv.calls(), 1)
}

// Retries are bounded: a dead Apprise gets NotifyAttempts tries, then the
// notification is given up (and logged).
func TestNotifyGivesUp(t *testing.T) {
	be := newTestBackend(t)
	be.set(func(b *testBackend) { b.status = http.StatusInternalServerError })
	rcv := newAppriseReceiver(t)
	rcv.failNext(1000)
	clk := newFakeClock()
	cfg := notifyConfig(rcv)
	cfg.NotifyAttempts = 3
	c := newTestChecker(t, cfg, WithClock(clk.Now))
	c.SetTargets([]Target{{URL: be.URL()}})

	checkAt(t, c, clk, 0, be.URL())
	st := checkAt(t, c, clk, 6*time.Hour, be.URL())
	assert.True(t, st.NotifiedDown, "claimed, even if delivery fails")
	waitIdle(t, c)
	assert.Equal(t, 3, rcv.attemptCount())
	assert.Empty(t, rcv.calls())
}

// A check never waits for Apprise: with Apprise hanging, checks go on, and
// Close cuts the pending delivery short.
func TestNotifyNeverBlocksChecks(t *testing.T) {
	hang := newTestBackend(t) // stands in for an Apprise that never answers
	hang.set(func(b *testBackend) { b.hang = true })
	be := newTestBackend(t)
	be.set(func(b *testBackend) { b.status = http.StatusInternalServerError })
	clk := newFakeClock()
	c := newTestChecker(t, Config{AppriseURL: hang.URL() + "/notify/k", NotifyTimeout: time.Minute}, WithClock(clk.Now))
	c.SetTargets([]Target{{URL: be.URL()}})

	checkAt(t, c, clk, 0, be.URL())
	checkAt(t, c, clk, 6*time.Hour, be.URL())
	eventually(t, "the post to reach apprise", func() bool { return hang.hits.Load() == 1 })
	for i := range 3 {
		st := checkAt(t, c, clk, 7*time.Hour+time.Duration(i)*time.Minute, be.URL())
		assert.Equal(t, StatusDown, st.Status)
	}
	c.Close() // returns although the post is still waiting for an answer
	assert.Zero(t, c.notify.pending.Load())
}

// Two instances sharing a Lease, watching the same down backend: exactly
// one "down" and one "recovered" in total, and both agree on when the
// outage began even though they saw it at different times.
func TestNotifyTwoInstancesMemoryLease(t *testing.T) {
	testTwoInstances(t, NewMemoryLease())
}

func testTwoInstances(t *testing.T, lease Lease) {
	be := newTestBackend(t)
	be.set(func(b *testBackend) { b.status = http.StatusInternalServerError })
	rcv := newAppriseReceiver(t)
	clk := newFakeClock()
	a := newTestChecker(t, notifyConfig(rcv), WithClock(clk.Now), WithLease(lease))
	b := newTestChecker(t, notifyConfig(rcv), WithClock(clk.Now), WithLease(lease))
	a.SetTargets([]Target{{URL: be.URL()}})
	b.SetTargets([]Target{{URL: be.URL()}})

	checkAt(t, a, clk, 0, be.URL())
	st := checkAt(t, b, clk, 30*time.Second, be.URL())
	assert.Equal(t, ms(0), *st.FirstDownAt, "b takes the outage start a recorded")

	for _, d := range []time.Duration{6 * time.Hour, 6*time.Hour + time.Minute, 7 * time.Hour} {
		assert.True(t, checkAt(t, a, clk, d, be.URL()).NotifiedDown)
		assert.True(t, checkAt(t, b, clk, d, be.URL()).NotifiedDown)
	}
	waitIdle(t, a)
	waitIdle(t, b)
	require.Len(t, rcv.calls(), 1, "one down for both instances")
	assert.Contains(t, rcv.calls()[0].Body.Title, "Backend down")

	be.set(func(b *testBackend) { b.status = http.StatusOK })
	checkAt(t, b, clk, 8*time.Hour, be.URL())
	waitIdle(t, b) // b's claim first, so that its downtime is the one sent
	checkAt(t, a, clk, 8*time.Hour+30*time.Second, be.URL())
	waitIdle(t, a)
	require.Len(t, rcv.calls(), 2, "one recovered for both instances")
	assert.Contains(t, rcv.calls()[1].Body.Title, "Backend recovered")
	assert.Contains(t, rcv.calls()[1].Body.Body, "after 8h0m0s of downtime")

	// The outage record went with the recovery: the next outage starts
	// afresh for both.
	be.set(func(b *testBackend) { b.status = http.StatusInternalServerError })
	checkAt(t, a, clk, 9*time.Hour, be.URL())
	assert.Equal(t, ms(9*time.Hour), *checkAt(t, b, clk, 9*time.Hour+time.Second, be.URL()).FirstDownAt)
}

// A restarted instance (a new Checker on the same Lease) neither resends
// "down" nor forgets it was sent, and sends "recovered" when the outage
// ends.
func TestNotifyRestartDoesNotResend(t *testing.T) {
	be := newTestBackend(t)
	be.set(func(b *testBackend) { b.status = http.StatusInternalServerError })
	rcv := newAppriseReceiver(t)
	clk := newFakeClock()
	lease := NewMemoryLease()

	first := newTestChecker(t, notifyConfig(rcv), WithClock(clk.Now), WithLease(lease))
	first.SetTargets([]Target{{URL: be.URL()}})
	checkAt(t, first, clk, 0, be.URL())
	checkAt(t, first, clk, 6*time.Hour, be.URL())
	eventually(t, "down", func() bool { return len(rcv.calls()) == 1 })
	first.Close()

	restarted := newTestChecker(t, notifyConfig(rcv), WithClock(clk.Now), WithLease(lease))
	restarted.SetTargets([]Target{{URL: be.URL()}})
	st := checkAt(t, restarted, clk, 7*time.Hour, be.URL())
	assert.True(t, st.NotifiedDown, "the down notification was sent before the restart")
	assert.Equal(t, ms(0), *st.FirstDownAt, "the outage began before the restart")
	waitIdle(t, restarted)
	assert.Len(t, rcv.calls(), 1, "no second down")

	be.set(func(b *testBackend) { b.status = http.StatusOK })
	checkAt(t, restarted, clk, 7*time.Hour+15*time.Minute, be.URL())
	eventually(t, "recovered", func() bool { return len(rcv.calls()) == 2 })
	assert.Contains(t, rcv.calls()[1].Body.Body, "after 7h15m0s of downtime")
}

// A restart before the threshold keeps counting from the outage's start.
func TestNotifyRestartMidOutageKeepsStart(t *testing.T) {
	be := newTestBackend(t)
	be.set(func(b *testBackend) { b.status = http.StatusInternalServerError })
	rcv := newAppriseReceiver(t)
	clk := newFakeClock()
	lease := NewMemoryLease()

	first := newTestChecker(t, notifyConfig(rcv), WithClock(clk.Now), WithLease(lease))
	first.SetTargets([]Target{{URL: be.URL()}})
	checkAt(t, first, clk, 0, be.URL())
	first.Close()

	restarted := newTestChecker(t, notifyConfig(rcv), WithClock(clk.Now), WithLease(lease))
	restarted.SetTargets([]Target{{URL: be.URL()}})
	checkAt(t, restarted, clk, 3*time.Hour, be.URL())
	st := checkAt(t, restarted, clk, 6*time.Hour, be.URL())
	assert.True(t, st.NotifiedDown)
	eventually(t, "down", func() bool { return len(rcv.calls()) == 1 })
	assert.Contains(t, rcv.calls()[0].Body.Body, "down for 6h0m0s")
}

// flakyLease fails while broken is set, and otherwise delegates.
type flakyLease struct {
	Lease
	broken atomic.Bool
}

func (l *flakyLease) Claim(ctx context.Context, key, value string, ttl time.Duration) (string, bool, error) {
	if l.broken.Load() {
		return "", false, errors.New("lease down")
	}
	return l.Lease.Claim(ctx, key, value, ttl)
}

// With the Lease unavailable nothing is sent (no instance could know it is
// the one to send); the notification goes out at the first check after
// the Lease is back.
func TestNotifyLeaseUnavailable(t *testing.T) {
	be := newTestBackend(t)
	be.set(func(b *testBackend) { b.status = http.StatusInternalServerError })
	rcv := newAppriseReceiver(t)
	clk := newFakeClock()
	lease := &flakyLease{Lease: NewMemoryLease()}
	lease.broken.Store(true)
	c := newTestChecker(t, notifyConfig(rcv), WithClock(clk.Now), WithLease(lease))
	c.SetTargets([]Target{{URL: be.URL()}})

	checkAt(t, c, clk, 0, be.URL())
	st := checkAt(t, c, clk, 6*time.Hour, be.URL())
	assert.False(t, st.NotifiedDown)
	waitIdle(t, c)
	assert.Empty(t, rcv.calls())

	lease.broken.Store(false)
	st = checkAt(t, c, clk, 6*time.Hour+time.Minute, be.URL())
	assert.True(t, st.NotifiedDown)
	assert.Equal(t, ms(0), *st.FirstDownAt)
	eventually(t, "down", func() bool { return len(rcv.calls()) == 1 })
}

// panicLease panics, standing in for a bug inside a check.
type panicLease struct{ Lease }

func (panicLease) Claim(context.Context, string, string, time.Duration) (string, bool, error) {
	panic("boom")
}

func TestCheckRecoversFromPanic(t *testing.T) {
	be := newTestBackend(t)
	be.set(func(b *testBackend) { b.status = http.StatusInternalServerError })
	c := newTestChecker(t, Config{AppriseURL: "http://127.0.0.1:1/notify/k"}, WithLease(panicLease{}))
	c.SetTargets([]Target{{URL: be.URL()}})
	st, err := c.CheckNow(context.Background(), be.URL())
	require.ErrorContains(t, err, "panicked")
	assert.Equal(t, StatusDown, st.Status, "the result was recorded before the panic")
}

func TestNotificationsOff(t *testing.T) {
	be := newTestBackend(t)
	be.set(func(b *testBackend) { b.status = http.StatusInternalServerError })
	clk := newFakeClock()
	c := newTestChecker(t, Config{}, WithClock(clk.Now), WithLease(panicLease{}))
	c.SetTargets([]Target{{URL: be.URL()}})
	checkAt(t, c, clk, 0, be.URL())
	st := checkAt(t, c, clk, 7*time.Hour, be.URL())
	assert.False(t, st.NotifiedDown, "without APPRISE_URL the lease is never used")
	assert.Nil(t, c.notify)
}
