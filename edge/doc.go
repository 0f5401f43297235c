// Package edge is the gateway's front door: the fasthttp server, the router,
// the middleware chain (assembled in one place, in the order documented on
// Server.Handler), the gateway's own endpoints (/healthz, /readyz), static
// files with the SPA fallback, the mapping of errors to statuses, and the
// environment settings that configure every other package.
//
// It decides nothing about routing (upstream does) or identity (the
// Authenticator it is given does).
package edge
