package deploy_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/benbjohnson/clock"

	"github.com/fluxforge/fluxforge/core"
	"github.com/fluxforge/fluxforge/cp"
	fnet "github.com/fluxforge/fluxforge/net"
)

// scrapeCP starts a control plane in process (mock clock, no background
// loops), gives it agents in two domains, tasks and a few API errors so
// every family has series, runs reconcile passes, and returns the text of a
// real GET /metrics.
func scrapeCP(t *testing.T) []byte {
	t.Helper()
	s, err := cp.New(cp.Options{Clock: clock.NewMock(), Core: core.DefaultConfig()})
	if err != nil {
		t.Fatalf("cp.New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)

	post := func(path string, body any, wantStatus int) {
		t.Helper()
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := srv.Client().Post(srv.URL+path, "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != wantStatus {
			t.Fatalf("POST %s: status %d, want %d: %s", path, resp.StatusCode, wantStatus, got)
		}
	}
	for i, a := range []struct{ id, domain string }{{"a1", "z1"}, {"a2", "z1"}, {"a3", "z2"}} {
		post(fnet.PathHeartbeat, core.HeartbeatInput{AgentID: core.AgentID(a.id), Domain: a.domain, Slots: 1,
			Address: fmt.Sprintf("http://127.0.0.1:%d", 1+i), Incarnation: 1, Seq: 1}, http.StatusOK)
	}
	for _, domain := range []string{"z1", "z1", "z2", "z2", ""} {
		post("/v1/tasks", map[string]any{"kind": "sleep", "duration_ms": 1000, "domain": domain, "priority": "normal"}, http.StatusCreated)
	}
	post("/v1/tasks", map[string]any{"kind": "no-such-kind"}, http.StatusBadRequest)
	for range 3 {
		s.Reconcile()
	}

	resp, err := srv.Client().Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: status %d, err %v", resp.StatusCode, err)
	}
	return body
}

// exportedSeries returns, for every sample line of a text exposition, its
// series name (histogram _bucket/_sum/_count included) mapped to the label
// names seen on it, plus the family name of every # TYPE line.
func exportedSeries(t *testing.T, exposition []byte) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(exposition))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if name, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, _, _ = strings.Cut(name, " ")
			if _, seen := out[name]; !seen {
				out[name] = nil
			}
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		end := strings.IndexAny(line, "{ ")
		if end < 0 {
			t.Fatalf("unparsable sample line %q", line)
		}
		name := line[:end]
		labels := out[name]
		if line[end] == '{' {
			body, _, ok := strings.Cut(line[end+1:], "}")
			if !ok {
				t.Fatalf("unterminated labels in %q", line)
			}
			for _, pair := range splitLabels(body) {
				k, _, _ := strings.Cut(pair, "=")
				if !slices.Contains(labels, k) {
					labels = append(labels, k)
				}
			}
		}
		out[name] = labels
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// splitLabels splits `a="x",b="y,z"` at the commas outside quotes.
func splitLabels(s string) []string {
	var out []string
	inQuote, escaped, start := false, false, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case escaped:
			escaped = false
		case c == '\\':
			escaped = true
		case c == '"':
			inQuote = !inQuote
		case c == ',' && !inQuote:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

func requirePromtool(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not on PATH: install the Debian package prometheus (deploy/check.sh does) to run this check; CI has it")
	}
	return path
}

// TestScrapePassesPromtoolCheckMetrics pipes a real scrape of the cp into
// `promtool check metrics`, Prometheus's own linter for the exposition
// (naming, units, _total on counters, help text).
func TestScrapePassesPromtoolCheckMetrics(t *testing.T) {
	promtool := requirePromtool(t)
	body := scrapeCP(t)
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check metrics failed (%v):\n%s", err, out)
	}
	if len(bytes.TrimSpace(out)) > 0 {
		t.Logf("promtool check metrics:\n%s", out)
	}
}

// TestAlertRulesUseExportedMetrics checks that every flux_ metric that
// deploy/prometheus/alerts.yml names (in expressions and annotations) is
// really exported by the cp, so no alert silently watches nothing.
func TestAlertRulesUseExportedMetrics(t *testing.T) {
	rules, err := os.ReadFile("prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	series := exportedSeries(t, scrapeCP(t))
	names := metricName.FindAllString(string(rules), -1)
	slices.Sort(names)
	names = slices.Compact(names)
	for _, n := range names {
		if _, ok := series[n]; !ok {
			t.Errorf("alerts.yml uses %s, which the cp does not export", n)
		}
	}
	for _, n := range []string{"flux_reconcile_duration_seconds_bucket", "flux_scheduler_decisions_total",
		"flux_queue_depth", "flux_api_errors_total", "flux_http_requests_total", "flux_queue_oldest_task_age",
		"flux_agent_connected", "flux_domain_state"} {
		if !slices.Contains(names, n) {
			t.Errorf("alerts.yml no longer uses %s", n)
		}
	}
}
