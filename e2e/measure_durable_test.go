package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"

	"github.com/fluxforge/fluxforge/core"
)

// TestMeasureDurability measures what the durable log costs, for the
// numbers of issue 10 (measurements, not assertions):
//
//   - submissions/s and latency with `fluxctl bench -keys` at concurrency
//     16 and 64, durable and -in-memory, in the same run;
//   - the restart time (start to /readyz 200, and the log's own open time)
//     of a cp holding 100,000 queued tasks and a full timeline, after
//     SIGTERM and after SIGKILL;
//   - log bytes per heartbeat and per task submission: the raft-wal frames
//     (8-byte header, raft-wal's binary codec, padded to 8 bytes) of the
//     entries the cp appended for them, read back from the stopped cp's log
//     (raft-wal preallocates its segments, so file sizes do not show it).
//
// End-to-end tasks/s durable vs in-memory is TestMeasureThroughput.
//
//	go test ./e2e -run TestMeasureDurability -measure -v -timeout 20m
func TestMeasureDurability(t *testing.T) {
	if !*measure {
		t.Skip("a measurement: run with -measure")
	}
	binaries(t)
	benchURL := fluxctlBench(t)
	bench := func(c *cluster, n, conc int) benchResult { return benchURL(c.cpURL, n, conc) }

	// Submissions: a durable and an in-memory cp side by side, benched in
	// turns (the machine is shared: turns spread its noise over both), best
	// of two rounds.
	clusters := map[string]*cluster{
		"durable":   newCluster(t, "-queue-capacity", "100000", "-log-level", "warn"),
		"in-memory": newCluster(t, "-queue-capacity", "100000", "-log-level", "warn", "-in-memory"),
	}
	modes := []string{"durable", "in-memory"}
	for _, mode := range modes {
		bench(clusters[mode], 2000, 16) // warm up
	}
	results := map[string]benchResult{}
	for round := range 2 {
		for _, conc := range []int{16, 64} {
			for _, mode := range modes {
				r := bench(clusters[mode], 10000, conc)
				t.Logf("round %d: submissions, %s, concurrency %d: %.0f/s, p50 %.2fms, p99 %.2fms", round+1, mode, conc, r.PerSecond, r.P50, r.P99)
				if best, ok := results[fmt.Sprint(mode, conc)]; !ok || r.PerSecond > best.PerSecond {
					results[fmt.Sprint(mode, conc)] = r
				}
			}
		}
	}
	for _, mode := range modes {
		clusters[mode].cp.terminate(t, 20*time.Second)
	}
	for _, conc := range []int{16, 64} {
		d, m := results[fmt.Sprint("durable", conc)], results[fmt.Sprint("in-memory", conc)]
		t.Logf("submissions at %d (best round), durable / in-memory: %.0f / %.0f per s (%.0f%%); p99 %.2f / %.2f ms",
			conc, d.PerSecond, m.PerSecond, 100*d.PerSecond/m.PerSecond, d.P99, m.P99)
	}

	// Restart with 100,000 queued tasks and a full timeline.
	c := newCluster(t, "-queue-capacity", "100000", "-log-level", "info")
	fill := bench(c, 100_000, 64)
	t.Logf("filled 100,000 tasks at %.0f/s", fill.PerSecond)
	type debug struct {
		QueueDepth   int    `json:"queue_depth"`
		AppliedIndex uint64 `json:"applied_index"`
		StateHash    string `json:"state_hash"`
	}
	snap := func() debug {
		var d debug
		if _, err := call("GET", c.cpURL+"/scheduler/debug/snapshot?fresh_hash=true", "", nil, &d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	var tl struct {
		LastSeq uint64 `json:"last_seq"`
		Dropped uint64 `json:"dropped"`
	}
	if _, err := call("GET", c.cpURL+"/timeline?since=0&limit=1", "", nil, &tl); err != nil {
		t.Fatal(err)
	}
	t.Logf("state before the restarts: %+v; timeline last_seq %d, %d dropped from memory (full); data dir %s bytes (raft-wal preallocates segments)",
		snap(), tl.LastSeq, tl.Dropped, metricValue(t, c.cpURL, "flux_data_dir_bytes"))
	for _, how := range []string{"SIGTERM", "SIGKILL"} {
		if how == "SIGTERM" {
			c.cp.terminate(t, 60*time.Second)
		} else {
			c.cp.kill()
		}
		t0 := time.Now()
		c.startCP()
		ready := time.Since(t0)
		d := snap()
		if d.QueueDepth != 100_000 {
			t.Errorf("after the %s restart the queue holds %d tasks, want 100000", how, d.QueueDepth)
		}
		t.Logf("restart after %s with 100,000 tasks: ready in %v (the log's open: %s; newest snapshot %s bytes, restore %ss)", how,
			ready.Round(time.Millisecond), lastLogField(c.cp.log(), "raftlog.opened", "duration"),
			metricValue(t, c.cpURL, "flux_log_snapshot_bytes"), metricValue(t, c.cpURL, "flux_log_restore_duration_seconds"))
	}
	c.cp.terminate(t, 60*time.Second)

	// Log bytes per task submission and per heartbeat, no ticks in between.
	c = newCluster(t, "-reconcile-interval", "1h", "-log-level", "warn", "-queue-capacity", "10000")
	const n = 3000
	i0 := snapIndex(t, c)
	var wg sync.WaitGroup
	for k := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := k; i < n; i += 16 {
				// A domain without agents: the tasks stay queued and make no
				// further entries.
				body := []byte(`{"kind":"sleep","duration_ms":100,"domain":"zone-none"}`)
				if code, _, _, err := c.submitKeyed(fmt.Sprintf("measure-%05d", i), body); code != 201 {
					t.Errorf("submit: %d %v", code, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	i1 := snapIndex(t, c)
	const agents, beats = 30, n / 30
	for a := range agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 1; seq <= beats; seq++ {
				hb := core.HeartbeatInput{AgentID: core.AgentID(fmt.Sprintf("measure-agent-%03d", a)), Domain: "zone-hb", Slots: 4,
					Address: "http://127.0.0.1:9", Incarnation: 1, Seq: uint64(seq), Running: []core.Lease{}, HeartbeatIntervalMillis: 5000}
				if code, err := call("POST", c.cpURL+"/v1/agent/heartbeat", token, hb, nil); code != 200 {
					t.Errorf("heartbeat: %d %v", code, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	i2 := snapIndex(t, c)
	c.cp.terminate(t, 20*time.Second)
	taskBytes, taskEntries := walBytes(t, c.dataDir, i0+1, i1)
	hbBytes, hbEntries := walBytes(t, c.dataDir, i1+1, i2)
	if taskEntries != n || hbEntries != agents*beats {
		t.Errorf("%d entries for %d submissions, %d for %d heartbeats: something else wrote to the log", taskEntries, n, hbEntries, agents*beats)
	}
	t.Logf("log bytes: %d task submissions → %d entries, %d bytes: %.0f bytes per task; %d heartbeats → %d entries, %d bytes: %.0f bytes per heartbeat",
		n, taskEntries, taskBytes, float64(taskBytes)/float64(taskEntries), agents*beats, hbEntries, hbBytes, float64(hbBytes)/float64(hbEntries))
	t.Logf("at 5s heartbeats that is %.0f KiB/s of log for 1,000 agents and %.0f KiB/s for 10,000",
		float64(hbBytes)/float64(agents*beats)*1000/5/1024, float64(hbBytes)/float64(agents*beats)*10000/5/1024)
}

func snapIndex(t *testing.T, c *cluster) uint64 {
	t.Helper()
	var d struct {
		AppliedIndex uint64 `json:"applied_index"`
	}
	if _, err := call("GET", c.cpURL+"/scheduler/debug/snapshot", "", nil, &d); err != nil {
		t.Fatal(err)
	}
	return d.AppliedIndex
}

// walBytes reads a stopped cp's raft-wal log and sums the on-disk frames of
// the entries from..to.
func walBytes(t *testing.T, dataDir string, from, to uint64) (bytesOnDisk, entries int) {
	t.Helper()
	meta := &metadb.BoltMetaDB{}
	w, err := wal.Open(filepath.Join(dataDir, "wal"), wal.WithMetaStore(meta))
	if err != nil {
		t.Fatalf("open the log: %v", err)
	}
	defer meta.Close()
	defer w.Close()
	first, _ := w.FirstIndex()
	if from < first {
		t.Fatalf("entries from %d were compacted (the log starts at %d)", from, first)
	}
	var codec wal.BinaryCodec
	var buf bytes.Buffer
	for i := from; i <= to; i++ {
		var l raft.Log
		if err := w.GetLog(i, &l); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		buf.Reset()
		if err := codec.Encode(&l, &buf); err != nil {
			t.Fatal(err)
		}
		bytesOnDisk += 8 + (buf.Len()+7)/8*8
		entries++
	}
	return bytesOnDisk, entries
}

// metricValue reads one sample of /metrics, as text.
func metricValue(t *testing.T, url, name string) string {
	t.Helper()
	resp, err := client.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	for _, line := range strings.Split(b.String(), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == name {
			return f[1]
		}
	}
	return "?"
}

// lastLogField is a field of the last JSON log line with msg.
func lastLogField(log, msg, field string) string {
	out := "?"
	for _, line := range strings.Split(log, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg {
			if v, ok := m[field]; ok {
				if f, ok := v.(float64); ok && field == "duration" {
					out = time.Duration(f).Round(time.Millisecond).String()
				} else {
					out = fmt.Sprint(v)
				}
			}
		}
	}
	return out
}

// benchResult is `fluxctl bench -o json`'s answer (what the measurements
// read).
type benchResult struct {
	PerSecond float64     `json:"per_second"`
	P50       float64     `json:"p50_ms"`
	P99       float64     `json:"p99_ms"`
	Status    map[int]int `json:"status"`
}

// fluxctlBench builds fluxctl and returns a function that runs `fluxctl
// bench -keys` against url: n keyed submissions from conc clients, every
// one of which must be answered 201.
func fluxctlBench(t *testing.T) func(url string, n, conc int) benchResult {
	t.Helper()
	fluxctl := filepath.Join(t.TempDir(), "fluxctl")
	cmd := exec.Command("go", "build", "-o", fluxctl, "./cmd/fluxctl")
	cmd.Dir = repoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/fluxctl: %v\n%s", err, out)
	}
	return func(url string, n, conc int) benchResult {
		t.Helper()
		out, err := exec.Command(fluxctl, "-cp", url, "-o", "json", "bench", "-keys",
			"-n", fmt.Sprint(n), "-c", fmt.Sprint(conc)).Output()
		if err != nil {
			t.Fatalf("fluxctl bench: %v\n%s", err, out)
		}
		var r benchResult
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatalf("fluxctl bench output %s: %v", out, err)
		}
		if r.Status[201] != n {
			t.Fatalf("fluxctl bench against %s: statuses %v, want %d×201", url, r.Status, n)
		}
		return r
	}
}
