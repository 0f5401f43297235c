package main

import (
	"fmt"
	"strings"
	"time"
)

// renderReport writes the run as Markdown (bench/results/websocket.md).
func renderReport(e env, o options, mem memoryResult, lat []latencyResult, finalRSS int64) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# WebSocket relay: latency and memory\n\n")
	w("- Date: %s\n- Go: %s\n- nproc: %d\n- CPU: %s\n- Command: `%s`\n", e.date, e.goVersion, e.nproc, e.cpu, e.command)
	w("- Open-file limit of the harness: %d (raised in-process with setrlimit; the gateway raises its own to hold both connections of every socket)\n", e.fdLimit)
	w("- Backend: a WebSocket echo server (net/http and github.com/fasthttp/websocket) in its own process\n")
	w("- Gateway: in its own process, composed as main.go composes it (edge, authflow, upstream, the in-memory session store), configured by the environment (OIDC_*, APP_BASE_URL, LISTEN_ADDR, WS_IDLE_TIMEOUT_SECONDS=1800, MAX_CONNS_PER_IP=0, LOG_LEVEL=error), WebSocket limits otherwise at their defaults\n")
	w("- Sign-in: one real sign-in through authflow/testidp (the IdP's login form, the gateway's callback), in the harness process; every socket through the gateway carries that session cookie, so every upgrade is authenticated (session from the process cache) and its session watched\n")
	w("- Clients: github.com/fasthttp/websocket in the harness process; all on 127.0.0.1; the harness, the backend and the gateway share the machine's CPUs\n\n")

	w("## Memory per idle proxied socket\n\n")
	w("%d sockets opened through the gateway (%d at a time, in %v), each relaying one 64 B message and its echo, then idle for %v; the gateway's resident memory (VmRSS, /proc) before and with them open:\n\n",
		mem.sockets, o.dialers, mem.openFor.Round(time.Millisecond), o.settle)
	if mem.requested > mem.sockets {
		w("%d sockets were asked for; the gateway's open-file limit (the hard limit of this machine, which only a privileged process may raise; every proxied socket takes two descriptors) let it hold %d. The per-socket figure does not depend on the count.\n\n", mem.requested, mem.sockets)
	}
	w("| gateway VmRSS before | with %d sockets open | growth | per socket | goal | after closing them |\n|---:|---:|---:|---:|---|---:|\n", mem.sockets)
	verdict := "met"
	if mem.perSocketKiB() >= 64 {
		verdict = "not met"
	}
	w("| %s | %s | %s | **%.1f KiB** | < 64 KiB: %s | %s |\n\n", mib(mem.baseKiB), mib(mem.openKiB), mib(mem.openKiB-mem.baseKiB), mem.perSocketKiB(), verdict, mib(mem.afterKiB))
	w("A socket holds in the gateway: the client's connection (fasthttp's hijacked connection keeps its %s read buffer, plus the library's 4 KiB reader), the backend's connection (4 KiB reader), three goroutines (the hijack goroutine supervising, two copiers) and the session watch; write buffers are pooled and held only while a message passes. Kernel socket buffers are not in RSS.\n\n", "16 KiB")

	w("## Round-trip latency, gateway vs direct\n\n")
	w("One message out and its echo back, timed by the client, on a fresh gateway process (not the one of the memory measure). Each scenario: a warm-up, then %d rounds per target, interleaved (the first target alternates), samples pooled over the rounds.\n\n", o.rounds)
	w("| scenario | target | round trips | p50 | p99 | max | round trips/s | p50 ratio | p99 ratio |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range lat {
		w("| %s | direct | %d | %v | %v | %v | %.0f | - | - |\n", r.scenario.name, r.direct.n, dur(r.direct.p50), dur(r.direct.p99), dur(r.direct.max), r.direct.perSecond)
		w("| %s | gateway | %d | %v | %v | %v | %.0f | %.2fx | %.2fx |\n", r.scenario.name, r.gateway.n, dur(r.gateway.p50), dur(r.gateway.p99), dur(r.gateway.max), r.gateway.perSecond,
			ratio(r.gateway.p50, r.direct.p50), ratio(r.gateway.p99, r.direct.p99))
	}
	w("\nThe gateway adds one more hop on loopback (two more socket writes and reads per round trip, relayed frame by frame) to the backend's own work; ratios are from one run on one machine where clients, gateway and backend share the CPUs: compare them only with runs made the same way.\n\n")
	w("VmRSS of the latency run's gateway at its end: %s.\n", mib(finalRSS))
	return b.String()
}

func mib(kib int64) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }

func dur(d time.Duration) time.Duration {
	switch {
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	default:
		return d.Round(time.Microsecond)
	}
}

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}
