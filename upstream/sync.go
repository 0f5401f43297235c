package upstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/rueidis"
	"go.uber.org/zap"
)

// ErrConflict means another instance published a config since this one last
// saw one: nothing was changed; read the config again and retry.
var ErrConflict = errors.New("upstream: the shared config changed meanwhile")

// Shared keeps the config in force the same on every gateway instance that
// shares one Redis: a versioned copy of the config lives in Redis, Publish
// replaces it only if nobody published since (compare-and-set on the
// version), and every instance applies a newer version as soon as the
// publication reaches it (pub/sub), or at the latest at its next check
// (every PollInterval), and when it starts or reconnects.
type Shared struct {
	client  rueidis.Client
	proxy   *Proxy
	key     string
	channel string
	applied func(*File) // after a version from elsewhere is in force
	log     *zap.Logger
	poll    time.Duration

	mu      sync.Mutex // serialises applying versions
	version int64      // the shared version in force here (0: none yet)
}

// SharedOptions configure Shared.
type SharedOptions struct {
	// KeyPrefix is prepended to the Redis key and channel ("getaway:" by
	// default, then "config" and "config:changed").
	KeyPrefix string
	// PollInterval bounds how stale an instance can be if a publication is
	// lost. Default 1s. Each check is one HGET answered from the client-side
	// cache, so it normally costs no round trip.
	PollInterval time.Duration
	// Applied is called after a config published elsewhere is in force
	// here (health check resync).
	Applied func(*File)
}

// NewShared returns the config sync of proxy over client.
func NewShared(client rueidis.Client, proxy *Proxy, opts SharedOptions, log *zap.Logger) *Shared {
	if opts.KeyPrefix == "" {
		opts.KeyPrefix = "getaway:"
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = time.Second
	}
	return &Shared{
		client: client, proxy: proxy, log: log, applied: opts.Applied, poll: opts.PollInterval,
		key: opts.KeyPrefix + "config", channel: opts.KeyPrefix + "config:changed",
	}
}

// publishScript sets the config if the stored version is ARGV[1] ("*":
// any), bumps the version, and announces it. It returns the new version,
// or -1 and the current version when ARGV[1] is stale.
var publishScript = rueidis.NewLuaScript(`
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if ARGV[1] ~= '*' and tonumber(ARGV[1]) ~= v then return {-1, v} end
v = v + 1
redis.call('HSET', KEYS[1], 'v', v, 'cfg', ARGV[2])
redis.call('PUBLISH', ARGV[3], v)
return {v, v}
`)

// Publish makes f the shared config, provided nobody published since this
// instance last applied a shared version (else ErrConflict), and applies it
// here. It returns the new shared version.
func (s *Shared) Publish(ctx context.Context, f *File) (int64, error) {
	data, err := f.Marshal()
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	expect := strconv.FormatInt(s.version, 10)
	res, err := publishScript.Exec(ctx, s.client, []string{s.key}, []string{expect, string(data), s.channel}).ToArray()
	if err != nil {
		return 0, fmt.Errorf("publishing config: %w", err)
	}
	if len(res) != 2 {
		return 0, errors.New("publishing config: unexpected reply")
	}
	v, err := res[0].AsInt64()
	if err != nil {
		return 0, fmt.Errorf("publishing config: %w", err)
	}
	if v < 0 {
		return 0, ErrConflict
	}
	if _, err := s.proxy.Apply(f); err != nil {
		return 0, err
	}
	s.version = v
	return v, nil
}

// Run keeps this instance on the newest shared config until ctx ends: it
// applies the stored version at once (an instance that starts later picks
// up what others published), then follows publications and checks every
// PollInterval.
func (s *Shared) Run(ctx context.Context) {
	s.refresh(ctx, false)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(s.poll)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s.refresh(ctx, true)
			}
		}
	}()
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.client.Receive(ctx, s.client.B().Subscribe().Channel(s.channel).Build(), func(rueidis.PubSubMessage) {
			s.refresh(ctx, false)
		})
		if ctx.Err() != nil {
			break
		}
		s.log.Warn("config subscription lost, retrying", zap.Error(err))
		// Whatever was published meanwhile is picked up now.
		s.refresh(ctx, false)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	wg.Wait()
}

// Version returns the shared version in force here (0: none applied).
func (s *Shared) Version() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.version
}

// refresh applies the stored config when it is newer than the one here. A
// cached check is answered from process memory (the server invalidates it
// on change); a publication asks Redis.
func (s *Shared) refresh(ctx context.Context, cached bool) {
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var v int64
	var err error
	if cached {
		v, err = s.client.DoCache(c, s.client.B().Hget().Key(s.key).Field("v").Cache(), time.Minute).AsInt64()
	} else {
		v, err = s.client.Do(c, s.client.B().Hget().Key(s.key).Field("v").Build()).AsInt64()
	}
	if rueidis.IsRedisNil(err) {
		return // nothing published yet: the file is in force
	}
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("shared config version unreadable", zap.Error(err))
		}
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if v <= s.version {
		return
	}
	res, err := s.client.Do(c, s.client.B().Hmget().Key(s.key).Field("v", "cfg").Build()).ToArray()
	if err != nil || len(res) != 2 {
		s.log.Warn("shared config unreadable", zap.Error(err))
		return
	}
	v, err = res[0].AsInt64()
	if err != nil {
		return
	}
	data, err := res[1].ToString()
	if err != nil {
		return
	}
	f, err := ParseFile("shared config", []byte(data))
	if err != nil {
		// Only a valid config is ever published; refuse anything else.
		s.log.Error("shared config refused, the config in force stays", zap.Int64("version", v), zap.Error(err))
		s.version = v
		return
	}
	if _, err := s.proxy.Apply(f); err != nil {
		s.log.Error("shared config not applied", zap.Error(err))
		return
	}
	s.version = v
	s.log.Info("shared config applied", zap.Int64("version", v))
	if s.applied != nil {
		s.applied(f)
	}
}
