package sessioncache

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// The sweep closes the watchers of sessions that expire unused and drops
// expired login state and locks.
func TestMemorySweep(t *testing.T) {
	ctx := context.Background()
	clock := &testClock{}
	m, err := newMemory(Config{}, clock.now, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	mustPut(t, m, "idle", testSession("alice"))
	mustPut(t, m, "busy", testSession("alice"))
	if err := m.PutState(ctx, "state", &LoginState{Verifier: "v"}); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := m.AcquireRefreshLock(ctx, "idle", time.Minute); !ok || err != nil {
		t.Fatalf("AcquireRefreshLock = %v, %v", ok, err)
	}
	gone, cancel := m.Watch("idle")
	defer cancel()

	for range 10 { // 10 x 1h: "busy" is used each hour, "idle" never
		clock.advance(time.Hour)
		mustGet(t, m, "busy")
	}
	m.sweep()
	if !isClosed(gone) {
		t.Fatal("sweep did not close the watch of an expired session")
	}
	m.mu.Lock()
	states, locks, users := len(m.states), len(m.locks), len(m.users["alice"])
	m.mu.Unlock()
	if states != 0 || locks != 0 || users != 1 {
		t.Fatalf("after sweep: %d states, %d locks, %d indexed sessions of alice; want 0, 0, 1", states, locks, users)
	}
	if n, err := m.DeleteUserSessions(ctx, "alice"); n != 1 || err != nil {
		t.Fatalf("DeleteUserSessions = %d, %v; want 1", n, err)
	}
}

func TestMemoryCloseStopsSweeper(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	m, err := NewMemory(Config{})
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, m, "sid", testSession("alice"))
	m.Close()
	if _, err := m.GetSession(context.Background(), "sid"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("GetSession after Close: %v", err)
	}
}

func TestNewMemoryRejectsInvalidConfig(t *testing.T) {
	if _, err := NewMemory(Config{TouchInterval: 9 * time.Hour}); err == nil {
		t.Fatal("NewMemory accepted a TouchInterval longer than the IdleTimeout")
	}
}
