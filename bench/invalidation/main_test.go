package main

import (
	"strings"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	var lat []time.Duration
	for i := 100; i >= 1; i-- {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	s := summarize(lat)
	if s.n != 100 || s.p50 != 51*time.Millisecond || s.p99 != 100*time.Millisecond || s.max != 100*time.Millisecond {
		t.Fatalf("summary %+v", s)
	}
	if lat[0] != 100*time.Millisecond {
		t.Fatal("summarize sorted its argument")
	}
	if got := summarize(nil); got.n != 0 {
		t.Fatalf("summary of nothing: %+v", got)
	}
}

func TestVerdict(t *testing.T) {
	for _, tc := range []struct {
		s    summary
		want string
	}{
		{summary{n: 3, max: 100 * time.Millisecond}, ": met (max 100ms over 3 sessions)"},
		{summary{n: 3, max: 101 * time.Millisecond}, ": not met (max 101ms over 3 sessions)"},
		{summary{}, ": no measurement"},
	} {
		if got := tc.s.verdict(); !strings.HasSuffix(got, tc.want) {
			t.Errorf("verdict %q, want the suffix %q", got, tc.want)
		}
	}
}
