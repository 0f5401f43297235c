package healthd

import (
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Values of Status.Status.
const (
	// StatusUnknown: not checked yet.
	StatusUnknown = "unknown"
	// StatusUp: the last check got an answer below 400, or the proxy
	// reached the backend since the last failure.
	StatusUp = "up"
	// StatusDown: the last check failed, or the proxy could not connect.
	StatusDown = "down"
)

// Status is the health of one backend as GET /admin/health serves it,
// field for field as in the Node version. Times are milliseconds since the
// Unix epoch; a nil pointer (JSON null) means never.
type Status struct {
	// Status is StatusUp, StatusDown or StatusUnknown.
	Status string `json:"status"`
	// LastUp is when a check last found the backend up (or the proxy
	// reached it again after a failure).
	LastUp *int64 `json:"lastUp"`
	// FirstDownAt is when the current outage began; nil unless down. With
	// notifications on, it is the start agreed by all instances sharing the
	// Lease (the first to see the outage), so it may predate this
	// instance's first failed check.
	FirstDownAt *int64 `json:"firstDownAt"`
	// NotifiedDown is true once the "down" notification of the current
	// outage has been sent, by this instance or another one.
	NotifiedDown bool `json:"notifiedDown"`
	// LastCheck is when the last check (not a passive report) finished.
	LastCheck *int64 `json:"lastCheck"`
	// LatencyMs is how long the last check took when it found the backend
	// up, HEAD and fallback GET together; nil while down or unknown.
	LatencyMs *int64 `json:"latencyMs"`
}

// Internal status codes, kept in an atomic for the lock-free fast path of
// ReportFailure and ReportSuccess.
const (
	codeUnknown int32 = iota
	codeUp
	codeDown
)

var statusNames = [...]string{codeUnknown: StatusUnknown, codeUp: StatusUp, codeDown: StatusDown}

// passiveReason is the down reason recorded for ReportFailure. A constant:
// the hot path must not allocate.
const passiveReason = "the proxy could not connect"

// backend is one checked backend and its state.
type backend struct {
	url string

	// code mirrors st.code so that ReportFailure and ReportSuccess can tell
	// "no change" without locking. Written only with mu held.
	code atomic.Int32
	// dropped is set when SetTargets removed the backend; a check in flight
	// then records nothing.
	dropped atomic.Bool
	// cancel stops the backend's check loop; nil when none runs. Guarded
	// by Checker.mu.
	cancel func()

	mu     sync.Mutex
	target Target // guarded by mu: SetTargets may change HealthPath
	st     state  // guarded by mu
}

// state is what a backend's Status is made of.
type state struct {
	code                           int32
	lastUp, firstDownAt, lastCheck int64 // ms since the epoch; 0 = never
	latencyMs                      int64 // -1 = none
	reason                         string
	notifiedDown                   bool
	// outageShared is true once firstDownAt has been agreed through the
	// Lease (notifications on only).
	outageShared bool
	// outage counts up->down transitions, so that code that dropped the
	// lock (for a Lease call) can tell whether it is still the same outage.
	outage uint64
}

func newBackend(t Target) *backend {
	return &backend{url: t.URL, target: t, st: state{latencyMs: -1}}
}

// status returns the backend's Status.
func (b *backend) status() Status {
	b.mu.Lock()
	st := b.st
	b.mu.Unlock()
	s := Status{
		Status:       statusNames[st.code],
		LastUp:       msPtr(st.lastUp),
		FirstDownAt:  msPtr(st.firstDownAt),
		NotifiedDown: st.notifiedDown,
		LastCheck:    msPtr(st.lastCheck),
	}
	if st.latencyMs >= 0 {
		v := st.latencyMs
		s.LatencyMs = &v
	}
	return s
}

func msPtr(ms int64) *int64 {
	if ms == 0 {
		return nil
	}
	return &ms
}

// record applies the result of a check made at now.
func (c *Checker) record(b *backend, r probeResult, now time.Time) {
	ms := now.UnixMilli()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.st.lastCheck = ms
	if r.up {
		b.st.lastUp = ms
		b.st.latencyMs = r.latency.Milliseconds()
		c.setUpLocked(b, ms)
		return
	}
	b.st.latencyMs = -1
	b.st.reason = r.reason
	c.setDownLocked(b, ms, r.reason)
}

// setUpLocked makes b up and reports whether that changed its status (the
// CAS of Caddy's setHealthy). The end of an outage queues its "recovered"
// notification when a "down" was sent for it. b.mu must be held.
func (c *Checker) setUpLocked(b *backend, now int64) bool {
	prev := b.st.code
	if prev == codeUp {
		return false
	}
	b.st.code = codeUp
	b.code.Store(codeUp)
	if prev != codeDown {
		c.log.Info("backend up", zap.String("backend", b.url))
		return true
	}
	downtime := time.Duration(now-b.st.firstDownAt) * time.Millisecond
	c.log.Info("backend recovered", zap.String("backend", b.url), zap.Duration("downtime", downtime))
	if c.notify != nil {
		switch {
		case b.st.notifiedDown:
			c.notify.enqueue(job{kind: jobRecovered, backend: b.url, start: b.st.firstDownAt, downFor: downtime})
		case b.st.outageShared:
			// No notification, but the shared outage record must go, or the
			// next outage would inherit its start.
			c.notify.enqueue(job{kind: jobRelease, backend: b.url, start: b.st.firstDownAt})
		}
	}
	b.st.firstDownAt = 0
	b.st.notifiedDown = false
	b.st.outageShared = false
	b.st.reason = ""
	return true
}

// setDownLocked makes b down and reports whether that changed its status;
// a change starts an outage at now. b.mu must be held.
func (c *Checker) setDownLocked(b *backend, now int64, reason string) bool {
	if b.st.code == codeDown {
		return false
	}
	b.st.code = codeDown
	b.code.Store(codeDown)
	b.st.firstDownAt = now
	b.st.notifiedDown = false
	b.st.outageShared = false
	b.st.reason = reason
	b.st.outage++
	c.log.Warn("backend down", zap.String("backend", b.url), zap.String("reason", reason))
	return true
}

// ReportFailure tells the Checker that the proxy could not connect to the
// backend url (a name as in Target.URL), which is then down at once rather
// than at its next check. Unknown URLs are ignored. It is meant for the
// proxy's hot path: when the backend is down already, it neither locks nor
// allocates. Safe for concurrent use.
func (c *Checker) ReportFailure(url string) {
	b := (*c.backends.Load())[url]
	if b == nil || b.code.Load() == codeDown {
		return
	}
	now := c.now().UnixMilli()
	b.mu.Lock()
	if c.setDownLocked(b, now, passiveReason) {
		b.st.latencyMs = -1
	}
	b.mu.Unlock()
}

// ReportSuccess tells the Checker that the proxy got an answer from the
// backend url, which is then up at once (ending an outage, with its
// "recovered" notification). Unknown URLs are ignored. Like ReportFailure,
// it neither locks nor allocates when the backend is up already. Safe for
// concurrent use.
func (c *Checker) ReportSuccess(url string) {
	b := (*c.backends.Load())[url]
	if b == nil || b.code.Load() == codeUp {
		return
	}
	now := c.now().UnixMilli()
	b.mu.Lock()
	if c.setUpLocked(b, now) {
		b.st.lastUp = now
	}
	b.mu.Unlock()
}
