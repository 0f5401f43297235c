package sessioncache

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// memShardCount spreads sessions over independently locked maps, so
// concurrent GetSession calls do not contend on one lock word.
const memShardCount = 32

// sweepInterval is how often the background sweeps drop expired entries.
const sweepInterval = time.Minute

// Memory is a [Store] in process memory: the embedded default for a single
// process without Redis. Sessions are lost on restart and not shared with
// other processes. It has the same semantics as [Redis] (time to live,
// single-use login state, refresh locks, Watch). Expired entries are
// dropped when next looked up and by a sweep once a minute; Watch channels
// of sessions that expire unused are closed by that sweep.
//
// A Memory must be created with [NewMemory] and is safe for concurrent
// use.
type Memory struct {
	cfg  Config
	now  func() time.Time
	seed maphash.Seed

	shards [memShardCount]memShard

	// mu serialises every write (a session's shard entry and its subject's
	// index change together) and guards the fields below. GetSession takes
	// only its shard's read lock.
	mu      sync.Mutex
	users   map[string]map[string]struct{} // subject -> session ids
	states  map[string]memState
	locks   map[string]memLock
	lockSeq uint64

	watch watchSet

	lookups atomic.Uint64 // GetSession calls, for Stats

	closed    atomic.Bool
	done      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

type memShard struct {
	mu sync.RWMutex
	m  map[string]*memSession
}

// memSession is one stored session. s is immutable; the idle deadline
// moves on use.
type memSession struct {
	s       *Session
	absNs   int64        // s.AbsoluteExpiresAt in unix nanoseconds
	expires atomic.Int64 // idle deadline, unix nanoseconds
	touched atomic.Int64 // last time the idle deadline moved, unix nanoseconds
}

type memState struct {
	st      *LoginState
	expires int64 // unix nanoseconds
}

type memLock struct {
	token   uint64
	expires int64 // unix nanoseconds
}

// NewMemory returns an in-memory store configured by cfg (zero fields take
// their defaults) and starts its sweep goroutine; Close stops it.
func NewMemory(cfg Config) (*Memory, error) {
	return newMemory(cfg, time.Now, sweepInterval)
}

// newMemory is NewMemory with an injectable clock and sweep interval, for
// tests (sweepEvery <= 0 starts no goroutine).
func newMemory(cfg Config, now func() time.Time, sweepEvery time.Duration) (*Memory, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := &Memory{
		cfg:    cfg.withDefaults(),
		now:    now,
		seed:   maphash.MakeSeed(),
		users:  make(map[string]map[string]struct{}),
		states: make(map[string]memState),
		locks:  make(map[string]memLock),
		watch:  newWatchSet(),
		done:   make(chan struct{}),
	}
	for i := range m.shards {
		m.shards[i].m = make(map[string]*memSession)
	}
	if sweepEvery > 0 {
		m.wg.Add(1)
		go m.sweepLoop(sweepEvery)
	}
	return m, nil
}

func (m *Memory) shard(id string) *memShard {
	return &m.shards[maphash.String(m.seed, id)%memShardCount]
}

// GetSession implements [Store].
func (m *Memory) GetSession(_ context.Context, id string) (*Session, error) {
	if m.closed.Load() {
		return nil, errClosed
	}
	m.lookups.Add(1)
	sh := m.shard(id)
	sh.mu.RLock()
	e := sh.m[id]
	sh.mu.RUnlock()
	if e == nil {
		return nil, ErrNotFound
	}
	now := m.now().UnixNano()
	if now >= e.expires.Load() || now >= e.absNs {
		m.remove(id, e)
		return nil, ErrNotFound
	}
	// Roll the idle deadline at most once per TouchInterval, like Redis
	// does, so both stores expire a session at the same moment.
	if t := e.touched.Load(); now-t >= int64(m.cfg.TouchInterval) && e.touched.CompareAndSwap(t, now) {
		e.expires.Store(min(now+int64(m.cfg.IdleTimeout), e.absNs))
	}
	return e.s, nil
}

// Stats returns the lookups of GetSession so far: all hits, since a
// Memory has nothing behind it to miss to.
func (m *Memory) Stats() Stats { return Stats{Hits: m.lookups.Load()} }

// PutSession implements [Store].
func (m *Memory) PutSession(ctx context.Context, id string, s *Session) error {
	if m.closed.Load() {
		return errClosed
	}
	if id == "" || s == nil {
		return errors.New("sessioncache: put session: empty id or nil session")
	}
	now := m.now()
	c, ttl := prepareSession(s, now, &m.cfg)
	if ttl <= 0 {
		return m.DeleteSession(ctx, id)
	}
	e := &memSession{s: c, absNs: c.AbsoluteExpiresAt * int64(time.Second)}
	e.expires.Store(now.Add(ttl).UnixNano())
	e.touched.Store(now.UnixNano())

	sh := m.shard(id)
	m.mu.Lock()
	sh.mu.Lock()
	old := sh.m[id]
	sh.m[id] = e
	sh.mu.Unlock()
	if old != nil && old.s.Sub != c.Sub {
		m.unindexLocked(old.s.Sub, id)
	}
	ids := m.users[c.Sub]
	if ids == nil {
		ids = make(map[string]struct{}, 1)
		m.users[c.Sub] = ids
	}
	ids[id] = struct{}{}
	m.mu.Unlock()
	return nil
}

// DeleteSession implements [Store].
func (m *Memory) DeleteSession(_ context.Context, id string) error {
	if m.closed.Load() {
		return errClosed
	}
	m.remove(id, nil)
	return nil
}

// remove deletes the session under id (only if it is still e, when e is
// not nil) and closes its watchers.
func (m *Memory) remove(id string, e *memSession) {
	sh := m.shard(id)
	m.mu.Lock()
	sh.mu.Lock()
	cur := sh.m[id]
	if cur != nil && (e == nil || cur == e) {
		delete(sh.m, id)
	}
	sh.mu.Unlock()
	if cur != nil && (e == nil || cur == e) {
		m.unindexLocked(cur.s.Sub, id)
	}
	m.mu.Unlock()
	if e == nil || cur == e || cur == nil {
		m.watch.fire(digestOf(id))
	}
}

// unindexLocked removes id from sub's index. m.mu must be held.
func (m *Memory) unindexLocked(sub, id string) {
	if ids := m.users[sub]; ids != nil {
		delete(ids, id)
		if len(ids) == 0 {
			delete(m.users, sub)
		}
	}
}

// DeleteUserSessions implements [Store].
func (m *Memory) DeleteUserSessions(_ context.Context, sub string) (int, error) {
	if m.closed.Load() {
		return 0, errClosed
	}
	now := m.now().UnixNano()
	m.mu.Lock()
	ids := m.users[sub]
	delete(m.users, sub)
	n := 0
	for id := range ids {
		sh := m.shard(id)
		sh.mu.Lock()
		if e := sh.m[id]; e != nil {
			delete(sh.m, id)
			if now < e.expires.Load() && now < e.absNs {
				n++
			}
		}
		sh.mu.Unlock()
	}
	m.mu.Unlock()
	for id := range ids {
		m.watch.fire(digestOf(id))
	}
	return n, nil
}

// PutState implements [Store].
func (m *Memory) PutState(_ context.Context, state string, st *LoginState) error {
	if m.closed.Load() {
		return errClosed
	}
	if state == "" || st == nil {
		return errors.New("sessioncache: put state: empty state or nil login state")
	}
	c := *st
	m.mu.Lock()
	m.states[state] = memState{st: &c, expires: m.now().Add(m.cfg.StateTTL).UnixNano()}
	m.mu.Unlock()
	return nil
}

// TakeState implements [Store].
func (m *Memory) TakeState(_ context.Context, state string) (*LoginState, error) {
	if m.closed.Load() {
		return nil, errClosed
	}
	m.mu.Lock()
	st, ok := m.states[state]
	delete(m.states, state)
	m.mu.Unlock()
	if !ok || m.now().UnixNano() >= st.expires {
		return nil, ErrNotFound
	}
	return st.st, nil
}

// AcquireRefreshLock implements [Store].
func (m *Memory) AcquireRefreshLock(_ context.Context, id string, ttl time.Duration) (func(), bool, error) {
	if m.closed.Load() {
		return nil, false, errClosed
	}
	if ttl < time.Millisecond {
		return nil, false, fmt.Errorf("sessioncache: acquire refresh lock: ttl must be at least 1ms, got %v", ttl)
	}
	now := m.now().UnixNano()
	m.mu.Lock()
	defer m.mu.Unlock()
	if l, held := m.locks[id]; held && now < l.expires {
		return func() {}, false, nil
	}
	m.lockSeq++
	token := m.lockSeq
	m.locks[id] = memLock{token: token, expires: now + int64(ttl)}
	var once sync.Once
	return func() {
		once.Do(func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			if l, held := m.locks[id]; held && l.token == token {
				delete(m.locks, id)
			}
		})
	}, true, nil
}

