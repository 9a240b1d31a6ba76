package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestRealClusterReplays: a real cluster runs work; its log, exported from
// the live cp, replays in the simulator to the same timeline and the same
// state_hash the cp reported at that index.
func TestRealClusterReplays(t *testing.T) {
	c := newCluster(t)
	for i, zone := range []string{"zone-a", "zone-b", "zone-c"} {
		c.startAgent(fmt.Sprintf("agent-%d", i+1), zone).ready(t)
	}
	ids := c.submitSleeps(t, 30, func(i int) int { return 20 + 10*(i%5) })
	c.waitTerminal(t, ids, 30*time.Second)

	var snap struct {
		AppliedIndex uint64 `json:"applied_index"`
		StateHash    string `json:"state_hash"`
		TimelineSeq  uint64 `json:"timeline_seq"`
	}
	if _, err := call("GET", c.cpURL+"/scheduler/debug/snapshot?fresh_hash=true", "", nil, &snap); err != nil {
		t.Fatal(err)
	}
	if snap.AppliedIndex == 0 || len(snap.StateHash) != 64 {
		t.Fatalf("snapshot applied_index %d state_hash %q", snap.AppliedIndex, snap.StateHash)
	}
	var events struct {
		Events []struct {
			Seq  uint64 `json:"seq"`
			Type string `json:"type"`
		} `json:"events"`
	}
	if _, err := call("GET", fmt.Sprintf("%s/timeline?since=0&limit=1000", c.cpURL), "", nil, &events); err != nil {
		t.Fatal(err)
	}
	want := map[uint64]string{}
	for _, e := range events.Events {
		if e.Seq <= snap.TimelineSeq {
			want[e.Seq] = e.Type
		}
	}

	// The export holds every entry up to at least the index read above.
	resp, err := http.Get(c.cpURL + "/admin/log/export")
	if err != nil {
		t.Fatal(err)
	}
	export, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("export: %d %v\n%s", resp.StatusCode, err, export)
	}
	file := filepath.Join(t.TempDir(), "incident.log")
	if err := os.WriteFile(file, export, 0o600); err != nil {
		t.Fatal(err)
	}

	out, err := exec.Command(simBinary(t), "-replay", file, "-until-index", strconv.FormatUint(snap.AppliedIndex, 10)).CombinedOutput()
	if err != nil {
		t.Fatalf("replay: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if n := len(lines); n < 2 || lines[n-2] != fmt.Sprintf("applied_index %d", snap.AppliedIndex) ||
		lines[n-1] != "state_hash "+snap.StateHash {
		t.Fatalf("replay ends %q, want applied_index %d / state_hash %s", lines[max(0, len(lines)-2):], snap.AppliedIndex, snap.StateHash)
	}
	got := map[uint64]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 || !strings.HasPrefix(f[0], "#") {
			continue
		}
		seq, err := strconv.ParseUint(strings.TrimPrefix(f[0], "#"), 10, 64)
		if err == nil && seq <= snap.TimelineSeq {
			got[seq] = f[2]
		}
	}
	if len(got) != len(want) || len(want) == 0 {
		t.Fatalf("replayed %d timeline events up to seq %d, the cp has %d", len(got), snap.TimelineSeq, len(want))
	}
	for seq, typ := range want {
		if got[seq] != typ {
			t.Fatalf("event #%d: replay %q, cp %q", seq, got[seq], typ)
		}
	}
	t.Logf("replayed %d entries and %d events to state_hash %s", snap.AppliedIndex, len(got), snap.StateHash)
}

// simBinary builds cmd/sim once for the e2e tests that need it.
func simBinary(t testing.TB) string {
	t.Helper()
	binaries(t) // skips with -short, makes build.dir
	path := filepath.Join(build.dir, "sim")
	simBuild.Do(func() {
		cmd := exec.Command("go", "build", "-o", path, "./cmd/sim")
		cmd.Dir = repoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			simBuild.err = fmt.Errorf("go build ./cmd/sim: %v\n%s", err, out)
		}
	})
	if simBuild.err != nil {
		t.Fatal(simBuild.err)
	}
	return path
}

var simBuild struct {
	sync.Once
	err error
}
