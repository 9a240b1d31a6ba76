package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fluxforge/fluxforge/core"
)

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestParseConfig(t *testing.T) {
	cases := []struct {
		name  string
		args  []string
		env   func(string) string
		check func(t *testing.T, c config)
		err   string
	}{
		{name: "defaults", env: env(), check: func(t *testing.T, c config) {
			def := core.DefaultConfig()
			if c.Listen != ":8080" || c.LogLevel != slog.LevelInfo || c.Core.InitialMode != core.ModeNormal ||
				c.Core.QueueCapacity != 1000 || c.Core.HeartbeatTimeout != def.HeartbeatTimeout ||
				c.Core.LostAfter != def.LostAfter || c.ReconcileInterval != time.Second || c.AdminToken != "" {
				t.Fatalf("%+v", c)
			}
		}},
		{name: "env twins", env: env("FLUX_LISTEN", "127.0.0.1:9999", "FLUX_LOG_LEVEL", "debug", "FLUX_SCHEDULER_MODE", "DRAINING",
			"FLUX_QUEUE_CAPACITY", "50", "FLUX_ADMIN_TOKEN", "s3cret", "FLUX_AGENT_TOKEN", "a-tok", "FLUX_HEARTBEAT_TIMEOUT", "20s",
			"FLUX_LOST_AFTER", "1m", "FLUX_RECONCILE_INTERVAL", "250ms"), check: func(t *testing.T, c config) {
			if c.Listen != "127.0.0.1:9999" || c.LogLevel != slog.LevelDebug || c.Core.InitialMode != core.ModeDraining ||
				c.Core.QueueCapacity != 50 || c.AdminToken != "s3cret" || c.AgentToken != "a-tok" ||
				c.Core.HeartbeatTimeout != 20*time.Second || c.Core.LostAfter != time.Minute || c.ReconcileInterval != 250*time.Millisecond {
				t.Fatalf("%+v", c)
			}
		}},
		{name: "flag wins", args: []string{"-queue-capacity", "7", "-scheduler-mode", "READ_ONLY", "-log-level", "warn"},
			env: env("FLUX_QUEUE_CAPACITY", "50", "FLUX_SCHEDULER_MODE", "DRAINING", "FLUX_LOG_LEVEL", "debug"), check: func(t *testing.T, c config) {
				if c.Core.QueueCapacity != 7 || c.Core.InitialMode != core.ModeReadOnly || c.LogLevel != slog.LevelWarn {
					t.Fatalf("%+v", c)
				}
			}},
		{name: "big queue raises the task bound", args: []string{"-queue-capacity", "200000"}, env: env(), check: func(t *testing.T, c config) {
			if c.Core.TasksMax < 200000 {
				t.Fatalf("TasksMax %d", c.Core.TasksMax)
			}
		}},
		{name: "bad mode", env: env("FLUX_SCHEDULER_MODE", "PANIC"), err: `FLUX_SCHEDULER_MODE) "PANIC" is not one of NORMAL, DEGRADED, READ_ONLY, DRAINING`},
		{name: "lower-case mode", env: env("FLUX_SCHEDULER_MODE", "normal"), err: "FLUX_SCHEDULER_MODE"},
		{name: "bad level", env: env("FLUX_LOG_LEVEL", "loud"), err: "FLUX_LOG_LEVEL"},
		{name: "bad env number", env: env("FLUX_QUEUE_CAPACITY", "many"), err: `FLUX_QUEUE_CAPACITY="many"`},
		{name: "zero capacity", args: []string{"-queue-capacity", "0"}, env: env(), err: "QueueCapacity"},
		{name: "timeout below interval", args: []string{"-heartbeat-timeout", "1s"}, env: env(), err: "HeartbeatTimeout must exceed HeartbeatInterval"},
		{name: "unknown flag", args: []string{"-port", "1"}, env: env(), err: "flag provided but not defined"},
		{name: "stray argument", args: []string{"serve"}, env: env(), err: "unexpected arguments"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := parseConfig(c.args, c.env, io.Discard)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want it to contain %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c.check(t, cfg)
		})
	}
}

func TestInvalidModeExits2(t *testing.T) {
	var stderr bytes.Buffer
	code := run(context.Background(), nil, env("FLUX_SCHEDULER_MODE", "FAST"), &stderr, nil)
	if code != 2 {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(stderr.String(), `cp: scheduler mode (-scheduler-mode / FLUX_SCHEDULER_MODE) "FAST" is not one of`) {
		t.Fatalf("stderr %q", stderr.String())
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestRunServesAndStopsGracefully(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan string, 1)
	done := make(chan int, 1)
	logs := &lockedBuffer{}
	go func() {
		done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-reconcile-interval", "10ms"},
			env("FLUX_SCHEDULER_MODE", "DRAINING", "FLUX_LOG_LEVEL", "debug"), logs, ready)
	}()
	var addr string
	select {
	case addr = <-ready:
	case code := <-done:
		t.Fatalf("exited %d: %s", code, logs.String())
	}
	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	resp, err := client.Get("http://" + addr + "/scheduler/debug/snapshot")
	if err != nil {
		t.Fatal(err)
	}
	var snap struct{ Mode, ModeSetBy string }
	err = json.NewDecoder(resp.Body).Decode(&snap)
	resp.Body.Close()
	if err != nil || snap.Mode != "DRAINING" {
		t.Fatalf("snapshot %+v %v", snap, err)
	}
	resp, err = client.Post("http://"+addr+"/v1/tasks", "application/json", strings.NewReader(`{"kind":"sleep"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("submit while DRAINING: %d", resp.StatusCode)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d: %s", code, logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no graceful stop")
	}
	out := logs.String()
	for _, want := range []string{`"msg":"listening"`, `"msg":"shutting down"`, `"msg":"control plane stopped"`, `"msg":"stopped"`, `"to":"DRAINING"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
	if _, err := client.Get("http://" + addr + "/healthz"); err == nil {
		t.Fatal("still serving after shutdown")
	}
}
