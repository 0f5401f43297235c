package main

import (
	"context"
	"time"

	"github.com/apigetaway/getaway/bench/internal/procs"
	"github.com/apigetaway/getaway/bench/internal/wsecho"
	"github.com/valyala/fasthttp"
)

// echoBody is the backend's answer to every request, whatever the path.
var echoBody = []byte(`{"ok":true,"service":"proxyload-echo","message":"the same small body on every path","n":42}`)

// shutdownGrace bounds a child server's graceful stop.
const shutdownGrace = 2 * time.Second

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
func runBackend() error {
	srv := &fasthttp.Server{
		// WebSocket handshakes are upgraded and echoed (the
		// getaway-websocket target); every other request gets echoBody.
		Handler: wsecho.FastHTTP(func(ctx *fasthttp.RequestCtx) {
			ctx.SetContentType("application/json")
			ctx.SetBody(echoBody)
		}),
		Name:            "proxyload-echo",
		CloseOnShutdown: true,
	}
	ln, err := procs.Listen()
	if err != nil {
		return err
	}
	return procs.ServeUntilSignal(
		func() error { return srv.Serve(ln) },
		func() error {
			ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
			defer cancel()
			return srv.ShutdownWithContext(ctx)
		})
}
