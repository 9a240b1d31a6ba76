package sim_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fluxforge/fluxforge/scenarios"
)

var update = flag.Bool("update", false, "rewrite the golden traces in testdata")

// TestGoldenTrace pins the exact trace of a short stuck-worker run. A change
// in the core or the simulator that alters behaviour shows up here as a
// diff to review; regenerate with `go test ./sim -run Golden -update`.
func TestGoldenTrace(t *testing.T) {
	sc, ok := scenarios.Lookup("stuck-worker")
	if !ok {
		t.Fatal("no stuck-worker scenario")
	}
	var buf bytes.Buffer
	rep := sc.Run(scenarios.Params{Seed: 1, Agents: 4, Zones: 2, Duration: 3 * time.Minute, Trace: &buf})
	if rep.Err != nil {
		t.Fatal(rep.Err)
	}
	path := filepath.Join("testdata", "stuck-worker-seed1.jsonl")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		got := bytes.Split(buf.Bytes(), []byte("\n"))
		exp := bytes.Split(want, []byte("\n"))
		for i := range min(len(got), len(exp)) {
			if !bytes.Equal(got[i], exp[i]) {
				t.Fatalf("trace differs from %s at line %d:\n got: %s\nwant: %s\n(review, then regenerate with -update)", path, i+1, got[i], exp[i])
			}
		}
		t.Fatalf("trace has %d lines, %s has %d (review, then regenerate with -update)", len(got), path, len(exp))
	}
}
