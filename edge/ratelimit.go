package edge

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
)

// Rate limits (issue 6): /auth/* per client IP (AUTH_RATE_LIMIT, 60 a
// minute by default), and optionally /api/* per signed-in subject
// (API_RATE_LIMIT_PER_USER). Over the limit: 429 {"error":"rate_limited"}
// with Retry-After and the RateLimit-Limit, RateLimit-Remaining and
// RateLimit-Reset headers of draft-ietf-httpapi-ratelimit-headers (sent on
// every /auth answer too).
//
// # Algorithm
//
// A limit of L requests per window W counts admitted requests (refused ones
// do not count) per key in fixed windows: window w covers the Unix time
// [w*W, (w+1)*W), the same on every instance (clocks synchronised by NTP).
// IPv6 clients are keyed by their /64, which one client normally holds
// whole.
//
// Without Redis the count is per process and exact: at most L per window.
//
// With Redis, the count of key k in window w is the Redis integer
// getaway:ratelimit:<limit>:{<sha256(k)>}:<w>, and each instance keeps,
// per key, known (the total Redis last returned), pending (admitted here,
// not yet sent) and inflight (sent, no answer yet). A request is admitted
// when
//
//	known + inflight + pending < L   and   inflight + pending < S
//
// where S = ceil(L/20) is the instance's share: how many requests it may
// admit that Redis has not counted yet. Sending is one EVALSHA of
// syncScript (INCRBY pending, PEXPIRE a new key to the window's end plus
// 10 s; it returns the total, which becomes known). The admission that
// spends the share (inflight + pending = S) queues the key, and a
// background sender sends it at once, in one pipeline with every other
// queued key (and retries every 250 ms while sends fail). A request that
// finds the share spent waits for that answer, or sends itself when nothing
// is in flight, up to 100 ms: that happens only when more than S requests
// of one key reach one instance within a Redis round trip. Every other
// request is decided locally, without waiting for Redis, and a key with
// fewer than S requests in a window on an instance costs no Redis command
// at all.
//
// Error bound: while Redis answers, N instances together admit at most
// L + (N-1)*S requests per key and window. Why: an instance never holds
// more than S admissions Redis has not counted, and it refuses once the
// total it learned plus its own uncounted ones reach L; so beyond L pass
// at most the other instances' uncounted shares. The bound is exact: an
// exhaustive search of every interleaving of admissions, sends and answers
// (L <= 8, S <= 6, N <= 3) finds L + (N-1)*S as the maximum every time,
// and TestRateLimitRedisShared reaches it. With L = 60 (S = 3): two
// instances admit at most 63, three 66, ten 87. Like every fixed window,
// 2L can pass within one W across a window boundary.
//
// Cost: one EVALSHA (two commands inside Redis: INCRBY, and PEXPIRE when
// it creates the key) per S admitted requests of a key and instance (per 3
// for the default 60/m); none for refused requests or for keys with fewer
// than S requests on an instance (a sign-in: login and callback); retries
// of failed sends every 250 ms. Sends are pipelined: one round trip for all
// the keys queued at once. TestRateLimitRedisCost measures it per 1,000
// requests.
//
// Redis unavailable (an error or no answer in time): the limiter fails open
// to per-instance limits: the share no longer applies, each instance admits
// while its own view (known + inflight + pending) is below L, so at most
// N*L per key and window, and requests never wait for Redis. It logs once
// (at most once a minute while Redis flaps) and logs again when a send
// succeeds; the counts admitted meanwhile are then sent.
//
// # Memory
//
// Each limit keeps at most RateLimitMaxKeys keys (about 150 bytes each),
// in 64 shards: a key not seen for a whole window is dropped at the next
// window change of its shard, and a full shard makes room by evicting the
// least recently seen of a sample of 8 of its keys (that key starts over;
// with Redis its uncounted requests, fewer than S, are lost). A flood of
// distinct addresses thus costs bounded memory; it can reset the counts of
// keys idle for longer than the flood's newest ones, not of a client that
// keeps sending.

// RateLimit is a number of requests per fixed window.
type RateLimit struct {
	// Requests is how many requests a key may make per Window.
	Requests int
	// Window is the length of a counting window.
	Window time.Duration
	// Off turns the limit off.
	Off bool
}

// IsZero reports whether r is the zero value, which a Config field reads
// as "the default".
func (r RateLimit) IsZero() bool { return r == RateLimit{} }

