package main

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/apigetaway/getaway/bench/internal/redisproc"
)

// commandStats is the calls= count of every command in INFO commandstats,
// by command name ("get", "client|tracking").
type commandStats map[string]int64

// readCommandStats asks Redis for INFO commandstats.
func readCommandStats(ctx context.Context, addr string) (commandStats, error) {
	info, err := redisproc.Do(ctx, addr, "INFO", "commandstats")
	if err != nil {
		return nil, fmt.Errorf("INFO commandstats: %w", err)
	}
	return parseCommandStats(info)
}

// parseCommandStats reads the section INFO commandstats returns:
//
//	# Commandstats
//	cmdstat_get:calls=12,usec=40,usec_per_call=3.33,rejected_calls=0,failed_calls=0
func parseCommandStats(info string) (commandStats, error) {
	stats := commandStats{}
	for line := range strings.Lines(info) {
		line = strings.TrimSpace(line)
		name, fields, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		name, ok = strings.CutPrefix(name, "cmdstat_")
		if !ok {
			continue
		}
		found := false
		for f := range strings.SplitSeq(fields, ",") {
			if v, ok := strings.CutPrefix(f, "calls="); ok {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("INFO commandstats line %q: %w", line, err)
				}
				stats[name] = n
				found = true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("INFO commandstats line %q has no calls=", line)
		}
	}
	return stats, nil
}

// redisUse adds up the Redis commands the gateway sent while the harness
// was sending it a number of requests.
type redisUse struct {
	requests int64
	elapsed  time.Duration // how long those requests took
	byCmd    map[string]int64
}

// add records the commands between two INFO commandstats readings taken
// around requests requests that took elapsed. Redis counts a command once
// it has run, so the later reading includes the earlier INFO and not
// itself: one INFO call of the difference is the harness's own.
func (u *redisUse) add(before, after commandStats, requests int64, elapsed time.Duration) {
	if u.byCmd == nil {
		u.byCmd = map[string]int64{}
	}
	u.requests += requests
	u.elapsed += elapsed
	for name, n := range after {
		d := n - before[name]
		if name == "info" {
			d--
		}
		if d > 0 {
			u.byCmd[name] += d
		}
	}
}

// commands is the total count.
func (u *redisUse) commands() int64 {
	var n int64
	for _, c := range u.byCmd {
		n += c
	}
	return n
}

// perThousand is the number of commands per 1,000 requests.
func (u *redisUse) perThousand() float64 {
	if u.requests == 0 {
		return 0
	}
	return float64(u.commands()) * 1000 / float64(u.requests)
}

// perSecond is the number of commands per second of load; commands sent
// whatever the load (keep-alive PINGs) show here.
func (u *redisUse) perSecond() float64 {
	if u.elapsed <= 0 {
		return 0
	}
	return float64(u.commands()) / u.elapsed.Seconds()
}

// breakdown lists the commands, the most frequent first: "get 3, evalsha 1".
func (u *redisUse) breakdown() string {
	names := make([]string, 0, len(u.byCmd))
	for name := range u.byCmd {
		names = append(names, name)
	}
	slices.SortFunc(names, func(a, b string) int {
		return cmp.Or(cmp.Compare(u.byCmd[b], u.byCmd[a]), strings.Compare(a, b))
	})
	parts := make([]string, len(names))
	for i, name := range names {
		parts[i] = fmt.Sprintf("%s %d", strings.ToUpper(name), u.byCmd[name])
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}
