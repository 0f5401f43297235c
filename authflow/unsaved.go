package authflow

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apigetaway/getaway/sessioncache"
	"go.uber.org/zap"
)

// Renewed sessions the store could not take. A refresh spends the session's
// refresh token at the provider, which rotates it: from then on only the
// renewed session's refresh token works. If the store refuses the renewed
// session (Redis went down during the refresh), dropping it would leave the
// store with the dead token, and the next refresh would end the session
// with invalid_grant: a Redis blip would sign the user out. So the renewed
// session is kept in process memory, served to this instance's requests in
// place of the older stored one, and written to the store in the
// background once it answers again.

const (
	// unsavedMax bounds the renewed sessions one instance keeps in memory
	// while the store refuses them. Past it a refresh whose session cannot
	// be stored fails as it would without this (503).
	unsavedMax = 1024
	// unsavedRetryMin and unsavedRetryMax bound the writer's backoff
	// between attempts to store them.
	unsavedRetryMin = 100 * time.Millisecond
	unsavedRetryMax = time.Second
)

// unsavedEntry is a renewed session not yet in the store.
type unsavedEntry struct {
	sess      *sessioncache.Session // read-only once kept
	renewedAt time.Time
}

// unsavedSessions holds the renewed sessions the store refused, by session
// id, and the state of their background writer. The zero value is ready.
type unsavedSessions struct {
	n atomic.Int64 // len(m), so the hot path skips the lock when empty

	// writeMu orders the writer's store writes against a refresh of the
	// same session on this instance: without it the writer could store an
	// older renewed session over a newer one a refresh has just stored.
	writeMu sync.Mutex

	mu      sync.Mutex // guards the fields below
	m       map[string]unsavedEntry
	running bool               // a writer goroutine is running
	closed  bool               // Close was called: keep nothing more
	cancel  context.CancelFunc // stops the running writer
	done    chan struct{}      // closed when that writer returns
}

// has reports whether a renewed session of id is waiting to be stored.
func (u *unsavedSessions) has(id string) bool {
	if u.n.Load() == 0 {
		return false
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	_, ok := u.m[id]
	return ok
}

// drop forgets id's entry: only if it still holds s, or whatever it holds
// when s is nil.
func (u *unsavedSessions) drop(id string, s *sessioncache.Session) {
	if u.n.Load() == 0 {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if e, ok := u.m[id]; ok && (s == nil || e.sess == s) {
		u.removeLocked(id)
	}
}

func (u *unsavedSessions) removeLocked(id string) {
	delete(u.m, id)
	u.n.Add(-1)
}

// prefer chooses between what the store answered for id (stored, err) and
// a renewed session of id not yet stored, at now (unix seconds).
func (u *unsavedSessions) prefer(id string, stored *sessioncache.Session, err error, now int64) (*sessioncache.Session, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	e, ok := u.m[id]
	switch {
	case !ok:
		return stored, err
	case errors.Is(err, sessioncache.ErrNotFound):
		// Deleted (a logout, on any instance) or expired: the end wins.
		u.removeLocked(id)
		return nil, err
	case e.sess.AbsoluteExpiresAt != 0 && now >= e.sess.AbsoluteExpiresAt:
		u.removeLocked(id)
		return nil, sessioncache.ErrNotFound
	case err != nil:
		// The store cannot answer; the renewed session is the latest.
		return e.sess, nil
	case stored.Version >= e.sess.Version:
		u.removeLocked(id) // the store has caught up
		return stored, nil
	default:
		// The store holds the session from before the refresh, whose
		// refresh token the provider no longer accepts.
		return e.sess, nil
	}
}

// snapshot returns the entries to write.
func (u *unsavedSessions) snapshot() map[string]unsavedEntry {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make(map[string]unsavedEntry, len(u.m))
	for id, e := range u.m {
		out[id] = e
	}
	return out
}

// current reports whether id's entry still holds s.
func (u *unsavedSessions) current(id string, s *sessioncache.Session) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	e, ok := u.m[id]
	return ok && e.sess == s
}

// idle marks the writer stopped and reports true when nothing is left to
// write; otherwise the writer must go on.
func (u *unsavedSessions) idle() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.m) > 0 {
		return false
	}
	u.running = false
	return true
}

// currentSession is the session of id as this instance knows it: the
// store's, or a renewed one the store has not taken yet when the store
// cannot answer or holds an older version. The hot path: with nothing
// unsaved it is the store's GetSession and one atomic load.
func (a *Auth) currentSession(ctx context.Context, id string) (*sessioncache.Session, error) {
	sess, err := a.store.GetSession(ctx, id)
	if a.unsaved.n.Load() == 0 {
		return sess, err
	}
	return a.unsaved.prefer(id, sess, err, a.now().Unix())
}

