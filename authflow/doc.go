// Package authflow signs users in with OpenID Connect (authorization code
// with PKCE) and turns a session cookie into a verified identity: the
// /auth/login, callback and /auth/logout handlers, token refresh,
// /whoami/me, and the RequireAuth check that guards /api/*.
//
// It stores sessions through a store interface (see sessioncache) and
// leaves proxying to upstream and the middleware chain to edge.
package authflow
