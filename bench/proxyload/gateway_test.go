package main

import (
	"context"
	"testing"
	"time"

	"github.com/apigetaway/getaway/bench/internal/redisproc"
)

func TestParseCommandStats(t *testing.T) {
	info := "# Commandstats\r\n" +
		"cmdstat_get:calls=12,usec=40,usec_per_call=3.33,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_client|tracking:calls=1,usec=3,usec_per_call=3.00,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_info:calls=7,usec=300,usec_per_call=42.86,rejected_calls=0,failed_calls=0\r\n"
	got, err := parseCommandStats(info)
	if err != nil {
		t.Fatal(err)
	}
	want := commandStats{"get": 12, "client|tracking": 1, "info": 7}
	if len(got) != len(want) {
		t.Fatalf("parseCommandStats = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %d, want %d", k, got[k], v)
		}
	}
	if _, err := parseCommandStats("cmdstat_get:usec=40\r\n"); err == nil {
		t.Error("a line without calls= was accepted")
	}
	if s, err := parseCommandStats("# Commandstats\r\n"); err != nil || len(s) != 0 {
		t.Errorf("empty section: %v, %v", s, err)
	}
}

func TestRedisUse(t *testing.T) {
	var u redisUse
	// One round: two GETs and a PING, plus the harness's earlier INFO.
	u.add(commandStats{"info": 3, "get": 10}, commandStats{"info": 4, "get": 12, "ping": 1}, 3000, 2*time.Second)
	// Another with nothing but the harness's INFO.
	u.add(commandStats{"info": 5, "get": 12, "ping": 1}, commandStats{"info": 6, "get": 12, "ping": 1}, 1000, time.Second)
	if u.commands() != 3 || u.requests != 4000 {
		t.Errorf("commands %d over %d requests, want 3 over 4000", u.commands(), u.requests)
	}
	if got := u.perThousand(); got != 0.75 {
		t.Errorf("perThousand = %v, want 0.75", got)
	}
	if got := u.perSecond(); got != 1 {
		t.Errorf("perSecond = %v, want 1", got)
	}
	if got := u.breakdown(); got != "GET 2, PING 1" {
		t.Errorf("breakdown = %q", got)
	}
	var none redisUse
	if none.perThousand() != 0 || none.breakdown() != "none" {
		t.Errorf("empty use: %v, %q", none.perThousand(), none.breakdown())
	}
}

// TestRedisCounting runs a real redis-server, when installed, and checks
// the accounting: readings with nothing in between count no command, and a
// command between them counts once.
func TestRedisCounting(t *testing.T) {
	bin := redisproc.Find()
	if bin == "" {
		t.Skip("redis-server not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, addr, _, err := redisproc.Start(ctx, bin, readyWithin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopChild(c) })

	a, err := readCommandStats(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	b, err := readCommandStats(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := redisproc.Do(ctx, addr, "SET", "k", "v"); err != nil {
		t.Fatal(err)
	}
	if v, err := redisproc.Do(ctx, addr, "GET", "k"); err != nil || v != "v" {
		t.Fatalf("GET k = %q, %v", v, err)
	}
	cc, err := readCommandStats(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	var quiet, busy redisUse
	quiet.add(a, b, 1, time.Second)
	busy.add(b, cc, 1, time.Second)
	if quiet.commands() != 0 {
		t.Errorf("between two readings: %s, want none", quiet.breakdown())
	}
	if busy.breakdown() != "GET 1, SET 1" {
		t.Errorf("around SET and GET: %s", busy.breakdown())
	}

	stopChild(c)
	if _, err := redisproc.Do(ctx, addr, "PING"); err == nil {
		t.Error("redis-server still answers after stop")
	}
}