// keepUnsaved keeps s, the renewed session of id that the store refused,
// until the writer stores it, and starts the writer if needed. It reports
// whether s is kept, and whether id had no entry before (to log once per
// entry). It keeps nothing after Close or past unsavedMax.
func (a *Auth) keepUnsaved(id string, s *sessioncache.Session) (kept, first bool) {
	u := &a.unsaved
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return false, false
	}
	_, had := u.m[id]
	if !had && len(u.m) >= unsavedMax {
		return false, false
	}
	if u.m == nil {
		u.m = make(map[string]unsavedEntry)
	}
	u.m[id] = unsavedEntry{sess: s, renewedAt: a.now()}
	if !had {
		u.n.Add(1)
	}
	if !u.running {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		u.running, u.cancel, u.done = true, cancel, done
		go a.writeUnsaved(ctx, done)
	}
	return true, !had
}

// writeUnsaved stores the kept sessions, retrying with backoff, until none
// is left or Close cancels ctx.
func (a *Auth) writeUnsaved(ctx context.Context, done chan struct{}) {
	defer close(done)
	delay := unsavedRetryMin
	t := time.NewTimer(delay)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		wrote := false
		for id, e := range a.unsaved.snapshot() {
			if ctx.Err() != nil {
				return
			}
			wrote = a.storeUnsaved(ctx, id, e) || wrote
		}
		if a.unsaved.idle() {
			return
		}
		if wrote {
			delay = unsavedRetryMin
		} else {
			delay = min(2*delay, unsavedRetryMax)
		}
		t.Reset(delay)
	}
}

// storeUnsaved tries once to store e, the renewed session of id, and
// forgets it once stored or moot. It reports whether it stored it.
func (a *Auth) storeUnsaved(ctx context.Context, id string, e unsavedEntry) bool {
	u := &a.unsaved
	u.writeMu.Lock()
	defer u.writeMu.Unlock()
	if !u.current(id, e.sess) {
		return false // stored by a refresh, replaced by a newer one, or ended
	}
	if e.sess.AbsoluteExpiresAt != 0 && a.now().Unix() >= e.sess.AbsoluteExpiresAt {
		u.drop(id, e.sess)
		a.log.Info("unsaved session reached its absolute expiry", zap.String("sub", e.sess.Sub))
		return false
	}
	c, cancel := context.WithTimeout(ctx, a.cfg.HTTPTimeout)
	defer cancel()
	// Read first: a session deleted meanwhile (a logout, on any instance)
	// must stay deleted. A logout landing between this read and the write
	// below is the one it could miss.
	stored, err := a.store.GetSession(c, id)
	switch {
	case errors.Is(err, sessioncache.ErrNotFound):
		u.drop(id, e.sess)
		a.log.Info("unsaved session ended before it was stored", zap.String("sub", e.sess.Sub))
		return false
	case err != nil:
		return false
	case stored.Version >= e.sess.Version:
		u.drop(id, e.sess)
		return false
	}
	if err := a.store.PutSession(c, id, e.sess); err != nil {
		return false
	}
	u.drop(id, e.sess)
	a.log.Info("unsaved session stored", zap.String("sub", e.sess.Sub),
		zap.Duration("after", a.now().Sub(e.renewedAt)))
	return true
}

// Close stops the background writer of renewed sessions the store could not
// take (README "Faults"), waits for it to return, and tries once more,
// for at most 2 s, to store those still unsaved. What is still unsaved then
// is lost with the process; those users are signed out at their next
// refresh. After Close, a renewed session the store refuses fails its
// request (503), and Auth otherwise keeps working. Close is idempotent.
func (a *Auth) Close() {
	u := &a.unsaved
	u.mu.Lock()
	u.closed = true
	cancel, done := u.cancel, u.done
	u.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	// One last, bounded attempt for those still unsaved, so that a
	// shutdown after Redis came back loses none.
	ctx, stop := context.WithTimeout(context.Background(), min(a.cfg.HTTPTimeout, unsavedCloseTimeout))
	defer stop()
	for id, e := range u.snapshot() {
		if ctx.Err() != nil {
			break
		}
		a.storeUnsaved(ctx, id, e)
	}
}

// unsavedCloseTimeout bounds Close's last attempt to store the renewed
// sessions still in memory.
const unsavedCloseTimeout = 2 * time.Second
