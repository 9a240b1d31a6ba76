package e2e

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fluxforge/fluxforge/agent"
	"github.com/fluxforge/fluxforge/core"
)

var measure = flag.Bool("measure", false, "run the end-to-end throughput and memory measurements")

// TestMeasureThroughput measures end-to-end tasks per second (submit over
// HTTP → run `sleep 0` on an agent → result acknowledged by the cp) with the
// real cp binary and 50 real agent daemons (in this process, each with its
// own HTTP server on loopback, 4 slots, 1s heartbeats: results go out at
// once regardless), with the durable log and with -in-memory.
//
//	go test ./e2e -run TestMeasureThroughput -measure -v
func TestMeasureThroughput(t *testing.T) {
	if !*measure {
		t.Skip("a measurement: run with -measure")
	}
	durable := measureEndToEnd(t, "durable")
	memory := measureEndToEnd(t, "in-memory", "-in-memory")
	t.Logf("end to end, durable / in-memory: %.0f / %.0f tasks/s (%.0f%%)", durable, memory, 100*durable/memory)
}

// measureEndToEnd runs TestMeasureThroughput's load on a cp started with
// cpArgs and returns its tasks per second.
func measureEndToEnd(t *testing.T, name string, cpArgs ...string) float64 {
	const agents, tasks, clients = 50, 5000, 16
	c := newCluster(t, append([]string{"-queue-capacity", strconv.Itoa(tasks), "-log-level", "warn"}, cpArgs...)...)
	defer c.cp.terminate(t, 20*time.Second)
	var daemons []*agent.Daemon
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range agents {
		d, err := agent.New(agent.Options{
			ID: core.AgentID(fmt.Sprintf("bench-%02d", i)), Domain: fmt.Sprintf("zone-%c", 'a'+i%3), Slots: 4,
			CPURL: c.cpURL, Token: token,
			HeartbeatInterval: time.Second, Logger: slog.New(slog.DiscardHandler),
		})
		if err != nil {
			t.Fatal(err)
		}
		daemons = append(daemons, d)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = d.Run(ctx)
		}()
	}
	defer func() {
		cancel()
		wg.Wait()
	}()
	eventually(t, 30*time.Second, "50 agents connected", func() bool {
		var list struct {
			Agents []struct {
				Connected bool `json:"connected"`
			} `json:"agents"`
		}
		if _, err := call("GET", c.cpURL+"/v1/agents", "", nil, &list); err != nil {
			return false
		}
		n := 0
		for _, a := range list.Agents {
			if a.Connected {
				n++
			}
		}
		return n == agents
	})
	done := func() (succeeded uint64, pending int) {
		for _, d := range daemons {
			st := d.Status()
			succeeded += st.Stats.Succeeded
			pending += st.PendingResults
		}
		return
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	start := time.Now()
	var lat []time.Duration
	var latMu sync.Mutex
	var sub sync.WaitGroup
	for k := range clients {
		sub.Add(1)
		go func() {
			defer sub.Done()
			var mine []time.Duration
			for i := k; i < tasks; i += clients {
				t0 := time.Now()
				resp, err := hc.Post(c.cpURL+"/v1/tasks", "application/json", bytes.NewReader([]byte(`{"kind":"sleep","duration_ms":0}`)))
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					t.Errorf("submit: status %d", resp.StatusCode)
					return
				}
				mine = append(mine, time.Since(t0))
			}
			latMu.Lock()
			lat = append(lat, mine...)
			latMu.Unlock()
		}()
	}
	sub.Wait()
	submitted := time.Since(start)
	eventually(t, 120*time.Second, "every task to finish", func() bool {
		s, p := done()
		return s >= tasks && p == 0
	})
	elapsed := time.Since(start)
	n := 0
	for after := ""; ; {
		var page struct {
			Tasks []struct {
				ID string `json:"id"`
			} `json:"tasks"`
			NextAfter string `json:"next_after"`
		}
		if _, err := call("GET", c.cpURL+"/v1/tasks?state=SUCCEEDED&limit=1000&after="+after, "", nil, &page); err != nil {
			t.Fatal(err)
		}
		n += len(page.Tasks)
		if page.NextAfter == "" {
			break
		}
		after = page.NextAfter
	}
	if n != tasks {
		t.Fatalf("the cp holds %d SUCCEEDED tasks, want %d", n, tasks)
	}
	slices.Sort(lat)
	t.Logf("end to end (%s): %d tasks on %d agents in %v: %.0f tasks/s (submissions alone: %.0f/s, p50 %v, p99 %v)",
		name, tasks, agents, elapsed.Round(time.Millisecond), float64(tasks)/elapsed.Seconds(), float64(tasks)/submitted.Seconds(),
		lat[len(lat)/2].Round(time.Microsecond), lat[len(lat)*99/100].Round(time.Microsecond))
	return float64(tasks) / elapsed.Seconds()
}

// TestMeasureCPMemory measures the cp's memory per queued task and per
// agent, two ways: the core's heap in this process (runtime.MemStats after
// GC, before and after), and the real cp process's resident set (VmRSS).
//
//	go test ./e2e -run TestMeasureCPMemory -measure -v
func TestMeasureCPMemory(t *testing.T) {
	if !*measure {
		t.Skip("a measurement: run with -measure")
	}
	const tasks, agents = 50_000, 5_000
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg := core.DefaultConfig()
	cfg.QueueCapacity, cfg.TasksMax = tasks, tasks
	before := heap()
	cp, err := core.NewControlPlane(cfg, t0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range tasks {
		if _, err := cp.Apply(t0, core.SubmitInput{Spec: core.TaskSpec{Kind: core.KindSleep, DurationMS: 100}, IdempotencyKey: fmt.Sprintf("key-%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	afterTasks := heap()
	for i := range agents {
		_, err := cp.Apply(t0, core.HeartbeatInput{AgentID: core.AgentID(fmt.Sprintf("agent-%05d", i)), Domain: fmt.Sprintf("zone-%d", i%10),
			Slots: 4, Address: fmt.Sprintf("http://10.0.%d.%d:9090", i/250, i%250), Incarnation: 1, Seq: 1})
		if err != nil {
			t.Fatal(err)
		}
	}
	// Placement leased 4 queued tasks to each agent: those moved from the
	// queue to the agent's leases, so the agent figure includes 4 leases.
	afterAgents := heap()
	runtime.KeepAlive(cp)
	t.Logf("core, in process: %.0f bytes per queued task (with an idempotency key); %.0f bytes per agent (4 slots, its 4 leases included)",
		float64(afterTasks-before)/tasks, float64(afterAgents-afterTasks)/agents)

	// The real cp binary: resident set before and after 20000 queued tasks.
	const real = 20_000
	c := newCluster(t, "-queue-capacity", strconv.Itoa(real), "-log-level", "warn")
	rss := func() int64 {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.cp.cmd.Process.Pid))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				return kb << 10
			}
		}
		t.Fatal("no VmRSS")
		return 0
	}
	r0 := rss()
	c.submitSleeps(t, real, func(int) int { return 100 })
	r1 := rss()
	t.Logf("cp process: RSS %d MiB → %d MiB with %d queued tasks: %.0f bytes per queued task (RSS, includes GC headroom)",
		r0>>20, r1>>20, real, float64(r1-r0)/real)
}
