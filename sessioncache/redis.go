package sessioncache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bytedance/sonic"
	"github.com/redis/rueidis"
	"go.uber.org/zap"
)

// jsonAPI encodes and decodes stored values. CopyString keeps decoded
// sessions independent of the buffers rueidis hands out.
var jsonAPI = sonic.Config{CopyString: true, ValidateString: true, CaseSensitive: true}.Froze()

// Scripts. Each touches one key, so each runs on one cluster slot.
var (
	// touchScript extends a session's idle timeout to ARGV[1] ms, but only
	// when its remaining TTL is at least ARGV[2] (TouchInterval) ms short
	// of that. Several instances touching one session within an interval
	// thus cause one write, and one invalidation on every instance, not one
	// each. It never revives a missing key.
	touchScript = rueidis.NewLuaScript(`
local pttl = redis.call('PTTL', KEYS[1])
if pttl < 0 then return 0 end
if tonumber(ARGV[1]) - pttl < tonumber(ARGV[2]) then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1`)

	// unlockScript deletes a lock only if it still holds our token.
	unlockScript = rueidis.NewLuaScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)
)

const (
	// jobQueueSize bounds the background touches and deletions waiting
	// to run. When it is full new ones are dropped: a missed touch only
	// means the next one comes an interval later.
	jobQueueSize = 1024
	// watchPollInterval is how often Watch checks its sessions when there
	// are no invalidations to tell it (client-side caching off).
	watchPollInterval = 500 * time.Millisecond
	// watchRetryMax bounds the back-off between re-checks of watched
	// sessions while Redis cannot answer.
	watchRetryMax = 2 * time.Second
)

// Redis is a [Store] in Redis (6.2 or later; single node, TLS or cluster)
// through rueidis, with server-assisted client-side caching.
//
// GetSession answers from a map of decoded sessions in process memory,
// filled from rueidis DoCache and emptied by the server's invalidations, so
// a session deleted or changed on any gateway instance stops being served
// everywhere as soon as the invalidation arrives (normally well under a
// millisecond on a LAN). When a connection is lost, rueidis drops its cache
// and so does this layer: during an outage GetSession fails with
// ErrUnavailable rather than serve a session that may have ended. When
// Redis hangs rather than refuses, a breaker makes those failures
// immediate after the first few timeouts, until a background PING gets an
// answer (see breaker.go).
//
// Keys hold SHA-256 digests, never raw ids (see keyspace). A Redis must be
// created with [NewRedis] and is safe for concurrent use.
type Redis struct {
	cfg    Config
	log    *zap.Logger
	client rueidis.Client
	keys   keyspace
	now    func() time.Time
	// cached is false when client-side caching is off (by Config or because
	// the server lacks RESP3 tracking). The local layer then only keeps
	// touch times, and Watch polls.
	cached bool

	local localCache
	watch watchSet
	kick  chan struct{} // wakes the watch loop; capacity 1
	// watchChecks counts completed rounds of watch checks (for tests).
	watchChecks atomic.Uint64

	jobs chan job

	// brk fails operations that need Redis at once while it does not
	// answer (see breaker.go).
	brk *breaker

	bg        context.Context // cancelled by Close; parent of background commands
	stop      context.CancelFunc
	closed    atomic.Bool
	wg        sync.WaitGroup
	closeOnce sync.Once
}

type jobKind uint8

const (
	jobTouch   jobKind = iota + 1 // extend the idle timeout to want
	jobExpire                     // delete a session found past its absolute expiry
	jobBarrier                    // close done: every job queued before has run (tests)
)

type job struct {
	kind jobKind
	d    digest
	want time.Duration
	done chan struct{}
}

// NewRedis connects to Redis and returns a store configured by cfg (zero
// fields take their defaults). rawURL is one of
//
//	redis://[user:password@]host:port[/db][?options]   plain TCP
//	rediss://[user:password@]host:port[/db][?options]  TLS (1.2+)
//	redis://host1:p1,host2:p2,host3:p3                  a cluster, any nodes of it
//
// with the options rueidis.ParseURL understands (dial_timeout,
// client_cache=0, protocol=2, ...). A cluster is detected by itself,
// whichever of its nodes are given; with several hosts and TLS, each node's
// certificate is checked against the address dialled. If the server does
// not support client-side caching (RESP3 CLIENT TRACKING), NewRedis warns
// once and continues without it. log may be nil.
func NewRedis(ctx context.Context, rawURL string, cfg Config, log *zap.Logger) (*Redis, error) {
	return newRedis(ctx, rawURL, cfg, log, time.Now)
}

