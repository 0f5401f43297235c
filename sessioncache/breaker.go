package sessioncache

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
	"go.uber.org/zap"
)

// A Redis that is down refuses connections and each operation fails at
// once; a Redis that hangs (stopped, swapping, a network that drops
// packets) keeps every operation waiting for CommandTimeout. Under load
// every request that needs Redis then queues behind that wait. The breaker
// turns a hang into fast failures: after breakerThreshold operations in a
// row got no answer, the store fails every operation that needs Redis at
// once (ErrUnavailable, answered 503) while one background PING at a time
// watches for Redis to answer again. Sessions served from process memory
// never reach the breaker.
const (
	// breakerThreshold is how many Redis operations in a row must get no
	// answer (timeout, lost or refused connection) to open the breaker.
	breakerThreshold = 3
	// breakerMinWindow is the least time within which those failures must
	// fall, counted from the first; failures further apart start a new
	// count. See breakerWindow.
	breakerMinWindow = 10 * time.Second
	// probeInterval is the least time between two probes of an open
	// breaker, so that Redis is asked at most four times a second and
	// service resumes well within a second of Redis answering.
	probeInterval = 250 * time.Millisecond
	// probeTimeout bounds one probe PING.
	probeTimeout = 200 * time.Millisecond
)

// errBreakerOpen is the cause of ErrUnavailable while the breaker is open.
var errBreakerOpen = errors.New("redis not answering, failing fast until it does")

// breakerWindow is the breaker's window for a store whose operations time
// out after commandTimeout: wide enough for a client whose requests come
// one after another, each waiting for the timeout, to open it.
func breakerWindow(commandTimeout time.Duration) time.Duration {
	return max(breakerMinWindow, 2*breakerThreshold*commandTimeout)
}

// breaker is the state machine: closed, it counts operations that got no
// answer, and opens at threshold of them in a row within window; open, it
// refuses, until a probe succeeds. Its methods are safe for concurrent use;
// allow, and observe of a success while nothing failed, are one atomic
// load each.
type breaker struct {
	threshold int
	window    time.Duration
	now       func() time.Time

	open    atomic.Bool
	failing atomic.Bool // failures > 0: a success must reset the count

	mu       sync.Mutex // guards failures and first
	failures int        // in a row, in the current window
	first    time.Time  // of the current count

	// opened receives a value (capacity 1, never blocking) each time the
	// breaker opens, to start the probes.
	opened chan struct{}
}

func newBreaker(threshold int, window time.Duration, now func() time.Time) *breaker {
	return &breaker{threshold: threshold, window: window, now: now, opened: make(chan struct{}, 1)}
}

// allow returns errBreakerOpen while the breaker is open, else nil.
func (b *breaker) allow() error {
	if b.open.Load() {
		return errBreakerOpen
	}
	return nil
}

// noAnswer reports whether err means Redis gave no answer: a timeout, a
// refused, lost or unusable connection. A reply, even an error reply, is
// an answer; a caller that gave up (context.Canceled) says nothing about
// Redis.
func noAnswer(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var reply *rueidis.RedisError // error and nil replies alike
	return !errors.As(err, &reply)
}

// observe records the outcome of one Redis operation and reports whether
// it opened the breaker. Only probes close it.
func (b *breaker) observe(err error) (opened bool) {
	if !noAnswer(err) {
		if errors.Is(err, context.Canceled) || !b.failing.Load() {
			return false
		}
		b.mu.Lock()
		b.failures = 0
		b.failing.Store(false)
		b.mu.Unlock()
		return false
	}
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failures == 0 || now.Sub(b.first) > b.window {
		b.failures, b.first = 0, now
	}
	b.failures++
	b.failing.Store(true)
	if b.failures < b.threshold || b.open.Load() {
		return false
	}
	b.open.Store(true)
	select {
	case b.opened <- struct{}{}:
	default:
	}
	return true
}

// probed records the outcome of a probe and reports whether it closed the
// breaker: a success closes it with a fresh count.
func (b *breaker) probed(err error) (closed bool) {
	if err != nil {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failures = 0
	b.failing.Store(false)
	return b.open.Swap(false)
}

// guard is what an operation named op that needs Redis fails with at once
// while the breaker is open; nil otherwise.
func (r *Redis) guard(op string) error {
	if err := r.brk.allow(); err != nil {
		return unavailable(op, err)
	}
	return nil
}

// observe records the outcome of one Redis operation for the breaker.
func (r *Redis) observe(err error) {
	if r.brk.observe(err) {
		r.log.Warn("redis not answering; session store failing fast until a ping succeeds",
			zap.Int("failures", r.brk.threshold), zap.Error(err))
	}
}

// probeLoop probes Redis while the breaker is open: one PING at a time, at
// most one per probeInterval, each bounded by probeTimeout; the first that
// succeeds closes the breaker.
func (r *Redis) probeLoop() {
	defer r.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-r.bg.Done():
			return
		case <-r.brk.opened:
		}
		start := time.Now()
		for r.brk.open.Load() {
			timer.Reset(probeInterval - time.Since(start))
			select {
			case <-r.bg.Done():
				return
			case <-timer.C:
			}
			start = time.Now()
			ctx, cancel := context.WithTimeout(r.bg, probeTimeout)
			err := r.client.Do(ctx, r.client.B().Ping().Build()).Error()
			cancel()
			if r.brk.probed(err) {
				r.log.Info("redis answers again; session store serving")
			}
		}
	}
}
