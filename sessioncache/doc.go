// Package sessioncache stores what a signed-in browser needs on the server
// side: sessions (the user's claims and tokens, looked up by the opaque id
// in the session cookie) and login state (the PKCE verifier, nonce and
// return path of a login in progress, looked up by the OAuth2 state value).
//
// Two implementations satisfy [Store] and pass one conformance suite:
//
//   - [Redis] keeps sessions in Redis (single node, TLS, or a cluster)
//     through rueidis. Reads use server-assisted client-side caching
//     (RESP3 CLIENT TRACKING), so the hot path of an authenticated request
//     normally answers from process memory, without a network round trip
//     and without allocating, while a write or delete on any gateway
//     instance invalidates every instance's copy.
//   - [Memory] keeps everything in process memory. It is the embedded
//     default for a single process without Redis; sessions do not survive
//     a restart and are not shared between processes.
//
// Lifetimes: a session lives for [Config.IdleTimeout] after its last use
// (the timeout rolls, at most once per [Config.TouchInterval]) and never
// past its [Session.AbsoluteExpiresAt]. Login state lives for
// [Config.StateTTL] and can be taken only once.
//
// [Store.Watch] reports the end of a session (deleted on any instance,
// expired), for closing the WebSockets it authorised; with Redis it rides
// on the same invalidations.
//
// Errors: [ErrNotFound] means signed out (answer 401); [ErrUnavailable]
// means the store cannot answer (answer 503, never 401). A session that
// may have ended is never served while Redis is unreachable. When Redis
// hangs (operations time out rather than fail), a breaker (breaker.go)
// makes the store fail fast until a background PING is answered.
//
// Nothing here stores raw identifiers in Redis: keys carry the SHA-256 of
// the session id, state and subject, so a dump of Redis yields no cookie
// that could be replayed. Nothing here logs ids, tokens or cookies.
//
// This package does not know about cookies, HTTP, or OpenID Connect:
// generating session ids, setting and clearing cookies, talking to the
// identity provider and deciding when to refresh tokens belong to
// package authflow, which consumes [Store].
package sessioncache
