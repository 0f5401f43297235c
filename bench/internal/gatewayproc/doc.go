// Package gatewayproc runs the real getaway binary for the bench programs
// (bench/proxyload, bench/soak): configured by its environment only
// ([Env]: sign-in against a test OpenID provider, sessions in Redis or in
// memory, every /api request to one backend), on a free loopback port, and
// ready once /readyz answers. Building the binary is procs.BuildGetaway;
// signing in is the caller's.
package gatewayproc
