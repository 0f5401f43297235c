// Command getaway is the API Get Away edge gateway: it proxies /api/* to the
// backends chosen by config.yml on behalf of signed-in users. This file only
// wires the packages together; see README.md for configuration.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/apigetaway/getaway/authflow"
	"github.com/apigetaway/getaway/edge"
	"github.com/apigetaway/getaway/healthd"
	"github.com/apigetaway/getaway/sessioncache"
	"github.com/apigetaway/getaway/upstream"
	"github.com/redis/rueidis"
	"go.uber.org/zap"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("getaway", flag.ContinueOnError)
	flags.SetOutput(stderr)
	check := flags.Bool("check", false, "validate the environment and config file, then exit")
	showVersion := flags.Bool("version", false, "print the version and exit")
	healthcheck := flags.Bool("healthcheck", false, "exit 0 when the gateway on PORT answers /healthz (for container health checks)")
	if err := flags.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stdout, "getaway", version)
		return 0
	}

	settings, err := edge.LoadSettings(os.LookupEnv)
	if err != nil {
		fmt.Fprintf(stderr, "getaway: bad environment:\n%v\n", err)
		return 2
	}
	if *healthcheck {
		return probe(settings.Server.Addr, stderr)
	}
	file, err := upstream.LoadFile(settings.ConfigPath)
	if err != nil {
		fmt.Fprintf(stderr, "getaway: %v\n", err)
		return 2
	}
	if *check {
		fmt.Fprintf(stdout, "getaway: environment and %s are valid\n", settings.ConfigPath)
		return 0
	}

	log, err := edge.NewLogger(settings.LogLevel, settings.LogFormat)
	if err != nil {
		fmt.Fprintf(stderr, "getaway: logger: %v\n", err)
		return 2
	}
	defer func() { _ = log.Sync() }()

	var coord rueidis.Client // Redis for what instances coordinate besides sessions
	if settings.RedisURL != "" {
		if coord, err = coordinationClient(settings.RedisURL); err != nil {
			log.Error("cannot connect to Redis", zap.Error(err))
			return 1
		}
		defer coord.Close()
	}
	healthOpts := []healthd.Option{healthd.WithLogger(log.Named("healthd"))}
	if coord != nil {
		healthOpts = append(healthOpts, healthd.WithLease(healthd.NewRedisLease(coord)))
	}
	checker, err := healthd.New(settings.Health, healthOpts...)
	if err != nil {
		log.Error("cannot set up health checks", zap.Error(err))
		return 1
	}
	checker.SetTargets(healthd.TargetsFrom(file))
	settings.Proxy.Observer = checker
	proxy, err := upstream.NewProxy(settings.Proxy, file, log.Named("upstream"))
	if err != nil {
		log.Error("cannot start proxy", zap.Error(err))
		return 1
	}
	store, err := openStore(settings, log)
	if err != nil {
		log.Error("cannot open session store", zap.Error(err))
		return 1
	}
	defer store.Close()
	deps := edge.Deps{
		Proxy:     proxy,
		Auth:      edge.DenyAll,
		Ready:     []edge.ReadinessCheck{{Name: "sessions", Check: store.Ping}},
		WebSocket: settings.WebSocket,
		Log:       log.Named("edge"),
		// Rate limits count across instances on the coordination Redis
		// (nil without REDIS_URL: per process).
		RateLimitRedis: coord,
		// Read when Prometheus scrapes (ADMIN_ADDR, /admin/metrics).
		Metrics: edge.MetricsSources{Health: checker.Snapshot},
	}
	if st, ok := store.(edge.SessionStats); ok {
		deps.Metrics.Sessions = st
	}
	if settings.AccessLog {
		// JSON lines on stdout, apart from the process log (stderr).
		deps.AccessLog = edge.NewAccessLogger(os.Stdout)
	}
	var auth *authflow.Auth
	if settings.AuthEnabled {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		auth, err = authflow.New(ctx, settings.Auth, store,
			edge.OriginPolicy(settings.Server.AllowedOrigins, proxy), log.Named("authflow"))
		cancel()
		if err != nil {
			log.Error("cannot set up sign-in", zap.Error(err))
			return 1
		}
		// Stops the writer of renewed sessions the store refused; runs
		// before the store closes.
		defer auth.Close()
		deps.Auth, deps.Routes = auth, auth.Register
		deps.Metrics.Refreshes = auth
	} else {
		log.Warn("sign-in is not configured (no OIDC_* variables): every /api request is refused with 401")
	}
	resync := func(f *upstream.File) { checker.SetTargets(healthd.TargetsFrom(f)) }
	deps.Admin = edge.AdminDeps{
		ConfigPath: settings.ConfigPath,
		Health:     func() any { return checker.Snapshot() },
		Applied:    resync,
	}
	if settings.Admin.Enabled() {
		deps.Admin.Authorizer = authflow.NewAdmin(settings.Admin, auth)
	} else {
		log.Warn("no admin configured (ADMIN_TOKENS, ADMIN_EMAILS, ADMIN_GROUPS): the admin API answers 404")
	}
	// Background work: health checks, and the config shared by instances
	// on one Redis. Both stop before the process exits.
	bg, stopBG := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { stopBG(); wg.Wait() }()
	wg.Add(1)
	go func() { defer wg.Done(); checker.Run(bg) }()
	var publisher edge.ConfigPublisher = proxy // this instance only
	if coord != nil {
		shared := upstream.NewShared(coord, proxy, upstream.SharedOptions{Applied: resync}, log.Named("configsync"))
		publisher = shared
		wg.Add(1)
		go func() { defer wg.Done(); shared.Run(bg) }()
	}
	deps.Admin.Publisher = publisher
	srv, err := edge.New(settings.Server, deps)
	if err != nil {
		log.Error("cannot build server", zap.Error(err))
		return 1
	}

	served := make(chan error, 1)
	go func() { served <- srv.ListenAndServe() }()

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(signals)
	for {
		select {
		case err := <-served:
			if err != nil {
				log.Error("server stopped", zap.Error(err))
				return 1
			}
			return 0
		case sig := <-signals:
			if sig == syscall.SIGHUP {
				if f := reload(publisher, settings.ConfigPath, log); f != nil {
					resync(f)
				}
				continue
			}
			log.Info("shutting down", zap.String("signal", sig.String()))
			if err := srv.Shutdown(context.Background()); err != nil {
				log.Warn("shutdown did not finish cleanly", zap.Error(err))
				return 1
			}
			return 0
		}
	}
}

