package upstream

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// PoolConfig holds the limits of the connection pool kept for every backend.
// Every limit is explicit: the zero value of a field means "use the default
// documented on it", never "unlimited".
type PoolConfig struct {
	// MaxConnsPerBackend caps the open connections to one backend.
	// Default 1024. A request that finds no free connection waits up to
	// MaxConnWaitTimeout, then fails with 503-like ErrNoFreeConns (mapped to 504).
	MaxConnsPerBackend int `yaml:"maxConnsPerBackend"`
	// MaxConnWaitTimeout is how long a request may wait for a free
	// connection when MaxConnsPerBackend are busy. Default 5s.
	MaxConnWaitTimeout time.Duration `yaml:"maxConnWaitTimeout"`
	// DialTimeout bounds connecting to a backend (TCP and TLS handshake).
	// Default 5s.
	DialTimeout time.Duration `yaml:"dialTimeout"`
	// ResponseTimeout is the longest a backend may stay silent: while
	// waiting for the response head and between two reads of its body
	// (nginx's proxy_read_timeout). A silent backend yields 504 after
	// between ResponseTimeout and 1/8 more (see idleTimeoutConn).
	// Default 30s (env PROXY_TIMEOUT_SECONDS).
	ResponseTimeout time.Duration `yaml:"responseTimeout"`
	// WriteTimeout is the longest one write of the request to a backend may
	// block (a backend that stops reading an upload), give or take the
	// same 1/8 as ResponseTimeout. Default 30s.
	WriteTimeout time.Duration `yaml:"writeTimeout"`
	// MaxIdleConnDuration closes keep-alive connections unused this long.
	// Default 90s.
	MaxIdleConnDuration time.Duration `yaml:"maxIdleConnDuration"`
	// MaxResponseHeaderSize caps a backend's response head. Default 16 KiB.
	// Response bodies are always streamed, so they have no size limit here.
	MaxResponseHeaderSize int `yaml:"maxResponseHeaderSize"`
	// TLSConfig is used for https:// backends; nil means the system roots
	// and TLS 1.2 at least. Never set InsecureSkipVerify in production.
	TLSConfig *tls.Config `yaml:"-"`
	// Dial, when set, replaces TCP dialing (in-memory listeners in
	// benchmarks). DialTimeout does not apply to it.
	Dial fasthttp.DialFunc `yaml:"-"`
}

// withDefaults returns c with every zero field set to its documented default.
func (c PoolConfig) withDefaults() PoolConfig {
	if c.MaxConnsPerBackend == 0 {
		c.MaxConnsPerBackend = 1024
	}
	if c.MaxConnWaitTimeout == 0 {
		c.MaxConnWaitTimeout = 5 * time.Second
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = 5 * time.Second
	}
	if c.ResponseTimeout == 0 {
		c.ResponseTimeout = 30 * time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 30 * time.Second
	}
	if c.MaxIdleConnDuration == 0 {
		c.MaxIdleConnDuration = 90 * time.Second
	}
	if c.MaxResponseHeaderSize == 0 {
		c.MaxResponseHeaderSize = 16 << 10
	}
	if c.TLSConfig == nil {
		c.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return c
}

// Validate reports a limit that makes no sense (a negative one).
func (c PoolConfig) Validate() error {
	var errs []error
	if c.MaxConnsPerBackend < 0 {
		errs = append(errs, errors.New("maxConnsPerBackend must not be negative"))
	}
	for name, d := range map[string]time.Duration{
		"maxConnWaitTimeout": c.MaxConnWaitTimeout, "dialTimeout": c.DialTimeout,
		"responseTimeout": c.ResponseTimeout, "writeTimeout": c.WriteTimeout,
		"maxIdleConnDuration": c.MaxIdleConnDuration,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative", name))
		}
	}
	if c.MaxResponseHeaderSize < 0 {
		errs = append(errs, errors.New("maxResponseHeaderSize must not be negative"))
	}
	return errors.Join(errs...)
}

// Backend is one upstream service: its parsed URL and the long-lived pooled
// client that talks to it. A Backend is shared by every route table that
// names its URL, so a reload keeps warm connections. Never copy it.
type Backend struct {
	// URL is the normalised backend URL, as in File.Backends.
	URL string

	host     string // host[:port] as the Host header sent to the backend
	basePath []byte // path of the backend URL without trailing slash, "" for none
	https    bool
	client   *fasthttp.HostClient
}

// Pool owns the Backends by URL. It is safe for concurrent use.
type Pool struct {
	cfg PoolConfig

	mu       sync.Mutex
	backends map[string]*Backend
}

// NewPool returns an empty pool whose clients use cfg's limits.
func NewPool(cfg PoolConfig) *Pool {
	return &Pool{cfg: cfg.withDefaults(), backends: make(map[string]*Backend)}
}

// Get returns the Backend for the normalised URL rawURL, creating it on
// first use.
func (p *Pool) Get(rawURL string) (*Backend, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if b, ok := p.backends[rawURL]; ok {
		return b, nil
	}
	b, err := p.newBackend(rawURL)
	if err != nil {
		return nil, err
	}
	p.backends[rawURL] = b
	return b, nil
}

// Retain drops the backends whose URL is not in keep, closing their idle
// connections. Requests still using a dropped backend finish normally.
func (p *Pool) Retain(keep []string) {
	want := make(map[string]struct{}, len(keep))
	for _, u := range keep {
		want[u] = struct{}{}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for u, b := range p.backends {
		if _, ok := want[u]; !ok {
			b.client.CloseIdleConnections()
			delete(p.backends, u)
		}
	}
}

// Close closes the idle connections of every backend.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, b := range p.backends {
		b.client.CloseIdleConnections()
	}
}

