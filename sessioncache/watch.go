package sessioncache

import "sync"

// watchSet holds the channels handed out by Watch, keyed by session
// digest, and (for Redis) the digests whose session must be checked again
// because an invalidation or a lost connection says it may have changed.
type watchSet struct {
	mu      sync.Mutex
	m       map[digest]map[*watcher]struct{}
	pending map[digest]struct{}
}

type watcher struct {
	ch chan struct{}
}

func newWatchSet() watchSet {
	return watchSet{
		m:       make(map[digest]map[*watcher]struct{}),
		pending: make(map[digest]struct{}),
	}
}

// add registers a watcher for d and returns its channel and its cancel
// function.
func (s *watchSet) add(d digest) (<-chan struct{}, func()) {
	w := &watcher{ch: make(chan struct{})}
	s.mu.Lock()
	ws := s.m[d]
	if ws == nil {
		ws = make(map[*watcher]struct{}, 1)
		s.m[d] = ws
	}
	ws[w] = struct{}{}
	s.mu.Unlock()
	var once sync.Once
	return w.ch, func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if ws := s.m[d]; ws != nil {
				delete(ws, w)
				if len(ws) == 0 {
					delete(s.m, d)
					delete(s.pending, d)
				}
			}
		})
	}
}

// fire closes every channel watching d and forgets them.
func (s *watchSet) fire(d digest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for w := range s.m[d] {
		close(w.ch)
	}
	delete(s.m, d)
	delete(s.pending, d)
}

// markPending records that d must be checked again, if anyone watches it,
// and reports whether it did.
func (s *watchSet) markPending(d digest) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[d]; !ok {
		return false
	}
	s.pending[d] = struct{}{}
	return true
}

// markAllPending records that every watched session must be checked again
// and reports whether there is any.
func (s *watchSet) markAllPending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for d := range s.m {
		s.pending[d] = struct{}{}
	}
	return len(s.m) > 0
}

// takePending returns the digests to check and clears the pending set.
func (s *watchSet) takePending() []digest {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) == 0 {
		return nil
	}
	ds := make([]digest, 0, len(s.pending))
	for d := range s.pending {
		ds = append(ds, d)
	}
	clear(s.pending)
	return ds
}

// len returns how many sessions are watched.
func (s *watchSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}
