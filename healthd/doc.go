// Package healthd checks the configured backends periodically, keeps the
// state of each (up, down, since when, latency) for the admin API, and sends
// "down" and "recovered" notifications through Apprise.
//
// [TargetsFrom] turns a config.yml ([upstream.File]) into the backends to
// check: the defaultBackend and every mapping's backend, each once, with
// the mapping's healthPath. A [Checker] checks each target in a goroutine
// of its own, at once and then every [Config.Interval]: HEAD (GET when the
// backend answers 405 or 501), within [Config.Timeout], redirects not
// followed; an answer below 400 is up. [Checker.SetTargets] adds and drops
// backends while it runs (a config reload), [Checker.Snapshot] is the body
// of GET /admin/health, and [Checker.CheckNow] and [Checker.CheckAll] check
// synchronously.
//
// Passive signal: the proxy calls [Checker.ReportFailure] when it cannot
// connect to a backend and [Checker.ReportSuccess] when it can, so that
// the state is never an interval stale in an outage. Both cost an atomic
// load and nothing else when the state does not change.
//
// Notifications (on when [Config.AppriseURL] is set): "down" once a backend
// has been down without interruption for [Config.NotifyDownAfter],
// "recovered" with the downtime when it comes back after a "down" was
// sent. Only state transitions lead to notifications. They are sent from a
// goroutine of the Checker's own, retried with backoff, and never hold up a
// check. Several gateway instances share a [Lease] (Redis through
// [NewRedisLease]): the first instance to see an outage records its start
// for all, and each (backend, outage start, event) is claimed by exactly
// one instance, which sends it; the claims outlive a restart, so a
// restarted instance neither resends nor forgets that "down" was sent.
//
// Metrics: package edge reads Snapshot when Prometheus scrapes and exports
// getaway_backend_up per backend.
//
// This package does not serve HTTP (package edge serves Snapshot at
// /admin/health and calls SetTargets after a config change), does not
// read environment variables (edge fills [Config]), and does not route:
// it only observes the backends package upstream proxies to.
package healthd
