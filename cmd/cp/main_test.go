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
		{name: "bad mode", env: env("FLUX_SCHEDULER_MODE", "PANIC"), err: `usage: FLUX_SCHEDULER_MODE=PANIC is not one of NORMAL, DEGRADED, READ_ONLY, DRAINING`},
		{name: "bad mode flag", args: []string{"-scheduler-mode", "fast"}, env: env(), err: `usage: -scheduler-mode fast is not one of`},
		{name: "lower-case mode", env: env("FLUX_SCHEDULER_MODE", "normal"), err: "FLUX_SCHEDULER_MODE"},
		{name: "bad level", env: env("FLUX_LOG_LEVEL", "loud"), err: "usage: FLUX_LOG_LEVEL=loud is not one of debug, info, warn, error"},
		{name: "bad env number", env: env("FLUX_QUEUE_CAPACITY", "many"), err: `FLUX_QUEUE_CAPACITY="many"`},
		{name: "zero capacity", args: []string{"-queue-capacity", "0"}, env: env(), err: "usage: -queue-capacity 0 must be at least 1"},
		{name: "zero capacity from env", env: env("FLUX_QUEUE_CAPACITY", "0"), err: "usage: FLUX_QUEUE_CAPACITY=0 must be at least 1"},
		{name: "negative lost-after", args: []string{"-lost-after=-1s"}, env: env(), err: "usage: -lost-after -1s must not be negative"},
		{name: "zero assign timeout", env: env("FLUX_ASSIGN_TIMEOUT", "0s"), err: "usage: FLUX_ASSIGN_TIMEOUT=0s must be > 0"},
		{name: "tiny reconcile", args: []string{"-reconcile-interval", "10us"}, env: env(), err: "usage: -reconcile-interval 10us must be at least 1ms"},
		{name: "zero shutdown", args: []string{"-shutdown-timeout", "0"}, env: env(), err: "usage: -shutdown-timeout 0 must be > 0"},
		{name: "timeline bounds", args: []string{"-timeline-retention", "2h"}, env: env("FLUX_TIMELINE_EVENTS_MAX", "5000"), check: func(t *testing.T, c config) {
			if c.TimelineRetention != 2*time.Hour || c.TimelineEventsMax != 5000 {
				t.Fatalf("%+v", c)
			}
		}},
		{name: "timeline defaults", env: env(), check: func(t *testing.T, c config) {
			if c.TimelineRetention != 24*time.Hour || c.TimelineEventsMax != 1_000_000 {
				t.Fatalf("%+v", c)
			}
		}},
		{name: "zero retention", args: []string{"-timeline-retention", "0s"}, env: env(), err: "usage: -timeline-retention 0s must be > 0"},
		{name: "zero timeline max", env: env("FLUX_TIMELINE_EVENTS_MAX", "0"), err: "usage: FLUX_TIMELINE_EVENTS_MAX=0 must be at least 1"},
		{name: "listen without port", env: env("FLUX_LISTEN", "8080"), err: "usage: FLUX_LISTEN=8080 is not host:port"},
		{name: "isolation knobs", args: []string{"-min-open-capacity", "0.3", "-zone-outage-fraction", "0.7", "-zone-outage-min-agents", "4"}, env: env(), check: func(t *testing.T, c config) {
			if d := c.Core.Domains; d.MinOpenCapacity != 0.3 || d.OutageFraction != 0.7 || d.OutageMinAgents != 4 {
				t.Errorf("domains %+v", d)
			}
		}},
		{name: "isolation defaults", env: env(), check: func(t *testing.T, c config) {
			if d := c.Core.Domains; d.MinOpenCapacity != 0.5 || d.OutageFraction != 0.55 || d.OutageMinAgents != 2 {
				t.Errorf("domains %+v", d)
			}
		}},
		{name: "min open capacity over 1", env: env("FLUX_MIN_OPEN_CAPACITY", "1.5"), err: "usage: FLUX_MIN_OPEN_CAPACITY=1.5 must be between 0 and 1"},
		{name: "zero outage fraction", args: []string{"-zone-outage-fraction", "0"}, env: env(), err: "usage: -zone-outage-fraction 0 must be above 0 and at most 1"},
		{name: "negative outage agents", args: []string{"-zone-outage-min-agents=-1"}, env: env(), err: "usage: -zone-outage-min-agents -1 must be between 0 and 65536"},
		{name: "data dir default", env: env(), check: func(t *testing.T, c config) {
			if c.DataDir != "fluxforge-data" || c.InMemory {
				t.Fatalf("data dir %q in memory %v", c.DataDir, c.InMemory)
			}
		}},
		{name: "data dir env twin", env: env("FLUX_DATA_DIR", "/var/lib/fluxforge"), check: func(t *testing.T, c config) {
			if c.DataDir != "/var/lib/fluxforge" || c.InMemory {
				t.Fatalf("data dir %q in memory %v", c.DataDir, c.InMemory)
			}
		}},
		{name: "data dir flag wins", args: []string{"-data-dir", "d1"}, env: env("FLUX_DATA_DIR", "d2"), check: func(t *testing.T, c config) {
			if c.DataDir != "d1" {
				t.Fatalf("data dir %q", c.DataDir)
			}
		}},
		{name: "in memory", args: []string{"-in-memory"}, env: env(), check: func(t *testing.T, c config) {
			if c.DataDir != "" || !c.InMemory {
				t.Fatalf("data dir %q in memory %v", c.DataDir, c.InMemory)
			}
		}},
		{name: "in memory from env", env: env("FLUX_IN_MEMORY", "true"), check: func(t *testing.T, c config) {
			if !c.InMemory {
				t.Fatalf("in memory %v", c.InMemory)
			}
		}},
		{name: "in memory and data dir", args: []string{"-in-memory", "-data-dir", "x"}, env: env(),
			err: "usage: -in-memory true and -data-dir x are exclusive: give one"},
		{name: "in memory and data dir from env", args: []string{"-in-memory"}, env: env("FLUX_DATA_DIR", "/srv/ff"),
			err: "usage: -in-memory true and FLUX_DATA_DIR=/srv/ff are exclusive: give one"},
		{name: "empty data dir", args: []string{"-data-dir", ""}, env: env(), err: `usage: -data-dir "" must name a directory`},
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

