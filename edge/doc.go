// Package edge is the gateway's front door: the fasthttp server, the router,
// the middleware chain (assembled in one place, in the order documented on
// Server.Handler), the gateway's own endpoints (/healthz, /readyz), static
// files with the SPA fallback, the mapping of errors to statuses, the
// client IP policy and rate limits, connection and timeout limits, the
// Prometheus metrics (served on ADMIN_ADDR and /admin/metrics), W3C
// traceparent propagation, the sampled access log, and the environment
// settings that configure every other package.
//
// It decides nothing about routing (upstream does) or identity (the
// Authenticator it is given does).
package edge
