package edge

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zapcore"
)

// fakeEnv is a LookupEnv over a map.
func fakeEnv(vars map[string]string) LookupEnv {
	return func(key string) (string, bool) {
		v, ok := vars[key]
		return v, ok
	}
}

func TestLoadSettingsDefaults(t *testing.T) {
	for name, vars := range map[string]map[string]string{
		"unset": {},
		"set but empty": {
			"PORT": "", "LOG_LEVEL": "", "LOG_FORMAT": "", "CONFIG_PATH": "", "ALLOWED_ORIGINS": "",
			"PROXY_TIMEOUT_SECONDS": "", "MAX_HEADER_BYTES": "", "PUBLIC_DIR": "", "LISTEN_ADDR": "",
		},
	} {
		t.Run(name, func(t *testing.T) {
			s, err := LoadSettings(fakeEnv(vars))
			require.NoError(t, err)
			assert.Equal(t, zapcore.InfoLevel, s.LogLevel)
			assert.Equal(t, "json", s.LogFormat)
			assert.Equal(t, "config.yml", s.ConfigPath)

			c := s.Server
			assert.Equal(t, ":8080", c.Addr)
			assert.Empty(t, c.AllowedOrigins)
			assert.Equal(t, "public", c.PublicDir)
			assert.Equal(t, 60*time.Second, c.ReadTimeout)
			assert.Equal(t, 60*time.Second, c.WriteTimeout)
			assert.Equal(t, 120*time.Second, c.IdleTimeout)
			assert.Equal(t, 15*time.Second, c.ShutdownTimeout)
			assert.Equal(t, 16<<10, c.MaxHeaderBytes)
			assert.Equal(t, 1<<20, c.MaxBodyBytes)
			assert.Equal(t, 100_000, c.MaxConns)
			assert.Empty(t, c.AdminAddr, "no metrics listener by default")
			assert.Equal(t, 0.01, c.AccessLogSample)
			assert.True(t, s.AccessLog)
			assert.Equal(t, 10*time.Second, c.HeaderTimeout)
			assert.Zero(t, c.MaxConnsPerIP, "0: the default, decided by TrustedProxies")

			p := s.Proxy
			assert.Equal(t, "sid", p.SessionCookieName)
			assert.Equal(t, 30*time.Second, p.Pool.ResponseTimeout)
			assert.Equal(t, 5*time.Second, p.Pool.DialTimeout)
			assert.Equal(t, 30*time.Second, p.Pool.WriteTimeout)
			assert.Equal(t, 1024, p.Pool.MaxConnsPerBackend)
		})
	}
}

