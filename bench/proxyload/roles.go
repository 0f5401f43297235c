package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// echoBody is the backend's answer to every request, whatever the path.
var echoBody = []byte(`{"ok":true,"service":"proxyload-echo","message":"the same small body on every path","n":42}`)

// shutdownGrace bounds a child server's graceful stop.
const shutdownGrace = 2 * time.Second

// listenAndReport listens on a free loopback port and tells the harness
// which one, on stdout.
func listenAndReport() (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	fmt.Printf("ADDR %s\n", ln.Addr())
	return ln, nil
}

// serveUntilSignal runs serve until it fails or SIGTERM/SIGINT arrives,
// then calls shutdown.
func serveUntilSignal(serve func() error, shutdown func() error) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- serve() }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
		return shutdown()
	}
}

// runBackend is the echo backend: 200 and echoBody for every request.
func runBackend() error {
	srv := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			ctx.SetContentType("application/json")
			ctx.SetBody(echoBody)
		},
		Name:            "proxyload-echo",
		CloseOnShutdown: true,
	}
	ln, err := listenAndReport()
	if err != nil {
		return err
	}
	return serveUntilSignal(
		func() error { return srv.Serve(ln) },
		func() error {
			ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
			defer cancel()
			return srv.ShutdownWithContext(ctx)
		})
}
