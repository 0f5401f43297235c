// Package testidp runs a real OpenID provider on loopback for tests, the dev
// stack and benchmarks.
//
// It owns one in-process instance of zitadel's example OP
// (github.com/zitadel/oidc/v3/example/server/exampleop with its in-memory
// example storage): discovery, JWKS, the authorization endpoint with PKCE, the
// example's HTML login form, the token endpoint (authorization_code and
// refresh_token grants, refresh-token rotation), userinfo, revocation and
// end-session, all served by net/http on 127.0.0.1 with a free port. One
// confidential web client (client_secret_basic or client_secret_post) is
// registered; the example's users sign in with [Password].
//
// On top of the example it adds only what tests need to observe and disturb
// the provider: counters of token and revocation requests, a switch that makes
// the token endpoint answer 503, a switch that makes every refresh fail with
// invalid_grant, a shorter access-token lifetime, [IdP.Stop] and
// [IdP.Restart], and [IdP.Login], which signs a user in through the login
// form as a browser would.
//
// It leaves everything on the relying-party side (state, nonce, PKCE
// verifier, token verification, sessions) to the code under test; the
// package's own tests show the full flow with x/oauth2 and go-oidc.
//
// Process-global side effect: the example server replaces the process-wide
// default slog logger (slog.SetDefault) with the logger it is given. [Start]
// passes [Options.Logger] or, by default, a logger that discards everything,
// so after Start slog.Default() is that logger for the whole process. The
// standard log package's output, which slog.SetDefault also redirects, is put
// back as it was.
package testidp