func TestLoadSettingsValues(t *testing.T) {
	tests := []struct {
		name  string
		vars  map[string]string
		check func(t *testing.T, s *Settings)
	}{
		{"PORT", map[string]string{"PORT": "9090"}, func(t *testing.T, s *Settings) {
			assert.Equal(t, ":9090", s.Server.Addr)
		}},
		{"PORT with spaces", map[string]string{"PORT": " 9090 "}, func(t *testing.T, s *Settings) {
			assert.Equal(t, ":9090", s.Server.Addr)
		}},
		{"LISTEN_HOST", map[string]string{"LISTEN_HOST": "127.0.0.1", "PORT": "9090"}, func(t *testing.T, s *Settings) {
			assert.Equal(t, "127.0.0.1:9090", s.Server.Addr)
		}},
		{"LISTEN_HOST IPv6", map[string]string{"LISTEN_HOST": "::1"}, func(t *testing.T, s *Settings) {
			assert.Equal(t, "[::1]:8080", s.Server.Addr)
		}},
		{"LISTEN_ADDR overrides PORT and LISTEN_HOST", map[string]string{"LISTEN_ADDR": "127.0.0.1:7000", "PORT": "9090", "LISTEN_HOST": "0.0.0.0"}, func(t *testing.T, s *Settings) {
			assert.Equal(t, "127.0.0.1:7000", s.Server.Addr)
		}},
		{"LOG_LEVEL debug", map[string]string{"LOG_LEVEL": "debug"}, func(t *testing.T, s *Settings) {
			assert.Equal(t, zapcore.DebugLevel, s.LogLevel)
		}},
		{"LOG_LEVEL upper case", map[string]string{"LOG_LEVEL": "WARN"}, func(t *testing.T, s *Settings) {
			assert.Equal(t, zapcore.WarnLevel, s.LogLevel)
		}},
		{"LOG_LEVEL error", map[string]string{"LOG_LEVEL": "error"}, func(t *testing.T, s *Settings) {
			assert.Equal(t, zapcore.ErrorLevel, s.LogLevel)
		}},
		{"LOG_FORMAT console", map[string]string{"LOG_FORMAT": "Console"}, func(t *testing.T, s *Settings) {
			assert.Equal(t, "console", s.LogFormat)
		}},
		{"CONFIG_PATH", map[string]string{"CONFIG_PATH": "/etc/getaway/routes.yml"}, func(t *testing.T, s *Settings) {
			assert.Equal(t, "/etc/getaway/routes.yml", s.ConfigPath)
		}},
		{"PROXY_TIMEOUT_SECONDS fraction", map[string]string{"PROXY_TIMEOUT_SECONDS": "2.5"}, func(t *testing.T, s *Settings) {
			assert.Equal(t, 2500*time.Millisecond, s.Proxy.Pool.ResponseTimeout)
		}},
		{"MAX_HEADER_BYTES", map[string]string{"MAX_HEADER_BYTES": "32768"}, func(t *testing.T, s *Settings) {
			assert.Equal(t, 32768, s.Server.MaxHeaderBytes)
		}},
		{"HEADER_TIMEOUT duration", map[string]string{"HEADER_TIMEOUT": "500ms"}, func(t *testing.T, s *Settings) {
			assert.Equal(t, 500*time.Millisecond, s.Server.HeaderTimeout)
		}},
		{"HEADER_TIMEOUT seconds", map[string]string{"HEADER_TIMEOUT": "5"}, func(t *testing.T, s *Settings) {
			assert.Equal(t, 5*time.Second, s.Server.HeaderTimeout)
		}},
		{"MAX_CONNS_PER_IP", map[string]string{"MAX_CONNS_PER_IP": " 200 "}, func(t *testing.T, s *Settings) {
			assert.Equal(t, 200, s.Server.MaxConnsPerIP)
		}},
		{"MAX_CONNS_PER_IP 0 is off", map[string]string{"MAX_CONNS_PER_IP": "0"}, func(t *testing.T, s *Settings) {
			assert.Equal(t, -1, s.Server.MaxConnsPerIP)
		}},
		{"SESSION_COOKIE_NAME", map[string]string{"SESSION_COOKIE_NAME": "__Host-gw"}, func(t *testing.T, s *Settings) {
			assert.Equal(t, "__Host-gw", s.Proxy.SessionCookieName)
		}},
		{"ADMIN_ADDR", map[string]string{"ADMIN_ADDR": " 127.0.0.1:9090 "}, func(t *testing.T, s *Settings) {
			assert.Equal(t, "127.0.0.1:9090", s.Server.AdminAddr)
		}},
		{"ADMIN_ADDR IPv6", map[string]string{"ADMIN_ADDR": "[::1]:9090"}, func(t *testing.T, s *Settings) {
			assert.Equal(t, "[::1]:9090", s.Server.AdminAddr)
		}},
		{"ACCESS_LOG_SAMPLE", map[string]string{"ACCESS_LOG_SAMPLE": "0.25"}, func(t *testing.T, s *Settings) {
			assert.Equal(t, 0.25, s.Server.AccessLogSample)
		}},
		{"ACCESS_LOG_SAMPLE 0", map[string]string{"ACCESS_LOG_SAMPLE": "0"}, func(t *testing.T, s *Settings) {
			assert.Zero(t, s.Server.AccessLogSample)
		}},
		{"ACCESS_LOG off", map[string]string{"ACCESS_LOG": "OFF"}, func(t *testing.T, s *Settings) {
			assert.False(t, s.AccessLog)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := LoadSettings(fakeEnv(tc.vars))
			require.NoError(t, err)
			tc.check(t, s)
		})
	}
}

