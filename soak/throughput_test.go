package soak

import (
	"context"
	"flag"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

var (
	throughput = flag.Bool("soak-throughput", false, "run the throughput measurement at the issue's floor (1,000 agents × 4 slots, 200,000 no-op tasks) instead of the tiny one")
	tpTasks    = flag.Int("soak-throughput-tasks", 0, "with -soak-throughput: tasks to run (default 200,000)")
	tpBatch    = flag.Int("soak-throughput-batch", 0, "with -soak-throughput: tasks per batch (default 500)")
	tpSubmit   = flag.Int("soak-throughput-submitters", 0, "with -soak-throughput: concurrent submitters (default 8)")
	tpTaskMS   = flag.Int("soak-throughput-task-ms", 0, "with -soak-throughput: sleep of each task in ms (default 0: no-op)")
	tpQueue    = flag.Int("soak-throughput-queue", 0, "with -soak-throughput: the cp's queue capacity (default 20,000)")
	tpBeat     = flag.Duration("soak-throughput-heartbeat", 0, "with -soak-throughput: the agents' heartbeat interval (default the soak's 500ms)")
	tpHTTP2    = flag.Bool("soak-throughput-http2", false, "with -soak-throughput: the agents talk HTTP/2 over one connection each instead of HTTP/1.1 (the agent command's default)")
	tpMemory   = flag.Bool("soak-throughput-in-memory", false, "with -soak-throughput: the cp keeps its log in memory instead of fsyncing it to a data dir")
	cpuProfile = flag.String("soak-cpuprofile", "", "write the cp process's CPU profile of the throughput burn-down to FILE")
)

// TestThroughput runs the tiny throughput measurement (with
// -soak-throughput the floor) and fails on every violated check;
// the summary line is logged. The cp runs in a second process, this test
// binary running TestThroughputCPChild.
func TestThroughput(t *testing.T) {
	if testing.Short() && !*throughput {
		t.Skip("soak: skipped with -short")
	}
	defer goleak.VerifyNone(t)
	cfg := ThroughputTiny()
	if *throughput {
		cfg = ThroughputFloor()
		for _, o := range []struct {
			flag int
			to   *int
		}{{*tpTasks, &cfg.Tasks}, {*tpBatch, &cfg.Batch}, {*tpSubmit, &cfg.Submitters}, {*tpQueue, &cfg.QueueCapacity}} {
			if o.flag > 0 {
				*o.to = o.flag
			}
		}
		cfg.Task = time.Duration(*tpTaskMS) * time.Millisecond
		cfg.HeartbeatInterval = *tpBeat
		cfg.HTTP1 = !*tpHTTP2
		cfg.Durable = !*tpMemory
	}
	cfg.CPCommand = []string{os.Args[0], "-test.run=^TestThroughputCPChild$"}
	cfg.CPUProfile = *cpuProfile
	rep, err := RunThroughput(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(rep)
	for _, f := range rep.Failures {
		t.Error(f)
	}
}

// TestThroughputCPChild is the cp process of TestThroughput: it runs only
// when that test starts this binary with CPChildEnv set.
func TestThroughputCPChild(t *testing.T) {
	if os.Getenv(CPChildEnv) == "" {
		t.Skip("the cp process of TestThroughput; runs only as its child")
	}
	if err := ServeCPChild(os.Stdin, os.Stdout); err != nil {
		t.Fatal(err)
	}
}
