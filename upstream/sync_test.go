package upstream

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/apigetaway/getaway/sessioncache/redistest"
	"github.com/redis/rueidis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

// instance is one gateway's proxy and config sync on a shared Redis.
type instance struct {
	proxy  *Proxy
	shared *Shared
}

func startInstance(t *testing.T, srv *redistest.Server, initial string) *instance {
	t.Helper()
	f, err := ParseFile("config.yml", []byte(initial))
	require.NoError(t, err)
	p, err := NewProxy(ProxyConfig{}, f, zap.NewNop())
	require.NoError(t, err)
	client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr()}})
	require.NoError(t, err)
	sh := NewShared(client, p, SharedOptions{PollInterval: 200 * time.Millisecond}, zap.NewNop())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); sh.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; client.Close(); p.Close() })
	return &instance{proxy: p, shared: sh}
}

func backendOf(i *instance) string { return i.proxy.Routing().File.DefaultBackend }

// waitBackend waits, bounded by 1 s (the bar of issue 4), until i routes
// to want, and returns how long it took.
func waitBackend(t *testing.T, i *instance, want string) time.Duration {
	t.Helper()
	start := time.Now()
	require.Eventually(t, func() bool { return backendOf(i) == want }, time.Second, 5*time.Millisecond,
		"instance still routes to %s", backendOf(i))
	return time.Since(start)
}

func TestSharedConfigReachesEveryInstance(t *testing.T) {
	srv := redistest.Start(t)
	a := startInstance(t, srv, "defaultBackend: http://file-a\n")
	b := startInstance(t, srv, "defaultBackend: http://file-b\n")

	v, err := a.shared.Publish(context.Background(), mustParse(t, "defaultBackend: http://one\n"))
	require.NoError(t, err)
	assert.EqualValues(t, 1, v)
	assert.Equal(t, "http://one", backendOf(a), "the publisher applies at once")
	took := waitBackend(t, b, "http://one")
	t.Logf("config reached the other instance in %v", took)

	// An instance that starts later picks up the newest version.
	c := startInstance(t, srv, "defaultBackend: http://file-c\n")
	waitBackend(t, c, "http://one")
	assert.EqualValues(t, 1, c.shared.Version())
}

func TestSharedConfigConcurrentPublishesConverge(t *testing.T) {
	srv := redistest.Start(t)
	insts := []*instance{
		startInstance(t, srv, "defaultBackend: http://start\n"),
		startInstance(t, srv, "defaultBackend: http://start\n"),
	}
	for round := 0; round < 10; round++ {
		var wg sync.WaitGroup
		errs := make([]error, len(insts))
		versions := make([]int64, len(insts))
		for i, in := range insts {
			f := mustParse(t, fmt.Sprintf("defaultBackend: http://r%d-i%d\n", round, i))
			wg.Add(1)
			go func() {
				defer wg.Done()
				versions[i], errs[i] = in.shared.Publish(context.Background(), f)
			}()
		}
		wg.Wait()
		// A loser got ErrConflict and changed nothing; a publisher that had
		// already seen the other's version may win after it. Either way
		// every instance ends on the config of the highest version.
		var newest string
		var newestV int64
		for i, err := range errs {
			if err != nil {
				assert.ErrorIs(t, err, ErrConflict)
				continue
			}
			if versions[i] > newestV {
				newestV, newest = versions[i], fmt.Sprintf("http://r%d-i%d", round, i)
			}
		}
		require.NotEmpty(t, newest, "nobody won round %d", round)
		for _, in := range insts {
			waitBackend(t, in, newest)
		}
		// Let both see the newest version before the next round.
		require.Eventually(t, func() bool { return insts[0].shared.Version() == insts[1].shared.Version() }, time.Second, 5*time.Millisecond)
	}
}

func TestSharedConfigSurvivesRedisRestart(t *testing.T) {
	srv := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	a := startInstance(t, srv, "defaultBackend: http://file\n")
	b := startInstance(t, srv, "defaultBackend: http://file\n")
	_, err := a.shared.Publish(context.Background(), mustParse(t, "defaultBackend: http://before\n"))
	require.NoError(t, err)
	waitBackend(t, b, "http://before")

	srv.Kill()
	srv.Restart(t)
	// After reconnecting, a publication from one instance reaches the other.
	require.Eventually(t, func() bool {
		_, err := a.shared.Publish(context.Background(), mustParse(t, "defaultBackend: http://after\n"))
		return err == nil
	}, 5*time.Second, 50*time.Millisecond)
	waitBackend(t, b, "http://after")
}
