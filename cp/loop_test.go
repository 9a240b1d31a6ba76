package cp

import (
	"bufio"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fluxforge/fluxforge/core"
)

// runbookMetrics are the names RUNBOOK.md and DESIGN.md give operators.
var runbookMetrics = []string{
	"flux_reconcile_duration_seconds",
	"flux_scheduler_decisions_total",
	"flux_api_errors_total",
	"flux_queue_depth",
	"flux_queue_oldest_task_age",
	"flux_domain_failure_rate",
	"flux_agent_connected",
}

// operatorMetrics are the others the issue asks for.
var operatorMetrics = []string{
	"flux_http_requests_total", "flux_queue_capacity", "flux_scheduler_mode", "flux_agent_health_score",
	"flux_agent_quarantined", "flux_agents_connected", "flux_agents_quarantined", "flux_domain_state",
	"flux_tasks_submitted_total", "flux_tasks_refused_total", "flux_tasks_finished_total", "flux_requeues_total",
}

// metricNames returns the set of sample names in an exposition.
func metricNames(body string) map[string]bool {
	names := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name := line[:strings.IndexAny(line, "{ ")]
		names[name] = true
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			names[strings.TrimSuffix(name, suf)] = true
		}
	}
	return names
}

func TestMetricsRunbookNames(t *testing.T) {
	tc, mock := mockCP(t, nil)
	for i, d := range []string{"zone-a", "zone-b", "zone-c"} {
		tc.heartbeat(core.HeartbeatInput{AgentID: core.AgentID("agent-" + d), Domain: d, Slots: 2, Incarnation: uint64(i + 1), Seq: 1})
	}
	tc.submit(`{"kind":"sleep","domain":"zone-a"}`)
	mock.Add(time.Second) // one reconcile pass
	waitFor(t, 5*time.Second, "a reconcile pass", func() bool {
		return strings.Contains(
			string(tc.mustStatus(200, "GET", "/metrics", nil).Body), "flux_reconcile_duration_seconds_count 1")
	})
	body := string(tc.mustStatus(200, "GET", "/metrics", nil).Body)
	names := metricNames(body)
	for _, n := range append(runbookMetrics, operatorMetrics...) {
		if !names[n] {
			t.Errorf("metric %s missing from /metrics", n)
		}
	}
	// `curl localhost:8080/metrics | grep domain_failure_rate` shows every domain.
	var lines []string
	for _, l := range strings.Split(body, "\n") {
		if strings.Contains(l, "domain_failure_rate") && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	for _, d := range []string{"zone-a", "zone-b", "zone-c"} {
		want := `flux_domain_failure_rate{domain="` + d + `"} 0`
		if !containsLine(lines, want) {
			t.Errorf("grep domain_failure_rate lacks %q: %q", want, lines)
		}
	}
	for _, want := range []string{
		`flux_agent_connected{agent="agent-zone-a",domain="zone-a"} 1`,
		`flux_scheduler_mode{mode="NORMAL"} 1`,
		`flux_scheduler_mode{mode="DRAINING"} 0`,
		`flux_scheduler_decisions_total{outcome="assigned"} 1`,
		`flux_queue_capacity 1000`,
		`flux_agents_connected{domain="zone-b"} 1`,
		`flux_domain_state{domain="zone-c",state="OPEN"} 1`,
		`flux_tasks_submitted_total 1`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}
	// Queue age is in seconds, on the injected clock.
	tc.mustStatus(200, "POST", "/admin/mode", `{"mode":"READ_ONLY"}`)
	tc.submitStatus(503)
	tc.mustStatus(200, "POST", "/admin/mode", `{"mode":"NORMAL"}`)
	tc.submit(`{"kind":"sleep","domain":"nowhere"}`)
	mock.Add(90 * time.Second)
	body = string(tc.mustStatus(200, "GET", "/metrics", nil).Body)
	if !regexp.MustCompile(`(?m)^flux_queue_oldest_task_age 9\d`).MatchString(body) ||
		!strings.Contains(body, "flux_queue_depth 2\n") { // + the zone-a task, requeued after AssignTimeout
		t.Errorf("queue gauges wrong:\n%s", grepLines(body, "flux_queue"))
	}
	if !strings.Contains(body, `flux_tasks_refused_total{reason="mode"} 1`) {
		t.Errorf("refusal not counted:\n%s", grepLines(body, "refused"))
	}
}

func (tc *testCP) submitStatus(want int) {
	tc.t.Helper()
	tc.mustStatus(want, "POST", "/v1/tasks", `{"kind":"sleep"}`)
}

func containsLine(lines []string, want string) bool {
	for _, l := range lines {
		if l == want {
			return true
		}
	}
	return false
}

func grepLines(body, sub string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestSnapshotRunbookFields(t *testing.T) {
	tc := startCP(t, false, nil)
	r := tc.mustStatus(200, "GET", "/scheduler/debug/snapshot", nil)
	var m map[string]json.RawMessage
	r.decode(t, &m)
	for _, k := range []string{"mode", "mode_set_by", "mode_reason", "queue_depth", "queue_capacity",
		"oldest_task_age_seconds", "domain_active", "domain_failures", "agents", "drained"} {
		if _, ok := m[k]; !ok {
			t.Errorf("snapshot lacks %q", k)
		}
	}
	// `jq .mode` prints "NORMAL".
	if string(m["mode"]) != `"NORMAL"` {
		t.Fatalf(".mode = %s", m["mode"])
	}
}

func TestReconcileLoopOnMockClock(t *testing.T) {
	tc, mock := mockCP(t, func(o *Options) {
		o.Core.HeartbeatTimeout = 15 * time.Second
		o.Core.LostAfter = 30 * time.Second
	})
	tc.heartbeat(core.HeartbeatInput{AgentID: "quiet", Domain: "z1", Slots: 1, Address: "http://127.0.0.1:1", Incarnation: 1, Seq: 1})
	task := tc.submit(`{"kind":"sleep"}`) // assigned to quiet, which never polls
	if v := tc.task(task.ID); v.State != core.TaskAssigned {
		t.Fatalf("task %v", v.State)
	}
	// Nothing happens until the clock moves: the loop runs on the mock.
	for range 16 {
		mock.Add(time.Second)
	}
	waitFor(t, 5*time.Second, "agent disconnected by the reconcile loop", func() bool {
		a, _ := tc.agent("quiet")
		return !a.Connected
	})
	// The never-confirmed assignment is requeued after AssignTimeout (15s)
	// even though the agent is not yet lost: an assignment nobody takes
	// from the mailbox changes no state by itself.
	waitFor(t, 5*time.Second, "unconfirmed assignment requeued", func() bool {
		return tc.task(task.ID).State == core.TaskQueued
	})
	body := string(tc.mustStatus(200, "GET", "/metrics", nil).Body)
	if !regexp.MustCompile(`(?m)^flux_reconcile_duration_seconds_count (1[5-9]|[2-9]\d)$`).MatchString(body) {
		t.Errorf("reconcile passes not timed:\n%s", grepLines(body, "flux_reconcile_duration_seconds_count"))
	}
	// Requeued, the assignment left the mailbox without ever being handed out.
	if !strings.Contains(body, "flux_agent_messages_queued 0\n") || strings.Contains(body, `flux_agent_messages_total{kind="assign"`) {
		t.Errorf("the requeued assignment should have left the mailbox, never handed out:\n%s", grepLines(body, "flux_agent_messages"))
	}
	if !strings.Contains(body, `flux_agent_connected{agent="quiet",domain="z1"} 0`) {
		t.Errorf("agent gauge:\n%s", grepLines(body, "flux_agent_connected"))
	}
}

func (tc *testCP) agent(id string) (core.AgentView, bool) {
	tc.t.Helper()
	r := tc.do("GET", "/v1/agents/"+id, nil)
	if r.Status == http.StatusNotFound {
		return core.AgentView{}, false
	}
	var v core.AgentView
	r.decode(tc.t, &v)
	return v, true
}

// TestOperatorQuarantineIsNotTheRunbookLine: the runbook line marks health
// quarantines only, told by the event's cause, not by its reason text, so an
// operator quoting the line in a reason does not page anyone.
func TestOperatorQuarantineIsNotTheRunbookLine(t *testing.T) {
	tc := startCP(t, false, nil)
	tc.heartbeat(core.HeartbeatInput{AgentID: "a1", Domain: "z1", Slots: 1, Incarnation: 1, Seq: 1})
	tc.mustStatus(http.StatusOK, "POST", "/v1/agents/a1/quarantine", `{"reason":"`+core.QuarantineLogLine+` (copied from a ticket)"}`)
	var line map[string]any
	for _, l := range strings.Split(tc.logs.String(), "\n") {
		if strings.Contains(l, `"type":"agent.quarantined"`) {
			if err := json.Unmarshal([]byte(l), &line); err != nil {
				t.Fatal(err)
			}
		}
	}
	if line == nil || line["msg"] != "agent.quarantined" || line["level"] != "WARN" || line["cause"] != "operator" {
		t.Fatalf("operator quarantine logged as %v\n%s", line, tc.logs.String())
	}
}

// TestQuarantineLogLine drives a flapping agent on a mock clock until the
// health score quarantines it, and checks the runbook's exact log line.
func TestQuarantineLogLine(t *testing.T) {
	mock := newMock()
	tc := startCP(t, false, func(o *Options) {
		o.Clock = mock
		o.Core = core.DefaultConfig()
		o.Core.HeartbeatInterval = time.Second
		o.Core.HeartbeatTimeout = 3 * time.Second
	})
	seq := map[core.AgentID]uint64{}
	beat := func(id core.AgentID) {
		seq[id]++
		tc.heartbeat(core.HeartbeatInput{AgentID: id, Domain: "z1", Slots: 1, Incarnation: 1, Seq: seq[id]})
	}
	// Five agents; "flappy" goes silent for 4s out of every 6s.
	ids := []core.AgentID{"flappy", "s1", "s2", "s3", "s4"}
	for step := 0; step < 120; step++ {
		for _, id := range ids {
			if id != "flappy" || step%6 < 2 {
				beat(id)
			}
		}
		mock.Add(time.Second)
		tc.s.Reconcile()
		if a, _ := tc.agent("flappy"); a.Quarantined {
			break
		}
	}
	a, _ := tc.agent("flappy")
	if !a.Quarantined || a.QuarantinedBy != "health" {
		t.Fatalf("flappy not quarantined: %+v", a)
	}
	var line map[string]any
	for _, l := range strings.Split(tc.logs.String(), "\n") {
		if strings.Contains(l, core.QuarantineLogLine) {
			if err := json.Unmarshal([]byte(l), &line); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	if line == nil {
		t.Fatalf("no quarantine log line in:\n%s", tc.logs.String())
	}
	if line["msg"] != "Node quarantined due to low health score" || line["level"] != "WARN" ||
		line["agent_id"] != "flappy" || line["domain"] != "z1" || line["cause"] != "health" ||
		!strings.HasPrefix(line["reason"].(string), "Node quarantined due to low health score: ") {
		t.Fatalf("log line %v", line)
	}
	score, ok := line["score"].(float64)
	if !ok || score >= core.DefaultHealthConfig().QuarantineThreshold {
		t.Fatalf("score %v", line["score"])
	}
	for _, id := range ids[1:] {
		if a, _ := tc.agent(string(id)); a.Quarantined {
			t.Fatalf("steady agent %s quarantined", id)
		}
	}
	body := string(tc.mustStatus(200, "GET", "/metrics", nil).Body)
	if !strings.Contains(body, `flux_agent_quarantined{agent="flappy",domain="z1"} 1`) ||
		!strings.Contains(body, `flux_agents_quarantined{domain="z1"} 1`) {
		t.Errorf("quarantine gauges:\n%s", grepLines(body, "quarantined"))
	}
}

func TestDeliveryQueueBoundDrops(t *testing.T) {
	tc := startCP(t, false, func(o *Options) { o.DeliveryQueueMax = 1 })
	tc.heartbeat(core.HeartbeatInput{AgentID: "a1", Domain: "z1", Slots: 4, Address: "http://127.0.0.1:1", Incarnation: 1, Seq: 1})
	for range 3 {
		tc.submit(`{"kind":"sleep"}`)
	}
	// The loops are stopped: one assignment waits, two were dropped.
	body := string(tc.mustStatus(200, "GET", "/metrics", nil).Body)
	if !strings.Contains(body, `flux_agent_messages_dropped_total{kind="assign"} 2`) {
		t.Fatalf("drops:\n%s", grepLines(body, "dropped"))
	}
	if s := tc.snapshot(); s.InFlight != 3 {
		t.Fatalf("in flight %d: dropped assignments stay leased until AssignTimeout", s.InFlight)
	}
	if !strings.Contains(tc.logs.String(), "agent message dropped: mailbox full") {
		t.Fatal("drop not logged")
	}
}

// TestSelfProtectionDegraded: a queue held at 80% of capacity puts the
// scheduler into DEGRADED on its own; low priority is shed with 429.
func TestSelfProtectionDegraded(t *testing.T) {
	mock := newMock()
	tc := startCP(t, false, func(o *Options) {
		o.Clock = mock
		o.Core = core.DefaultConfig()
		o.Core.QueueCapacity = 10
	})
	for range 8 {
		tc.submit(`{"kind":"sleep","priority":"low"}`)
	}
	for range 31 {
		mock.Add(time.Second)
		tc.s.Reconcile()
	}
	s := tc.snapshot()
	if s.Mode != core.ModeDegraded || s.ModeSetBy != core.ActorSelfProtection {
		t.Fatalf("mode %s set by %s (%s)", s.Mode, s.ModeSetBy, s.ModeReason)
	}
	r := tc.mustStatus(http.StatusTooManyRequests, "POST", "/v1/tasks", `{"kind":"sleep","priority":"low"}`)
	if r.Header.Get("Retry-After") == "" || r.errorCode(t) != "degraded" {
		t.Fatalf("%v %s", r.Header, r.Body)
	}
	tc.submit(`{"kind":"sleep","priority":"high"}`)
	body := string(tc.mustStatus(200, "GET", "/metrics", nil).Body)
	for _, want := range []string{`flux_scheduler_mode{mode="DEGRADED"} 1`, "flux_scheduler_mode_self_protection 1",
		`flux_tasks_refused_total{reason="degraded"} 1`} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}
	if !strings.Contains(tc.logs.String(), `"level":"WARN","msg":"mode.changed"`) {
		t.Error("self-protection mode change not logged at WARN")
	}
}

// TestIsolationPanicSurfaces: a one-zone fleet loses 4 of its 5 agents (an
// outage), but isolating its only zone would leave nothing open: the
// snapshot's isolation_panic, the flux_isolation_panic gauge and a WARN
// domain.panic log line say the panic holds it open, and all of it ends
// when the agents return.
func TestIsolationPanicSurfaces(t *testing.T) {
	mock := newMock()
	tc := startCP(t, false, func(o *Options) {
		o.Clock = mock
		o.Core = core.DefaultConfig()
		o.Core.HeartbeatInterval, o.Core.HeartbeatTimeout = time.Second, 3*time.Second
		o.Core.MassDisconnectMinAgents = 100 // the zone's outage, not the cp cut off
	})
	seq := map[core.AgentID]uint64{}
	beat := func(ids ...core.AgentID) {
		for _, id := range ids {
			seq[id]++
			tc.heartbeat(core.HeartbeatInput{AgentID: id, Domain: "z1", Slots: 2, Incarnation: 1, Seq: seq[id]})
		}
		mock.Add(time.Second)
		tc.s.Reconcile()
	}
	all := []core.AgentID{"a1", "a2", "a3", "a4", "a5"}
	beat(all...)
	for range 5 {
		beat("a1")
	}
	var m map[string]json.RawMessage
	tc.mustStatus(200, "GET", "/scheduler/debug/snapshot", nil).decode(t, &m)
	var p core.IsolationPanic
	if err := json.Unmarshal(m["isolation_panic"], &p); err != nil {
		t.Fatalf("isolation_panic %s: %v", m["isolation_panic"], err)
	}
	if !p.Active || len(p.Domains) != 1 || p.Domains[0] != "z1" || !strings.Contains(p.Reason, "outage: 4 of 5 agents disconnected") {
		t.Fatalf("isolation_panic %s", m["isolation_panic"])
	}
	if body := string(tc.mustStatus(200, "GET", "/metrics", nil).Body); !strings.Contains(body, "\nflux_isolation_panic 1\n") {
		t.Fatalf("gauge:\n%s", grepLines(body, "panic"))
	}
	if !strings.Contains(tc.logs.String(), `"level":"WARN","msg":"domain.panic"`) {
		t.Fatalf("no WARN domain.panic log line in:\n%s", tc.logs.String())
	}
	task := tc.submit(`{"kind":"sleep","duration_ms":1000}`)
	if got := tc.task(task.ID); got.AgentID != "a1" {
		t.Fatalf("task on %q during the panic, want the connected a1", got.AgentID)
	}
	beat(all...)
	if body := string(tc.mustStatus(200, "GET", "/metrics", nil).Body); !strings.Contains(body, "\nflux_isolation_panic 0\n") {
		t.Fatalf("gauge after the agents returned:\n%s", grepLines(body, "panic"))
	}
	if s := tc.snapshot(); s.IsolationPanic.Active {
		t.Fatalf("panic still active: %+v", s.IsolationPanic)
	}
}
