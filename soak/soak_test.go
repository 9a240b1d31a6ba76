package soak

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

var (
	full    = flag.Bool("soak", false, "run the full soak (1,000 agents, 2 minutes) instead of the short one")
	longCut = flag.Bool("soak-long-cut", false, "run LongCut (a zone cut longer than the heartbeat timeout plus the loss grace) instead of the short one")
	fiveK   = flag.Bool("soak-5k", false, "run LongCut5k (LongCut with 5,000 agents) instead of the short one")
	heapDir = flag.String("soak-heap-profiles", "", "write heap profiles of the two memory samples to DIR/<test name>/start.pprof and end.pprof")
)

// TestSoak runs the short soak (with -soak the full one, with
// -soak-long-cut LongCut, with -soak-5k LongCut5k; they combine) and fails
// on every violated check; goleak then checks that shutdown left no
// goroutine behind.
func TestSoak(t *testing.T) {
	if testing.Short() && !*full && !*longCut && !*fiveK {
		t.Skip("soak: skipped with -short")
	}
	if *full {
		t.Run("full", func(t *testing.T) { runSoak(t, Full()) })
	}
	if *longCut {
		t.Run("long-cut", func(t *testing.T) { runSoak(t, LongCut()) })
	}
	if *fiveK {
		t.Run("long-cut-5k", func(t *testing.T) { runSoak(t, LongCut5k()) })
	}
	if !*full && !*longCut && !*fiveK {
		runSoak(t, Short())
	}
}

func runSoak(t *testing.T, cfg Config) {
	defer goleak.VerifyNone(t)
	if *heapDir != "" {
		cfg.HeapProfiles = filepath.Join(*heapDir, strings.ReplaceAll(t.Name(), "/", "-"))
		if err := os.MkdirAll(cfg.HeapProfiles, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Warmup+cfg.Duration+cfg.DrainTimeout+2*time.Minute)
	defer cancel()
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("soak report:\n%s", rep)
	for _, f := range rep.Failures {
		t.Error(f)
	}
	if rep.Refused429+rep.Refused503 > rep.Accepted/2 {
		t.Errorf("more than a third of submissions refused: the load is not near capacity but over it")
	}
}

func TestHistogramQuantile(t *testing.T) {
	body := `# TYPE flux_reconcile_duration_seconds histogram
flux_reconcile_duration_seconds_bucket{le="0.001"} 90
flux_reconcile_duration_seconds_bucket{le="0.002"} 98
flux_reconcile_duration_seconds_bucket{le="0.004"} 100
flux_reconcile_duration_seconds_bucket{le="+Inf"} 100
flux_reconcile_duration_seconds_sum 0.1
flux_reconcile_duration_seconds_count 100
`
	got, n := histogramQuantile(body, "flux_reconcile_duration_seconds", 0.99)
	if n != 100 || got != 3*time.Millisecond {
		t.Fatalf("p99 %v over %d, want 3ms over 100", got, n)
	}
	errs := counterByLabel(`flux_api_errors_total{code="429",route="POST /v1/tasks"} 3
flux_api_errors_total{code="429",route="x"} 2
flux_api_errors_total{code="400",route="x"} 1
`, "flux_api_errors_total", "code")
	if errs["429"] != 5 || errs["400"] != 1 {
		t.Fatalf("counter by code: %v", errs)
	}
}