func (r RateLimit) enabled() bool { return !r.Off && r.Requests > 0 && r.Window > 0 }

// String returns r as ParseRateLimit reads it ("60/m", "0").
func (r RateLimit) String() string {
	if !r.enabled() {
		return "0"
	}
	switch r.Window {
	case time.Second:
		return strconv.Itoa(r.Requests) + "/s"
	case time.Minute:
		return strconv.Itoa(r.Requests) + "/m"
	case time.Hour:
		return strconv.Itoa(r.Requests) + "/h"
	}
	return strconv.Itoa(r.Requests) + "/" + r.Window.String()
}

// ParseRateLimit reads a limit: "0" or "off" (no limit), or
// "<requests>/<window>" where the window is s, m, h (one second, minute,
// hour) or a Go duration ("10/30s", "1000/1h30m"): 1 to 1e9 requests per 1 s
// to 24 h.
func ParseRateLimit(s string) (RateLimit, error) {
	s = strings.TrimSpace(s)
	if s == "0" || strings.EqualFold(s, "off") {
		return RateLimit{Off: true}, nil
	}
	n, per, ok := strings.Cut(s, "/")
	if !ok {
		return RateLimit{}, errors.New(`must be "0" or requests per window, e.g. "60/m"`)
	}
	req, err := strconv.Atoi(strings.TrimSpace(n))
	if err != nil || req < 1 || req > 1e9 {
		return RateLimit{}, errors.New("requests must be an integer from 1 to 1000000000")
	}
	var w time.Duration
	switch per = strings.TrimSpace(per); per {
	case "s", "sec", "second":
		w = time.Second
	case "m", "min", "minute":
		w = time.Minute
	case "h", "hour":
		w = time.Hour
	default:
		if w, err = time.ParseDuration(per); err != nil {
			return RateLimit{}, fmt.Errorf("window %q: must be s, m, h or a duration such as 30s", per)
		}
	}
	if w < time.Second || w > 24*time.Hour || w%time.Millisecond != 0 {
		return RateLimit{}, errors.New("window must be from 1s to 24h, in whole milliseconds")
	}
	return RateLimit{Requests: req, Window: w}, nil
}

// Tuning of the shared limiter; see the algorithm above.
const (
	rateShards       = 64                     // per limit; a power of two
	rateShareDivisor = 20                     // S = ceil(L / rateShareDivisor)
	rateSyncTick     = 250 * time.Millisecond // retries of failed sends
	rateSyncWait     = 100 * time.Millisecond // longest a request waits for Redis
	rateSyncTimeout  = time.Second            // a background send
	rateSyncBatch    = 512                    // sends per pipeline
	rateKeyTTLMargin = 10_000                 // ms a Redis counter outlives its window
	rateEvictSample  = 8
	rateDownLogEvery = time.Minute
)

var (
	bodyRateLimited = []byte(`{"error":"rate_limited"}`)

	// Header names in the form fasthttp stores them in, so setting them
	// does not normalise them on every request.
	headerRateLimitLimit     = []byte("Ratelimit-Limit")
	headerRateLimitRemaining = []byte("Ratelimit-Remaining")
	headerRateLimitReset     = []byte("Ratelimit-Reset")
	headerRetryAfter         = []byte(fasthttp.HeaderRetryAfter)

	authPrefix = []byte("/auth")
)

// syncScript adds ARGV[1] (> 0) to the counter KEYS[1], gives a counter it
// creates a lifetime of ARGV[2] ms, and returns the total. A total equal
// to the increment means the key was just created (the script is atomic,
// so it never lacks its expiry). One key: one cluster slot.
const syncScript = `
local n = tonumber(ARGV[1])
local c = redis.call('INCRBY', KEYS[1], n)
if c == n then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return c`

// decision is a limiter's answer for one request.
type decision struct {
	allowed   bool
	limit     int64
	remaining int64         // after this request
	reset     time.Duration // until the window ends
}

// limiter counts requests per key of type K. See the algorithm above. It
// is safe for concurrent use; allow allocates nothing for a known key.
type limiter[K comparable] struct {
	name        string // in Redis keys and logs: "auth", "api"
	limit       int64
	windowMs    int64
	share       int64 // S
	maxPerShard int
	now         func() time.Time
	seed        maphash.Seed
	hash        func(maphash.Seed, K) uint64
	text        func(K) string // the key as hashed into Redis keys
	store       counterStore   // nil: in process
	prefix      string         // of Redis keys, up to and including '{'
	log         *zap.Logger

	wake        chan struct{} // asks run for a send now
	down        atomic.Bool   // the last send failed: per-instance limits
	lastDownLog atomic.Int64  // unix ms of the last "unavailable" log
	downLogged  atomic.Bool   // a down was logged and not yet its end

	shards [rateShards]rateShard[K]
}

