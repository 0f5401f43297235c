package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// sample is one reading of the gateway process and of the load so far.
type sample struct {
	at         time.Duration // since the load started
	rssKiB     int64         // VmRSS
	goroutines float64       // go_goroutines from the metrics listener; NaN when it did not answer
	threads    float64       // Threads of /proc/PID/status; NaN when unread
	fds        int           // entries of /proc/PID/fd; -1 when unread
	requests   int64         // operations done so far, all kinds
	errors     int64         // errors so far, all kinds
}

// readProc reads the resident memory and the threads from
// /proc/PID/status and counts /proc/PID/fd.
func readProc(pid int) (rssKiB int64, threads float64, fds int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, math.NaN(), -1, err
	}
	rssKiB, threads, err = parseStatus(string(b))
	if err != nil {
		return 0, math.NaN(), -1, err
	}
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return rssKiB, threads, -1, err
	}
	return rssKiB, threads, len(entries), nil
}

// parseStatus reads the "VmRSS:\t  12345 kB" and "Threads:\t7" lines of
// /proc/PID/status.
func parseStatus(status string) (rssKiB int64, threads float64, err error) {
	threads = math.NaN()
	haveRSS := false
	for line := range strings.Lines(status) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		switch {
		case k == "VmRSS" && len(f) == 2 && f[1] == "kB":
			if rssKiB, err = strconv.ParseInt(f[0], 10, 64); err != nil {
				return 0, threads, fmt.Errorf("/proc status line %q: %w", strings.TrimSpace(line), err)
			}
			haveRSS = true
		case k == "Threads" && len(f) == 1:
			n, err := strconv.Atoi(f[0])
			if err != nil {
				return 0, math.NaN(), fmt.Errorf("/proc status line %q: %w", strings.TrimSpace(line), err)
			}
			threads = float64(n)
		}
	}
	if !haveRSS {
		return 0, threads, fmt.Errorf("/proc status has no VmRSS line in kB")
	}
	return rssKiB, threads, nil
}

// metricsClient asks the gateway's metrics listener; its requests are
// short, as the listener is local.
var metricsClient = &http.Client{Timeout: 2 * time.Second}

// readGoroutines asks GET url (http://ADMIN_ADDR/metrics) for the
// Prometheus text format and returns the value of go_goroutines.
func readGoroutines(ctx context.Context, url string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return math.NaN(), err
	}
	resp, err := metricsClient.Do(req)
	if err != nil {
		return math.NaN(), err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return math.NaN(), fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	return parseGoroutines(io.LimitReader(resp.Body, 4<<20))
}

// parseGoroutines finds the sample "go_goroutines <n>" in a Prometheus
// text exposition.
func parseGoroutines(r io.Reader) (float64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		// "go_goroutines 42", optionally with a timestamp; never a # line.
		if len(f) >= 2 && (f[0] == "go_goroutines" || strings.HasPrefix(f[0], "go_goroutines{")) {
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return math.NaN(), fmt.Errorf("metrics line %q: %w", sc.Text(), err)
			}
			return v, nil
		}
	}
	if err := sc.Err(); err != nil {
		return math.NaN(), err
	}
	return math.NaN(), fmt.Errorf("no go_goroutines in the metrics")
}
