package sessioncache

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want []string // substrings of the error; none: valid
	}{
		{name: "zero value takes the defaults", cfg: Config{}},
		{name: "explicit", cfg: Config{IdleTimeout: time.Hour, AbsoluteLifetime: 24 * time.Hour, TouchInterval: time.Minute,
			StateTTL: 5 * time.Minute, CacheTTL: 30 * time.Second, KeyPrefix: "gw:", CommandTimeout: time.Second, MaxCachedSessions: 10}},
		{name: "negative durations", cfg: Config{IdleTimeout: -1, StateTTL: -time.Second, CacheTTL: -1, CommandTimeout: -1},
			want: []string{"sessioncache: idleTimeout: must be at least 1ms", "stateTTL", "cacheTTL", "commandTimeout"}},
		{name: "absolute shorter than idle", cfg: Config{IdleTimeout: 48 * time.Hour, AbsoluteLifetime: 24 * time.Hour},
			want: []string{"absoluteLifetime: must be at least idleTimeout"}},
		{name: "touch not shorter than idle", cfg: Config{IdleTimeout: time.Hour, TouchInterval: time.Hour},
			want: []string{"touchInterval: must be shorter than idleTimeout"}},
		{name: "hash tag in prefix", cfg: Config{KeyPrefix: "gw{1}:"}, want: []string{"keyPrefix"}},
		{name: "negative cache size", cfg: Config{MaxCachedSessions: -1}, want: []string{"maxCachedSessions"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate accepted an invalid config")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	c := Config{}.withDefaults()
	if c.IdleTimeout != 8*time.Hour || c.AbsoluteLifetime != 7*24*time.Hour || c.TouchInterval != 5*time.Minute ||
		c.StateTTL != 10*time.Minute || c.CacheTTL != time.Minute || c.CommandTimeout != 2*time.Second ||
		c.MaxCachedSessions != 100_000 || c.KeyPrefix != "" || c.DisableClientCache {
		t.Fatalf("defaults = %+v", c)
	}
}