// Watch implements [Store]. The channel of a deleted session is closed
// before DeleteSession returns; that of a session that expires unused, by
// the next sweep (or the GetSession that finds it expired).
func (m *Memory) Watch(id string) (<-chan struct{}, func()) {
	d := digestOf(id)
	ch, cancel := m.watch.add(d)
	if !m.live(id) {
		m.watch.fire(d)
	}
	return ch, cancel
}

// live reports whether a session is stored under id, without touching it.
func (m *Memory) live(id string) bool {
	sh := m.shard(id)
	sh.mu.RLock()
	e := sh.m[id]
	sh.mu.RUnlock()
	now := m.now().UnixNano()
	return e != nil && now < e.expires.Load() && now < e.absNs
}

// Ping implements [Store].
func (m *Memory) Ping(context.Context) error {
	if m.closed.Load() {
		return errClosed
	}
	return nil
}

// Close implements [Store]: it stops the sweep goroutine.
func (m *Memory) Close() {
	m.closeOnce.Do(func() {
		m.closed.Store(true)
		close(m.done)
		m.wg.Wait()
	})
}

func (m *Memory) sweepLoop(every time.Duration) {
	defer m.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-m.done:
			return
		case <-t.C:
			m.sweep()
		}
	}
}

// sweep drops every expired session, state and lock, and closes the
// watchers of the expired sessions.
func (m *Memory) sweep() {
	now := m.now().UnixNano()
	var gone []string
	m.mu.Lock()
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		for id, e := range sh.m {
			if now >= e.expires.Load() || now >= e.absNs {
				delete(sh.m, id)
				m.unindexLocked(e.s.Sub, id)
				gone = append(gone, id)
			}
		}
		sh.mu.Unlock()
	}
	for k, st := range m.states {
		if now >= st.expires {
			delete(m.states, k)
		}
	}
	for k, l := range m.locks {
		if now >= l.expires {
			delete(m.locks, k)
		}
	}
	m.mu.Unlock()
	for _, id := range gone {
		m.watch.fire(digestOf(id))
	}
}
