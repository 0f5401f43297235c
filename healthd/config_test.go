package healthd

import (
	"strings"
	"testing"
	"time"
)

func TestConfigDefaults(t *testing.T) {
	c := Config{}.withDefaults()
	want := Config{
		Interval:        60 * time.Second,
		Timeout:         10 * time.Second,
		NotifyDownAfter: 6 * time.Hour,
		NotifyTimeout:   10 * time.Second,
		NotifyRetryBase: 5 * time.Second,
		NotifyRetryMax:  5 * time.Minute,
		NotifyAttempts:  8,
		ClaimTTL:        7 * 24 * time.Hour,
	}
	if c != want {
		t.Fatalf("defaults:\n got %+v\nwant %+v", c, want)
	}
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("zero Config: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings of the error; none means valid
	}{
		{name: "apprise http", cfg: Config{AppriseURL: "http://apprise:8000/notify/key"}},
		{name: "apprise https", cfg: Config{AppriseURL: "https://apprise.example.com/notify/key", AppriseTags: "ops, oncall"}},
		{name: "tiny durations for tests", cfg: Config{Interval: time.Millisecond, Timeout: time.Millisecond,
			NotifyRetryBase: time.Millisecond, NotifyRetryMax: time.Millisecond, NotifyDownAfter: time.Millisecond}},
		{name: "negative interval", cfg: Config{Interval: -time.Second}, want: []string{"healthd: interval: must be at least 1ms"}},
		{name: "sub-ms timeout", cfg: Config{Timeout: time.Microsecond}, want: []string{"healthd: timeout: must be at least 1ms"}},
		{name: "negative notifyDownAfter", cfg: Config{NotifyDownAfter: -1}, want: []string{"healthd: notifyDownAfter:"}},
		{name: "retry max below base", cfg: Config{NotifyRetryBase: time.Minute, NotifyRetryMax: time.Second},
			want: []string{"healthd: notifyRetryMax: must be at least notifyRetryBase (1m0s), got 1s"}},
		{name: "attempts", cfg: Config{NotifyAttempts: 101}, want: []string{"healthd: notifyAttempts: must be between 1 and 100, got 101"}},
		{name: "claim ttl below threshold", cfg: Config{ClaimTTL: time.Hour},
			want: []string{"healthd: claimTTL: must be at least notifyDownAfter (6h0m0s), got 1h0m0s"}},
		{name: "apprise scheme", cfg: Config{AppriseURL: "ftp://apprise/notify/secretkey"},
			want: []string{"healthd: appriseURL: scheme must be http or https"}},
		{name: "apprise relative", cfg: Config{AppriseURL: "/notify/secretkey"},
			want: []string{"healthd: appriseURL: scheme must be http or https"}},
		{name: "apprise without host", cfg: Config{AppriseURL: "http:///notify/secretkey"},
			want: []string{"healthd: appriseURL: must be an absolute url"}},
		{name: "apprise fragment", cfg: Config{AppriseURL: "http://apprise/notify/secretkey#x"},
			want: []string{"healthd: appriseURL: must not contain a fragment"}},
		{name: "every problem reported", cfg: Config{Interval: -1, Timeout: -1, NotifyAttempts: -1},
			want: []string{"interval:", "timeout:", "notifyAttempts:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate: no error, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			// The Apprise key is a secret: never in messages.
			if strings.Contains(err.Error(), "secretkey") {
				t.Errorf("error %q repeats the apprise url", err)
			}
			if _, nerr := New(tt.cfg); nerr == nil {
				t.Errorf("New accepted an invalid Config")
			}
		})
	}
}
