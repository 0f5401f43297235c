package main

import (
	"math"
	"os"
	"strings"
	"testing"
)

func TestParseStatus(t *testing.T) {
	rss, threads, err := parseStatus("Name:\tgetaway\nVmHWM:\t   32180 kB\nVmRSS:\t   31004 kB\nThreads:\t7\n")
	if err != nil || rss != 31004 || threads != 7 {
		t.Errorf("parseStatus = %d, %v, %v", rss, threads, err)
	}
	for _, bad := range []string{"Name:\tx\n", "VmRSS:\t12 MB\n", "VmRSS:\tx kB\n"} {
		if _, _, err := parseStatus(bad); err == nil {
			t.Errorf("parseStatus(%q) succeeded", bad)
		}
	}
}

func TestReadProcSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("no /proc")
	}
	rss, threads, fds, err := readProc(os.Getpid())
	if err != nil || rss <= 0 || !(threads >= 1) || fds < 3 {
		t.Errorf("readProc(self) = %d KiB, %v threads, %d fds, %v", rss, threads, fds, err)
	}
}

func TestParseGoroutines(t *testing.T) {
	text := "# HELP go_goroutines Number of goroutines that currently exist.\n# TYPE go_goroutines gauge\ngo_gc_duration_seconds{quantile=\"0\"} 1e-05\ngo_goroutines 42\ngo_threads 9\n"
	if v, err := parseGoroutines(strings.NewReader(text)); err != nil || v != 42 {
		t.Errorf("parseGoroutines = %v, %v", v, err)
	}
	for _, bad := range []string{"go_threads 9\n", "go_goroutines x\n", ""} {
		if v, err := parseGoroutines(strings.NewReader(bad)); err == nil || !math.IsNaN(v) {
			t.Errorf("parseGoroutines(%q) = %v, %v", bad, v, err)
		}
	}
}
