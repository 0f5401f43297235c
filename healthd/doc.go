// Package healthd checks the configured backends periodically, keeps the
// state of each (up, down, since when, latency) for the admin API, and sends
// "down" and "recovered" notifications.
//
// It reads the list of backends from upstream's routing and leaves serving
// the state to edge's admin routes.
package healthd
