// Package redisproc runs a redis-server of the bench programs' own
// (bench/proxyload, bench/soak) as a child process on a free loopback
// port, without persistence, and talks to it with [Do], a minimal RESP
// client for PING and INFO that sends no command of its own.
package redisproc
