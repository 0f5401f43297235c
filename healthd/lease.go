package healthd

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/rueidis"
)

// Lease is the memory the gateway instances share about notifications, so
// that only one of them sends each one and a restarted instance does not
// send it again. Keys are chosen by the Checker; a Lease stores them as
// they are.
//
// Implementations must be safe for concurrent use; [NewMemoryLease] is one
// for a single process, [NewRedisLease] one for instances sharing a Redis.
type Lease interface {
	// Claim stores value under key for ttl unless key holds a value
	// already (SET NX semantics). It returns the value in force after the
	// call, and whether this call stored it: exactly one of several
	// concurrent Claims of one key gets claimed == true. On error nothing
	// is known; the caller tries again later.
	Claim(ctx context.Context, key, value string, ttl time.Duration) (current string, claimed bool, err error)
	// Release deletes key if it holds value, and does nothing otherwise
	// (compare and delete), so that a later claim by someone else survives.
	Release(ctx context.Context, key, value string) error
}

var (
	_ Lease = (*MemoryLease)(nil)
	_ Lease = (*RedisLease)(nil)
)

// MemoryLease is a Lease in process memory, for one gateway instance (or
// several Checkers of one process, as in tests). It does not survive a
// restart. Safe for concurrent use.
type MemoryLease struct {
	now func() time.Time

	mu      sync.Mutex
	entries map[string]memoryEntry
}

type memoryEntry struct {
	value   string
	expires time.Time
}

// NewMemoryLease returns an empty MemoryLease.
func NewMemoryLease() *MemoryLease {
	return &MemoryLease{now: time.Now, entries: make(map[string]memoryEntry)}
}

// Claim implements Lease.
func (l *MemoryLease) Claim(_ context.Context, key, value string, ttl time.Duration) (string, bool, error) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	// Expired entries go on every claim: there is one key per backend and
	// outage event, so the map stays small and a sweep is cheap.
	for k, e := range l.entries {
		if !now.Before(e.expires) {
			delete(l.entries, k)
		}
	}
	if e, ok := l.entries[key]; ok {
		return e.value, false, nil
	}
	l.entries[key] = memoryEntry{value: value, expires: now.Add(ttl)}
	return value, true, nil
}

// Release implements Lease.
func (l *MemoryLease) Release(_ context.Context, key, value string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.entries[key]; ok && e.value == value {
		delete(l.entries, key)
	}
	return nil
}

// RedisLease is a Lease in Redis, shared by every gateway instance using
// the same Redis (single node or cluster: each operation touches one key).
// Claims survive a gateway restart for their ttl, and a Redis restart if
// Redis persists its data. Safe for concurrent use.
type RedisLease struct {
	client rueidis.Client
}

// NewRedisLease returns a Lease storing its keys through client, which
// stays the caller's to close.
func NewRedisLease(client rueidis.Client) *RedisLease {
	return &RedisLease{client: client}
}

// releaseScript deletes KEYS[1] only if it still holds ARGV[1], in one step.
var releaseScript = rueidis.NewLuaScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// Claim implements Lease with SET key value NX PX ttl, followed by a GET of
// the value in force when the SET was refused.
func (l *RedisLease) Claim(ctx context.Context, key, value string, ttl time.Duration) (string, bool, error) {
	b := l.client.B()
	// GET after a refused SET finds nothing if the key expired in between;
	// the SET is then tried again. Three rounds are plenty: a key expires
	// once.
	for range 3 {
		err := l.client.Do(ctx, b.Set().Key(key).Value(value).Nx().Px(ttl).Build()).Error()
		if err == nil {
			return value, true, nil
		}
		if !rueidis.IsRedisNil(err) {
			return "", false, fmt.Errorf("healthd: lease claim: %w", err)
		}
		current, err := l.client.Do(ctx, b.Get().Key(key).Build()).ToString()
		if err == nil {
			return current, false, nil
		}
		if !rueidis.IsRedisNil(err) {
			return "", false, fmt.Errorf("healthd: lease read: %w", err)
		}
	}
	return "", false, errors.New("healthd: lease claim: key expired during every attempt")
}

// Release implements Lease with a compare-and-delete script.
func (l *RedisLease) Release(ctx context.Context, key, value string) error {
	if err := releaseScript.Exec(ctx, l.client, []string{key}, []string{value}).Error(); err != nil {
		return fmt.Errorf("healthd: lease release: %w", err)
	}
	return nil
}