type rateShard[K comparable] struct {
	mu      sync.Mutex
	entries map[K]*rateEntry[K]
	dirty   []*rateEntry[K] // to send: the share is spent (Redis only)
	swept   int64           // window of the last sweep
	_       [64]byte        // keeps shards on their own cache lines
}

// rateEntry is one key's count on this instance. Guarded by its shard's mu.
type rateEntry[K comparable] struct {
	key      K
	window   int64
	known    int64 // Redis: the total last returned; in process: the count
	pending  int64 // admitted, not sent
	inflight int64 // sent, not answered
	lastSeen int64 // unix ms
	id       string
	done     chan struct{} // closed when the send in flight ends; made by a waiter
	syncing  bool          // a send is in flight
	queued   bool          // in the shard's dirty list
	evicted  bool          // no longer in the map
}

// newLimiter returns a limiter of rl, shared through store when it is not
// nil. maxKeys bounds the keys it tracks.
func newLimiter[K comparable](name string, rl RateLimit, maxKeys int, store counterStore, now func() time.Time,
	hash func(maphash.Seed, K) uint64, text func(K) string, log *zap.Logger) *limiter[K] {
	l := &limiter[K]{
		name:        name,
		limit:       int64(rl.Requests),
		windowMs:    rl.Window.Milliseconds(),
		maxPerShard: max(1, maxKeys/rateShards),
		now:         now,
		seed:        maphash.MakeSeed(),
		hash:        hash,
		text:        text,
		store:       store,
		prefix:      "getaway:ratelimit:" + name + ":{",
		log:         log,
		wake:        make(chan struct{}, 1),
	}
	l.share = (l.limit + rateShareDivisor - 1) / rateShareDivisor
	for i := range l.shards {
		l.shards[i].entries = make(map[K]*rateEntry[K])
	}
	return l
}

// allow decides one request of key and counts it when admitted.
func (l *limiter[K]) allow(key K) decision {
	nowMs := l.now().UnixMilli()
	w := nowMs / l.windowMs
	d := decision{limit: l.limit, reset: time.Duration((w+1)*l.windowMs-nowMs) * time.Millisecond}
	sh := &l.shards[l.hash(l.seed, key)&(rateShards-1)]
	sh.mu.Lock()
	if w > sh.swept {
		l.sweep(sh, w)
	}
	e := sh.entries[key]
	if e == nil {
		e = l.insert(sh, key, w)
	}
	e.lastSeen = nowMs
	var deadline time.Time // of waiting for Redis; set when first needed
	for {
		if e.window < w {
			e.roll(w)
		}
		used := e.known + e.inflight + e.pending
		if used >= l.limit {
			sh.mu.Unlock()
			return d
		}
		switch {
		case l.store == nil:
			e.known++
		case e.inflight+e.pending < l.share || l.down.Load():
			l.admitPending(sh, e)
		default:
			// The share is spent: Redis must count this instance's
			// admissions before it admits more.
			if deadline.IsZero() {
				deadline = time.Now().Add(rateSyncWait)
			}
			if l.syncFor(sh, e, w, nowMs, deadline) {
				continue
			}
			// No answer in time: decide on the local count (fail open).
			l.admitPending(sh, e)
		}
		sh.mu.Unlock()
		d.allowed, d.remaining = true, l.limit-used-1
		return d
	}
}

// admitPending counts an admission to be sent, and queues the key for a
// background send once the share is spent. sh.mu is held.
func (l *limiter[K]) admitPending(sh *rateShard[K], e *rateEntry[K]) {
	e.pending++
	if e.pending+e.inflight >= l.share && !e.queued && !e.evicted {
		e.queued = true
		sh.dirty = append(sh.dirty, e)
		if !l.down.Load() {
			select {
			case l.wake <- struct{}{}:
			default:
			}
		}
	}
}

