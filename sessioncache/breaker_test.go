package sessioncache

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/apigetaway/getaway/sessioncache/redistest"
	"github.com/redis/rueidis"
)

// The breaker's state machine, on a clock of the test's own.
func TestBreaker(t *testing.T) {
	timeout := fmt.Errorf("get session: %w", context.DeadlineExceeded)
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	const (
		F = iota // no answer
		S        // success
		N        // nil reply: an answer
		C        // the caller cancelled
	)
	outcome := map[int]error{F: timeout, S: nil, N: rueidis.Nil, C: context.Canceled}

	for _, tc := range []struct {
		name     string
		outcomes []int
		open     bool
	}{
		{"below the threshold", []int{F, F}, false},
		{"at the threshold", []int{F, F, F}, true},
		{"a success resets the count", []int{F, F, S, F, F}, false},
		{"a success after a reset counts again", []int{F, F, S, F, F, F}, true},
		{"a nil reply is an answer", []int{F, F, N, F, F}, false},
		{"a cancellation counts for nothing", []int{F, F, C, F}, true},
		{"a success while open does not close", []int{F, F, F, S, S}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBreaker(3, 10*time.Second, time.Now)
			opened := 0
			for _, o := range tc.outcomes {
				if b.observe(outcome[o]) {
					opened++
				}
			}
			if got := b.allow() != nil; got != tc.open {
				t.Fatalf("open = %v, want %v", got, tc.open)
			}
			if want := map[bool]int{false: 0, true: 1}[tc.open]; opened != want || len(b.opened) != want {
				t.Fatalf("opened %d times, %d signals queued, want %d", opened, len(b.opened), want)
			}
		})
	}

	t.Run("connection errors count", func(t *testing.T) {
		b := newBreaker(3, 10*time.Second, time.Now)
		b.observe(refused)
		b.observe(refused)
		if !b.observe(refused) {
			t.Fatal("three refused connections did not open the breaker")
		}
	})

	t.Run("failures further apart than the window", func(t *testing.T) {
		now := time.Unix(1_000_000, 0)
		b := newBreaker(3, 10*time.Second, func() time.Time { return now })
		b.observe(timeout)
		b.observe(timeout)
		now = now.Add(11 * time.Second)
		if b.observe(timeout) {
			t.Fatal("failures 11s apart opened a breaker with a 10s window")
		}
		// The count restarted with that failure: two more open it.
		now = now.Add(9 * time.Second)
		b.observe(timeout)
		if !b.observe(timeout) {
			t.Fatal("three failures within the window did not open the breaker")
		}
	})

	t.Run("probes", func(t *testing.T) {
		b := newBreaker(3, 10*time.Second, time.Now)
		for range 3 {
			b.observe(timeout)
		}
		<-b.opened
		for range 5 { // still failing: no new signal
			b.observe(timeout)
		}
		if len(b.opened) != 0 {
			t.Fatal("an open breaker signalled opening again")
		}
		if b.probed(timeout) || b.allow() == nil {
			t.Fatal("a failed probe closed the breaker")
		}
		if !b.probed(nil) || b.allow() != nil {
			t.Fatal("a successful probe did not close the breaker")
		}
		if b.probed(nil) {
			t.Fatal("a probe of a closed breaker reported closing it")
		}
		// Closed with a fresh count: the failures before do not add up.
		b.observe(timeout)
		b.observe(timeout)
		if b.allow() != nil {
			t.Fatal("two failures after closing reopened the breaker")
		}
		if !b.observe(timeout) || len(b.opened) != 1 {
			t.Fatal("the breaker did not open (and signal) again")
		}
	})

	t.Run("window", func(t *testing.T) {
		if got := breakerWindow(2 * time.Second); got != 12*time.Second {
			t.Errorf("window for a 2s command timeout: %v, want 12s", got)
		}
		if got := breakerWindow(100 * time.Millisecond); got != breakerMinWindow {
			t.Errorf("window for a 100ms command timeout: %v, want %v", got, breakerMinWindow)
		}
	})
}

// A closed breaker costs a request that goes to Redis no allocation.
func TestBreakerClosedAllocs(t *testing.T) {
	b := newBreaker(3, 10*time.Second, time.Now)
	if n := testing.AllocsPerRun(100, func() {
		_ = b.allow()
		b.observe(nil)
	}); n != 0 {
		t.Fatalf("%v allocations per operation with the breaker closed, want 0", n)
	}
}

// A hung Redis (SIGSTOP): the first operations wait for the command
// timeout; after breakerThreshold of them the store fails at once with
// ErrUnavailable caused by the open breaker, Ping included; once Redis runs
// again a probe closes the breaker and the store serves again.
func TestRedisBreakerHungServer(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	r := newTestRedis(t, []*redistest.Server{srv}, Config{CommandTimeout: 300 * time.Millisecond}, nil)
	mustPut(t, r, "sid", testSession("alice"))

	srv.Pause(t)
	defer srv.Resume(t) // should the test stop early: the store closes against a running server
	// Ids never read are not in process memory: each lookup needs Redis.
	for i := range breakerThreshold {
		_, err := r.GetSession(ctx, fmt.Sprintf("unknown-%d", i))
		if !errors.Is(err, ErrUnavailable) || errors.Is(err, errBreakerOpen) {
			t.Fatalf("lookup %d with Redis hung: %v, want ErrUnavailable from a timeout", i, err)
		}
	}
	if _, err := r.GetSession(ctx, "unknown-x"); !errors.Is(err, ErrUnavailable) || !errors.Is(err, errBreakerOpen) {
		t.Fatalf("lookup after %d timeouts: %v, want ErrUnavailable from the open breaker", breakerThreshold, err)
	}
	if err := r.Ping(ctx); !errors.Is(err, errBreakerOpen) {
		t.Fatalf("Ping with the breaker open: %v", err)
	}
	if err := r.PutState(ctx, "state", &LoginState{Verifier: "v"}); !errors.Is(err, errBreakerOpen) {
		t.Fatalf("PutState with the breaker open: %v", err)
	}

	srv.Resume(t)
	waitFor(t, 5*time.Second, "the breaker closes once Redis answers", func() bool { return r.brk.allow() == nil })
	if s := mustGet(t, r, "sid"); s.Sub != "alice" {
		t.Fatalf("session after the hang: %+v", s)
	}
	if err := r.Ping(ctx); err != nil {
		t.Fatalf("Ping after the hang: %v", err)
	}
}
