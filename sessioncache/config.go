package sessioncache

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Config tunes a store. The zero value means "all defaults"; each zero
// field takes the default given in its comment (applied in one place,
// withDefaults). Call Validate to check a Config before use; the
// constructors validate too.
type Config struct {
	// IdleTimeout is how long a session lives after its last use. Default
	// 8h. Each use extends it (at most once per TouchInterval), never past
	// the session's AbsoluteExpiresAt. Shorter limits what a stolen cookie
	// is worth; longer signs idle users out less often.
	IdleTimeout time.Duration `yaml:"idleTimeout"`

	// AbsoluteLifetime is the longest a session may live after sign-in,
	// however active. Default 168h (7 days). It caps
	// Session.AbsoluteExpiresAt (CreatedAt + AbsoluteLifetime) and is the
	// time to live of each subject's index of sessions. Must be at least
	// IdleTimeout.
	AbsoluteLifetime time.Duration `yaml:"absoluteLifetime"`

	// TouchInterval is how often, at most, one gateway instance extends the
	// idle timeout of one session it keeps seeing. Default 5m. The idle
	// timeout is therefore effective to within TouchInterval. Must be
	// shorter than IdleTimeout.
	TouchInterval time.Duration `yaml:"touchInterval"`

	// StateTTL is how long login state waits for the identity provider's
	// callback. Default 10m.
	StateTTL time.Duration `yaml:"stateTTL"`

	// CacheTTL is how long, at most, a session read from Redis may be served
	// from process memory without asking Redis again (Redis only). Default
	// 1m. Invalidation by the server normally removes a changed or deleted
	// session at once; CacheTTL bounds the harm should an invalidation ever
	// be lost, and the memory held by sessions no longer used.
	CacheTTL time.Duration `yaml:"cacheTTL"`

	// KeyPrefix is prepended to every Redis key (Redis only), so several
	// deployments can share one database. Default empty. It may not contain
	// '{' or '}', which would break the cluster hash tags.
	KeyPrefix string `yaml:"keyPrefix"`

	// CommandTimeout bounds each Redis operation, dial included (Redis
	// only). Default 2s. A dead or unreachable Redis never holds a request
	// longer than this; the request then fails with ErrUnavailable.
	CommandTimeout time.Duration `yaml:"commandTimeout"`

	// MaxCachedSessions bounds how many decoded sessions one instance keeps
	// in process memory in front of the Redis client-side cache (Redis
	// only). Default 100000. Beyond it, arbitrary entries are dropped and
	// read again from Redis when next used. A session with tokens takes
	// roughly 2-4 KiB.
	MaxCachedSessions int `yaml:"maxCachedSessions"`

	// DisableClientCache turns client-side caching off (Redis only).
	// Default false. The store turns it off by itself, with a warning, when
	// the server does not support RESP3 client tracking. Without it every
	// GetSession is one GET to Redis, and Watch polls twice a second.
	DisableClientCache bool `yaml:"disableClientCache"`
}

// Default values of the Config fields.
const (
	defaultIdleTimeout       = 8 * time.Hour
	defaultAbsoluteLifetime  = 7 * 24 * time.Hour
	defaultTouchInterval     = 5 * time.Minute
	defaultStateTTL          = 10 * time.Minute
	defaultCacheTTL          = time.Minute
	defaultCommandTimeout    = 2 * time.Second
	defaultMaxCachedSessions = 100_000
)

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	setDefault(&c.IdleTimeout, defaultIdleTimeout)
	setDefault(&c.AbsoluteLifetime, defaultAbsoluteLifetime)
	setDefault(&c.TouchInterval, defaultTouchInterval)
	setDefault(&c.StateTTL, defaultStateTTL)
	setDefault(&c.CacheTTL, defaultCacheTTL)
	setDefault(&c.CommandTimeout, defaultCommandTimeout)
	setDefault(&c.MaxCachedSessions, defaultMaxCachedSessions)
	return c
}

func setDefault[T comparable](field *T, def T) {
	var zero T
	if *field == zero {
		*field = def
	}
}

// Validate reports every invalid field of c (zero fields count as their
// defaults), each as "sessioncache: <field>: <reason>".
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("sessioncache: %s: %s", field, fmt.Sprintf(format, args...)))
	}
	positive := func(field string, d time.Duration) {
		if d < time.Millisecond {
			bad(field, "must be at least 1ms, got %v", d)
		}
	}
	positive("idleTimeout", c.IdleTimeout)
	positive("absoluteLifetime", c.AbsoluteLifetime)
	positive("touchInterval", c.TouchInterval)
	positive("stateTTL", c.StateTTL)
	positive("cacheTTL", c.CacheTTL)
	positive("commandTimeout", c.CommandTimeout)
	if c.AbsoluteLifetime < c.IdleTimeout {
		bad("absoluteLifetime", "must be at least idleTimeout (%v), got %v", c.IdleTimeout, c.AbsoluteLifetime)
	}
	if c.TouchInterval >= c.IdleTimeout {
		bad("touchInterval", "must be shorter than idleTimeout (%v), got %v", c.IdleTimeout, c.TouchInterval)
	}
	if c.MaxCachedSessions < 0 {
		bad("maxCachedSessions", "must not be negative, got %d", c.MaxCachedSessions)
	}
	if strings.ContainsAny(c.KeyPrefix, "{}") {
		bad("keyPrefix", "must not contain '{' or '}'")
	}
	return errors.Join(errs...)
}