// newRedis is NewRedis with an injectable clock, for tests.
func newRedis(ctx context.Context, rawURL string, cfg Config, log *zap.Logger, now func() time.Time) (*Redis, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	opt, err := parseRedisURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("sessioncache: parsing redis url: %w", err)
	}
	if log == nil {
		log = zap.NewNop()
	}
	r := &Redis{
		cfg:  cfg,
		log:  log.Named("sessioncache"),
		keys: newKeyspace(cfg.KeyPrefix),
		now:  now,
		kick: make(chan struct{}, 1),
		jobs: make(chan job, jobQueueSize),
		brk:  newBreaker(breakerThreshold, breakerWindow(cfg.CommandTimeout), now),
	}
	r.local.init(cfg.MaxCachedSessions)
	r.watch = newWatchSet()
	r.bg, r.stop = context.WithCancel(context.Background())

	// Fail fast: a dead Redis must cost a request at most CommandTimeout,
	// so dial within it, detect a silent peer within it (unless the URL's
	// dial_timeout and write_timeout say otherwise), and retry a read only
	// twice, briefly (rueidis' default retries until the deadline).
	if opt.Dialer.Timeout == 0 {
		opt.Dialer.Timeout = cfg.CommandTimeout
	}
	if opt.ConnWriteTimeout == 0 {
		opt.ConnWriteTimeout = cfg.CommandTimeout
	}
	opt.RetryDelay = func(attempts int, _ rueidis.Completed, _ error) time.Duration {
		if attempts > 2 {
			return -1
		}
		return time.Duration(attempts) * 20 * time.Millisecond
	}
	if opt.ClientName == "" {
		opt.ClientName = "getaway"
	}
	opt.OnInvalidations = r.onInvalidations
	opt.DisableCache = opt.DisableCache || cfg.DisableClientCache

	client, err := rueidis.NewClient(opt)
	if errors.Is(err, rueidis.ErrNoCache) {
		// The server lacks RESP3 or CLIENT TRACKING (Redis < 6, some
		// proxies and managed offerings). Without invalidations no copy may
		// be kept in process: every read goes to Redis.
		r.log.Warn("redis does not support client-side caching; every session lookup will query redis",
			zap.Error(err))
		opt.DisableCache = true
		client, err = rueidis.NewClient(opt)
	}
	if err != nil {
		r.stop()
		return nil, unavailable("connecting to redis", err)
	}
	r.client = client
	r.cached = !opt.DisableCache
	pctx, cancel := r.opContext(ctx)
	err = client.Do(pctx, client.B().Ping().Build()).Error()
	cancel()
	if err != nil {
		r.stop()
		client.Close()
		return nil, unavailable("connecting to redis", err)
	}

	r.wg.Add(3)
	go r.jobLoop()
	go r.watchLoop()
	go r.probeLoop()
	r.log.Info("redis session store ready",
		zap.String("mode", string(client.Mode())),
		zap.Bool("client_cache", r.cached),
		zap.Strings("nodes", opt.InitAddress))
	return r, nil
}