func TestLoadSettingsRejectsBadValues(t *testing.T) {
	tests := []struct {
		key, value string
	}{
		{"PORT", "abc"},
		{"PORT", "70000"},
		{"PORT", "-1"},
		{"LOG_LEVEL", "verbose"},
		{"LOG_FORMAT", "xml"},
		{"PROXY_TIMEOUT_SECONDS", "-1"},
		{"PROXY_TIMEOUT_SECONDS", "0"},
		{"PROXY_TIMEOUT_SECONDS", "abc"},
		{"PROXY_TIMEOUT_SECONDS", "40000000"},
		{"PROXY_TIMEOUT_SECONDS", "Inf"},
		{"PROXY_TIMEOUT_SECONDS", "NaN"},
		{"READ_TIMEOUT_SECONDS", "NaN"},
		{"ALLOWED_ORIGINS", "ftp://x"},
		{"ALLOWED_ORIGINS", "https://a.com/path"},
		{"ALLOWED_ORIGINS", "https://a.com?x=1"},
		{"ALLOWED_ORIGINS", "https://user@a.com"},
		{"ALLOWED_ORIGINS", "app.example.com"},
		{"ALLOWED_ORIGINS", "https://ok.example.com, javascript:alert(1)"},
		{"ALLOWED_ORIGINS", "https://:443"},
		{"MAX_HEADER_BYTES", "10"},
		{"MAX_HEADER_BYTES", "lots"},
		{"MAX_CONNS", "0"},
		{"PROXY_MAX_CONNS_PER_BACKEND", "0"},
		{"ADMIN_ADDR", "9090"},
		{"ADMIN_ADDR", "localhost:http-alt"},
		{"ADMIN_ADDR", "127.0.0.1:70000"},
		{"ACCESS_LOG_SAMPLE", "1.5"},
		{"ACCESS_LOG_SAMPLE", "-0.1"},
		{"ACCESS_LOG_SAMPLE", "NaN"},
		{"ACCESS_LOG_SAMPLE", "10%"},
		{"ACCESS_LOG", "sometimes"},
		{"HEADER_TIMEOUT", "0"},
		{"HEADER_TIMEOUT", "0s"},
		{"HEADER_TIMEOUT", "-1s"},
		{"HEADER_TIMEOUT", "9000h"},
		{"HEADER_TIMEOUT", "soon"},
		{"MAX_CONNS_PER_IP", "-1"},
		{"MAX_CONNS_PER_IP", "many"},
		{"MAX_CONNS_PER_IP", "20000000"},
	}
	for _, tc := range tests {
		t.Run(tc.key+"="+tc.value, func(t *testing.T) {
			s, err := LoadSettings(fakeEnv(map[string]string{tc.key: tc.value}))
			require.Error(t, err)
			assert.Nil(t, s)
			assert.Contains(t, err.Error(), tc.key, "the error must name the variable")
		})
	}

	t.Run("every bad value in one error", func(t *testing.T) {
		_, err := LoadSettings(fakeEnv(map[string]string{
			"PORT":                  "abc",
			"LOG_LEVEL":             "verbose",
			"LOG_FORMAT":            "xml",
			"PROXY_TIMEOUT_SECONDS": "-1",
			"ALLOWED_ORIGINS":       "ftp://x,https://ok.example.com,https://a.com/path",
			"MAX_HEADER_BYTES":      "10",
		}))
		require.Error(t, err)
		msg := err.Error()
		for _, key := range []string{"PORT", "LOG_LEVEL", "LOG_FORMAT", "PROXY_TIMEOUT_SECONDS", "MAX_HEADER_BYTES"} {
			assert.Contains(t, msg, key+":")
		}
		assert.Equal(t, 2, strings.Count(msg, "ALLOWED_ORIGINS:"), "each bad origin reported: %s", msg)
		assert.Contains(t, msg, `"ftp://x"`)
		assert.Contains(t, msg, `"https://a.com/path"`)
		assert.NotContains(t, msg, "ok.example.com")
	})
}

func TestLoadSettingsAllowedOrigins(t *testing.T) {
	tests := []struct {
		name, value string
		want        []string
	}{
		{"default port and case dropped", "HTTPS://App.Example.com:443/", []string{"https://app.example.com"}},
		{"http default port", "http://Example.com:80", []string{"http://example.com"}},
		{"port kept", "http://localhost:5173", []string{"http://localhost:5173"}},
		{"https on port 80 keeps it", "https://a.example.com:80", []string{"https://a.example.com:80"}},
		{"IPv6", "http://[::1]:3000", []string{"http://[::1]:3000"}},
		{"spaces and empty items ignored", " https://a.example.com , ,http://localhost:5173,, ", []string{"https://a.example.com", "http://localhost:5173"}},
		{"only separators", " , ,", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := LoadSettings(fakeEnv(map[string]string{"ALLOWED_ORIGINS": tc.value}))
			require.NoError(t, err)
			assert.Equal(t, tc.want, s.Server.AllowedOrigins)
		})
	}
}

func TestEnvExampleIsValid(t *testing.T) {
	// .env.example lists every variable with its default: loaded as it is,
	// it must be a valid environment.
	data, err := os.ReadFile("../.env.example")
	require.NoError(t, err)
	env := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		require.True(t, ok, line)
		env[k] = strings.Trim(v, `"`)
	}
	asked := map[string]bool{}
	_, err = LoadSettings(func(k string) (string, bool) { asked[k] = true; v, ok := env[k]; return v, ok })
	require.NoError(t, err)
	// Every variable the gateway reads is listed, and nothing else.
	require.NotEmpty(t, asked)
	for k := range asked {
		assert.Contains(t, env, k, ".env.example misses %s", k)
	}
	for k := range env {
		assert.True(t, asked[k], ".env.example lists %s, which the gateway does not read", k)
	}
}
