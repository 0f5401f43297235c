package main

import (
	"bytes"
	"fmt"
	"time"

	"github.com/valyala/fasthttp"
)

// probe checks that t answers 200 with exactly echoBody, and returns the
// size of the whole response, head and body.
func probe(t target) (int, error) {
	var size int
	status, err := get(t, func(resp *fasthttp.Response) error {
		if !bytes.Equal(resp.Body(), echoBody) {
			return fmt.Errorf("unexpected body %q", resp.Body())
		}
		size = len(resp.Header.Header()) + len(resp.Body())
		return nil
	})
	if err == nil && status != fasthttp.StatusOK {
		err = fmt.Errorf("status %d", status)
	}
	return size, err
}

// get requests t's URL once, with its session cookie unless t.sid is
// empty, and passes the response to check, if not nil.
func get(t target, check func(*fasthttp.Response) error) (int, error) {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(t.url)
	req.SetConnectionClose()
	if t.sid != "" {
		req.Header.SetCookie(t.cookieKey(), t.sid)
	}
	if err := fasthttp.DoTimeout(req, resp, time.Second); err != nil {
		return 0, err
	}
	if check != nil {
		if err := check(resp); err != nil {
			return resp.StatusCode(), err
		}
	}
	return resp.StatusCode(), nil
}