// parseRedisURL is rueidis.ParseURL plus the comma-separated host list of
// a cluster ("redis://h1:p1,h2:p2"), which net/url rejects: the extra
// hosts become rueidis' "addr" query parameters.
func parseRedisURL(raw string) (rueidis.ClientOption, error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return rueidis.ClientOption{}, errors.New("missing scheme (want redis:// or rediss://)")
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	userinfo, hostlist := "", authority
	if at := strings.LastIndexByte(authority, '@'); at >= 0 {
		userinfo, hostlist = authority[:at+1], authority[at+1:]
	}
	hosts := strings.Split(hostlist, ",")
	if len(hosts) > 1 {
		var b strings.Builder
		b.WriteString(scheme + "://" + userinfo + strings.TrimSpace(hosts[0]) + tail)
		sep := "?"
		if strings.Contains(tail, "?") {
			sep = "&"
		}
		for _, h := range hosts[1:] {
			h = strings.TrimSpace(h)
			if h == "" {
				return rueidis.ClientOption{}, errors.New("empty host in host list")
			}
			b.WriteString(sep + "addr=" + url.QueryEscape(h))
			sep = "&"
		}
		raw = b.String()
	}
	opt, err := rueidis.ParseURL(raw)
	if err != nil {
		// A *url.Error repeats the whole URL, password included.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return opt, err
	}
	if len(hosts) > 1 && opt.TLSConfig != nil {
		// ParseURL pinned the first host's name; let each connection
		// verify the node it dials instead.
		opt.TLSConfig.ServerName = ""
	}
	return opt, nil
}

// unavailable wraps a Redis failure of op.
func unavailable(op string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
}

func noCancel() {}

// opContext bounds one operation by CommandTimeout, unless ctx already
// ends sooner.
func (r *Redis) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= r.cfg.CommandTimeout {
		return ctx, noCancel
	}
	return context.WithTimeout(ctx, r.cfg.CommandTimeout)
}

// GetSession implements [Store]. A hit in the local layer neither
// allocates nor talks to Redis; a miss costs one DoCache (five commands
// pipelined in one round trip, or a rueidis cache hit).
func (r *Redis) GetSession(ctx context.Context, id string) (*Session, error) {
	if r.closed.Load() {
		return nil, errClosed
	}
	if id == "" {
		return nil, ErrNotFound
	}
	d := digestOf(id)
	now := r.now()
	var rec *localRecord
	if r.cached {
		if rec = r.local.lookup(d); rec != nil {
			if e := rec.val.Load(); e != nil && now.UnixNano() < e.expires {
				r.local.hits.Add(1)
				return r.serve(d, rec, e.s, now)
			}
		}
	}
	r.local.misses.Add(1)
	return r.fetch(ctx, d, rec, now)
}

// fetch reads session d from Redis (through the rueidis cache when it is
// on) and caches the decoded value. rec is d's local record, if any.
func (r *Redis) fetch(ctx context.Context, d digest, rec *localRecord, now time.Time) (*Session, error) {
	if err := r.guard("get session"); err != nil {
		return nil, err
	}
	ctx, cancel := r.opContext(ctx)
	defer cancel()
	key := r.keys.sessionKey(d)
	var (
		res   rueidis.RedisResult
		gen   uint64
		store = r.cached
	)
	if r.cached {
		gen = r.local.generation(d) // before the read: see localCache
		res = r.client.DoCache(ctx, r.client.B().Get().Key(key).Cache(), r.cfg.CacheTTL)
		if rec != nil && now.UnixNano() < rec.bypass.Load() {
			if res.IsCacheHit() {
				// Possibly older than our own write: ask the server, and
				// keep nothing.
				res = r.client.Do(ctx, r.client.B().Get().Key(key).Build())
				store = false
			} else if res.NonRedisError() == nil {
				rec.bypass.Store(0) // rueidis read it from the server just now
			}
		}
	} else {
		res = r.client.Do(ctx, r.client.B().Get().Key(key).Build())
	}
	raw, err := res.ToString()
	r.observe(err)
	if rueidis.IsRedisNil(err) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, unavailable("get session", err)
	}
	s := new(Session)
	if err := jsonAPI.UnmarshalFromString(raw, s); err != nil {
		return nil, fmt.Errorf("sessioncache: get session: decoding stored value: %w", err)
	}
	if store {
		expires := now.UnixNano() + int64(r.cfg.CacheTTL)
		// Never outlive the rueidis entry, which is capped by the key's
		// server TTL: past it, tracking may no longer cover the key.
		if pttl := res.CachePTTL(); pttl >= 0 {
			expires = min(expires, now.UnixNano()+pttl*int64(time.Millisecond))
		}
		rec = r.local.store(d, gen, &localEntry{s: s, expires: expires})
	} else if rec == nil {
		rec = r.local.record(d)
	}
	return r.serve(d, rec, s, now)
}