// openStore opens Redis when REDIS_URL is set, else the in-memory store.
func openStore(settings *edge.Settings, log *zap.Logger) (sessioncache.Store, error) {
	if settings.RedisURL == "" {
		log.Warn("REDIS_URL is empty: sessions are kept in this process only (one instance, lost on restart)")
		return sessioncache.NewMemory(settings.Sessions)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return sessioncache.NewRedis(ctx, settings.RedisURL, settings.Sessions, log)
}

// reload re-reads the config file (SIGHUP) and puts it in force, on every
// instance when they share Redis; a bad file is logged and the config in
// force stays.
func reload(publisher edge.ConfigPublisher, path string, log *zap.Logger) *upstream.File {
	f, err := upstream.LoadFile(path)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = publisher.Publish(ctx, f)
		cancel()
	}
	if err != nil {
		log.Error("config reload refused, previous config stays in force", zap.Error(err))
		return nil
	}
	log.Info("config reloaded", zap.String("path", path))
	return f
}

// coordinationClient is the Redis client for what instances coordinate
// besides sessions: the shared config, notification leases and rate limit
// counts.
func coordinationClient(redisURL string) (rueidis.Client, error) {
	opt, err := sessioncache.ParseRedisURL(redisURL)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	return rueidis.NewClient(opt)
}

// probe asks the local gateway's /healthz.
func probe(addr string, stderr io.Writer) int {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		fmt.Fprintf(stderr, "getaway: %v\n", err)
		return 1
	}
	client := &http.Client{Timeout: 3 * time.Second}
	resp, err := client.Get("http://" + net.JoinHostPort("127.0.0.1", port) + "/healthz")
	if err != nil {
		fmt.Fprintf(stderr, "getaway: healthcheck: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "getaway: healthcheck: status %d\n", resp.StatusCode)
		return 1
	}
	return 0
}
