// Package procs runs the child processes of the bench programs
// (bench/proxyload, bench/devstack, bench/wsload): the getaway binary,
// this program again in a server role, nginx, redis-server, wrk, go build.
//
// [BuildGetaway] builds the gateway from the root of the module the
// working directory is in. [Start] starts a long-running command as a
// [Child]: on Linux in a process group of its own, so that a Ctrl-C in the
// terminal reaches only the harness, which then stops its children in
// order, and with a parent-death signal (SIGTERM), so that a harness that
// dies without stopping them takes them along. [Child.Stop] sends SIGTERM,
// kills the child once a grace period has passed, waits for it, kills
// whatever is left of its process group and runs the [Child.OnStop]
// functions (temp dirs). [Child.WaitHTTP] and [Child.WaitReady] poll a
// starting child, for a bounded time, until it answers.
// [CommandContext] is for a command run to its end (a build, a load
// generator): in a process group of its own, all killed when its context
// ends.
//
// A child in a server role listens with [Listen], which reports the
// address on stdout in a line "ADDR host:port", and serves until SIGTERM
// with [ServeUntilSignal]; the harness starts it with [SelfCommand] and
// [StartServer], which reads that line. A child told its address takes one
// from [FreeAddr], or from [RetryOnFreeAddr] where another process may
// take the port first.
//
// Elsewhere than on Linux, children stay in the harness's process group
// (a Ctrl-C reaches them too) and have no parent-death signal.
package procs