// serve applies the absolute lifetime and schedules a touch when due.
func (r *Redis) serve(d digest, rec *localRecord, s *Session, now time.Time) (*Session, error) {
	if s.pastAbsolute(now.Unix()) {
		r.local.invalidate(d)
		r.enqueue(job{kind: jobExpire, d: d})
		return nil, ErrNotFound
	}
	n := now.UnixNano()
	if t := rec.touched.Load(); n-t >= int64(r.cfg.TouchInterval) && rec.touched.CompareAndSwap(t, n) {
		want := min(r.cfg.IdleTimeout, time.Unix(s.AbsoluteExpiresAt, 0).Sub(now))
		if want >= time.Millisecond {
			r.enqueue(job{kind: jobTouch, d: d, want: want})
		}
	}
	return s, nil
}

// enqueue hands j to the background worker without ever blocking the
// request; when the queue is full j is dropped.
func (r *Redis) enqueue(j job) {
	select {
	case r.jobs <- j:
	default:
	}
}

// PutSession implements [Store]. It writes the session and adds it to its
// subject's index in one round trip. The Sub of a session id must never
// change (authflow creates a new id at each sign-in).
func (r *Redis) PutSession(ctx context.Context, id string, s *Session) error {
	if r.closed.Load() {
		return errClosed
	}
	if id == "" || s == nil {
		return errors.New("sessioncache: put session: empty id or nil session")
	}
	now := r.now()
	c, ttl := prepareSession(s, now, &r.cfg)
	if ttl < time.Millisecond {
		return r.DeleteSession(ctx, id)
	}
	data, err := jsonAPI.Marshal(c)
	if err != nil {
		return fmt.Errorf("sessioncache: put session: encoding: %w", err)
	}
	d := digestOf(id)
	b := r.client.B()
	cmds := make(rueidis.Commands, 0, 3)
	cmds = append(cmds, b.Set().Key(r.keys.sessionKey(d)).Value(rueidis.BinaryString(data)).
		PxMilliseconds(ttl.Milliseconds()).Build())
	if c.Sub != "" {
		// The index outlives every session in it: each session ends by
		// CreatedAt + AbsoluteLifetime <= now + AbsoluteLifetime.
		uk := r.keys.userKey(digestOf(c.Sub))
		cmds = append(cmds,
			b.Sadd().Key(uk).Member(d.String()).Build(),
			b.Pexpire().Key(uk).Milliseconds(r.cfg.AbsoluteLifetime.Milliseconds()).Build())
	}
	if err := r.guard("put session"); err != nil {
		return err
	}
	ctx, cancel := r.opContext(ctx)
	defer cancel()
	for _, res := range r.client.DoMulti(ctx, cmds...) {
		if err := res.Error(); err != nil {
			r.observe(err)
			return unavailable("put session", err)
		}
	}
	r.observe(nil)
	// The write just set the full idle timeout: no touch is due for an
	// interval. Drop our copy at once rather than wait for the
	// invalidation to come back.
	r.wrote(d, now)
	r.local.record(d).touched.Store(now.UnixNano())
	return nil
}

// wrote drops this instance's copy of session d right after writing or
// deleting it, without waiting for the server's invalidation, and makes the
// next reads skip rueidis cache hits that may predate the write (see
// localRecord.bypass).
func (r *Redis) wrote(d digest, now time.Time) {
	if !r.cached {
		return
	}
	r.local.record(d).bypass.Store(now.Add(time.Second).UnixNano())
	r.local.invalidate(d)
}

// DeleteSession implements [Store].
func (r *Redis) DeleteSession(ctx context.Context, id string) error {
	if r.closed.Load() {
		return errClosed
	}
	if err := r.guard("delete session"); err != nil {
		return err
	}
	ctx, cancel := r.opContext(ctx)
	defer cancel()
	_, err := r.deleteDigest(ctx, digestOf(id))
	r.observe(err)
	if err != nil {
		return unavailable("delete session", err)
	}
	return nil
}

