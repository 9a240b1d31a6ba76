package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/fluxforge/fluxforge/sim"
	"github.com/fluxforge/fluxforge/sim/swarm"
)

// TestSwarmSameBytesAnyParallel: the swarm's report depends only on -seed
// and -swarm, not on -parallel; stderr is no terminal here, so it stays
// empty.
func TestSwarmSameBytesAnyParallel(t *testing.T) {
	c1, o1, e1 := runCmd(t, "-swarm=30", "-seed=4", "-parallel=1")
	c2, o2, e2 := runCmd(t, "-swarm=30", "-seed=4", "-parallel=4")
	if c1 != 0 || c2 != 0 {
		t.Fatalf("exit %d, %d:\n%s\n%s", c1, c2, o1, e1)
	}
	if o1 != o2 {
		t.Fatalf("-parallel changed the report:\n%s\n---\n%s", o1, o2)
	}
	if e1 != "" || e2 != "" {
		t.Fatalf("stderr not silent: %q %q", e1, e2)
	}
	for _, want := range []string{"swarm seed 4: 30 runs", "runs 30, failed 0, simulated ", "fault points fired: ", "result: PASS"} {
		if !strings.Contains(o1, want) {
			t.Errorf("report lacks %q:\n%s", want, o1)
		}
	}
	if _, o3, _ := runCmd(t, "-swarm=30", "-seed=5"); o3 == o1 {
		t.Error("another swarm seed, same report")
	}
}

// TestSwarmFailureReproAndShrink: an injected failure (a crash fault on a
// fleet of at least 6) fails runs; each prints a repro command that fails
// the same way again, and a shrunk shape that is minimal for the injected
// cause.
func TestSwarmFailureReproAndShrink(t *testing.T) {
	swarmCheck = func(s swarm.Shape, _ *sim.Result) error {
		if s.Percent(swarm.Crash) > 0 && s.Agents >= 6 {
			return fmt.Errorf("injected: crash on %d agents", s.Agents)
		}
		return nil
	}
	defer func() { swarmCheck = nil }()
	code, out, _ := runCmd(t, "-swarm=40", "-seed=1", "-shrink=1")
	if code != 1 || !strings.Contains(out, "result: FAIL") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	repro := regexp.MustCompile(`repro:  go run ./cmd/sim -swarm-run (\d+:\d+)`).FindStringSubmatch(out)
	shrunk := regexp.MustCompile(`shrunk: go run ./cmd/sim -swarm-shape '([^']+)'`).FindStringSubmatch(out)
	if repro == nil || shrunk == nil || strings.Count(out, "shrunk:") != 1 {
		t.Fatalf("no repro or shrunk command (or more than one shrink):\n%s", out)
	}
	s, err := swarm.Parse(shrunk[1])
	if err != nil {
		t.Fatal(err)
	}
	if s.Agents != 6 || s.Zones != 1 || s.Slots != 1 || s.Tasks != 0 || len(s.Faults) != 1 || s.Faults[0] != (swarm.Fault{Kind: swarm.Crash, Percent: 1}) {
		t.Errorf("shrunk to %s, want 6 agents, one zone and slot, no tasks, crash:1", s)
	}
	code, one, _ := runCmd(t, "-swarm-run="+repro[1])
	if code != 1 || !strings.Contains(one, "FAIL (check): injected: crash on") {
		t.Errorf("repro exit %d:\n%s", code, one)
	}
	code, small, _ := runCmd(t, "-swarm-shape="+shrunk[1])
	if code != 1 || !strings.Contains(small, "injected: crash on 6 agents") {
		t.Errorf("shrunk shape exit %d:\n%s", code, small)
	}
}

// TestSwarmRunTraceAndErrors: one run again writes its trace; bad values
// are usage errors.
func TestSwarmRunTraceAndErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.jsonl")
	code, out, errs := runCmd(t, "-swarm-run=1:3", "-trace", path)
	if code != 0 || !strings.Contains(out, "swarm run go run ./cmd/sim -swarm-run 1:3") || !strings.Contains(out, "result: PASS") {
		t.Fatalf("exit %d:\n%s\n%s", code, out, errs)
	}
	if b, err := os.ReadFile(path); err != nil || !bytes.Contains(b, []byte(`"ev":"tick"`)) {
		t.Fatalf("trace: %v, %d bytes", err, len(b))
	}
	for _, args := range [][]string{
		{"-swarm-run=1"}, {"-swarm-run=x:1"}, {"-swarm-shape=seed=1"}, {"-swarm=-1"}, {"-swarm=3", "-parallel=0"},
		{"-swarm=3", "-swarm-run=1:1"}, {"-swarm=3", "-trace=x"},
	} {
		if code, _, errs := runCmd(t, args...); code != 2 || errs == "" {
			t.Errorf("%v: exit %d, stderr %q", args, code, errs)
		}
	}
}

// TestProgressOnlyOnTerminals: progress is written when asked for (a
// terminal) and never to a pipe or file.
func TestProgressOnlyOnTerminals(t *testing.T) {
	var b bytes.Buffer
	p := newProgress(&b, "swarm", 3, false)
	p.update(1, 0)
	p.finish()
	if b.Len() != 0 {
		t.Fatalf("progress written to a buffer: %q", b.String())
	}
	f, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if isTerminal(f) {
		t.Fatal("a regular file taken for a terminal")
	}
	p = newProgress(&b, "swarm", 3, true)
	for i := 1; i <= 3; i++ {
		p.update(i, i-1)
	}
	p.finish()
	if s := b.String(); !strings.Contains(s, "\rswarm: 1/3 runs, 0 failed") || !strings.Contains(s, "3/3 runs, 2 failed") || !strings.HasSuffix(s, "\n") {
		t.Fatalf("progress %q", s)
	}
	// With progress forced on, stdout is still byte-identical.
	sw := func(force bool) string {
		var out, errb bytes.Buffer
		fs := []string{"-swarm=5", "-seed=2"}
		code := runWith(fs, &out, &errb, force)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errb.String())
		}
		return out.String()
	}
	if sw(true) != sw(false) {
		t.Fatal("progress changed stdout")
	}
}
