package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/fluxforge/fluxforge/core"
	"github.com/fluxforge/fluxforge/cp"
	"github.com/fluxforge/fluxforge/cp/client"
	fnet "github.com/fluxforge/fluxforge/net"
)

// startCP runs a control plane on a loopback port (mock clock, loops
// stopped: the CLI only needs the API) and returns its URL.
func startCP(t testing.TB, adminToken string, queueCap int) (string, *cp.Server) {
	t.Helper()
	cfg := core.DefaultConfig()
	cfg.QueueCapacity = queueCap
	cfg.TasksMax = max(cfg.TasksMax, 2*queueCap)
	mock := clock.NewMock()
	mock.Set(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	s, err := cp.New(cp.Options{Clock: mock, Core: cfg, AdminToken: adminToken})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return srv.URL, s
}

type result struct {
	code           int
	stdout, stderr string
}

func fluxctl(t *testing.T, url, token string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	env := func(k string) string {
		switch k {
		case "FLUX_CP":
			return url
		case "FLUX_ADMIN_TOKEN":
			return token
		}
		return ""
	}
	code := run(args, env, &out, &errb)
	return result{code, out.String(), errb.String()}
}

func TestCommands(t *testing.T) {
	url, _ := startCP(t, "tok", 1000)
	// Register agents in two domains through the agent protocol.
	for i, d := range []string{"zone-a", "zone-b"} {
		body, _ := json.Marshal(core.HeartbeatInput{AgentID: core.AgentID("edge-" + d), Domain: d, Slots: 1,
			Address: "http://127.0.0.1:1", Incarnation: uint64(i + 1), Seq: 1})
		resp, err := http.Post(url+fnet.PathHeartbeat, "application/json", bytes.NewReader(body))
		if err != nil || resp.StatusCode != 200 {
			t.Fatal(err, resp)
		}
		resp.Body.Close()
	}
	steps := []struct {
		args  []string
		token string
		code  int
		want  []string // substrings of stdout (or stderr when code != 0)
	}{
		{[]string{"submit", "-sleep", "200ms", "-domain", "zone-a", "-key", "job-1"}, "", 0, []string{"t-000001", "ASSIGNED", "submitted"}},
		{[]string{"submit", "-sleep", "200ms", "-domain", "zone-a", "-key", "job-1"}, "", 0, []string{"t-000001", "idempotent replay"}},
		{[]string{"submit", "-sleep", "300ms", "-domain", "zone-a", "-key", "job-1"}, "", 1, []string{"HTTP 422 idempotency_conflict"}},
		{[]string{"submit", "-exec", "-priority", "high", "-timeout", "30s", "--", "/bin/echo", "hi"}, "", 0, []string{"t-000002", "submitted"}},
		{[]string{"submit", "-sleep", "1s", "-domain", "zone-c"}, "", 0, []string{"t-000003", "QUEUED"}},
		{[]string{"submit"}, "", 2, []string{"-sleep DURATION or -exec"}},
		{[]string{"submit", "-sleep", "1s", "-priority", "urgent"}, "", 1, []string{"HTTP 400 invalid", "urgent"}},
		{[]string{"task", "t-000003"}, "", 0, []string{"state:", "QUEUED", "waiting:", "no_agents", "zone-c"}},
		{[]string{"task", "t-000001"}, "", 0, []string{"ATTEMPT", "edge-zone-a", "idempotency key:", "job-1"}},
		{[]string{"task", "t-999"}, "", 1, []string{"HTTP 404 not_found"}},
		{[]string{"task"}, "", 2, []string{"want 1 argument"}},
		{[]string{"tasks"}, "", 0, []string{"ID", "STATE", "t-000001", "t-000002", "t-000003"}},
		{[]string{"tasks", "-state", "queued"}, "", 0, []string{"t-000003"}},
		{[]string{"tasks", "-state", "bogus"}, "", 1, []string{"HTTP 400"}},
		{[]string{"tasks", "-domain", "zone-a", "-limit", "1"}, "", 0, []string{"t-000001", "(more: -after t-000001)"}},
		{[]string{"agents"}, "", 0, []string{"AGENT", "edge-zone-a", "zone-b", "yes"}},
		{[]string{"agent", "edge-zone-b"}, "", 0, []string{"health score:", "heartbeat", "zone-b"}},
		{[]string{"snapshot"}, "", 0, []string{"mode:", "NORMAL", "queue:", "2 / 1000", "DOMAIN", "zone-a", "OPEN", "WAITING FOR"}},
		{[]string{"snapshot", "-o", "json"}, "", 0, []string{`"mode": "NORMAL"`, `"queue_depth": 2`, `"domain_failures"`}},
		{[]string{"-o", "json", "mode", "get"}, "tok", 0, []string{`"mode": "NORMAL"`}},
		{[]string{"mode", "get"}, "", 1, []string{"HTTP 401 unauthorized", "FLUX_ADMIN_TOKEN"}},
		{[]string{"mode", "set", "DRAINING", "-reason", "upgrade"}, "tok", 0, []string{"DRAINING", "operator", "upgrade"}},
		{[]string{"submit", "-sleep", "1s"}, "", 1, []string{"HTTP 503 mode_refused", "retry after"}},
		{[]string{"mode", "set", "normal"}, "tok", 0, []string{"NORMAL"}},
		{[]string{"mode", "set", "SLEEPY"}, "tok", 1, []string{"HTTP 400"}},
		{[]string{"mode"}, "tok", 2, []string{"mode get | mode set"}},
		{[]string{"quarantine", "edge-zone-b", "-reason", "bad disk"}, "tok", 0, []string{"quarantined:", "yes by operator"}},
		{[]string{"quarantine", "edge-zone-b"}, "", 1, []string{"HTTP 401"}},
		{[]string{"release", "edge-zone-b"}, "tok", 0, []string{"quarantined:", "no"}},
		{[]string{"purge", "-domain", "zone-c"}, "tok", 0, []string{"purged 1 queued task(s); queue depth now 1"}},
		{[]string{"purge", "-all", "-domain", "zone-c"}, "tok", 2, []string{"exactly one of"}},
		{[]string{"purge", "-older-than", "10m"}, "tok", 0, []string{"purged 0"}},
		{[]string{"cancel", "t-000001"}, "", 0, []string{"t-000001", "CANCELLED"}},
		{[]string{"timeline", "-limit", "3"}, "", 0, []string{"SEQ", "mode.changed", "agent.registered", "(more: -since 3)"}},
		{[]string{"timeline", "-since", "3", "-o", "json"}, "", 0, []string{`"events"`, `"seq": 4`}},
		{[]string{"timeline", "-tail", "2"}, "", 0, []string{"SEQ", "task.cancelled"}},
		{[]string{"timeline", "-tail", "2", "-since", "3"}, "", 2, []string{"-tail and -since"}},
		{[]string{"raft", "members"}, "", 0, []string{"leader:", "node-1", "ID", "ROLE", "leader", "yes"}},
		{[]string{"raft", "transfer"}, "tok", 1, []string{"HTTP 409 not_clustered"}},
		{[]string{"raft", "add", "cp2", "h:1"}, "tok", 1, []string{"HTTP 409 not_clustered"}},
		{[]string{"raft", "remove", "cp9"}, "tok", 1, []string{"HTTP 404 not_found"}},
		{[]string{"raft", "add", "cp2"}, "tok", 2, []string{"raft members | raft add"}},
		{[]string{"frobnicate"}, "", 2, []string{"unknown command"}},
		{[]string{"snapshot", "-o", "yaml"}, "", 2, []string{"-o must be table or json"}},
	}
	for _, s := range steps {
		r := fluxctl(t, url, s.token, s.args...)
		out := r.stdout
		if s.code != 0 {
			out = r.stderr
		}
		if r.code != s.code {
			t.Fatalf("fluxctl %v: exit %d, want %d\nstdout: %s\nstderr: %s", s.args, r.code, s.code, r.stdout, r.stderr)
		}
		for _, w := range s.want {
			if !strings.Contains(out, w) {
				t.Fatalf("fluxctl %v: output lacks %q:\n%s", s.args, w, out)
			}
		}
	}
}

func TestCPFlagAndUnreachable(t *testing.T) {
	url, _ := startCP(t, "", 10)
	var out, errb bytes.Buffer
	if code := run([]string{"--cp", url, "snapshot"}, func(string) string { return "" }, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "0 / 10") {
		t.Fatalf("stdout %s", out.String())
	}
	out.Reset()
	errb.Reset()
	if code := run([]string{"snapshot", "-cp", "http://127.0.0.1:1"}, func(string) string { return "" }, &out, &errb); code != 1 {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(errb.String(), "fluxctl snapshot:") {
		t.Fatalf("stderr %s", errb.String())
	}
}

func TestBenchCommand(t *testing.T) {
	url, _ := startCP(t, "", 100)
	r := fluxctl(t, url, "", "bench", "-n", "150", "-c", "4")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, w := range []string{"150 submissions", "100×201", "50×429", "p99", "note: 429s"} {
		if !strings.Contains(r.stdout, w) {
			t.Fatalf("bench output lacks %q: %s", w, r.stdout)
		}
	}
}

// BenchmarkSubmit measures submissions per second and latency percentiles
// over loopback with keep-alive against an in-process control plane (real
// clock, loops running, no agents, a queue large enough to hold every
// submission). Run it with:
//
//	go test -run '^$' -bench Submit -benchtime 1x ./cmd/fluxctl/
func BenchmarkSubmit(b *testing.B) {
	for _, conc := range []int{1, 16, 64} {
		b.Run("c="+strconv.Itoa(conc), func(b *testing.B) {
			const n = 20000
			cfg := core.DefaultConfig()
			cfg.QueueCapacity, cfg.TasksMax = n*(b.N+1), n*(b.N+1)
			s, err := cp.New(cp.Options{Clock: clock.New(), Core: cfg})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			srv := httptest.NewServer(s.Handler())
			defer srv.Close()
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); _ = s.Run(ctx) }()
			defer func() { cancel(); <-done }()
			b.ResetTimer()
			var last loadResult
			for range b.N {
				last = submitLoad(context.Background(), loadOptions{URL: srv.URL, N: n, Concurrency: conc, Keys: true,
					Body: []byte(`{"kind":"sleep","duration_ms":0}`)})
				if last.Status[201] != n {
					b.Fatalf("not all accepted: %v", last)
				}
			}
			b.StopTimer()
			b.ReportMetric(last.PerSecond, "submits/s")
			b.ReportMetric(ms(last.P50), "p50-ms")
			b.ReportMetric(ms(last.P99), "p99-ms")
			b.ReportMetric(0, "ns/op")
			b.Logf("%v", last)
		})
	}
}