// deleteDigest deletes session d, removes it from its subject's index and
// closes its local watchers. It reports whether the session existed.
func (r *Redis) deleteDigest(ctx context.Context, d digest) (bool, error) {
	raw, err := r.client.Do(ctx, r.client.B().Getdel().Key(r.keys.sessionKey(d)).Build()).ToString()
	if err != nil && !rueidis.IsRedisNil(err) {
		return false, err
	}
	r.wrote(d, r.now())
	r.watch.fire(d)
	if err != nil { // nil reply: there was no such session
		return false, nil
	}
	var owner struct {
		Sub string `json:"sub"`
	}
	if jsonAPI.UnmarshalFromString(raw, &owner) == nil && owner.Sub != "" {
		uk := r.keys.userKey(digestOf(owner.Sub))
		if err := r.client.Do(ctx, r.client.B().Srem().Key(uk).Member(d.String()).Build()).Error(); err != nil {
			return true, err
		}
	}
	return true, nil
}

// DeleteUserSessions implements [Store].
func (r *Redis) DeleteUserSessions(ctx context.Context, sub string) (int, error) {
	if r.closed.Load() {
		return 0, errClosed
	}
	if err := r.guard("delete user sessions"); err != nil {
		return 0, err
	}
	ctx, cancel := r.opContext(ctx)
	defer cancel()
	uk := r.keys.userKey(digestOf(sub))
	members, err := r.client.Do(ctx, r.client.B().Smembers().Key(uk).Build()).AsStrSlice()
	r.observe(err)
	if err != nil {
		return 0, unavailable("delete user sessions", err)
	}
	if len(members) == 0 {
		return 0, nil
	}
	ds := make([]digest, 0, len(members))
	cmds := make(rueidis.Commands, 0, len(members))
	for _, m := range members {
		if d, ok := parseHexDigest(m); ok {
			ds = append(ds, d)
			cmds = append(cmds, r.client.B().Del().Key(r.keys.sessionKeyFromHex(m)).Build())
		}
	}
	n := 0
	now := r.now()
	// One DEL per session: in a cluster the sessions live in different
	// slots, and rueidis routes each command to its node.
	for i, res := range r.client.DoMulti(ctx, cmds...) {
		deleted, err := res.AsInt64()
		if err != nil {
			return n, unavailable("delete user sessions", err)
		}
		n += int(deleted)
		r.wrote(ds[i], now)
		r.watch.fire(ds[i])
	}
	// Remove only the members read: a session added meanwhile stays indexed.
	if err := r.client.Do(ctx, r.client.B().Srem().Key(uk).Member(members...).Build()).Error(); err != nil {
		return n, unavailable("delete user sessions", err)
	}
	return n, nil
}

// PutState implements [Store].
func (r *Redis) PutState(ctx context.Context, state string, st *LoginState) error {
	if r.closed.Load() {
		return errClosed
	}
	if state == "" || st == nil {
		return errors.New("sessioncache: put state: empty state or nil login state")
	}
	data, err := jsonAPI.Marshal(st)
	if err != nil {
		return fmt.Errorf("sessioncache: put state: encoding: %w", err)
	}
	if err := r.guard("put state"); err != nil {
		return err
	}
	ctx, cancel := r.opContext(ctx)
	defer cancel()
	cmd := r.client.B().Set().Key(r.keys.stateKey(digestOf(state))).Value(rueidis.BinaryString(data)).
		PxMilliseconds(r.cfg.StateTTL.Milliseconds()).Build()
	err = r.client.Do(ctx, cmd).Error()
	r.observe(err)
	if err != nil {
		return unavailable("put state", err)
	}
	return nil
}

// TakeState implements [Store] with GETDEL, which is atomic.
func (r *Redis) TakeState(ctx context.Context, state string) (*LoginState, error) {
	if r.closed.Load() {
		return nil, errClosed
	}
	if err := r.guard("take state"); err != nil {
		return nil, err
	}
	ctx, cancel := r.opContext(ctx)
	defer cancel()
	raw, err := r.client.Do(ctx, r.client.B().Getdel().Key(r.keys.stateKey(digestOf(state))).Build()).ToString()
	r.observe(err)
	if rueidis.IsRedisNil(err) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, unavailable("take state", err)
	}
	st := new(LoginState)
	if err := jsonAPI.UnmarshalFromString(raw, st); err != nil {
		return nil, fmt.Errorf("sessioncache: take state: decoding stored value: %w", err)
	}
	return st, nil
}

