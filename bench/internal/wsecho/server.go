package wsecho

import (
	"net/http"

	"github.com/fasthttp/websocket"
	"github.com/valyala/fasthttp"
)

// Echo sends every message read on c back on it, with its type, until a
// read or a write fails, and closes c.
func Echo(c *websocket.Conn) {
	defer c.Close()
	for {
		typ, msg, err := c.ReadMessage()
		if err != nil {
			return
		}
		if c.WriteMessage(typ, msg) != nil {
			return
		}
	}
}

// Handler upgrades every request, from any origin, and echoes.
func Handler() http.Handler {
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return // the upgrader has answered
		}
		Echo(c)
	})
}

// FastHTTP upgrades WebSocket handshakes, from any origin, and echoes;
// other requests go to next.
func FastHTTP(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	up := websocket.FastHTTPUpgrader{CheckOrigin: func(*fasthttp.RequestCtx) bool { return true }}
	return func(ctx *fasthttp.RequestCtx) {
		if !websocket.FastHTTPIsWebSocketUpgrade(ctx) {
			next(ctx)
			return
		}
		_ = up.Upgrade(ctx, Echo) // on error the upgrader has answered
	}
}