func (p *Pool) newBackend(rawURL string) (*Backend, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("backend %q: %w", rawURL, err)
	}
	https := u.Scheme == "https"
	if !https && u.Scheme != "http" {
		return nil, fmt.Errorf("backend %q: scheme must be http or https", rawURL)
	}
	addr := u.Host
	if u.Port() == "" {
		port := "80"
		if https {
			port = "443"
		}
		addr = net.JoinHostPort(u.Hostname(), port)
	}
	cfg := p.cfg
	dial := cfg.Dial
	if dial == nil {
		dialer := &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}
		dial = func(addr string) (net.Conn, error) { return dialer.Dial("tcp", addr) }
	}
	tlsCfg := cfg.TLSConfig.Clone()
	if tlsCfg.ServerName == "" {
		tlsCfg.ServerName = u.Hostname()
	}
	b := &Backend{
		URL:      rawURL,
		host:     u.Host,
		basePath: []byte(strings.TrimSuffix(u.EscapedPath(), "/")),
		https:    https,
	}
	b.client = &fasthttp.HostClient{
		Addr:      addr,
		Name:      "getaway",
		IsTLS:     https,
		TLSConfig: tlsCfg,
		Dial: func(addr string) (net.Conn, error) {
			c, err := dial(addr)
			if err != nil {
				return nil, err
			}
			return &idleTimeoutConn{Conn: c, read: cfg.ResponseTimeout, write: cfg.WriteTimeout}, nil
		},
		MaxConns:           cfg.MaxConnsPerBackend,
		MaxConnWaitTimeout: cfg.MaxConnWaitTimeout,
		// ReadTimeout and WriteTimeout of HostClient bound a whole response
		// or request, which would cut off a long streamed download or
		// upload; idleTimeoutConn enforces them per read and write instead.
		ReadTimeout:         0,
		WriteTimeout:        0,
		MaxIdleConnDuration: cfg.MaxIdleConnDuration,
		// Bodies stream both ways, so no response body size limit applies;
		// only the head is bounded.
		StreamResponseBody:  true,
		MaxResponseBodySize: 0,
		ReadBufferSize:      cfg.MaxResponseHeaderSize,
		WriteBufferSize:     16 << 10,
		// One retry, for idempotent requests without a streamed body only
		// (fasthttp's rule), covers a keep-alive connection that the
		// backend closed just as it was reused.
		MaxIdemponentCallAttempts: 2,
		// The path is forwarded byte for byte (a%2Fb stays a%2Fb).
		DisablePathNormalizing:        true,
		DisableHeaderNamesNormalizing: false,
		NoDefaultUserAgentHeader:      true,
		SecureErrorLogMessage:         true,
		ConnPoolStrategy:              fasthttp.LIFO,
	}
	return b, nil
}

// deadlineSlack is the fraction of a timeout by which idleTimeoutConn may
// let a deadline run long, so that it moves the deadline (a runtime timer
// update) about once per timeout/deadlineSlack of activity, not on every
// Read and Write.
const deadlineSlack = 8

// idleTimeoutConn gives every Read and Write its own deadline, so a backend
// may stream for as long as it keeps sending, but never stay silent longer
// than the timeout. The deadline is coarse: a Read or Write that starts
// with at least the timeout left keeps the deadline in force, and one that
// does not moves it to timeout*(1+1/deadlineSlack) from now. A call that
// blocks therefore fails after between timeout and
// timeout*(1+1/deadlineSlack) of silence, never sooner.
type idleTimeoutConn struct {
	net.Conn
	read, write time.Duration

	// The deadlines last set through this wrapper; the zero time when
	// unknown (a deadline set by someone else), which the next call
	// replaces. A connection is used by one request at a time.
	readDeadline, writeDeadline time.Time
}

func (c *idleTimeoutConn) Read(p []byte) (int, error) {
	if now := time.Now(); c.readDeadline.Sub(now) < c.read {
		d := now.Add(c.read + c.read/deadlineSlack)
		if err := c.Conn.SetReadDeadline(d); err != nil {
			c.readDeadline = time.Time{}
			return 0, err
		}
		c.readDeadline = d
	}
	return c.Conn.Read(p)
}

func (c *idleTimeoutConn) Write(p []byte) (int, error) {
	if now := time.Now(); c.writeDeadline.Sub(now) < c.write {
		d := now.Add(c.write + c.write/deadlineSlack)
		if err := c.Conn.SetWriteDeadline(d); err != nil {
			c.writeDeadline = time.Time{}
			return 0, err
		}
		c.writeDeadline = d
	}
	return c.Conn.Write(p)
}

// SetDeadline sets both deadlines of the connection; the next Read and
// Write replace them with their own.
func (c *idleTimeoutConn) SetDeadline(t time.Time) error {
	c.readDeadline, c.writeDeadline = time.Time{}, time.Time{}
	return c.Conn.SetDeadline(t)
}

// SetReadDeadline sets the connection's read deadline; the next Read
// replaces it with its own.
func (c *idleTimeoutConn) SetReadDeadline(t time.Time) error {
	c.readDeadline = time.Time{}
	return c.Conn.SetReadDeadline(t)
}

// SetWriteDeadline sets the connection's write deadline; the next Write
// replaces it with its own.
func (c *idleTimeoutConn) SetWriteDeadline(t time.Time) error {
	c.writeDeadline = time.Time{}
	return c.Conn.SetWriteDeadline(t)
}