// AcquireRefreshLock implements [Store] with SET NX PX and a random token;
// release runs a compare-and-delete script bounded by CommandTimeout, and
// ignores failures (the lock then expires after ttl).
func (r *Redis) AcquireRefreshLock(ctx context.Context, id string, ttl time.Duration) (func(), bool, error) {
	if r.closed.Load() {
		return nil, false, errClosed
	}
	if ttl < time.Millisecond {
		return nil, false, fmt.Errorf("sessioncache: acquire refresh lock: ttl must be at least 1ms, got %v", ttl)
	}
	var tok [16]byte
	_, _ = rand.Read(tok[:]) // never fails (crypto/rand)
	token := hex.EncodeToString(tok[:])
	key := r.keys.lockKey(digestOf(id))
	if err := r.guard("acquire refresh lock"); err != nil {
		return nil, false, err
	}
	ctx, cancel := r.opContext(ctx)
	defer cancel()
	err := r.client.Do(ctx, r.client.B().Set().Key(key).Value(token).Nx().PxMilliseconds(ttl.Milliseconds()).Build()).Error()
	r.observe(err)
	if rueidis.IsRedisNil(err) {
		return func() {}, false, nil
	}
	if err != nil {
		return nil, false, unavailable("acquire refresh lock", err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(r.bg, r.cfg.CommandTimeout)
			defer cancel()
			if err := unlockScript.Exec(ctx, r.client, []string{key}, []string{token}).Error(); err != nil {
				r.log.Debug("releasing refresh lock failed; it will expire", zap.Error(err))
			}
		})
	}, true, nil
}

// Watch implements [Store]. The session is checked (and tracked, so that
// its invalidation reaches this instance) right away, and again after each
// invalidation of its key or loss of a connection; the channel closes once
// a check finds the key gone. Closing therefore takes one invalidation plus
// one GET, or, with client-side caching off, up to half a second.
func (r *Redis) Watch(id string) (<-chan struct{}, func()) {
	d := digestOf(id)
	ch, cancel := r.watch.add(d)
	if r.watch.markPending(d) {
		r.wakeWatch()
	}
	return ch, cancel
}

// Ping implements [Store].
func (r *Redis) Ping(ctx context.Context) error {
	if r.closed.Load() {
		return errClosed
	}
	if err := r.guard("ping"); err != nil {
		return err
	}
	ctx, cancel := r.opContext(ctx)
	defer cancel()
	err := r.client.Do(ctx, r.client.B().Ping().Build()).Error()
	r.observe(err)
	if err != nil {
		return unavailable("ping", err)
	}
	return nil
}

// Close implements [Store]: it closes the Redis connections and stops the
// background goroutines, waiting for them.
func (r *Redis) Close() {
	r.closeOnce.Do(func() {
		r.closed.Store(true)
		r.stop()
		r.client.Close()
		r.wg.Wait()
		r.local.flush()
	})
}

// onInvalidations receives the server's invalidation messages from
// rueidis (on a connection's reader goroutine, so it must be quick).
// rueidis calls it with nil when the server flushed its tracking table
// and when a connection is closed or lost: the cache of that connection
// is gone and changes made meanwhile will never be announced, so
// everything is dropped and every watched session is checked again.
func (r *Redis) onInvalidations(msgs []rueidis.RedisMessage) {
	if len(msgs) == 0 {
		r.local.flush()
		if r.watch.markAllPending() {
			r.wakeWatch()
		}
		return
	}
	wake := false
	for i := range msgs {
		key, err := msgs[i].ToString()
		if err != nil {
			continue
		}
		d, ok := r.keys.parseSessionKey(key)
		if !ok {
			continue
		}
		r.local.invalidate(d)
		if r.watch.markPending(d) {
			wake = true
		}
	}
	if wake {
		r.wakeWatch()
	}
}