// syncFor makes Redis count e's admissions, or waits for the send in
// flight, until deadline. It is called and returns with sh.mu held, and
// reports whether an answer came in time.
func (l *limiter[K]) syncFor(sh *rateShard[K], e *rateEntry[K], w, nowMs int64, deadline time.Time) bool {
	wait := time.Until(deadline)
	if wait <= 0 {
		return false
	}
	if e.syncing {
		if e.done == nil {
			e.done = make(chan struct{})
		}
		done := e.done
		sh.mu.Unlock()
		t := time.NewTimer(wait)
		var ok bool
		select {
		case <-done:
			ok = true
		case <-t.C:
		}
		t.Stop()
		sh.mu.Lock()
		return ok
	}
	ops := [1]counterOp{l.takeOp(e, w, nowMs)}
	sh.mu.Unlock()
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	l.store.add(ctx, ops[:])
	cancel()
	sh.mu.Lock()
	l.finish(sh, e, w, &ops[0])
	return ops[0].err == nil
}

// takeOp moves e's pending admissions in flight and returns their send.
// sh.mu is held.
func (l *limiter[K]) takeOp(e *rateEntry[K], w, nowMs int64) counterOp {
	n := e.pending
	e.pending = 0
	e.inflight += n
	e.syncing = true
	if e.id == "" {
		sum := sha256.Sum256([]byte(l.text(e.key)))
		e.id = hex.EncodeToString(sum[:])
	}
	return counterOp{
		key:   l.prefix + e.id + "}:" + strconv.FormatInt(w, 10),
		n:     n,
		ttlMs: (w+1)*l.windowMs - nowMs + rateKeyTTLMargin,
	}
}

// finish applies the answer to a send of e's window w. sh.mu is held.
func (l *limiter[K]) finish(sh *rateShard[K], e *rateEntry[K], w int64, op *counterOp) {
	e.syncing = false
	if e.done != nil {
		close(e.done)
		e.done = nil
	}
	if e.window != w {
		return // the window rolled meanwhile: its counts are moot
	}
	e.inflight -= op.n
	if op.err != nil {
		e.pending += op.n
		if !e.queued && !e.evicted {
			e.queued = true
			sh.dirty = append(sh.dirty, e)
		}
		l.markDown(op.err)
		return
	}
	e.known = op.total
	l.markUp()
	if e.queued && !l.down.Load() {
		// Admitted meanwhile, and spent the share again: send at once.
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
}

// markDown records a failed send; the first after a success is logged, at
// most once every rateDownLogEvery.
func (l *limiter[K]) markDown(err error) {
	if !l.down.CompareAndSwap(false, true) {
		return
	}
	now := time.Now().UnixMilli()
	if last := l.lastDownLog.Load(); last != 0 && now-last < rateDownLogEvery.Milliseconds() {
		return
	}
	l.lastDownLog.Store(now)
	l.downLogged.Store(true)
	l.log.Warn("rate limit counters unavailable: limiting per instance until redis answers",
		zap.String("limit", l.name), zap.Error(err))
}

func (l *limiter[K]) markUp() {
	if l.down.CompareAndSwap(true, false) && l.downLogged.CompareAndSwap(true, false) {
		l.log.Info("rate limit counters available again", zap.String("limit", l.name))
	}
}

func (e *rateEntry[K]) roll(w int64) {
	e.window, e.known, e.pending, e.inflight = w, 0, 0, 0
}

// insert adds key's entry, making room first when the shard is full.
// sh.mu is held.
func (l *limiter[K]) insert(sh *rateShard[K], key K, w int64) *rateEntry[K] {
	if len(sh.entries) >= l.maxPerShard {
		l.evictOne(sh, w)
	}
	e := &rateEntry[K]{key: key, window: w}
	sh.entries[key] = e
	return e
}

// evictOne removes one entry from a full shard: among a sample (a map's
// iteration starts at a random place), one of a past window with nothing
// to send, else the least recently seen. sh.mu is held.
func (l *limiter[K]) evictOne(sh *rateShard[K], w int64) {
	var victim *rateEntry[K]
	n := 0
	for _, e := range sh.entries {
		if e.window < w && e.pending == 0 && !e.syncing {
			victim = e
			break
		}
		if victim == nil || e.lastSeen < victim.lastSeen {
			victim = e
		}
		if n++; n == rateEvictSample {
			break
		}
	}
	if victim != nil {
		delete(sh.entries, victim.key)
		victim.evicted = true
	}
}

// sweep drops the entries not seen in window w-1 or w (nor sending). It
// runs once per window per shard, on the request that finds the new
// window. sh.mu is held.
func (l *limiter[K]) sweep(sh *rateShard[K], w int64) {
	sh.swept = w
	for k, e := range sh.entries {
		if e.window < w-1 && !e.syncing {
			delete(sh.entries, k)
			e.evicted = true
		}
	}
}

// len returns the number of keys tracked.
func (l *limiter[K]) len() int {
	n := 0
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		n += len(sh.entries)
		sh.mu.Unlock()
	}
	return n
}

