package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/apigetaway/getaway/authflow/testidp"
	"github.com/apigetaway/getaway/bench/internal/procs"
)

const (
	// startWithin bounds the start of a child, until it answers.
	startWithin = 30 * time.Second
	// stopGrace is how long a child has to exit after SIGTERM before its
	// process group is killed.
	stopGrace = 10 * time.Second
)

// startBackend starts this program in the backend role and returns it with
// the address it listens on.
func startBackend() (*procs.Child, string, error) {
	cmd, err := procs.SelfCommand("backend")
	if err != nil {
		return nil, "", err
	}
	return procs.StartServer(context.Background(), "backend", cmd, startWithin)
}

// fdRoom returns the process's open-file soft limit and how many files it
// has open (from /proc).
func fdRoom(pid int) (limit, open uint64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			if _, err := fmt.Sscan(rest, &limit); err != nil {
				return 0, 0, fmt.Errorf("limits %q: %w", line, err)
			}
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, 0, err
	}
	return limit, uint64(len(fds)), nil
}

// env describes the run for the report.
type env struct {
	date, goVersion, cpu, command string
	nproc                         int
	fdLimit                       uint64
}

func describeEnv() env {
	e := env{
		date:      time.Now().UTC().Format("2006-01-02 15:04 UTC"),
		goVersion: runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH,
		nproc:     runtime.NumCPU(),
		command:   strings.TrimSpace("go run ./bench/wsload " + strings.Join(os.Args[1:], " ")),
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "model name"); ok {
				e.cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(rest), ":"))
				break
			}
		}
	}
	return e
}

// startGateway starts a gateway process routing to backendURL, signs in
// through it, and returns it with the target that carries the session.
func startGateway(idp *testidp.IdP, backendURL string) (*procs.Child, target, error) {
	gwAddr, err := procs.FreeAddr()
	if err != nil {
		return nil, target{}, err
	}
	base := "http://" + gwAddr
	if err := idp.AddRedirectURI(base + "/auth/callback"); err != nil {
		return nil, target{}, err
	}
	cmd, err := procs.SelfCommand("gateway", "-backend="+backendURL)
	if err != nil {
		return nil, target{}, err
	}
	cmd.Env = append(os.Environ(),
		"LISTEN_ADDR="+gwAddr,
		"APP_BASE_URL="+base,
		"OIDC_ISSUER="+idp.Issuer(),
		"OIDC_CLIENT_ID=getaway",
		"OIDC_CLIENT_SECRET=getaway-secret",
		"SESSION_COOKIE_SECURE=false",
		"PUBLIC_DIR=/nonexistent",
		"LOG_LEVEL=error",
		// Every socket comes from one address (MAX_CONNS_PER_IP is 1000 by default).
		"MAX_CONNS_PER_IP=0",
		// The idle sockets must outlive the measure.
		"WS_IDLE_TIMEOUT_SECONDS=1800",
	)
	gateway, err := procs.Start("gateway", cmd)
	if err != nil {
		return nil, target{}, err
	}
	if err := gateway.WaitHTTP(context.Background(), base+"/healthz", startWithin); err != nil {
		_ = gateway.Stop(stopGrace)
		return nil, target{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sid, err := idp.SignInThrough(ctx, base, idp.Username(), testidp.Password, "sid")
	if err != nil {
		_ = gateway.Stop(stopGrace)
		return nil, target{}, fmt.Errorf("sign-in: %w", err)
	}
	fmt.Fprintf(os.Stderr, "wsload: gateway %s (pid %d), signed in\n", gwAddr, gateway.Pid())
	return gateway, target{name: "gateway", url: "ws://" + gwAddr + "/api/live", header: http.Header{"Cookie": {"sid=" + sid}}}, nil
}

func runHarness(o options) error {
	e := describeEnv()
	fdLimit, err := raiseFDLimit(uint64(o.sockets) + 2_000)
	if err != nil {
		return err
	}
	e.fdLimit = fdLimit
	if fdLimit < uint64(o.sockets)+1_000 {
		return fmt.Errorf("open-file limit %d is too low for %d sockets", fdLimit, o.sockets)
	}

	idp, err := testidp.Start(testidp.Options{})
	if err != nil {
		return err
	}
	defer idp.Close()

	backend, backendAddr, err := startBackend()
	if err != nil {
		return err
	}
	defer func() { _ = backend.Stop(stopGrace) }()
	backendURL := "http://" + backendAddr

	direct := target{name: "direct", url: "ws://" + backendAddr + "/live"}

	// Memory first, on a gateway of its own, so no other run's garbage
	// hides in its baseline.
	gateway, through, err := startGateway(idp, backendURL)
	if err != nil {
		return err
	}
	// Every proxied socket costs the gateway two descriptors. Without the
	// privilege to raise the hard limit, hold as many as it allows.
	requested := o.sockets
	if limit, open, err := fdRoom(gateway.Pid()); err == nil {
		if fit := int(limit-open-64) / 2; fit < o.sockets {
			fmt.Fprintf(os.Stderr, "wsload: the gateway may open %d files (%d open): holding %d sockets, not %d\n", limit, open, fit, o.sockets)
			o.sockets = fit
		}
	}
	mem, err := measureMemory(o, through, gateway)
	_ = gateway.Stop(stopGrace)
	if err != nil {
		return fmt.Errorf("memory: %w", err)
	}
	mem.requested = requested
	fmt.Fprintf(os.Stderr, "wsload: %d idle sockets: %.1f KiB each\n", mem.sockets, mem.perSocketKiB())

	// Latency on a fresh gateway.
	gateway, through, err = startGateway(idp, backendURL)
	if err != nil {
		return err
	}
	defer func() { _ = gateway.Stop(stopGrace) }()
	var lat []latencyResult
	for _, sc := range []scenario{
		{name: "1 socket, 64 B messages", sockets: 1, size: 64},
		{name: "1 socket, 16 KiB messages", sockets: 1, size: 16 << 10},
		{name: fmt.Sprintf("%d sockets at once, 64 B messages", o.parallel), sockets: o.parallel, size: 64},
	} {
		r, err := measureLatency(o, sc, direct, through)
		if err != nil {
			return fmt.Errorf("latency %s: %w", sc.name, err)
		}
		lat = append(lat, r)
		fmt.Fprintf(os.Stderr, "wsload: %s: direct p50 %v p99 %v, gateway p50 %v p99 %v\n", sc.name,
			r.direct.p50, r.direct.p99, r.gateway.p50, r.gateway.p99)
	}
	final, _ := gateway.Memory()

	report := renderReport(e, o, mem, lat, final.RSSKiB)
	fmt.Print(report)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(report), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "wsload: wrote %s\n", o.out)
	}
	return nil
}