func (r *Redis) wakeWatch() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// jobLoop runs touches and deletions off the request path.
func (r *Redis) jobLoop() {
	defer r.wg.Done()
	for {
		select {
		case <-r.bg.Done():
			return
		case j := <-r.jobs:
			r.runJob(j)
		}
	}
}

func (r *Redis) runJob(j job) {
	ctx, cancel := context.WithTimeout(r.bg, r.cfg.CommandTimeout)
	defer cancel()
	var err error
	op := "touch session"
	switch j.kind {
	case jobTouch:
		err = touchScript.Exec(ctx, r.client, []string{r.keys.sessionKey(j.d)},
			[]string{strconv.FormatInt(j.want.Milliseconds(), 10), strconv.FormatInt(r.cfg.TouchInterval.Milliseconds(), 10)}).Error()
	case jobExpire:
		op = "delete expired session"
		_, err = r.deleteDigest(ctx, j.d)
	case jobBarrier:
		close(j.done)
	}
	if err != nil && r.bg.Err() == nil {
		r.log.Debug("background session update failed", zap.String("op", op), zap.Error(err))
	}
}

// watchLoop checks watched sessions when told to (invalidation, lost
// connection, new watch), retries with back-off while Redis cannot
// answer, polls when there are no invalidations, and prunes the local
// layer.
func (r *Redis) watchLoop() {
	defer r.wg.Done()
	prune := time.NewTicker(sweepInterval)
	defer prune.Stop()
	var poll <-chan time.Time
	if !r.cached {
		t := time.NewTicker(watchPollInterval)
		defer t.Stop()
		poll = t.C
	}
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	backoff := time.Duration(0)
	for {
		select {
		case <-r.bg.Done():
			return
		case <-prune.C:
			r.local.prune(r.now().UnixNano(), int64(r.cfg.TouchInterval))
			continue
		case <-poll:
			if !r.watch.markAllPending() {
				continue
			}
		case <-r.kick:
		case <-retry.C:
		}
		if r.checkWatched() {
			backoff = 0
			continue
		}
		backoff = min(max(2*backoff, 100*time.Millisecond), watchRetryMax)
		retry.Reset(backoff)
	}
}

// checkWatched checks every pending watched session and closes the
// watchers of those that are gone. It reports false when Redis could not
// answer for some; they stay pending.
func (r *Redis) checkWatched() bool {
	ds := r.watch.takePending()
	if len(ds) == 0 {
		return true
	}
	defer r.watchChecks.Add(1)
	ctx, cancel := context.WithTimeout(r.bg, r.cfg.CommandTimeout)
	defer cancel()
	var results []rueidis.RedisResult
	if r.cached {
		// DoCache, not Do: the read must (re)establish tracking of the key
		// on this connection, or its next change would go unannounced.
		multi := make([]rueidis.CacheableTTL, len(ds))
		for i, d := range ds {
			multi[i] = rueidis.CT(r.client.B().Get().Key(r.keys.sessionKey(d)).Cache(), r.cfg.CacheTTL)
		}
		results = r.client.DoMultiCache(ctx, multi...)
	} else {
		multi := make(rueidis.Commands, len(ds))
		for i, d := range ds {
			multi[i] = r.client.B().Exists().Key(r.keys.sessionKey(d)).Build()
		}
		results = r.client.DoMulti(ctx, multi...)
	}
	ok := true
	for i, res := range results {
		var gone bool
		if r.cached {
			err := res.Error()
			if err != nil && !rueidis.IsRedisNil(err) {
				r.watch.markPending(ds[i])
				ok = false
				continue
			}
			gone = err != nil
		} else {
			n, err := res.AsInt64()
			if err != nil {
				r.watch.markPending(ds[i])
				ok = false
				continue
			}
			gone = n == 0
		}
		if gone {
			r.watch.fire(ds[i])
		}
	}
	return ok
}

// ParseRedisURL turns REDIS_URL (redis://, rediss://, or a cluster's
// comma-separated host list) into rueidis options, for the gateway's other
// Redis clients (config sync, notification leases). Errors never repeat
// the URL, which may hold a password.
func ParseRedisURL(raw string) (rueidis.ClientOption, error) {
	return parseRedisURL(raw)
}
