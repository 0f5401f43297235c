// Package upstream owns everything between the gateway and its backends:
// the config.yml routing model and its validation, the compiled route table
// with atomic reloads, one pooled *fasthttp.HostClient per backend, the
// header policy for proxied requests (hop-by-hop removal, X-Forwarded-*,
// trusted identity headers, the session cookie removed and the other cookies
// forwarded as sent, request trailers dropped), the streaming HTTP proxy, the WebSocket relay,
// and the config shared by instances on one Redis.
//
// It leaves authentication to authflow (the caller passes an Identity that
// it has already verified), and status pages, CORS and the middleware chain
// to edge. Errors are returned to edge, which maps them to a status in one
// place (see ErrNoRoute, ErrBadPath and ErrBadRequestBody).
package upstream
