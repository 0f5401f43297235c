package healthd

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The admin API serves Snapshot as JSON, with the Node version's field
// names and null for "never".
func TestStatusJSON(t *testing.T) {
	got, err := json.Marshal(Status{Status: StatusUnknown})
	require.NoError(t, err)
	assert.JSONEq(t, `{"status":"unknown","lastUp":null,"firstDownAt":null,"notifiedDown":false,"lastCheck":null,"latencyMs":null}`, string(got))

	up, check, lat := int64(1700000000000), int64(1700000060000), int64(0)
	got, err = json.Marshal(map[string]Status{"http://b:1": {Status: StatusUp, LastUp: &up, LastCheck: &check, LatencyMs: &lat}})
	require.NoError(t, err)
	assert.Equal(t, `{"http://b:1":{"status":"up","lastUp":1700000000000,"firstDownAt":null,"notifiedDown":false,"lastCheck":1700000060000,"latencyMs":0}}`, string(got))
}

func TestReportFailureAndSuccess(t *testing.T) {
	const url = "http://backend-a:7001"
	clk := newFakeClock()
	c := newTestChecker(t, Config{}, WithClock(clk.Now))
	c.SetTargets([]Target{{URL: url}})

	c.ReportFailure(url)
	st := c.Snapshot()[url]
	assert.Equal(t, StatusDown, st.Status, "down at once, without a check")
	assert.Equal(t, ms(0), *st.FirstDownAt)
	assert.Nil(t, st.LastCheck, "a report is not a check")

	clk.Set(time.Minute)
	c.ReportFailure(url)
	assert.Equal(t, ms(0), *c.Snapshot()[url].FirstDownAt, "a repeated failure does not restart the outage")

	clk.Set(2 * time.Minute)
	c.ReportSuccess(url)
	st = c.Snapshot()[url]
	assert.Equal(t, StatusUp, st.Status)
	assert.Nil(t, st.FirstDownAt)
	assert.Equal(t, ms(2*time.Minute), *st.LastUp)

	// Unknown backends are ignored.
	c.ReportFailure("http://not-a-target")
	c.ReportSuccess("http://not-a-target")
	assert.Len(t, c.Snapshot(), 1)
}

// A check that succeeds ends an outage the proxy reported.
func TestReportFailureRecoveredByCheck(t *testing.T) {
	be := newTestBackend(t)
	clk := newFakeClock()
	c := newTestChecker(t, Config{}, WithClock(clk.Now))
	c.SetTargets([]Target{{URL: be.URL()}})
	c.ReportFailure(be.URL())
	clk.Set(time.Second)
	st, err := c.CheckNow(context.Background(), be.URL())
	require.NoError(t, err)
	assert.Equal(t, StatusUp, st.Status)
	assert.Nil(t, st.FirstDownAt)
}

// The proxy calls the Report methods on its hot path: when the state does
// not change they must not allocate.
func TestReportAllocations(t *testing.T) {
	const url = "http://backend-a:7001"
	c := newTestChecker(t, Config{AppriseURL: "http://127.0.0.1:1/notify/k"})
	c.SetTargets([]Target{{URL: url}, {URL: "http://backend-b:7002"}})

	c.ReportFailure(url)
	require.Equal(t, StatusDown, c.Snapshot()[url].Status)
	assert.Zero(t, testing.AllocsPerRun(1000, func() { c.ReportFailure(url) }), "ReportFailure while down")

	c.ReportSuccess(url)
	require.Equal(t, StatusUp, c.Snapshot()[url].Status)
	assert.Zero(t, testing.AllocsPerRun(1000, func() { c.ReportSuccess(url) }), "ReportSuccess while up")

	assert.Zero(t, testing.AllocsPerRun(1000, func() {
		c.ReportFailure("http://unknown")
		c.ReportSuccess("http://unknown")
	}), "unknown backend")
}

func BenchmarkReportSuccessUnchanged(b *testing.B) {
	const url = "http://backend-a:7001"
	c, err := New(Config{})
	require.NoError(b, err)
	c.SetTargets([]Target{{URL: url}})
	c.ReportSuccess(url)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.ReportSuccess(url)
		}
	})
}

// The backend's answer changes between checks only on transitions that
// count: a down backend that keeps failing stays in one outage, whatever
// the failure.
func TestOutageSurvivesChangingFailures(t *testing.T) {
	be := newTestBackend(t)
	clk := newFakeClock()
	c := newTestChecker(t, Config{}, WithClock(clk.Now))
	c.SetTargets([]Target{{URL: be.URL()}})
	ctx := context.Background()
	for i, status := range []int{http.StatusInternalServerError, http.StatusBadGateway, http.StatusNotFound} {
		be.set(func(b *testBackend) { b.status = status })
		clk.Set(time.Duration(i) * time.Minute)
		st, err := c.CheckNow(ctx, be.URL())
		require.NoError(t, err)
		assert.Equal(t, StatusDown, st.Status)
		assert.Equal(t, ms(0), *st.FirstDownAt)
	}
}
