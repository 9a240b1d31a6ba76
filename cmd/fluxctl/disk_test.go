package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestBenchDisk(t *testing.T) {
	dir := t.TempDir()
	r := fluxctl(t, "", "", "bench", "disk", "-dir", dir, "-n", "20", "-rate", "0")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, w := range []string{"20 appends of 512 B + fsync in " + dir, "(back to back)", "p50 ", "p99 ", "p99.9 ", "max ", "over 50ms", "\nverdict: "} {
		if !strings.Contains(r.stdout, w) {
			t.Fatalf("output lacks %q: %s", w, r.stdout)
		}
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("the test file was left behind: %v", left)
	}

	r = fluxctl(t, "", "", "bench", "disk", "-dir", dir, "-n", "7", "-size", "4096", "-rate", "0", "-o", "json")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var got struct {
		Dir     string   `json:"dir"`
		Writes  int      `json:"writes"`
		Bytes   int      `json:"bytes_per_write"`
		P50     *float64 `json:"p50_ms"`
		P99     *float64 `json:"p99_ms"`
		Max     *float64 `json:"max_ms"`
		Over50  *int     `json:"over_50ms"`
		Verdict string   `json:"verdict"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("%v: %s", err, r.stdout)
	}
	if got.Dir != dir || got.Writes != 7 || got.Bytes != 4096 || got.P50 == nil || got.P99 == nil || got.Max == nil || got.Over50 == nil ||
		*got.P50 <= 0 || *got.P50 > *got.P99 || *got.P99 > *got.Max || (got.Verdict != "ok" && got.Verdict != "slow") {
		t.Fatalf("json %+v: %s", got, r.stdout)
	}
}

func TestBenchDiskRefusesBadFlags(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-dir", dir, "-n", "0"}, "-n 0 must be in [1,10000000]"},
		{[]string{"-dir", dir, "-size", "0"}, "-size 0 must be in [1,1048576]"},
		{[]string{"-dir", dir, "-size", "2000000"}, "-size 2000000 must be in"},
		{[]string{"-dir", dir, "-rate", "-1"}, "-rate -1 must be in [0,1000000]"},
		{[]string{"-dir", filepath.Join(dir, "none")}, "does not exist"},
		{[]string{"-dir", file}, "is not a directory"},
		{[]string{"-dir", dir, "extra"}, "want 0 argument(s)"},
	} {
		r := fluxctl(t, "", "", append([]string{"bench", "disk"}, c.args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", c.args, r.code, r.stderr, c.want)
		}
	}
	if left, _ := os.ReadDir(dir); len(left) != 1 {
		t.Fatalf("a refused run wrote to the directory: %v", left)
	}
	// Without -dir it tests the cp's default data dir, relative to here.
	t.Chdir(dir)
	if r := fluxctl(t, "", "", "bench", "disk", "-n", "1"); r.code != 2 || !strings.Contains(r.stderr, "-dir fluxforge-data does not exist") {
		t.Errorf("no -dir, no fluxforge-data: exit %d, stderr %q", r.code, r.stderr)
	}
	if err := os.Mkdir("fluxforge-data", 0o700); err != nil {
		t.Fatal(err)
	}
	if r := fluxctl(t, "", "", "bench", "disk", "-n", "3", "-rate", "0"); r.code != 0 || !strings.Contains(r.stdout, "3 appends of 512 B + fsync in fluxforge-data") {
		t.Errorf("no -dir: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

// At a rate, the appends are paced from the start: the i-th waits until
// i/rate after it (the sleep is the test's, so nothing waits here).
func TestDiskLatencyPaces(t *testing.T) {
	var slept []time.Duration
	res, err := diskLatency(diskOptions{Dir: t.TempDir(), N: 3, Size: 8, Rate: 1}, func(d time.Duration) { slept = append(slept, d) })
	if err != nil {
		t.Fatal(err)
	}
	if res.N != 3 || len(slept) != 2 {
		t.Fatalf("writes %d, sleeps %v", res.N, slept)
	}
	for i, d := range slept {
		if want := time.Duration(i+1) * time.Second; d > want || d < want-500*time.Millisecond {
			t.Fatalf("sleep %d was %v, want just under %v", i, d, want)
		}
	}
}

func TestDiskVerdict(t *testing.T) {
	ms := time.Millisecond
	for _, c := range []struct {
		r         diskResult
		want, why string
	}{
		{diskResult{P50: ms / 4, P99: 2 * ms, P999: 9 * ms, Max: 40 * ms}, "ok", "p99 within 10ms"},
		{diskResult{P50: ms / 4, P99: 11 * ms, P999: 12 * ms, Max: 12 * ms}, "slow", "p99 11ms is over 10ms; every write"},
		{diskResult{P50: ms / 4, P99: ms, P999: 2 * ms, Max: 344 * ms, Over50ms: 1}, "slow", "1 sync(s) over 50ms, the longest 344ms; every"},
		{diskResult{P50: ms, P99: 12 * ms, Max: 60 * ms, Over50ms: 2}, "slow", "p99 12ms is over 10ms; 2 sync(s) over 50ms, the longest 60ms;"},
		{diskResult{P50: ms, P99: 10 * ms, Max: 50 * ms}, "ok", "p99 within 10ms and no sync over 50ms"},
	} {
		if got := c.r.verdict(); got != c.want {
			t.Errorf("%+v: verdict %s, want %s", c.r, got, c.want)
		}
		if !strings.Contains(c.r.String(), "\nverdict: "+c.want+": "+c.why) {
			t.Errorf("%+v: %s; want %q", c.r, c.r.String(), c.why)
		}
	}
}
