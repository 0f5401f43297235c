package main

import (
	"context"

	"github.com/apigetaway/getaway/bench/internal/procs"
	"github.com/apigetaway/getaway/bench/internal/wsecho"
)

// echoBody is the backend's answer to every request, whatever the path.
var echoBody = []byte(`{"ok":true,"service":"proxyload-echo","message":"the same small body on every path","n":42}`)

// startRole starts this executable again in role, reads the address it
// reports ("ADDR host:port" on stdout) and waits until probePath on that
// address answers.
func startRole(ctx context.Context, role, probePath string, args ...string) (*procs.Child, string, error) {
	cmd, err := procs.SelfCommand(role, args...)
	if err != nil {
		return nil, "", err
	}
	c, addr, err := procs.StartServer(ctx, role, cmd, readyWithin)
	if err != nil {
		return nil, "", err
	}
	if err := c.WaitHTTP(ctx, "http://"+addr+probePath, readyWithin); err != nil {
		stopChild(c)
		return nil, "", err
	}
	return c, addr, nil
}

// runBackend is the echo backend: 200 and echoBody for every request, and
// an echo of every message on a WebSocket.
func runBackend() error { return wsecho.ServeBackend("proxyload-echo", echoBody) }
