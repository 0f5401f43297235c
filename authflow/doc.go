// Package authflow signs users in with OpenID Connect (authorization code
// with PKCE) and turns a session cookie into a verified identity: the
// /auth/login, callback and /auth/logout handlers, token refresh (with the
// renewed sessions a failing store could not take kept in memory until it
// can, see unsaved.go), /whoami/me, the admin authorization, and the
// RequireAuth check that guards /api/*.
//
// It stores sessions through a store interface (see sessioncache) and
// leaves proxying to upstream and the middleware chain to edge.
package authflow
