package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestSameSeedSameBytes: the same seed prints byte-identical output and
// writes a byte-identical trace; another seed prints something else.
func TestSameSeedSameBytes(t *testing.T) {
	dir := t.TempDir()
	t1, t2 := filepath.Join(dir, "a.jsonl"), filepath.Join(dir, "b.jsonl")
	c1, o1, e1 := runCmd(t, "-scenario=poison-task", "-seed=4", "-trace", t1)
	c2, o2, _ := runCmd(t, "-scenario=poison-task", "-seed=4", "-trace", t2)
	if c1 != 0 || c2 != 0 {
		t.Fatalf("exit %d, %d: %s\n%s", c1, c2, e1, o1)
	}
	if o1 != o2 {
		t.Fatal("same seed, different output")
	}
	b1, err1 := os.ReadFile(t1)
	b2, err2 := os.ReadFile(t2)
	if err1 != nil || err2 != nil || len(b1) == 0 || !bytes.Equal(b1, b2) {
		t.Fatalf("traces differ or are missing (%v, %v; %d, %d bytes)", err1, err2, len(b1), len(b2))
	}
	if !strings.Contains(o1, "result: PASS") || !strings.Contains(o1, "trace               crc32x2:") {
		t.Fatalf("report lacks verdict or trace hash:\n%s", o1)
	}
	_, o3, _ := runCmd(t, "-scenario=poison-task", "-seed=5")
	if o3 == o1 {
		t.Fatal("different seeds, same output")
	}
}

func TestDefaultScenarioRuns(t *testing.T) {
	code, out, errs := runCmd(t, "-quiet")
	if code != 0 || !strings.Contains(out, "scenario agent-flap") || strings.Contains(out, "timeline:") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
}

func TestUnknownScenarioListsNames(t *testing.T) {
	code, _, errs := runCmd(t, "-scenario=nope")
	if code != 2 || !strings.Contains(errs, "unknown scenario") || !strings.Contains(errs, "mass-disconnect") {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if code, _, _ := runCmd(t, "-agents=-1"); code != 2 {
		t.Fatalf("negative agents: exit %d", code)
	}
}

func TestList(t *testing.T) {
	code, out, _ := runCmd(t, "-list")
	if code != 0 || strings.Count(out, "\n") != 13 || !strings.Contains(out, "\ncut-heartbeat-timeout ") || !strings.Contains(out, "\nsmall-zone-flap ") || !strings.Contains(out, "\ncp-crash ") || !strings.Contains(out, "\ncp-failover ") || !strings.Contains(out, "\npoison-single-zone ") || !strings.HasPrefix(out, "agent-flap") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

// TestFailingRunExitsOne: a run that cannot meet its expectations (too
// short for the flapping agent to be released) exits 1 with a repro line.
func TestFailingRunExitsOne(t *testing.T) {
	code, out, _ := runCmd(t, "-scenario=agent-flap", "-duration=3m", "-quiet")
	if code != 1 || !strings.Contains(out, "result: FAIL") || !strings.Contains(out, "repro: go run ./cmd/sim -scenario=agent-flap -seed=1") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}