// run sends queued keys when woken, and every rateSyncTick (retries),
// until ctx ends. Only a limiter with a store runs.
func (l *limiter[K]) run(ctx context.Context) {
	t := time.NewTicker(rateSyncTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.wake:
		case <-t.C:
		}
		l.flush(ctx)
	}
}

// flush sends every queued key of the current window, pipelined.
func (l *limiter[K]) flush(ctx context.Context) {
	nowMs := l.now().UnixMilli()
	w := nowMs / l.windowMs
	type sent struct {
		sh *rateShard[K]
		e  *rateEntry[K]
	}
	var ops []counterOp
	var refs []sent
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		keep := sh.dirty[:0]
		for _, e := range sh.dirty {
			switch {
			case e.evicted || e.window != w || e.pending == 0:
				e.queued = false
			case e.syncing:
				keep = append(keep, e) // the request path is sending it
			default:
				e.queued = false
				ops = append(ops, l.takeOp(e, w, nowMs))
				refs = append(refs, sent{sh, e})
			}
		}
		clear(sh.dirty[len(keep):])
		sh.dirty = keep
		sh.mu.Unlock()
	}
	for start := 0; start < len(ops); start += rateSyncBatch {
		end := min(start+rateSyncBatch, len(ops))
		cctx, cancel := context.WithTimeout(ctx, rateSyncTimeout)
		l.store.add(cctx, ops[start:end])
		cancel()
		for i := start; i < end; i++ {
			r := refs[i]
			r.sh.mu.Lock()
			l.finish(r.sh, r.e, w, &ops[i])
			r.sh.mu.Unlock()
		}
	}
}

// counterStore holds the counters all instances share.
type counterStore interface {
	// add adds each op's n to its counter (created to expire after ttlMs)
	// and sets the op's total, or its err.
	add(ctx context.Context, ops []counterOp)
}

// counterOp is one send: n more admissions of one key in one window.
type counterOp struct {
	key   string
	n     int64
	ttlMs int64
	total int64
	err   error
}

// redisCounters is the counterStore in Redis: one EVALSHA of syncScript
// per op, pipelined; EVAL for a server that lost the script.
type redisCounters struct {
	client rueidis.Client
	sha    string
}

var _ counterStore = (*redisCounters)(nil)

func newRedisCounters(c rueidis.Client) *redisCounters {
	sum := sha1.Sum([]byte(syncScript))
	return &redisCounters{client: c, sha: hex.EncodeToString(sum[:])}
}

func (r *redisCounters) add(ctx context.Context, ops []counterOp) {
	cmds := make(rueidis.Commands, len(ops))
	for i := range ops {
		cmds[i] = r.client.B().Evalsha().Sha1(r.sha).Numkeys(1).Key(ops[i].key).
			Arg(strconv.FormatInt(ops[i].n, 10), strconv.FormatInt(ops[i].ttlMs, 10)).Build()
	}
	var missing []int
	for i, res := range r.client.DoMulti(ctx, cmds...) {
		ops[i].total, ops[i].err = res.AsInt64()
		if rerr, ok := rueidis.IsRedisErr(ops[i].err); ok && rerr.IsNoScript() {
			missing = append(missing, i)
		}
	}
	if len(missing) == 0 {
		return
	}
	cmds = cmds[:0]
	for _, i := range missing {
		cmds = append(cmds, r.client.B().Eval().Script(syncScript).Numkeys(1).Key(ops[i].key).
			Arg(strconv.FormatInt(ops[i].n, 10), strconv.FormatInt(ops[i].ttlMs, 10)).Build())
	}
	for j, res := range r.client.DoMulti(ctx, cmds...) {
		i := missing[j]
		ops[i].total, ops[i].err = res.AsInt64()
	}
}

// Keys of the limits: a client IP (IPv6 by its /64) and a subject.

