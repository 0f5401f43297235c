package healthd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// ErrUnknownBackend is returned by CheckNow for a URL that is not one of
// the targets: call SetTargets first.
var ErrUnknownBackend = errors.New("healthd: not a checked backend")

// Checker checks backends and keeps their state. Create it with New, give
// it targets with SetTargets, then call Run. All methods are safe for
// concurrent use. A Checker must not be copied.
type Checker struct {
	cfg         Config
	log         *zap.Logger
	now         func() time.Time
	probeClient *http.Client
	notify      *notifier // nil: notifications off

	// backends maps Target.URL to its backend. The map is never modified
	// once stored: SetTargets stores a new one, so ReportFailure and
	// ReportSuccess read it without locking.
	backends atomic.Pointer[map[string]*backend]

	mu      sync.Mutex      // serialises SetTargets with Run starting and stopping loops
	runCtx  context.Context // set while Run runs; guarded by mu
	ran     bool            // Run was called; guarded by mu
	loops   sync.WaitGroup  // the per-backend check loops
	closeMu sync.Once
}

// Option configures a Checker.
type Option func(*options)

type options struct {
	now   func() time.Time
	log   *zap.Logger
	lease Lease
}

// WithClock sets the clock for state times and the NotifyDownAfter
// threshold (default time.Now), so that tests can cross 6 hours without
// waiting. Latencies, timeouts and retry waits use the real clock.
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// WithLogger sets the logger (default zap.NewNop()).
func WithLogger(log *zap.Logger) Option {
	return func(o *options) { o.log = log }
}

// WithLease sets the Lease through which instances agree on outages and on
// who sends each notification. Default: a MemoryLease of this Checker's
// own, right for a single instance. Instances sharing a Redis should pass
// NewRedisLease. Unused while notifications are off.
func WithLease(l Lease) Option {
	return func(o *options) { o.lease = l }
}

// New returns a Checker for cfg, which it validates. It has no targets
// and starts nothing; see SetTargets and Run.
func New(cfg Config, opts ...Option) (*Checker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	o := options{now: time.Now, log: zap.NewNop()}
	for _, opt := range opts {
		opt(&o)
	}
	if o.lease == nil {
		o.lease = NewMemoryLease()
	}
	c := &Checker{
		cfg:         cfg,
		log:         o.log,
		now:         o.now,
		probeClient: newProbeClient(),
	}
	empty := map[string]*backend{}
	c.backends.Store(&empty)
	if cfg.AppriseURL != "" {
		id, err := instanceID()
		if err != nil {
			return nil, err
		}
		c.notify = newNotifier(cfg, o.lease, id, o.log)
	} else {
		c.log.Info("backend notifications off (APPRISE_URL not set)")
	}
	return c, nil
}

// instanceID names this process in the claims it makes, for whoever reads
// the Lease's keys.
func instanceID() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("healthd: instance id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// SetTargets makes ts the backends to check, while Run runs or before.
// New backends start as unknown and, while Run runs, are checked at once;
// backends no longer listed stop being checked and their state is
// forgotten; the others keep their state and loop (a changed HealthPath
// applies from their next check). Empty and repeated URLs are skipped.
func (c *Checker) SetTargets(ts []Target) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := *c.backends.Load()
	next := make(map[string]*backend, len(ts))
	added := 0
	for _, t := range ts {
		if t.URL == "" || next[t.URL] != nil {
			continue
		}
		if b := old[t.URL]; b != nil {
			b.mu.Lock()
			b.target = t
			b.mu.Unlock()
			next[t.URL] = b
			continue
		}
		b := newBackend(t)
		next[t.URL] = b
		added++
		if c.runCtx != nil {
			c.startLocked(b)
		}
	}
	removed := 0
	for url, b := range old {
		if next[url] != nil {
			continue
		}
		removed++
		b.dropped.Store(true)
		if b.cancel != nil {
			b.cancel()
		}
		b.mu.Lock()
		if c.notify != nil && b.st.outageShared && !b.st.notifiedDown {
			// Release the outage record this instance may hold, so that if
			// the backend comes back into the config it does not inherit
			// this outage's start. After a "down" was sent the record stays
			// until ClaimTTL, like the claim of that notification.
			c.notify.enqueue(job{kind: jobRelease, backend: url, start: b.st.firstDownAt})
		}
		b.mu.Unlock()
	}
	c.backends.Store(&next)
	if added > 0 || removed > 0 {
		c.log.Info("health check targets changed",
			zap.Int("targets", len(next)), zap.Int("added", added), zap.Int("removed", removed))
	}
}

// Run checks every target at once and then every Interval, one goroutine
// per target, until ctx is done. It returns once every goroutine it
// started has ended, and closes the Checker (see Close) before returning.
// Run may be called once.
func (c *Checker) Run(ctx context.Context) {
	c.mu.Lock()
	if c.ran {
		c.mu.Unlock()
		panic("healthd: Checker.Run called twice")
	}
	c.ran = true
	c.runCtx = ctx
	for _, b := range *c.backends.Load() {
		c.startLocked(b)
	}
	c.mu.Unlock()

	<-ctx.Done()
	c.mu.Lock()
	c.runCtx = nil // SetTargets starts no more loops
	c.mu.Unlock()
	c.loops.Wait()
	c.Close()
}

// startLocked starts b's check loop. c.mu must be held and c.runCtx set.
func (c *Checker) startLocked(b *backend) {
	ctx, cancel := context.WithCancel(c.runCtx)
	b.cancel = cancel
	c.loops.Add(1)
	go c.loop(ctx, b)
}

