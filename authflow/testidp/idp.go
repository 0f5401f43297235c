package testidp

import (
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// Password is the password of every example user.
const Password = "verysecure"

// OtherUsername is the login name of the example's second user (subject
// "id2", e-mail "test-user2@zitadel.ch", not an admin in the example). The
// first user's name depends on the issuer; see [IdP.Username].
const OtherUsername = "test-user2"

// ErrClosed is returned by [IdP.Restart] after [IdP.Close]: a closed IdP
// cannot serve again; start a new one.
var ErrClosed = errors.New("testidp: closed")

// Options configures [Start]. The zero value is usable once a redirect URI is
// registered (here or with [IdP.AddRedirectURI]).
type Options struct {
	// ClientID is the client_id of the one registered client. Default
	// "getaway".
	ClientID string
	// ClientSecret is that client's secret, accepted as client_secret_basic
	// and client_secret_post. Default "getaway-secret".
	ClientSecret string
	// RedirectURIs are the redirect_uri values the client may use, matched
	// exactly (no globs, no prefixes). Default none: every authorization
	// request then fails with invalid redirect_uri until [IdP.AddRedirectURI]
	// registers the gateway's callback, which is the usual order because the
	// gateway needs the issuer before it can start and learn its own port.
	RedirectURIs []string
	// PostLogoutRedirectURIs are the post_logout_redirect_uri values
	// end-session accepts, matched exactly. Default none (end-session then
	// shows the example's "signed out" page). See
	// [IdP.AddPostLogoutRedirectURI].
	PostLogoutRedirectURIs []string
	// AccessTokenTTL is the access-token lifetime, rounded up to whole
	// seconds (expires_in has one-second resolution). Default 0: the example
	// storage's 5 minutes (expires_in 299: the OP truncates). The ID token issued with an access token expires
	// with it (the OP uses one validity for both). Userinfo and introspection
	// refuse an access token after this lifetime. Refresh tokens keep the
	// example's 5 hours.
	AccessTokenTTL time.Duration
	// MinimalIDToken, when true, keeps profile and email claims out of ID
	// tokens issued together with an access token, as OIDC Core 5.4 allows
	// and zitadel does by default: relying parties must then read them from
	// userinfo. Default false: ID tokens carry the claims of the granted
	// profile and email scopes (name, email, preferred_username, ...), as
	// Keycloak, Auth0 and Google do.
	MinimalIDToken bool
	// Addr is the listen address. Default "127.0.0.1:0" (a free loopback
	// port). The issuer is "http://" + the bound address, with an unspecified
	// host (":0", "0.0.0.0:0") replaced by 127.0.0.1.
	Addr string
	// Logger receives the example OP's logs. Default: discard. It becomes
	// the process-wide slog default; see the package documentation.
	Logger *slog.Logger
}

// IdP is a running OpenID provider. Its methods are safe for concurrent use.
// Call [IdP.Close] when done (t.Cleanup).
type IdP struct {
	issuer    string
	issuerURL *url.URL
	addr      string // bound address, reused by Restart
	handler   http.Handler
	store     *store
	clientID  string
	username  string
	email     string

	// login is the browser-like client of Login: it never follows redirects
	// itself and owns its transport so Close can drop its idle connections.
	login     *http.Client
	transport *http.Transport

	mu     sync.Mutex // guards srv, done, closed
	srv    *http.Server
	done   chan struct{} // closed when srv.Serve has returned
	closed bool

	urisMu          sync.RWMutex // guards redirectURIs, postLogoutURIs
	redirectURIs    []string
	postLogoutURIs  []string
	countsMu        sync.Mutex // guards tokenRequests
	tokenRequests   map[string]int
	revocations     atomic.Int64
	tokenDown       atomic.Bool
	refreshDisabled atomic.Bool
}

// setupMu serialises exampleop.SetupServer, which swaps process-global
// loggers, so concurrent Starts restore the log package's output correctly.
var setupMu sync.Mutex

// Start starts an IdP listening on opts.Addr and returns once it accepts
// connections.
func Start(opts Options) (*IdP, error) {
	if opts.ClientID == "" {
		opts.ClientID = "getaway"
	}
	if opts.ClientSecret == "" {
		opts.ClientSecret = "getaway-secret"
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.AccessTokenTTL < 0 {
		return nil, fmt.Errorf("testidp: AccessTokenTTL: must not be negative, got %s", opts.AccessTokenTTL)
	}
	for _, u := range slices.Concat(opts.RedirectURIs, opts.PostLogoutRedirectURIs) {
		if err := checkURI(u); err != nil {
			return nil, err
		}
	}

	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("testidp: listening on %s: %w", opts.Addr, err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	host := addr.IP.String()
	if addr.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	issuer := "http://" + net.JoinHostPort(host, fmt.Sprint(addr.Port))
	issuerURL, err := url.Parse(issuer)
	if err == nil {
		// SetupServer calls log.Fatal on an issuer the OP refuses; find out here.
		_, err = op.StaticIssuer(issuer)(true)
	}
	if err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("testidp: issuer %q: %w", issuer, err)
	}

	transport := &http.Transport{
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     30 * time.Second,
	}
	p := &IdP{
		issuer:         issuer,
		issuerURL:      issuerURL,
		addr:           ln.Addr().String(),
		clientID:       opts.ClientID,
		redirectURIs:   slices.Clone(opts.RedirectURIs),
		postLogoutURIs: slices.Clone(opts.PostLogoutRedirectURIs),
		tokenRequests:  map[string]int{},
		transport:      transport,
		login: &http.Client{
			Transport: transport,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
			Timeout: 30 * time.Second,
		},
	}

	users := storage.NewUserStore(issuer)
	if u := users.GetUserByID(firstUserID); u != nil {
		p.username, p.email = u.Username, u.Email
	}
	// Our own client map keeps the example's package-global client registry
	// (storage.RegisterClients) untouched, so IdPs in one process are
	// independent. WebClient is confidential, client_secret_basic, with
	// authorization_code and refresh_token grants and http redirects allowed.
	web := storage.WebClient(opts.ClientID, opts.ClientSecret, opts.RedirectURIs...)
	p.store = newStore(storage.NewStorageWithClients(users, map[string]*storage.Client{opts.ClientID: web}),
		&client{Client: web, idp: p, minimalIDToken: opts.MinimalIDToken}, roundUpSeconds(opts.AccessTokenTTL), &p.refreshDisabled)

	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	setupMu.Lock()
	logOut, logFlags := log.Writer(), log.Flags()
	router := exampleop.SetupServer(issuer, p.store, logger, false)
	log.SetOutput(logOut) // undo the redirect slog.SetDefault made
	log.SetFlags(logFlags)
	setupMu.Unlock()
	p.handler = p.intercept(router)

	p.serve(ln)
	return p, nil
}

// firstUserID is the example user store's id (and the ID token's sub) of
// the user behind Username and Email.
const firstUserID = "id1"

func roundUpSeconds(d time.Duration) time.Duration {
	return (d + time.Second - 1).Truncate(time.Second)
}

func checkURI(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("testidp: redirect URI %q: must be an absolute http or https URL", raw)
	}
	return nil
}

// serve starts serving ln; p.mu must be held or p not yet shared.
func (p *IdP) serve(ln net.Listener) {
	srv := &http.Server{
		Handler:           p.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln) // ErrServerClosed after Stop or Close
	}()
	p.srv, p.done = srv, done
}

