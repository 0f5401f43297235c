package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/apigetaway/getaway/edge"
	"github.com/apigetaway/getaway/upstream"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
)

// echoBody is the backend's answer to every request, whatever the path.
var echoBody = []byte(`{"ok":true,"service":"proxyload-echo","message":"the same small body on every path","n":42}`)

// benchIdentity is the signed-in user every bench request is proxied for.
var benchIdentity = upstream.Identity{
	Sub:   "bench-user-0001",
	Email: "bench@example.invalid",
	Name:  "Bench User",
}

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

// runGateway builds the real gateway from the project's packages, routing
// every /api request to backendURL on behalf of benchIdentity.
func runGateway(backendURL string) error {
	if backendURL == "" {
		return errors.New("-backend is required")
	}
	cfg := []byte("defaultBackend: " + strconv.Quote(backendURL) + "\n")
	file, err := upstream.ParseFile("proxyload-config.yml", cfg)
	if err != nil {
		return err
	}
	proxy, err := upstream.NewProxy(upstream.ProxyConfig{}, file, zap.NewNop())
	if err != nil {
		return err
	}
	srv, err := edge.New(edge.Config{
		Addr:            "127.0.0.1:0",
		ShutdownTimeout: shutdownGrace,
	}, edge.Deps{
		Proxy: proxy,
		Auth:  edge.AuthenticatorFunc(func(*fasthttp.RequestCtx) (upstream.Identity, bool) { return benchIdentity, true }),
		Log:   zap.NewNop(),
	})
	if err != nil {
		return err
	}
	ln, err := listenAndReport()
	if err != nil {
		return err
	}
	return serveUntilSignal(
		func() error { return srv.Serve(ln) },
		func() error { return srv.Shutdown(context.Background()) })
}