// loop checks b at once and then at every tick until ctx is done.
func (c *Checker) loop(ctx context.Context, b *backend) {
	defer c.loops.Done()
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for ctx.Err() == nil {
		_ = c.safeCheck(ctx, b)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
}

// safeCheck is check with a recover: a bug in one check must not end the
// loop, nor the process.
func (c *Checker) safeCheck(ctx context.Context, b *backend) (err error) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("health check panicked", zap.String("backend", b.url),
				zap.Any("panic", r), zap.StackSkip("stack", 1))
			err = fmt.Errorf("healthd: check of %s panicked: %v", b.url, r)
		}
	}()
	return c.check(ctx, b)
}

// check probes b once and records the result. A probe cut short by ctx
// records nothing: a shutdown says nothing about the backend.
func (c *Checker) check(ctx context.Context, b *backend) error {
	b.mu.Lock()
	target := b.target.probeURL()
	b.mu.Unlock()
	r := c.probe(ctx, target)
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.dropped.Load() {
		return nil
	}
	now := c.now()
	c.record(b, r, now)
	if !r.up && c.notify != nil {
		c.afterDown(ctx, b, now)
	}
	return nil
}

// CheckNow checks the backend url (a Target.URL) at once, records the
// result like a scheduled check, and returns the backend's Status. It
// returns ErrUnknownBackend for a URL that is not a target, and ctx's error
// (recording nothing) when ctx ends before the check does. Any "down"
// notification due is claimed before it returns and delivered in the
// background.
func (c *Checker) CheckNow(ctx context.Context, url string) (Status, error) {
	b := (*c.backends.Load())[url]
	if b == nil {
		return Status{}, fmt.Errorf("%w: %s", ErrUnknownBackend, url)
	}
	err := c.safeCheck(ctx, b)
	return b.status(), err
}

// CheckAll checks every target at once, concurrently, like CheckNow, and
// returns the Snapshot afterwards (for a config resync, or tests).
func (c *Checker) CheckAll(ctx context.Context) map[string]Status {
	var wg sync.WaitGroup
	for _, b := range *c.backends.Load() {
		wg.Go(func() { _ = c.safeCheck(ctx, b) })
	}
	wg.Wait()
	return c.Snapshot()
}

// Snapshot returns the Status of every target, keyed by Target.URL: the
// body of GET /admin/health. The map is the caller's.
func (c *Checker) Snapshot() map[string]Status {
	m := *c.backends.Load()
	out := make(map[string]Status, len(m))
	for url, b := range m {
		out[url] = b.status()
	}
	return out
}

// Close stops notification delivery: notifications still queued or
// waiting for a retry are given up (and logged), and Close waits for the
// sender to end. Run calls it before returning; call it yourself when you
// never call Run. Checks, SetTargets and the Report methods keep working
// after Close, without notifications. Close is idempotent.
func (c *Checker) Close() {
	c.closeMu.Do(func() {
		if c.notify != nil {
			c.notify.close()
		}
	})
}

// afterDown runs after a check found b down: it agrees on the outage's
// start with the other instances, then claims and queues the "down"
// notification once the outage has lasted NotifyDownAfter. Lease errors
// are logged and retried at the next check.
func (c *Checker) afterDown(ctx context.Context, b *backend, now time.Time) {
	b.mu.Lock()
	if b.st.code != codeDown {
		b.mu.Unlock()
		return
	}
	outage, start, shared, notified := b.st.outage, b.st.firstDownAt, b.st.outageShared, b.st.notifiedDown
	b.mu.Unlock()

	if !shared {
		agreed, err := c.notify.claimOutage(ctx, b.url, start)
		if err != nil {
			c.log.Warn("health lease unavailable", zap.String("backend", b.url), zap.Error(err))
			return
		}
		b.mu.Lock()
		if b.st.code != codeDown || b.st.outage != outage {
			b.mu.Unlock()
			// The outage ended while the claim was under way: the record
			// must not outlive it.
			c.notify.enqueue(job{kind: jobRelease, backend: b.url, start: agreed})
			return
		}
		// The first instance to see the outage sets its start for all, so
		// that they derive the same notification keys, and an instance
		// that restarts mid-outage does not start counting from zero.
		b.st.firstDownAt = agreed
		b.st.outageShared = true
		b.mu.Unlock()
		start = agreed
	}

	if notified || now.Sub(time.UnixMilli(start)) < c.cfg.NotifyDownAfter {
		return
	}
	claimed, err := c.notify.claimEvent(ctx, eventDown, b.url, start)
	if err != nil {
		c.log.Warn("health lease unavailable", zap.String("backend", b.url), zap.Error(err))
		return
	}
	b.mu.Lock()
	current := b.st.code == codeDown && b.st.outage == outage
	if current {
		// Refused means another instance (or this one before a restart)
		// has sent it: either way it has been sent.
		b.st.notifiedDown = true
	}
	reason := b.st.reason
	b.mu.Unlock()
	switch {
	case !current:
		// Recovered meanwhile, without a "recovered" since no "down" had
		// been sent: sending "down" now would only mislead.
	case claimed:
		c.notify.enqueue(job{kind: jobDown, backend: b.url, start: start,
			downFor: now.Sub(time.UnixMilli(start)), reason: reason})
	default:
		c.log.Debug("down notification already sent", zap.String("backend", b.url))
	}
}
