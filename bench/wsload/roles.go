package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"syscall"
	"time"

	"github.com/apigetaway/getaway/authflow"
	"github.com/apigetaway/getaway/bench/internal/procs"
	"github.com/apigetaway/getaway/bench/internal/wsecho"
	"github.com/apigetaway/getaway/edge"
	"github.com/apigetaway/getaway/sessioncache"
	"github.com/apigetaway/getaway/upstream"
	"go.uber.org/zap"
)

// runBackend serves a WebSocket echo on 127.0.0.1 until SIGTERM. Its first
// line on stdout is "ADDR host:port" (procs.Listen).
func runBackend() error {
	if _, err := raiseFDLimit(40_000); err != nil {
		return err
	}
	ln, err := procs.Listen()
	if err != nil {
		return err
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: wsecho.Handler()}
	return procs.ServeUntilSignal(func() error { return srv.Serve(ln) }, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return srv.Shutdown(ctx)
	})
}

// runGateway runs the gateway as main.go composes it (sign-in, in-memory
// sessions, the proxy to backendURL as defaultBackend), configured by the
// environment the harness sets, until SIGTERM.
func runGateway(backendURL string) error {
	if _, err := raiseFDLimit(60_000); err != nil {
		return err
	}
	settings, err := edge.LoadSettings(os.LookupEnv)
	if err != nil {
		return err
	}
	f, err := upstream.ParseFile("config.yml", fmt.Appendf(nil, "defaultBackend: %q\n", backendURL))
	if err != nil {
		return err
	}
	log := zap.NewNop()
	proxy, err := upstream.NewProxy(settings.Proxy, f, log)
	if err != nil {
		return err
	}
	store, err := sessioncache.NewMemory(settings.Sessions)
	if err != nil {
		return err
	}
	defer store.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	auth, err := authflow.New(ctx, settings.Auth, store, edge.OriginPolicy(settings.Server.AllowedOrigins, proxy), log)
	cancel()
	if err != nil {
		return err
	}
	srv, err := edge.New(settings.Server, edge.Deps{
		Proxy: proxy, Auth: auth, Routes: auth.Register,
		Ready:     []edge.ReadinessCheck{{Name: "sessions", Check: store.Ping}},
		WebSocket: settings.WebSocket,
	})
	if err != nil {
		return err
	}
	return procs.ServeUntilSignal(srv.ListenAndServe, func() error { return srv.Shutdown(context.Background()) })
}

// raiseFDLimit raises this process's open-file limit to at least want
// (the hard limit too, which needs privileges), or to the hard limit, and
// returns the soft limit in force.
func raiseFDLimit(want uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("getrlimit: %w", err)
	}
	if lim.Cur >= want {
		return lim.Cur, nil
	}
	if lim.Max < want {
		raised := syscall.Rlimit{Cur: want, Max: want}
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised) == nil {
			return want, nil
		}
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("setrlimit: %w", err)
	}
	return lim.Cur, nil
}
