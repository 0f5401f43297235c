// Package redistest runs real redis-server processes for tests (DESIGN.md
// section 5: a real Redis, no miniredis and no mocks, never a fixed port,
// never a process left behind).
//
// [Start] gives a test a server of its own on a free loopback port, killed
// when the test ends; [StartCluster] gives it a 3-node cluster. A [Shared]
// starts one server and one cluster lazily and shares them among all the
// tests of a binary, for the many tests that only need some Redis; its
// owner stops them from TestMain.
//
// Each server has a tiny RESP2 client of its own, [Server.Do], which opens
// a fresh connection per command and sends nothing but that command, so
// that [Server.CommandCalls] (calls counted by INFO commandstats) reflects
// only what the code under test sent.
//
// When redis-server (or, for a cluster, redis-cli) is not installed the
// test is skipped, unless the environment has CI=true: CI must run these
// tests, so there it fails instead.
//
// Every server runs with persistence off (--save "" --appendonly no) in a
// directory of its own, which it keeps across [Server.Restart]. Extra
// arguments come last and win: with "--appendonly", "yes",
// "--appendfsync", "always" the data survives [Server.Kill] and
// [Server.Restart].
//
// The package is meant for tests only; it depends on package testing.
package redistest
