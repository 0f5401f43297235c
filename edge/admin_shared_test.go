package edge

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/apigetaway/getaway/authflow"
	"github.com/apigetaway/getaway/sessioncache/redistest"
	"github.com/apigetaway/getaway/upstream"
	"github.com/redis/rueidis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
)

// startSharedGateway is one gateway instance whose admin changes go through
// the config shared on srv.
func startSharedGateway(t *testing.T, srv *redistest.Server, configYAML string) *gateway {
	t.Helper()
	return startGatewayWith(t, configYAML, func(_ string, p *upstream.Proxy, d *Deps) {
		client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr()}})
		require.NoError(t, err)
		sh := upstream.NewShared(client, p, upstream.SharedOptions{}, zap.NewNop())
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); sh.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done; client.Close() })
		d.Auth = allowAll
		d.Admin = AdminDeps{
			Authorizer: authflow.NewAdmin(authflow.AdminConfig{Tokens: map[string]string{"ops": adminToken}}, nil),
			ConfigPath: t.TempDir() + "/config.yml",
			Publisher:  sh,
		}
	})
}

func TestAdminPutReachesEveryInstance(t *testing.T) {
	srv := redistest.Start(t)
	a := startBackend(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("a") })
	b := startBackend(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("b") })
	cfg := fmt.Sprintf("defaultBackend: %q\n", a.URL)
	one := startSharedGateway(t, srv, cfg)
	two := startSharedGateway(t, srv, cfg)
	h := http.Header{"Authorization": {"Bearer " + adminToken}, "Content-Type": {"application/yaml"}}

	resp, body := do(t, http.MethodPut, one.URL+"/admin/config", h, strings.NewReader(fmt.Sprintf("defaultBackend: %q\n", b.URL)))
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	start := time.Now()
	require.Eventually(t, func() bool {
		_, got := do(t, http.MethodGet, two.URL+"/api/x", nil, nil)
		return got == "b"
	}, time.Second, 10*time.Millisecond, "the change did not reach the other instance within 1 s")
	t.Logf("in force on the other instance after %v", time.Since(start))

	// The other instance's GET shows the same config and ETag.
	r1, c1 := do(t, http.MethodGet, one.URL+"/admin/config", h, nil)
	r2, c2 := do(t, http.MethodGet, two.URL+"/admin/config", h, nil)
	assert.JSONEq(t, c1, c2)
	assert.Equal(t, r1.Header.Get("ETag"), r2.Header.Get("ETag"))
}
