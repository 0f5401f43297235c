package wsecho

import (
	"context"
	"time"

	"github.com/apigetaway/getaway/bench/internal/procs"
	"github.com/valyala/fasthttp"
)

// backendShutdownGrace bounds the echo backend's graceful stop.
const backendShutdownGrace = 2 * time.Second

// ServeBackend is the harnesses' echo backend process: it answers body (as
// JSON) to every request and echoes every message of a WebSocket, on the
// listener procs.Listen hands it, until SIGTERM. name is its Server header.
func ServeBackend(name string, body []byte) error {
	srv := &fasthttp.Server{
		Handler: FastHTTP(func(ctx *fasthttp.RequestCtx) {
			ctx.SetContentType("application/json")
			ctx.SetBody(body)
		}),
		Name:            name,
		CloseOnShutdown: true,
	}
	ln, err := procs.Listen()
	if err != nil {
		return err
	}
	return procs.ServeUntilSignal(func() error { return srv.Serve(ln) }, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), backendShutdownGrace)
		defer cancel()
		return srv.ShutdownWithContext(ctx)
	})
}
