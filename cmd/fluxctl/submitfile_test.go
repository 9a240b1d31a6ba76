package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fluxforge/fluxforge/cp"
)

func writeTasks(t *testing.T, lines ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tasks.jsonl")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSubmitFile: submit -f sends a file's tasks in batches of -batch,
// reports refused tasks by line and the counts, and exits 1 when any was
// refused; -o json prints the results in file order; a file with a bad
// line sends nothing.
func TestSubmitFile(t *testing.T) {
	url, _ := startCP(t, "tok", 1000)
	file := writeTasks(t,
		`{"kind":"sleep","duration_ms":5,"idempotency_key":"f-1"}`,
		``,
		`{"kind":"exec","argv":["/bin/echo","hi"],"priority":"high"}`,
		`{"kind":"sleep","priority":"urgent"}`,
		`   `,
		`{"kind":"sleep","duration_ms":5,"idempotency_key":"f-1"}`,
		`{"kind":"sleep","domain":"zone-a"}`,
	)
	idx := appliedIndex(t, url)
	r := fluxctl(t, url, "", "submit", "-f", file, "-batch", "2")
	if r.code != 1 || !strings.Contains(r.stderr, "1 of 5 tasks refused") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"LINE", "4 ", "400", "invalid", "urgent", "5 tasks: 3 created, 1 replayed (idempotent), 1 refused"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("output lacks %q:\n%s", want, r.stdout)
		}
	}
	if got := appliedIndex(t, url) - idx; got != 3 {
		t.Fatalf("5 tasks in batches of 2 took %d log entries, want 3", got)
	}
	depth := queueDepth(t, url)
	if depth != 3 {
		t.Fatalf("queue depth %d, want 3", depth)
	}

	// Again, from stdin, as JSON: every task replays or is refused again,
	// the results in file order.
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	stdin = strings.NewReader(strings.ReplaceAll(string(data), `"priority":"urgent"`, `"priority":"low"`))
	defer func() { stdin = os.Stdin }()
	r = fluxctl(t, url, "", "submit", "-f", "-", "-o", "json")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var out cp.BatchResponse
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("%v: %s", err, r.stdout)
	}
	var st []int
	for _, res := range out.Results {
		st = append(st, res.Status)
	}
	if fmt.Sprint(st) != "[200 201 201 200 201]" || out.Results[0].Task.ID != "t-000001" {
		t.Fatalf("statuses %v: %s", st, r.stdout)
	}

	// A bad line: reported by number, nothing sent.
	bad := writeTasks(t, `{"kind":"sleep"}`, `{"kind":"sleep","colour":"red"}`, `not json`, `["sleep"]`)
	before := queueDepth(t, url)
	r = fluxctl(t, url, "", "submit", "-f", bad)
	if r.code != 1 || !strings.Contains(r.stderr, "3 line(s) are not tasks; nothing was sent") ||
		!strings.Contains(r.stderr, `line 2: json: unknown field "colour"`) || !strings.Contains(r.stderr, "line 3:") ||
		!strings.Contains(r.stderr, "line 4: not a JSON object") {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if got := queueDepth(t, url); got != before {
		t.Fatalf("queue depth %d after a refused file, was %d", got, before)
	}

	// A batch refused whole stops the run and says what was not sent.
	fluxctl(t, url, "tok", "mode", "set", "READ_ONLY")
	r = fluxctl(t, url, "", "submit", "-f", file)
	if r.code != 1 || !strings.Contains(r.stderr, "lines 1-7 (5 tasks) were not sent") || !strings.Contains(r.stderr, "HTTP 503 mode_refused") {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}

	for _, args := range [][]string{
		{"submit", "-f", file, "-batch", "0"},
		{"submit", "-f", file, "-batch", "1001"},
		{"submit", "-f", file, "-sleep", "1s"},
		{"submit", "-f", file, "extra"},
	} {
		if r := fluxctl(t, url, "", args...); r.code != 2 {
			t.Fatalf("fluxctl %v: exit %d, want 2: %s", args, r.code, r.stderr)
		}
	}
	if r := fluxctl(t, url, "", "submit", "-f", writeTasks(t, "", "")); r.code != 1 || !strings.Contains(r.stderr, "holds no tasks") {
		t.Fatalf("empty file: exit %d: %s", r.code, r.stderr)
	}
}

type debugView struct {
	QueueDepth   int `json:"queue_depth"`
	AppliedIndex int `json:"applied_index"`
}

func debugOf(t *testing.T, url string) debugView {
	t.Helper()
	r := fluxctl(t, url, "", "snapshot", "-o", "json")
	var v debugView
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("%v: %s", err, r.stdout)
	}
	return v
}

func queueDepth(t *testing.T, url string) int { t.Helper(); return debugOf(t, url).QueueDepth }

func appliedIndex(t *testing.T, url string) int { t.Helper(); return debugOf(t, url).AppliedIndex }
