package edge

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"github.com/valyala/fasthttp"
)

// static serves files from the public directory, and index.html in place of
// a missing file for browser navigations (the SPA fallback).
type static struct {
	files fasthttp.RequestHandler
	index fasthttp.RequestHandler // serves index.html whatever the path; nil without one
}

// newStatic returns nil when dir does not exist: static serving is off.
func newStatic(dir string) (*static, error) {
	if dir == "" {
		return nil, nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("public dir %q: %w", dir, err)
	}
	fi, err := os.Stat(abs)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("public dir %q: %w", dir, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("public dir %q: not a directory", dir)
	}
	st := &static{}
	if _, err := os.Stat(filepath.Join(abs, "index.html")); err == nil {
		index := &fasthttp.FS{
			Root:         abs,
			Compress:     false,
			PathRewrite:  func(*fasthttp.RequestCtx) []byte { return []byte("/index.html") },
			PathNotFound: func(ctx *fasthttp.RequestCtx) { writeJSON(ctx, fasthttp.StatusNotFound, bodyNotFound) },
		}
		st.index = index.NewRequestHandler()
	}
	// Compress stays off: fasthttp would write compressed copies of the
	// files into the public directory.
	fs := &fasthttp.FS{
		Root:               abs,
		IndexNames:         []string{"index.html"},
		GenerateIndexPages: false,
		Compress:           false,
		AcceptByteRange:    true,
		PathNotFound:       st.fallback,
	}
	st.files = fs.NewRequestHandler()
	return st, nil
}

// reservedPrefixes never get static files or the SPA fallback: they belong
// to the gateway's own routes, and a typo there must get a JSON 404.
var reservedPrefixes = [][]byte{apiPrefix, []byte("/auth"), []byte("/admin")}

func reserved(path []byte) bool {
	for _, p := range reservedPrefixes {
		if bytes.HasPrefix(path, p) && (len(path) == len(p) || path[len(p)] == '/') {
			return true
		}
	}
	return false
}

// hidden reports a path segment starting with a dot (.env, .git/...), which
// is never served.
func hidden(path []byte) bool {
	return bytes.Contains(path, []byte("/."))
}

// notFound handles every request no route matched.
func (s *Server) notFound(ctx *fasthttp.RequestCtx) {
	path := ctx.Path()
	if s.static == nil || reserved(path) || hidden(path) || !(ctx.IsGet() || ctx.IsHead()) {
		writeJSON(ctx, fasthttp.StatusNotFound, bodyNotFound)
		return
	}
	s.static.files(ctx)
	switch ctx.Response.StatusCode() {
	case fasthttp.StatusFound:
		// A directory asked without its slash: fasthttp's Location is
		// absolute, built from the client's Host and always http. Keep
		// the redirect local.
		ctx.Response.Header.Set(fasthttp.HeaderLocation, string(path)+"/")
	case fasthttp.StatusForbidden:
		// A directory without index.html: a navigation gets the SPA,
		// anything else the JSON 404.
		ctx.Response.Reset()
		s.static.fallback(ctx)
	}
}

var textHTML = []byte("text/html")

// fallback runs when no file matches: a browser navigation (Accept has
// text/html) gets index.html, anything else a JSON 404.
func (st *static) fallback(ctx *fasthttp.RequestCtx) {
	if st.index == nil || !bytes.Contains(ctx.Request.Header.Peek(fasthttp.HeaderAccept), textHTML) {
		writeJSON(ctx, fasthttp.StatusNotFound, bodyNotFound)
		return
	}
	ctx.Response.Reset()
	st.index(ctx)
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-cache")
}