// TestHeartbeatFlags resolves -heartbeat-interval and -heartbeat-timeout:
// either alone implies the other, both must agree, and every refusal names
// what the user typed.
func TestHeartbeatFlags(t *testing.T) {
	def := core.DefaultConfig()
	cases := []struct {
		name              string
		args              []string
		env               func(string) string
		interval, timeout time.Duration
		err               string // the whole message; empty: no error
	}{
		{name: "neither", env: env(), interval: def.HeartbeatInterval, timeout: def.HeartbeatTimeout},
		{name: "only timeout", args: []string{"-heartbeat-timeout", "2s"}, env: env(), interval: 666 * time.Millisecond, timeout: 2 * time.Second},
		{name: "only timeout 1s", args: []string{"-heartbeat-timeout", "1s"}, env: env(), interval: 333 * time.Millisecond, timeout: time.Second},
		{name: "only timeout, long", args: []string{"-heartbeat-timeout", "1m"}, env: env(), interval: 20 * time.Second, timeout: time.Minute},
		{name: "only timeout from env", env: env("FLUX_HEARTBEAT_TIMEOUT", "3s"), interval: time.Second, timeout: 3 * time.Second},
		{name: "only interval, below the default timeout", args: []string{"-heartbeat-interval", "1s"}, env: env(), interval: time.Second, timeout: def.HeartbeatTimeout},
		{name: "only interval, at the default timeout", args: []string{"-heartbeat-interval", "15s"}, env: env(), interval: 15 * time.Second, timeout: 45 * time.Second},
		{name: "only interval, above the default timeout", env: env("FLUX_HEARTBEAT_INTERVAL", "20s"), interval: 20 * time.Second, timeout: time.Minute},
		{name: "both", args: []string{"-heartbeat-interval", "100ms", "-heartbeat-timeout", "1s"}, env: env(), interval: 100 * time.Millisecond, timeout: time.Second},
		{name: "both, flag and env", args: []string{"-heartbeat-timeout", "1s"}, env: env("FLUX_HEARTBEAT_INTERVAL", "200ms"), interval: 200 * time.Millisecond, timeout: time.Second},
		{name: "timeout not above interval", args: []string{"-heartbeat-timeout", "1s", "-heartbeat-interval", "2s"}, env: env(),
			err: "usage: -heartbeat-timeout 1s must exceed -heartbeat-interval 2s"},
		{name: "timeout equals interval", args: []string{"-heartbeat-interval=2000ms", "-heartbeat-timeout=2s"}, env: env(),
			err: "usage: -heartbeat-timeout 2s must exceed -heartbeat-interval 2000ms"},
		{name: "timeout from env not above interval", args: []string{"-heartbeat-interval", "2s"}, env: env("FLUX_HEARTBEAT_TIMEOUT", "1s"),
			err: "usage: FLUX_HEARTBEAT_TIMEOUT=1s must exceed -heartbeat-interval 2s"},
		{name: "both from env", env: env("FLUX_HEARTBEAT_TIMEOUT", "1s", "FLUX_HEARTBEAT_INTERVAL", "5s"),
			err: "usage: FLUX_HEARTBEAT_TIMEOUT=1s must exceed FLUX_HEARTBEAT_INTERVAL=5s"},
		{name: "interval too short", args: []string{"-heartbeat-interval", "5ms"}, env: env(),
			err: "usage: -heartbeat-interval 5ms must be at least 10ms"},
		{name: "interval zero with timeout", args: []string{"-heartbeat-interval", "0", "-heartbeat-timeout", "1s"}, env: env(),
			err: "usage: -heartbeat-interval 0 must be at least 10ms"},
		{name: "timeout too short for an interval", args: []string{"-heartbeat-timeout", "20ms"}, env: env(),
			err: "usage: -heartbeat-timeout 20ms is too short: the heartbeat interval, a third of it, must be at least 10ms"},
		{name: "negative timeout", args: []string{"-heartbeat-timeout=-1s"}, env: env(),
			err: "usage: -heartbeat-timeout -1s is too short: the heartbeat interval, a third of it, must be at least 10ms"},
		{name: "not a duration", env: env("FLUX_HEARTBEAT_TIMEOUT", "1"),
			err: `usage: FLUX_HEARTBEAT_TIMEOUT="1": parse error`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := parseConfig(c.args, c.env, io.Discard)
			if c.err != "" {
				if err == nil || err.Error() != c.err {
					t.Fatalf("error %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Core.HeartbeatInterval != c.interval || cfg.Core.HeartbeatTimeout != c.timeout {
				t.Fatalf("interval %v timeout %v, want %v %v", cfg.Core.HeartbeatInterval, cfg.Core.HeartbeatTimeout, c.interval, c.timeout)
			}
		})
	}
}

// TestBadHeartbeatFlagsExit2: the refusal reaches stderr with the flags as
// typed, and the exit status is 2.
func TestBadHeartbeatFlagsExit2(t *testing.T) {
	var stderr bytes.Buffer
	code := run(context.Background(), []string{"-heartbeat-timeout", "1s", "-heartbeat-interval", "2s"}, env(), &stderr, nil)
	if code != 2 || stderr.String() != "cp: -heartbeat-timeout 1s must exceed -heartbeat-interval 2s\n" {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
}

func TestInvalidModeExits2(t *testing.T) {
	var stderr bytes.Buffer
	code := run(context.Background(), nil, env("FLUX_SCHEDULER_MODE", "FAST"), &stderr, nil)
	if code != 2 {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(stderr.String(), `cp: FLUX_SCHEDULER_MODE=FAST is not one of`) {
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
		done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-reconcile-interval", "10ms", "-data-dir", t.TempDir()},
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

// TestSecondCPOnADataDirIsRefused: a cp started on a data dir another cp
// holds exits non-zero, saying so.
func TestSecondCPOnADataDirIsRefused(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan int, 1)
	first := &lockedBuffer{}
	go func() { done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-data-dir", dir}, env(), first, ready) }()
	select {
	case <-ready:
	case code := <-done:
		t.Fatalf("first cp exited %d: %s", code, first.String())
	}
	var second bytes.Buffer
	code := run(context.Background(), []string{"-listen", "127.0.0.1:0", "-data-dir", dir}, env(), &second, nil)
	if code == 0 || !strings.Contains(second.String(), "is locked") || !strings.Contains(second.String(), dir) {
		t.Errorf("second cp on %s: exit %d, stderr:\n%s", dir, code, second.String())
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("first cp exited %d: %s", code, first.String())
	}
}

func TestClusterFlags(t *testing.T) {
	env := func(string) string { return "" }
	cfg, err := parseConfig([]string{"-data-dir", t.TempDir(), "-node-id", "cp2", "-listen", "10.0.0.2:8080", "-raft-addr", "10.0.0.2:8300",
		"-peers", "cp1=10.0.0.1:8300,cp2=10.0.0.2:8300,cp3=10.0.0.3:8300"}, env, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Cluster
	if c.NodeID != "cp2" || c.RaftAddr != "10.0.0.2:8300" || len(c.Peers) != 3 || c.Peers[2].ID != "cp3" || c.AdvertiseURL != "http://10.0.0.2:8080" {
		t.Fatalf("cluster config %+v", c)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-peers", "cp1=h:1"}, "-peers"},
		{[]string{"-raft-addr", "h:1", "-peers", "cp1"}, "-peers"},
		{[]string{"-raft-timing", "0"}, "-raft-timing"},
		{[]string{"-advertise", "cp1:8080"}, "-advertise"},
		{[]string{"-in-memory", "-raft-addr", "h:1"}, "-raft-addr"},
	} {
		_, err := parseConfig(tc.args, env, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error naming %s", tc.args, err, tc.want)
		}
	}
}

// TestPprofListener: -pprof serves the profiles on a listener of its own;
// the API port does not serve them; a bad -pprof exits 2 naming it.
func TestPprofListener(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan string, 1)
	done := make(chan int, 1)
	logs := &lockedBuffer{}
	go func() {
		done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-pprof", "127.0.0.1:0", "-in-memory", "-log-level", "info"},
			env(), logs, ready)
	}()
	var addr string
	select {
	case addr = <-ready:
	case code := <-done:
		t.Fatalf("exited %d: %s", code, logs.String())
	}
	var line struct{ Msg, Pprof string }
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, `"msg":"serving profiles"`) {
			if err := json.Unmarshal([]byte(l), &line); err != nil {
				t.Fatal(err)
			}
		}
	}
	if line.Pprof == "" {
		t.Fatalf("no serving profiles line:\n%s", logs.String())
	}
	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	get := func(url string) int {
		resp, err := client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get("http://" + line.Pprof + "/debug/pprof/cmdline"); code != http.StatusOK {
		t.Errorf("pprof listener: /debug/pprof/cmdline %d", code)
	}
	if code := get("http://" + addr + "/debug/pprof/cmdline"); code == http.StatusOK {
		t.Errorf("the API port serves /debug/pprof/cmdline")
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d: %s", code, logs.String())
	}
	var stderr bytes.Buffer
	if code := run(context.Background(), []string{"-pprof", "6060", "-in-memory"}, env(), &stderr, nil); code != 2 || !strings.Contains(stderr.String(), "-pprof") {
		t.Errorf("-pprof 6060: exit %d, %s", code, stderr.String())
	}
}
