package main

import (
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseConfig(t *testing.T) {
	host, _ := os.Hostname()
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		check   func(config) bool
		wantErr string
	}{
		{"defaults", nil, nil, func(c config) bool {
			return c.Listen == ":9090" && c.CPURL == "http://127.0.0.1:8080" && c.ID == host && c.Domain == "default" &&
				c.Slots == 4 && c.CPHTTP1 && c.HeartbeatInterval == 5*time.Second && !c.HeartbeatIntervalSet && !c.AllowExec &&
				c.ShutdownGrace == 30*time.Second && c.LogLevel == slog.LevelInfo
		}, ""},
		{"flags", []string{"-listen", "127.0.0.1:9091", "-cp", "http://cp:8080", "-id", "edge-1", "-domain", "zone-a", "-slots", "8",
			"-cp-http1=false", "-agent-token", "tok", "-heartbeat-interval", "1s", "-allow-exec", "-shutdown-grace", "5s"}, nil,
			func(c config) bool {
				return c.Listen == "127.0.0.1:9091" && c.CPURL == "http://cp:8080" && c.ID == "edge-1" && c.Domain == "zone-a" && c.Slots == 8 &&
					!c.CPHTTP1 && c.AgentToken == "tok" && c.HeartbeatInterval == time.Second && c.HeartbeatIntervalSet && c.AllowExec &&
					c.ShutdownGrace == 5*time.Second
			}, ""},
		{"env twins", nil, map[string]string{"FLUX_AGENT_TOKEN": "secret", "FLUX_DOMAIN": "zone-b", "FLUX_SLOTS": "2",
			"FLUX_ALLOW_EXEC": "true", "FLUX_HEARTBEAT_INTERVAL": "250ms", "FLUX_LOG_LEVEL": "debug", "FLUX_CP": "http://x:1"},
			func(c config) bool {
				return c.AgentToken == "secret" && c.Domain == "zone-b" && c.Slots == 2 && c.AllowExec &&
					c.HeartbeatInterval == 250*time.Millisecond && c.HeartbeatIntervalSet && c.LogLevel == slog.LevelDebug && c.CPURL == "http://x:1"
			}, ""},
		{"flag wins over env", []string{"-domain", "zone-c"}, map[string]string{"FLUX_DOMAIN": "zone-b"},
			func(c config) bool { return c.Domain == "zone-c" }, ""},
		{"bad env value", nil, map[string]string{"FLUX_SLOTS": "many"}, nil, `usage: FLUX_SLOTS="many": parse error`},
		{"bad log level", nil, map[string]string{"FLUX_LOG_LEVEL": "loud"}, nil, "usage: FLUX_LOG_LEVEL=loud is not one of debug, info, warn, error"},
		{"bad id", []string{"-id", "a b"}, nil, nil, `usage: -id "a b": agent id "a b" may hold only letters, digits, '-', '_' and '.'`},
		{"bad domain", []string{"-domain", "zone/a"}, nil, nil, "usage: -domain zone/a: "},
		{"bad domain from env", nil, map[string]string{"FLUX_DOMAIN": "zone/a"}, nil, "usage: FLUX_DOMAIN=zone/a: "},
		{"zero slots", []string{"-slots", "0"}, nil, nil, "usage: -slots 0 must be between 1 and 1024"},
		{"too many slots", nil, map[string]string{"FLUX_SLOTS": "2000"}, nil, "usage: FLUX_SLOTS=2000 must be between 1 and 1024"},
		{"tiny heartbeat", []string{"-heartbeat-interval", "1ms"}, nil, nil, "usage: -heartbeat-interval 1ms must be at least 10ms"},
		{"tiny heartbeat from env", nil, map[string]string{"FLUX_HEARTBEAT_INTERVAL": "5ms"}, nil, "usage: FLUX_HEARTBEAT_INTERVAL=5ms must be at least 10ms"},
		{"negative grace", []string{"-shutdown-grace=-1s"}, nil, nil, "usage: -shutdown-grace -1s must not be negative"},
		{"cp not a URL", []string{"-cp", "cp:8080"}, nil, nil, "usage: -cp cp:8080 must be an http(s) URL with a host"},
		{"advertise is gone", []string{"-advertise", "http://10.0.0.1:9090"}, nil, nil, "usage: -advertise is gone: agents dial in to the cp"},
		{"advertise= is gone", []string{"--advertise=http://10.0.0.1:9090"}, nil, nil, "usage: -advertise is gone"},
		{"FLUX_ADVERTISE is ignored", nil, map[string]string{"FLUX_ADVERTISE": "http://10.0.0.1:9090"}, func(c config) bool { return c.Listen == ":9090" }, ""},
		{"no port", []string{"-listen", "none"}, nil, func(c config) bool { return c.Listen == "none" }, ""},
		{"pprof", []string{"-pprof", "127.0.0.1:6061"}, nil, func(c config) bool { return c.PprofAddr == "127.0.0.1:6061" }, ""},
		{"bad pprof", []string{"-pprof", "6061"}, nil, nil, "usage: -pprof 6061 is not host:port"},
		{"bad listen", []string{"-listen", "9090"}, nil, nil, "usage: -listen 9090 is not host:port or none"},
		{"stray argument", []string{"extra"}, nil, nil, "unexpected"},
		{"unknown flag", []string{"-nope"}, nil, nil, "nope"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseConfig(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !tc.check(c) {
				t.Fatalf("config %+v, err %v", c, err)
			}
		})
	}
}

func TestTLSFlags(t *testing.T) {
	_, err := parseConfig([]string{"-id", "a1", "-tls-cert", "a1.crt"}, func(string) string { return "" }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "-tls-cert a1.crt and -tls-key") {
		t.Fatalf("-tls-cert alone: %v", err)
	}
	c, err := parseConfig([]string{"-id", "a1"}, func(k string) string {
		return map[string]string{"FLUX_TLS_CA": "ca", "FLUX_TLS_CERT": "c", "FLUX_TLS_KEY": "k"}[k]
	}, io.Discard)
	if err != nil || c.TLSCA != "ca" || c.TLSCert != "c" || c.TLSKey != "k" {
		t.Fatalf("from the environment: %+v %v", c, err)
	}
}
