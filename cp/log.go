package cp

import (
	"context"
	"log/slog"

	"github.com/fluxforge/fluxforge/core"
)

// logEvent writes one timeline event, its type (task.assigned,
// agent.disconnected, mode.changed, ...) as the message. Health quarantines
// are logged at WARN with the runbook's exact message
// (core.QuarantineLogLine) and the agent's score; other events at a level
// that matches how much an operator should care. Called from the FSM's Apply
// (c is its core), so events are logged in timeline order.
func (s *Server) logEvent(c *core.ControlPlane, e core.Event) {
	level, msg := eventLevel(e), string(e.Type)
	if !s.log.Enabled(context.Background(), level) {
		return
	}
	attrs := make([]slog.Attr, 0, 13)
	attrs = append(attrs, slog.Uint64("seq", e.Seq), slog.String("type", string(e.Type)), slog.String("actor", e.Actor))
	if e.By != "" {
		attrs = append(attrs, slog.String("by", e.By))
	}
	if e.Cause != "" {
		attrs = append(attrs, slog.String("cause", string(e.Cause)))
	}
	if e.HealthQuarantine() {
		msg = core.QuarantineLogLine
		if v, ok := c.Agent(e.AgentID); ok {
			// The score that triggered the quarantine: core keeps it until
			// the next health evaluation.
			attrs = append(attrs, slog.Float64("score", v.Health.Score),
				slog.Float64("heartbeat", v.Health.Heartbeat), slog.Float64("success", v.Health.Success),
				slog.Int("flaps", v.Health.FlapCount), slog.Float64("latency", v.Health.Latency))
		}
	}
	if e.TaskID != "" {
		attrs = append(attrs, slog.String("task_id", string(e.TaskID)))
	}
	if e.AgentID != "" {
		attrs = append(attrs, slog.String("agent_id", string(e.AgentID)))
	}
	if e.Domain != "" {
		attrs = append(attrs, slog.String("domain", e.Domain))
	}
	if e.Attempt != 0 {
		attrs = append(attrs, slog.Int("attempt", e.Attempt))
	}
	if e.From != "" {
		attrs = append(attrs, slog.String("from", e.From))
	}
	if e.To != "" {
		attrs = append(attrs, slog.String("to", e.To))
	}
	if e.Count != 0 {
		attrs = append(attrs, slog.Int("count", e.Count))
	}
	if e.Reason != "" {
		attrs = append(attrs, slog.String("reason", e.Reason))
	}
	s.log.LogAttrs(context.Background(), level, msg, attrs...)
}

func eventLevel(e core.Event) slog.Level {
	switch e.Type {
	case core.EventAgentQuarantined, core.EventAgentDisconnected, core.EventAgentLost, core.EventTaskDead, core.EventTaskFailed,
		core.EventDomainThrottled, core.EventDomainIsolated, core.EventDomainPanic, core.EventSchedulerReschedulingPaused,
		core.EventQueuePurged:
		return slog.LevelWarn
	case core.EventModeChanged:
		if e.To != string(core.ModeNormal) {
			return slog.LevelWarn
		}
		return slog.LevelInfo
	}
	switch e.Kind {
	case core.EventTask:
		return slog.LevelDebug
	}
	return slog.LevelInfo
}
