package healthd

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Config tunes a Checker. The zero value means "all defaults": each zero
// field takes the default given in its comment, applied in one place
// (withDefaults). Package edge fills it from the environment variables
// named below; New validates it.
type Config struct {
	// Interval is the time between two checks of one backend
	// (HEALTH_INTERVAL). Default 60s; at least 1ms. The first check of a
	// backend runs as soon as it is known.
	Interval time.Duration `yaml:"interval"`

	// Timeout bounds one check of one backend, the GET that follows a HEAD
	// answered 405 or 501 included (HEALTH_TIMEOUT). Default 10s; at least
	// 1ms. A backend that has not answered by then counts as down.
	Timeout time.Duration `yaml:"timeout"`

	// NotifyDownAfter is how long a backend must have been down without
	// interruption before the "down" notification goes out
	// (NOTIFY_DOWN_AFTER). Default 6h; at least 1ms. Shorter pages people
	// for blips; longer hides outages.
	NotifyDownAfter time.Duration `yaml:"notifyDownAfter"`

	// AppriseURL is the Apprise API endpoint notifications are POSTed to as
	// JSON, like http://apprise:8000/notify/<key> (APPRISE_URL). Default
	// empty: notifications are off and the Lease is never used. An http or
	// https URL. Its path carries the Apprise key, which is a secret of
	// sorts: it is never logged.
	AppriseURL string `yaml:"appriseURL"`

	// AppriseTags selects which of the key's Apprise services are notified
	// (APPRISE_TAGS), sent as the "tag" field in Apprise's syntax: "a, b"
	// means a or b, "a b" means a and b. Default empty: every service of the
	// key.
	AppriseTags string `yaml:"appriseTags"`

	// NotifyTimeout bounds one POST to Apprise and one Lease operation
	// (NOTIFY_TIMEOUT). Default 10s; at least 1ms.
	NotifyTimeout time.Duration `yaml:"notifyTimeout"`

	// NotifyRetryBase is the wait before the first retry of a failed
	// notification (an error, or an answer other than 2xx); each further
	// retry waits twice as long as the one before, up to NotifyRetryMax
	// (NOTIFY_RETRY_BASE). Default 5s; at least 1ms.
	NotifyRetryBase time.Duration `yaml:"notifyRetryBase"`

	// NotifyRetryMax caps the wait between two attempts (NOTIFY_RETRY_MAX).
	// Default 5m; at least NotifyRetryBase.
	NotifyRetryMax time.Duration `yaml:"notifyRetryMax"`

	// NotifyAttempts is how many times one notification is tried before it
	// is given up and logged as lost (NOTIFY_ATTEMPTS). Default 8, which
	// with the default waits spans about 10 minutes; 1 to 100.
	NotifyAttempts int `yaml:"notifyAttempts"`

	// ClaimTTL is how long the Lease remembers that a notification was sent
	// and when an outage began (NOTIFY_CLAIM_TTL). Default 168h (7 days); at
	// least NotifyDownAfter. A gateway restarted within ClaimTTL of an
	// outage's start does not repeat its notifications; an outage longer
	// than ClaimTTL may be announced again by an instance that starts
	// after that.
	ClaimTTL time.Duration `yaml:"claimTTL"`
}

// Default values of the Config fields.
const (
	defaultInterval        = 60 * time.Second
	defaultTimeout         = 10 * time.Second
	defaultNotifyDownAfter = 6 * time.Hour
	defaultNotifyTimeout   = 10 * time.Second
	defaultNotifyRetryBase = 5 * time.Second
	defaultNotifyRetryMax  = 5 * time.Minute
	defaultNotifyAttempts  = 8
	defaultClaimTTL        = 7 * 24 * time.Hour
)

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	setDefault(&c.Interval, defaultInterval)
	setDefault(&c.Timeout, defaultTimeout)
	setDefault(&c.NotifyDownAfter, defaultNotifyDownAfter)
	setDefault(&c.NotifyTimeout, defaultNotifyTimeout)
	setDefault(&c.NotifyRetryBase, defaultNotifyRetryBase)
	setDefault(&c.NotifyRetryMax, defaultNotifyRetryMax)
	setDefault(&c.NotifyAttempts, defaultNotifyAttempts)
	setDefault(&c.ClaimTTL, defaultClaimTTL)
	return c
}

func setDefault[T comparable](field *T, def T) {
	var zero T
	if *field == zero {
		*field = def
	}
}

// Validate reports every invalid field of c (zero fields count as their
// defaults), each as "healthd: <field>: <reason>".
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("healthd: %s: %s", field, fmt.Sprintf(format, args...)))
	}
	atLeastMs := func(field string, d time.Duration) {
		if d < time.Millisecond {
			bad(field, "must be at least 1ms, got %v", d)
		}
	}
	atLeastMs("interval", c.Interval)
	atLeastMs("timeout", c.Timeout)
	atLeastMs("notifyDownAfter", c.NotifyDownAfter)
	atLeastMs("notifyTimeout", c.NotifyTimeout)
	atLeastMs("notifyRetryBase", c.NotifyRetryBase)
	if c.NotifyRetryMax < c.NotifyRetryBase {
		bad("notifyRetryMax", "must be at least notifyRetryBase (%v), got %v", c.NotifyRetryBase, c.NotifyRetryMax)
	}
	if c.NotifyAttempts < 1 || c.NotifyAttempts > 100 {
		bad("notifyAttempts", "must be between 1 and 100, got %d", c.NotifyAttempts)
	}
	if c.ClaimTTL < c.NotifyDownAfter {
		bad("claimTTL", "must be at least notifyDownAfter (%v), got %v", c.NotifyDownAfter, c.ClaimTTL)
	}
	if c.AppriseURL != "" {
		if reason := checkAppriseURL(c.AppriseURL); reason != "" {
			// The URL itself is not repeated: its path holds the Apprise key.
			bad("appriseURL", "%s", reason)
		}
	}
	return errors.Join(errs...)
}

// checkAppriseURL returns why raw is not a usable Apprise endpoint, or "".
func checkAppriseURL(raw string) string {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return "must be a valid url"
	case u.Scheme != "http" && u.Scheme != "https":
		return "scheme must be http or https"
	case u.Host == "":
		return "must be an absolute url with a host, like http://apprise:8000/notify/<key>"
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return "must not contain a fragment"
	}
	return ""
}
