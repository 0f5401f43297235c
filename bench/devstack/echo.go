package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"
)

// echoReport is what the echo backend answers: the request as it arrived
// from the gateway.
type echoReport struct {
	Note string `json:"note"`
	// UserHeaders are the X-User-* headers, first so that they are seen
	// without scrolling; Headers has them too.
	UserHeaders map[string][]string `json:"userHeaders"`
	Cookies     []string            `json:"cookieNames"`
	Method      string              `json:"method"`
	RequestURI  string              `json:"requestURI"`
	Path        string              `json:"path"`
	Query       map[string][]string `json:"query"`
	Host        string              `json:"host"`
	Headers     map[string][]string `json:"headers"`
	BodyBytes   int64               `json:"bodyBytes"`
}

const echoNote = "This is the echo backend behind getaway. The x-user-* headers were set by the gateway " +
	"from your session (a client cannot forge them); the session cookie never reaches a backend."

// echoHandler answers every request with an echoReport as indented JSON.
func echoHandler(w http.ResponseWriter, r *http.Request) {
	n, _ := io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
	rep := echoReport{
		Note:        echoNote,
		UserHeaders: map[string][]string{},
		Cookies:     []string{},
		Method:      r.Method,
		RequestURI:  r.RequestURI,
		Path:        r.URL.Path,
		Query:       r.URL.Query(),
		Host:        r.Host,
		Headers:     r.Header,
		BodyBytes:   n,
	}
	for k, v := range r.Header {
		if strings.HasPrefix(k, "X-User-") { // canonical form, whatever the case sent
			rep.UserHeaders[k] = v
		}
	}
	for _, c := range r.Cookies() {
		rep.Cookies = append(rep.Cookies, c.Name)
	}
	sort.Strings(rep.Cookies)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	_ = enc.Encode(rep)
}

// echoServer is the running echo backend.
type echoServer struct {
	srv  *http.Server
	url  string // http://127.0.0.1:PORT
	done chan struct{}
}

// startEcho serves echoHandler on a free loopback port.
func startEcho() (*echoServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	e := &echoServer{
		srv: &http.Server{
			Handler:           http.HandlerFunc(echoHandler),
			ReadHeaderTimeout: 10 * time.Second,
		},
		url:  "http://" + ln.Addr().String(),
		done: make(chan struct{}),
	}
	go func() {
		defer close(e.done)
		_ = e.srv.Serve(ln) // http.ErrServerClosed after stop
	}()
	return e, nil
}

// stop lets requests in flight finish for a moment, then closes the rest.
func (e *echoServer) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if e.srv.Shutdown(ctx) != nil {
		_ = e.srv.Close()
	}
	<-e.done
}