// rateKeyIP is the key of a client address: IPv4 as it is, IPv6 its /64.
func rateKeyIP(a netip.Addr) netip.Addr {
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

func hashAddr(seed maphash.Seed, a netip.Addr) uint64 {
	b := a.As16()
	return maphash.Bytes(seed, b[:])
}

func hashString(seed maphash.Seed, s string) uint64 { return maphash.String(seed, s) }

func addrText(a netip.Addr) string { return a.String() }

func stringText(s string) string { return s }

// rateLimits are the server's limiters, nil when off.
type rateLimits struct {
	auth *limiter[netip.Addr] // /auth/* per client IP
	api  *limiter[string]     // /api/* per subject
	stop context.CancelFunc
	done sync.WaitGroup
}

// newRateLimits builds the limits of cfg (defaults applied), shared
// through deps.RateLimitRedis when it is set, and starts their senders.
func newRateLimits(cfg Config, deps Deps, log *zap.Logger) *rateLimits {
	now := deps.now
	if now == nil {
		now = time.Now
	}
	var store counterStore
	if deps.RateLimitRedis != nil {
		store = newRedisCounters(deps.RateLimitRedis)
	}
	rl := &rateLimits{}
	if cfg.AuthRateLimit.enabled() {
		rl.auth = newLimiter("auth", cfg.AuthRateLimit, cfg.RateLimitMaxKeys, store, now, hashAddr, addrText, log)
	}
	if cfg.APIRateLimitPerUser.enabled() {
		rl.api = newLimiter("api", cfg.APIRateLimitPerUser, cfg.RateLimitMaxKeys, store, now, hashString, stringText, log)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rl.stop = cancel
	if store != nil {
		if rl.auth != nil {
			rl.done.Add(1)
			go func() { defer rl.done.Done(); rl.auth.run(ctx) }()
		}
		if rl.api != nil {
			rl.done.Add(1)
			go func() { defer rl.done.Done(); rl.api.run(ctx) }()
		}
	}
	return rl
}

// close stops the senders; counts not sent yet are dropped.
func (rl *rateLimits) close() {
	rl.stop()
	rl.done.Wait()
}

// isAuthPath reports path == "/auth" or a path under "/auth/".
func isAuthPath(path []byte) bool {
	return bytes.HasPrefix(path, authPrefix) && (len(path) == len(authPrefix) || path[len(authPrefix)] == '/')
}

// rateLimitAuth limits /auth/* per client IP and tells every /auth answer
// where the client stands.
func (s *Server) rateLimitAuth(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		if !isAuthPath(ctx.Path()) {
			next(ctx)
			return
		}
		d := s.limits.auth.allow(rateKeyIP(s.clientIP.ClientIP(ctx)))
		if !d.allowed {
			writeRateLimited(ctx, d)
			return
		}
		next(ctx)
		setRateLimitHeaders(&ctx.Response.Header, d)
	}
}

// allowAPI applies the per-subject limit to an authenticated /api request,
// or answers 429 and returns false. An identity without a subject is not
// limited.
func (s *Server) allowAPI(ctx *fasthttp.RequestCtx, sub string) bool {
	if s.limits.api == nil || sub == "" {
		return true
	}
	d := s.limits.api.allow(sub)
	if !d.allowed {
		writeRateLimited(ctx, d)
	}
	return d.allowed
}

// writeRateLimited answers 429 with the limit's headers.
func writeRateLimited(ctx *fasthttp.RequestCtx, d decision) {
	writeJSON(ctx, fasthttp.StatusTooManyRequests, bodyRateLimited)
	h := &ctx.Response.Header
	setRateLimitHeaders(h, d)
	var buf [20]byte
	h.SetCanonical(headerRetryAfter, strconv.AppendInt(buf[:0], resetSeconds(d.reset), 10))
}

// setRateLimitHeaders sets RateLimit-Limit, -Remaining and -Reset.
func setRateLimitHeaders(h *fasthttp.ResponseHeader, d decision) {
	var buf [20]byte
	h.SetCanonical(headerRateLimitLimit, strconv.AppendInt(buf[:0], d.limit, 10))
	h.SetCanonical(headerRateLimitRemaining, strconv.AppendInt(buf[:0], d.remaining, 10))
	h.SetCanonical(headerRateLimitReset, strconv.AppendInt(buf[:0], resetSeconds(d.reset), 10))
}

// resetSeconds rounds up to whole seconds, at least 1.
func resetSeconds(d time.Duration) int64 {
	return max(1, int64((d+time.Second-1)/time.Second))
}
