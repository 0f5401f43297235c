package sessioncache

import (
	"sync"
	"sync/atomic"
)

// localShardCount spreads the decoded sessions over independently locked
// maps. Digests are uniform, so the first byte picks the shard.
const localShardCount = 64

// localCache is the layer of decoded sessions that Redis.GetSession
// answers from. It sits in front of the rueidis client-side cache because
// a rueidis hit still copies and JSON-decodes the value (allocating); here
// a hit is a map lookup and two atomic loads.
//
// Consistency: an entry is only as good as the rueidis tracking behind it,
// so it is dropped whenever rueidis would drop its own copy:
//   - the server invalidates the key (a write or delete by any client,
//     this one included, or expiry): invalidate;
//   - a connection is lost or closed (the server can no longer promise
//     invalidations), or the server flushed its tracking table: flush;
//   - CacheTTL passed, or the key's server TTL ran out: the entry's own
//     expiry, which is never later than the rueidis entry's.
//
// An invalidation can arrive while a GetSession is between reading the
// value from Redis and inserting it here. To keep that stale value out,
// every invalidation bumps its shard's generation, and an insert only
// happens if the generation is the one read before the fetch began.
type localCache struct {
	shards   [localShardCount]localShard
	perShard int

	// Lookups answered here (hits) and sent to Redis (misses), for Stats.
	hits, misses atomic.Uint64
}

// Stats counts session lookups since a store was created.
type Stats struct {
	// Hits were answered from process memory, without Redis.
	Hits uint64
	// Misses were sent to Redis (a rueidis cache hit included: it still
	// decodes the stored value).
	Misses uint64
}

// Stats returns the lookups of GetSession so far. Without client-side
// caching every lookup is a miss.
func (r *Redis) Stats() Stats {
	return Stats{Hits: r.local.hits.Load(), Misses: r.local.misses.Load()}
}

type localShard struct {
	mu  sync.RWMutex
	gen atomic.Uint64 // changed only with mu held
	m   map[digest]*localRecord
}

// localRecord is what one instance knows about one session. It outlives
// its cached value: touched must survive invalidations and expiries, or
// every refill would look like a session never touched.
type localRecord struct {
	val     atomic.Pointer[localEntry] // nil: not cached
	touched atomic.Int64               // when this instance last extended (or set) the idle timeout, store-clock unix ns
	// bypass is set, to a deadline in store-clock unix ns, right after this
	// instance wrote or deleted the session. Until the server's
	// invalidation of that write has reached rueidis, a rueidis cache hit
	// may predate the write, so reads ignore hits and ask the server. The
	// first read that rueidis itself sends to the server ends it.
	bypass atomic.Int64
}

type localEntry struct {
	s       *Session
	expires int64 // store-clock unix ns
}

func (c *localCache) init(maxEntries int) {
	c.perShard = max(1, maxEntries/localShardCount)
	for i := range c.shards {
		c.shards[i].m = make(map[digest]*localRecord)
	}
}

func (c *localCache) shard(d digest) *localShard { return &c.shards[d[0]%localShardCount] }

// lookup returns the record of d, or nil. It does not allocate.
func (c *localCache) lookup(d digest) *localRecord {
	sh := c.shard(d)
	sh.mu.RLock()
	rec := sh.m[d]
	sh.mu.RUnlock()
	return rec
}

// generation returns the generation to pass to store after a fetch.
func (c *localCache) generation(d digest) uint64 { return c.shard(d).gen.Load() }

// record returns the record of d, creating it if needed.
func (c *localCache) record(d digest) *localRecord {
	sh := c.shard(d)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.recordLocked(d, c.perShard)
}

func (sh *localShard) recordLocked(d digest, limit int) *localRecord {
	rec := sh.m[d]
	if rec == nil {
		if len(sh.m) >= limit {
			for k := range sh.m { // map order is random: drop an arbitrary entry
				delete(sh.m, k)
				break
			}
		}
		rec = &localRecord{}
		sh.m[d] = rec
	}
	return rec
}

// store caches e for d unless d's shard saw an invalidation since gen was
// read, and returns d's record either way.
func (c *localCache) store(d digest, gen uint64, e *localEntry) *localRecord {
	sh := c.shard(d)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	rec := sh.recordLocked(d, c.perShard)
	if sh.gen.Load() == gen {
		rec.val.Store(e)
	}
	return rec
}

// invalidate drops the cached value of d.
func (c *localCache) invalidate(d digest) {
	sh := c.shard(d)
	sh.mu.Lock()
	sh.gen.Add(1)
	if rec := sh.m[d]; rec != nil {
		rec.val.Store(nil)
	}
	sh.mu.Unlock()
}

// flush drops every cached value.
func (c *localCache) flush() {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		sh.gen.Add(1)
		for _, rec := range sh.m {
			rec.val.Store(nil)
		}
		sh.mu.Unlock()
	}
}

// prune forgets records that hold nothing useful any more: no live value
// and no touch within touchInterval.
func (c *localCache) prune(now, touchInterval int64) {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for d, rec := range sh.m {
			if e := rec.val.Load(); e != nil && now < e.expires {
				continue
			}
			if now-rec.touched.Load() < touchInterval {
				continue
			}
			delete(sh.m, d)
		}
		sh.mu.Unlock()
	}
}

// len returns how many records are kept (for tests).
func (c *localCache) len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}