// stopLocked closes the server and its connections and waits for Serve to
// return; p.mu must be held.
func (p *IdP) stopLocked() error {
	p.transport.CloseIdleConnections()
	if p.srv == nil {
		return nil
	}
	err := p.srv.Close()
	<-p.done
	p.srv, p.done = nil, nil
	return err
}

// Issuer returns the issuer URL, "http://127.0.0.1:PORT" by default. It is
// also the base URL the provider is reached at, as OpenID discovery requires.
func (p *IdP) Issuer() string { return p.issuer }

// ClientID returns the registered client's client_id.
func (p *IdP) ClientID() string { return p.clientID }

// Username returns the login name of the example's first user,
// "test-user@" + the issuer's host name (e.g. "test-user@127.0.0.1"). Its ID
// token subject is "id1" and it is an admin in the example user store.
func (p *IdP) Username() string { return p.username }

// Email returns the first user's e-mail claim, "test-user@zitadel.ch".
func (p *IdP) Email() string { return p.email }

// AddRedirectURI registers one more exact redirect_uri for the client. It
// takes effect for the next authorization request.
func (p *IdP) AddRedirectURI(uri string) error {
	if err := checkURI(uri); err != nil {
		return err
	}
	p.urisMu.Lock()
	defer p.urisMu.Unlock()
	if !slices.Contains(p.redirectURIs, uri) {
		p.redirectURIs = append(p.redirectURIs, uri)
	}
	return nil
}

// AddPostLogoutRedirectURI registers one more exact post_logout_redirect_uri
// for end-session.
func (p *IdP) AddPostLogoutRedirectURI(uri string) error {
	if err := checkURI(uri); err != nil {
		return err
	}
	p.urisMu.Lock()
	defer p.urisMu.Unlock()
	if !slices.Contains(p.postLogoutURIs, uri) {
		p.postLogoutURIs = append(p.postLogoutURIs, uri)
	}
	return nil
}

// Stop makes the provider unreachable, as if its host went down: it closes
// the listener and every open connection, so clients get "connection
// refused". All state (users, auth requests, codes, tokens, counters,
// switches) is kept for [IdP.Restart]. Stopping a stopped or closed IdP does
// nothing.
func (p *IdP) Stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stopLocked()
}

// Restart serves again after [IdP.Stop] on the same address, so the issuer
// and everything issued before stay valid. It fails when another process took
// the port meanwhile, and with [ErrClosed] after Close. Restarting a running
// IdP does nothing.
func (p *IdP) Restart() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	if p.srv != nil {
		return nil
	}
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		return fmt.Errorf("testidp: listening again on %s: %w", p.addr, err)
	}
	p.serve(ln)
	return nil
}

// Close stops the server for good and waits for it to finish. It is safe to
// call more than once; later calls return nil.
func (p *IdP) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	return p.stopLocked()
}
