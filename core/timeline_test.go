package core

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestEventTypesAreOneVocabulary pins the wire strings: every declared type
// is unique and named after its kind, and the types of state entries are the
// lower-cased state names the timeline has always used.
func TestEventTypesAreOneVocabulary(t *testing.T) {
	kinds := map[string]bool{EventTask: true, EventAgent: true, EventDomain: true, EventMode: true, EventQueue: true, EventConfig: true, EventCluster: true, "scheduler": true}
	seen := map[EventType]bool{}
	for _, typ := range EventTypes() {
		if seen[typ] {
			t.Errorf("%s declared twice", typ)
		}
		seen[typ] = true
		kind, _, ok := strings.Cut(string(typ), ".")
		if !ok || !kinds[kind] {
			t.Errorf("%s is not <kind>.<what>", typ)
		}
	}
	for i := range taskStateNames {
		s := TaskState(i)
		want := EventType("task." + strings.ToLower(s.String()))
		if got := TaskEventType(s); got != want || !seen[got] {
			t.Errorf("TaskEventType(%v) = %q, want the declared %q", s, got, want)
		}
	}
	for _, s := range []DomainState{DomainOpen, DomainThrottled, DomainIsolated, DomainProbing} {
		want := EventType("domain." + strings.ToLower(string(s)))
		if got := DomainEventType(s); got != want || !seen[got] {
			t.Errorf("DomainEventType(%v) = %q, want the declared %q", s, got, want)
		}
	}
	if !seen[EventDomainPanic] || EventDomainPanic != "domain.panic" {
		t.Errorf("domain.panic is not declared")
	}
}

// TestEventJSON: typing Type and adding Cause keep the JSON clients read.
func TestEventJSON(t *testing.T) {
	for _, c := range []struct {
		name string
		e    Event
		want string
	}{
		{"plain", Event{Seq: 3, Kind: EventMode, Type: EventModeChanged, To: "NORMAL", Actor: ActorConfig},
			`{"seq":3,"time":"0001-01-01T00:00:00Z","kind":"mode","type":"mode.changed","to":"NORMAL","actor":"config"}`},
		{"cause", Event{Seq: 4, Kind: EventAgent, Type: EventAgentQuarantined, AgentID: "a1", Actor: ActorReconcile, Cause: CauseHealth},
			`{"seq":4,"time":"0001-01-01T00:00:00Z","kind":"agent","type":"agent.quarantined","agent_id":"a1","actor":"reconcile","cause":"health"}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, err := json.Marshal(c.e)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != c.want {
				t.Errorf("got  %s\nwant %s", b, c.want)
			}
			var back Event
			if err := json.Unmarshal(b, &back); err != nil || back != c.e {
				t.Errorf("round trip: %+v, %v", back, err)
			}
		})
	}
}

// TestQuarantineCause: a consumer tells a health quarantine from an
// operator's by Cause alone, whatever the reason text or actor says.
func TestQuarantineCause(t *testing.T) {
	h := newHarness(t, nil)
	h.join("z1", 1, "a1", "a2", "a3")
	if _, err := h.cp.Apply(h.now, QuarantineInput{AgentID: "a1", Actor: ActorReconcile, Reason: QuarantineLogLine}); err != nil {
		t.Fatal(err)
	}
	q := h.events(EventAgentQuarantined)
	if len(q) != 1 || q[0].Cause != CauseOperator || q[0].HealthQuarantine() {
		t.Fatalf("operator quarantine: %+v", q)
	}
	a := h.cp.agents["a2"]
	a.score = HealthScore{Score: 0.1}
	h.cp.maybeQuarantine(h.now, a)
	q = h.events(EventAgentQuarantined)
	if len(q) != 2 || q[1].AgentID != "a2" || !q[1].HealthQuarantine() || !strings.HasPrefix(q[1].Reason, QuarantineLogLine+": ") {
		t.Fatalf("health quarantine: %+v", q)
	}
}

func TestRefusalKindOf(t *testing.T) {
	for _, c := range []struct {
		err  error
		want RefusalKind
	}{
		{ErrQueueFull, RefusalQueueFull},
		{fmt.Errorf("%w: 10 queued", ErrQueueFull), RefusalQueueFull},
		{ErrLowPriorityShed, RefusalDegraded},
		{fmt.Errorf("%w: READ_ONLY", ErrModeRefused), RefusalMode},
		{ErrIdempotencyConflict, RefusalIdempotencyConflict},
		{fmt.Errorf("%w: kind", ErrInvalid), RefusalInvalid},
		{ErrNotFound, RefusalOther},
		{nil, RefusalOther},
	} {
		if got := RefusalKindOf(c.err); got != c.want {
			t.Errorf("RefusalKindOf(%v) = %q, want %q", c.err, got, c.want)
		}
	}
	kinds := RefusalKinds()
	want := []RefusalKind{"queue_full", "degraded", "mode", "idempotency_conflict", "invalid", "other"}
	if fmt.Sprint(kinds) != fmt.Sprint(want) {
		t.Errorf("RefusalKinds() = %v, want %v", kinds, want)
	}
}

// TestMetricTable: names are unique, counters end in _total, labels are
// named, and the runbook's names are there exactly.
func TestMetricTable(t *testing.T) {
	seen := map[string]bool{}
	for _, m := range Metrics() {
		if seen[m.Name] || !strings.HasPrefix(m.Name, "flux_") || m.Help == "" {
			t.Errorf("%+v: duplicate, unprefixed or without help", m)
		}
		seen[m.Name] = true
		if (m.Type == MetricCounter) != strings.HasSuffix(m.Name, "_total") {
			t.Errorf("%s is a %v", m.Name, m.Type)
		}
		for _, l := range m.Labels {
			if l == "" || strings.HasPrefix(l, "__") {
				t.Errorf("%s has label %q", m.Name, l)
			}
		}
		if got, ok := MetricByName(m.Name); !ok || got.Name != m.Name {
			t.Errorf("MetricByName(%s) = %+v, %v", m.Name, got, ok)
		}
	}
	for name, labels := range map[string]string{
		"flux_reconcile_duration_seconds": "", "flux_scheduler_decisions_total": "outcome", "flux_api_errors_total": "route,code",
		"flux_queue_depth": "", "flux_queue_oldest_task_age": "", "flux_domain_failure_rate": "domain", "flux_agent_connected": "agent,domain",
	} {
		m, ok := MetricByName(name)
		if !ok || strings.Join(m.Labels, ",") != labels {
			t.Errorf("runbook metric %s: %+v, %v; want labels %q", name, m, ok, labels)
		}
	}
	if _, ok := MetricByName("flux_nope"); ok {
		t.Error("MetricByName found an unknown metric")
	}
}
