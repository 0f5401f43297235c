// Command wsload measures what getaway's WebSocket relay costs (issue 5):
// the round-trip latency of a message through the gateway against the same
// echo backend reached directly (p50 and p99, one socket and many sockets
// at once, interleaved rounds), and the memory one idle proxied socket
// costs the gateway: the growth of the gateway process's resident memory
// (VmRSS) with 10,000 sockets open and idle, divided by 10,000 (DESIGN.md
// section 4: goal < 64 KiB).
//
// Every server runs in its own OS process except the OpenID provider
// (authflow/testidp), which runs in the harness with the clients:
//
//	go run ./bench/wsload          # harness (default role)
//	wsload -role=backend           # WebSocket echo backend (net/http and the
//	                               # fasthttp/websocket library), started by the harness
//	wsload -role=gateway -backend=URL
//	                               # the gateway: edge, authflow (OIDC against the
//	                               # harness's IdP), upstream and the in-memory
//	                               # session store, composed as main.go composes them
//	                               # and configured by the same environment variables
//
// Sockets through the gateway carry the session cookie of a real sign-in
// (the IdP's login form, the gateway's callback), so every upgrade is
// authenticated and its session watched, as in production. Everything
// listens on 127.0.0.1 only.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"
)

type options struct {
	role       string
	backendURL string

	sockets  int           // idle sockets for the memory measure
	dialers  int           // sockets opened at once
	rounds   int           // latency rounds per target, interleaved
	trips    int           // round trips per round and socket
	parallel int           // sockets of the concurrent latency scenario
	settle   time.Duration // idle wait before reading the memory
	out      string
}

func main() {
	var o options
	flag.StringVar(&o.role, "role", "harness", "harness, backend or gateway (the last two are started by the harness)")
	flag.StringVar(&o.backendURL, "backend", "", "gateway role: the backend's URL")
	flag.IntVar(&o.sockets, "sockets", 10_000, "idle sockets held open through the gateway for the memory measure")
	flag.IntVar(&o.dialers, "dialers", 100, "sockets being opened at once")
	flag.IntVar(&o.rounds, "rounds", 3, "latency rounds per target, interleaved")
	flag.IntVar(&o.trips, "trips", 5000, "round trips per round on each socket")
	flag.IntVar(&o.parallel, "parallel", 64, "sockets of the concurrent latency scenario")
	flag.DurationVar(&o.settle, "settle", 3*time.Second, "idle wait before reading the gateway's memory")
	flag.StringVar(&o.out, "out", "bench/results/websocket.md", "report file (empty: stdout only)")
	flag.Parse()

	var err error
	switch o.role {
	case "backend":
		err = runBackend()
	case "gateway":
		err = runGateway(o.backendURL)
	case "harness":
		err = runHarness(o)
	default:
		err = fmt.Errorf("unknown role %q", o.role)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "wsload %s: %v\n", o.role, err)
		os.Exit(1)
	}
}