// BenchmarkBatchSubmit is BenchmarkSubmit with the tasks sent through
// POST /v1/batch/tasks in batches of 100 (each task with its own
// idempotency key): tasks/s, and the p50/p99 of one batch request.
// durable=on gives the cp a data dir (fsync per log entry), as in
// production; compare with BenchmarkSubmit's submits/s.
//
//	go test -run '^$' -bench 'Submit' -benchtime 1x ./cmd/fluxctl/
func BenchmarkBatchSubmit(b *testing.B) {
	const n, batch = 20000, 100
	for _, durable := range []bool{false, true} {
		for _, conc := range []int{1, 16, 64} {
			b.Run(fmt.Sprintf("durable=%v/c=%d", durable, conc), func(b *testing.B) {
				cfg := core.DefaultConfig()
				cfg.QueueCapacity, cfg.TasksMax = n*(b.N+1), n*(b.N+1)
				opts := cp.Options{Clock: clock.New(), Core: cfg}
				if durable {
					opts.DataDir = b.TempDir()
				}
				s, err := cp.New(opts)
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				srv := httptest.NewServer(s.Handler())
				defer srv.Close()
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() { defer close(done); _ = s.Run(ctx) }()
				defer func() { cancel(); <-done }()
				c := &client.Client{BaseURL: srv.URL, HTTP: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc}}}
				defer c.CloseIdleConnections()
				b.ResetTimer()
				var elapsed time.Duration
				var lat []time.Duration
				for round := range b.N {
					var mu sync.Mutex
					var wg sync.WaitGroup
					next := make(chan int, n/batch)
					for i := 0; i < n; i += batch {
						next <- i
					}
					close(next)
					start := time.Now()
					for range conc {
						wg.Go(func() {
							tasks := make([]cp.BatchTask, batch)
							for first := range next {
								for j := range tasks {
									tasks[j] = cp.BatchTask{SubmitRequest: cp.SubmitRequest{Kind: core.KindSleep},
										IdempotencyKey: fmt.Sprintf("b%d-%d", round, first+j)}
								}
								t0 := time.Now()
								r, err := c.SubmitBatch(context.Background(), tasks)
								d := time.Since(t0)
								if err != nil {
									b.Error(err)
									return
								}
								for _, res := range r.Value.Results {
									if res.Status != http.StatusCreated {
										b.Errorf("result %+v", res)
										return
									}
								}
								mu.Lock()
								lat = append(lat, d)
								mu.Unlock()
							}
						})
					}
					wg.Wait()
					elapsed += time.Since(start)
				}
				b.StopTimer()
				slices.Sort(lat)
				b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "tasks/s")
				b.ReportMetric(ms(lat[len(lat)/2]), "p50-batch-ms")
				b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-batch-ms")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}
