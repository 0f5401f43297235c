package main

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/apigetaway/getaway/bench/internal/procs"
	"github.com/apigetaway/getaway/bench/internal/wsecho"
	"github.com/fasthttp/websocket"
	"golang.org/x/sync/errgroup"
)

// target is where the clients connect: the backend directly, or the
// gateway with the session cookie.
type target struct {
	name   string
	url    string
	header http.Header
}

func (t target) dial() (*websocket.Conn, error) {
	return wsecho.Dial(context.Background(), t.url, t.header)
}

// memoryResult is the gateway's resident memory around holding idle
// sockets open.
type memoryResult struct {
	sockets, requested         int
	baseKiB, openKiB, afterKiB int64
	openFor                    time.Duration
}

func (m memoryResult) perSocketKiB() float64 {
	return float64(m.openKiB-m.baseKiB) / float64(m.sockets)
}

// measureMemory opens o.sockets sockets through the gateway, each passing
// one message (so both of its connections are set up and have relayed),
// leaves them idle for o.settle, and reads the gateway's VmRSS before,
// with them open, and after they are closed.
func measureMemory(o options, through target, gateway *procs.Child) (memoryResult, error) {
	m := memoryResult{sockets: o.sockets}
	rssKiB := func() (int64, error) {
		mem, err := gateway.Memory()
		return mem.RSSKiB, err
	}
	msg := bytes.Repeat([]byte{'m'}, 64)
	// One socket first: the relay's code paths and pools exist in the
	// baseline, as in a gateway that has served before.
	warm, err := through.dial()
	if err != nil {
		return m, err
	}
	if err := wsecho.RoundTrip(warm, msg); err != nil {
		return m, err
	}
	_ = warm.Close()
	time.Sleep(o.settle)
	if m.baseKiB, err = rssKiB(); err != nil {
		return m, err
	}

	conns := make([]*websocket.Conn, o.sockets)
	defer func() {
		for _, c := range conns {
			if c != nil {
				_ = c.Close()
			}
		}
	}()
	start := time.Now()
	var g errgroup.Group
	g.SetLimit(o.dialers)
	for i := range conns {
		g.Go(func() error {
			c, err := through.dial()
			if err != nil {
				return fmt.Errorf("socket %d: %w", i, err)
			}
			conns[i] = c
			return wsecho.RoundTrip(c, msg)
		})
	}
	if err := g.Wait(); err != nil {
		return m, err
	}
	m.openFor = time.Since(start)
	time.Sleep(o.settle)
	if m.openKiB, err = rssKiB(); err != nil {
		return m, err
	}
	for i, c := range conns {
		_ = c.Close()
		conns[i] = nil
	}
	time.Sleep(o.settle)
	m.afterKiB, _ = rssKiB()
	return m, nil
}

// scenario is one latency measure: sockets clients at once, each doing
// round trips of size bytes.
type scenario struct {
	name    string
	sockets int
	size    int
}

type latencyStats struct {
	n             int
	p50, p99, max time.Duration
	perSecond     float64 // round trips per second, all sockets together
}

type latencyResult struct {
	scenario        scenario
	direct, gateway latencyStats
	rounds          int
}

// measureLatency runs o.rounds rounds of the scenario against each target,
// alternating which goes first, after a warm-up, and pools the samples of
// each target over the rounds.
func measureLatency(o options, sc scenario, direct, through target) (latencyResult, error) {
	res := latencyResult{scenario: sc, rounds: o.rounds}
	msg := bytes.Repeat([]byte{'m'}, sc.size)
	targets := []target{direct, through}
	conns := make(map[string][]*websocket.Conn)
	defer func() {
		for _, cs := range conns {
			for _, c := range cs {
				_ = c.Close()
			}
		}
	}()
	for _, t := range targets {
		for range sc.sockets {
			c, err := t.dial()
			if err != nil {
				return res, err
			}
			conns[t.name] = append(conns[t.name], c)
		}
	}
	trips := o.trips
	if sc.sockets > 1 {
		trips = max(1, o.trips/sc.sockets*4) // the same order of samples in all
	}
	samples := map[string][]time.Duration{}
	busy := map[string]time.Duration{}
	run := func(t target, trips int, record bool) error {
		var mu sync.Mutex
		var g errgroup.Group
		start := time.Now()
		for _, c := range conns[t.name] {
			g.Go(func() error {
				local := make([]time.Duration, 0, trips)
				for range trips {
					t0 := time.Now()
					if err := wsecho.RoundTrip(c, msg); err != nil {
						return err
					}
					local = append(local, time.Since(t0))
				}
				if record {
					mu.Lock()
					samples[t.name] = append(samples[t.name], local...)
					mu.Unlock()
				}
				return nil
			})
		}
		err := g.Wait()
		if record {
			busy[t.name] += time.Since(start)
		}
		return err
	}
	for _, t := range targets {
		if err := run(t, max(1, trips/5), false); err != nil {
			return res, err
		}
	}
	for round := range o.rounds {
		order := targets
		if round%2 == 1 {
			order = []target{through, direct}
		}
		for _, t := range order {
			runtime.GC() // not inside a measured round
			if err := run(t, trips, true); err != nil {
				return res, err
			}
		}
	}
	res.direct = stats(samples[direct.name], busy[direct.name])
	res.gateway = stats(samples[through.name], busy[through.name])
	return res, nil
}

func stats(d []time.Duration, busy time.Duration) latencyStats {
	slices.Sort(d)
	return latencyStats{
		n: len(d), p50: percentile(d, 0.50), p99: percentile(d, 0.99), max: percentile(d, 1),
		perSecond: float64(len(d)) / busy.Seconds(),
	}
}

// percentile returns the q-quantile of sorted d (nearest rank).
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
