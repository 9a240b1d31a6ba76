package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/fluxforge/fluxforge/core"
	"github.com/fluxforge/fluxforge/cp"
	fnet "github.com/fluxforge/fluxforge/net"
)

// liveCP is an in-process cp on a data dir (mock clock, loops stopped).
type liveCP struct {
	t    *testing.T
	s    *cp.Server
	srv  *httptest.Server
	mock *clock.Mock
}

func startLiveCP(t *testing.T, dir string) *liveCP {
	t.Helper()
	mock := clock.NewMock()
	mock.Set(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	s, err := cp.New(cp.Options{Clock: mock, Core: core.DefaultConfig(), AdminToken: "adm", DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	l := &liveCP{t: t, s: s, srv: httptest.NewServer(s.Handler()), mock: mock}
	t.Cleanup(l.stop)
	return l
}

func (l *liveCP) stop() {
	if l.srv == nil {
		return
	}
	l.srv.Close()
	if err := l.s.Close(); err != nil {
		l.t.Error(err)
	}
	l.srv = nil
}

func (l *liveCP) do(method, path string, body any) []byte {
	l.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, l.srv.URL+path, r)
	req.Header.Set("Authorization", "Bearer adm")
	req.Header.Set("Content-Type", "application/json")
	resp, err := l.srv.Client().Do(req)
	if err != nil {
		l.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		l.t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	return b
}

// work: two agents, tasks, a quarantine, a mode change.
func (l *liveCP) work() {
	for range 3 {
		l.do("POST", "/v1/tasks", map[string]any{"kind": "sleep"})
	}
	for i := range 3 {
		l.do("POST", fnet.PathHeartbeat, core.HeartbeatInput{AgentID: "a1", Domain: "z1", Slots: 2, Address: "http://127.0.0.1:1", Incarnation: 1, Seq: uint64(i + 1)})
		l.do("POST", "/v1/tasks", map[string]any{"kind": "sleep"})
		l.mock.Add(time.Second)
	}
	l.do("POST", "/v1/agents/a1/quarantine", map[string]string{"reason": "bad disk"})
	l.do("POST", "/admin/mode", map[string]string{"mode": "DEGRADED", "reason": "test"})
}

func lastTwo(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return strings.Join(lines[len(lines)-2:], "\n")
}

// TestReplayEndsWhereTheCPWas: a stopped cp's data dir and an export of the
// live cp both replay to the applied_index and state_hash the cp reported,
// with the timeline it recorded.
func TestReplayEndsWhereTheCPWas(t *testing.T) {
	dir := t.TempDir()
	l := startLiveCP(t, dir)
	l.work()
	var v cp.DebugView
	if err := json.Unmarshal(l.do("GET", "/scheduler/debug/snapshot?fresh_hash=true", nil), &v); err != nil {
		t.Fatal(err)
	}
	want := "applied_index " + itoa(v.AppliedIndex) + "\nstate_hash " + v.StateHash
	file := filepath.Join(t.TempDir(), "export.jsonl")
	if err := os.WriteFile(file, l.do("GET", "/admin/log/export", nil), 0o600); err != nil {
		t.Fatal(err)
	}

	var out, errb bytes.Buffer
	if code := run([]string{"-replay", dir}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "locked") || !strings.Contains(errb.String(), "fluxctl log export") {
		t.Fatalf("replay of a running cp's dir: code %d, %s", code, errb.String())
	}
	l.stop()

	for _, path := range []string{dir, file} {
		out.Reset()
		errb.Reset()
		if code := run([]string{"-replay", path}, &out, &errb); code != 0 {
			t.Fatalf("-replay %s: code %d: %s", path, code, errb.String())
		}
		if got := lastTwo(out.String()); got != want {
			t.Fatalf("-replay %s ends with\n%s\nwant\n%s", path, got, want)
		}
		for _, s := range []string{"agent.quarantined a1 z1 [operator]: bad disk", "mode.changed NORMAL→DEGRADED [operator]: test", "#2      2026-01-01T00:00:00.000Z  task.queued t-000001 →QUEUED [client]: submitted"} {
			if !strings.Contains(out.String(), s) {
				t.Errorf("-replay %s timeline lacks %q:\n%s", path, s, out.String())
			}
		}
	}

	// -until-index outside the range is an error naming it.
	out.Reset()
	errb.Reset()
	if code := run([]string{"-replay", dir, "-until-index", itoa(v.AppliedIndex + 100)}, &out, &errb); code != 1 ||
		!strings.Contains(errb.String(), "outside the recorded range") {
		t.Fatalf("-until-index past the end: %d %s", code, errb.String())
	}
}

// TestReplayWhatIf: -set changes the config at the restored point and the
// diff names what changed; the output is the same on every run.
func TestReplayWhatIf(t *testing.T) {
	dir := t.TempDir()
	l := startLiveCP(t, dir)
	l.work()
	l.stop()
	var out1, out2, errb bytes.Buffer
	args := []string{"-replay", dir, "-set", "queue-capacity=1"}
	if code := run(args, &out1, &errb); code != 0 {
		t.Fatalf("what-if: %d %s", code, errb.String())
	}
	if code := run(args, &out2, &errb); code != 0 || out1.String() != out2.String() {
		t.Fatalf("what-if output differs between runs:\n%s\n---\n%s", out1.String(), out2.String())
	}
	o := out1.String()
	for _, s := range []string{"what-if queue-capacity=1 (was 1000)", "task t-000004: recorded QUEUED, what-if (not held)", "QUEUED                    4        1  (-3)", "\nstate_hash "} {
		if !strings.Contains(o, s) {
			t.Errorf("what-if output lacks %q:\n%s", s, o)
		}
	}
	errb.Reset()
	if code := run([]string{"-replay", dir, "-set", "no-such-key=1"}, &out1, &errb); code != 2 || !strings.Contains(errb.String(), `unknown key "no-such-key"`) {
		t.Fatalf("unknown key: %d %s", code, errb.String())
	}
	out1.Reset()
	if code := run([]string{"-replay", dir, "-set", "help"}, &out1, &errb); code != 0 || !strings.Contains(out1.String(), "quarantine-threshold") {
		t.Fatalf("-set help: %d %s", code, out1.String())
	}
}

func itoa(v uint64) string { return strconv.FormatUint(v, 10) }
