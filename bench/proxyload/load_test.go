package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The fixtures in testdata are the verbatim output of wrk 4.1.0 with
// --latency: a clean run through the gateway, a run answered 404 throughout,
// and a run against a server that answers 503 now and then and resets some
// connections.
func TestParseWrk(t *testing.T) {
	tests := []struct {
		file string
		want result
	}{
		{"wrk-ok.txt", result{
			requests: 22394, elapsed: 2020 * time.Millisecond, rps: 11090.37,
			p50: 5090 * time.Microsecond, p99: 30040 * time.Microsecond,
		}},
		{"wrk-non2xx.txt", result{
			requests: 24493, elapsed: 1100 * time.Millisecond, rps: 22339.56,
			p50: 452 * time.Microsecond, p99: 18690 * time.Microsecond,
			badStatus: 24493,
		}},
		{"wrk-errors.txt", result{
			requests: 13442, elapsed: 2110 * time.Millisecond, rps: 6379.05,
			p50: 430 * time.Microsecond, p99: 290980 * time.Microsecond,
			badStatus: 1920, socketErrors: 274,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			out, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			got, err := parseWrk(string(out))
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("parseWrk =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestParseWrkRefusesIncompleteOutput(t *testing.T) {
	out, err := os.ReadFile(filepath.Join("testdata", "wrk-ok.txt"))
	if err != nil {
		t.Fatal(err)
	}
	// Without --latency wrk prints no distribution.
	var kept []string
	for line := range strings.Lines(string(out)) {
		if !strings.Contains(line, "%  ") {
			kept = append(kept, line)
		}
	}
	if _, err := parseWrk(strings.Join(kept, "")); err == nil {
		t.Error("parseWrk accepted output without the 50%/99% lines")
	}
	if _, err := parseWrk("unable to connect to 127.0.0.1:1 Connection refused\n"); err == nil {
		t.Error("parseWrk accepted wrk's connection failure")
	}
}

func TestParseWrkDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"0.00us", 0},
		{"452.00us", 452 * time.Microsecond},
		{"5.09ms", 5090 * time.Microsecond},
		{"2.02s", 2020 * time.Millisecond},
		{"1.50m", 90 * time.Second},
		{"1.00h", time.Hour},
	}
	for _, tt := range tests {
		got, err := parseWrkDuration(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("parseWrkDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "12", "ms", "1.0xs", "abcus"} {
		if _, err := parseWrkDuration(bad); err == nil {
			t.Errorf("parseWrkDuration(%q) succeeded", bad)
		}
	}
}

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100) // 1ms .. 100ms
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one value p50", []time.Duration{7}, 50, 7},
		{"one value p99", []time.Duration{7}, 99, 7},
		{"two values p50", []time.Duration{1, 2}, 50, 1},
		{"two values p99", []time.Duration{1, 2}, 99, 2},
		{"hundred p50", hundred, 50, 50 * time.Millisecond},
		{"hundred p99", hundred, 99, 99 * time.Millisecond},
		{"hundred p100", hundred, 100, 100 * time.Millisecond},
		{"hundred tiny p", hundred, 0.001, 1 * time.Millisecond},
		// 1000 values: p99 is the 990th, so the ten slowest stay above it.
		{"thousand p99", seq(1000), 99, 990},
	}
	for _, tt := range tests {
		if got := percentile(tt.sorted, tt.p); got != tt.want {
			t.Errorf("%s: percentile(p=%v) = %v, want %v", tt.name, tt.p, got, tt.want)
		}
	}
}

func TestMedian(t *testing.T) {
	if got := median([]float64{3, 1, 2}); got != 2 {
		t.Errorf("median of 3 values = %v, want 2", got)
	}
	if got := median([]time.Duration{4, 1, 3, 2}); got != 2 {
		t.Errorf("median of 4 values = %v, want 2 (mean of 2 and 3, truncated)", got)
	}
	if got := median([]float64(nil)); got != 0 {
		t.Errorf("median of nothing = %v, want 0", got)
	}
}

// seq returns 1..n as durations.
func seq(n int) []time.Duration {
	s := make([]time.Duration, n)
	for i := range s {
		s[i] = time.Duration(i + 1)
	}
	return s
}
