package cp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/fluxforge/fluxforge/core"
	fnet "github.com/fluxforge/fluxforge/net"
)

// enqueue hands m to the delivery workers without blocking. A full queue
// drops the message and counts it: an undelivered assignment is requeued by
// the core after AssignTimeout, and an undelivered cancel is repeated in the
// reply to the agent's next heartbeat that still reports the attempt.
func (s *Server) enqueue(m core.Outbound) {
	select {
	case s.deliveries <- m:
	default:
		s.metrics.deliveryDropped.WithLabelValues(kindOf(m)).Inc()
		s.log.Warn("agent message dropped: delivery queue full", "agent_id", string(m.To), "kind", kindOf(m),
			"delivery_queue_max", s.opts.DeliveryQueueMax)
	}
}

func kindOf(m core.Outbound) string {
	if m.Assign != nil {
		return string(fnet.KindAssign)
	}
	return string(fnet.KindCancel)
}

func (s *Server) deliverLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-s.deliveries:
			s.deliver(ctx, m)
		}
	}
}

// deliver sends one message to its agent and feeds an assignment's ack back
// into the core. A failed assignment is left to the core's AssignTimeout (the
// agent may well have received it), so a transport error changes no state.
func (s *Server) deliver(ctx context.Context, m core.Outbound) {
	kind := kindOf(m)
	ctx, cancel := context.WithTimeout(ctx, s.opts.DeliveryTimeout)
	defer cancel()
	start := time.Now()
	reply, err := s.client.Do(ctx, fnet.Outbound(m))
	s.metrics.deliveryDuration.WithLabelValues(kind).Observe(time.Since(start).Seconds())
	if err != nil {
		result := "error"
		var se *fnet.StatusError
		if errors.As(err, &se) {
			result = "rejected"
		}
		s.metrics.deliveries.WithLabelValues(kind, result).Inc()
		task, attempt := leaseOf(m)
		s.log.Warn("agent message not delivered", "agent_id", string(m.To), "kind", kind,
			"task_id", string(task), "attempt", attempt, "address", m.Address, "error", err.Error())
		if m.Assign != nil && se != nil && refusedForGood(se.Status) {
			// The agent answered and will not take it (bad token, unknown
			// path, bad request): a refusal, so the task moves on now
			// rather than after AssignTimeout.
			refusal := core.AssignAck{AgentID: m.To, TaskID: m.Assign.TaskID, Attempt: m.Assign.Attempt,
				Reason: fmt.Sprintf("agent answered HTTP %d %s: %s", se.Status, se.Code, se.Msg)}
			s.withCore(func(c *core.ControlPlane, now time.Time) { _ = c.AssignAcked(now, refusal) })
		}
		return
	}
	s.metrics.deliveries.WithLabelValues(kind, "ok").Inc()
	if reply == nil || reply.AssignAck == nil {
		return
	}
	ack := *reply.AssignAck
	if ack.AgentID == "" {
		ack.AgentID = m.To
	}
	if ack.AgentID != m.To || ack.TaskID != m.Assign.TaskID || ack.Attempt != m.Assign.Attempt {
		s.log.Warn("assignment ack does not match the assignment", "agent_id", string(m.To),
			"task_id", string(m.Assign.TaskID), "attempt", m.Assign.Attempt,
			"ack_agent_id", string(ack.AgentID), "ack_task_id", string(ack.TaskID), "ack_attempt", ack.Attempt)
		return
	}
	var ackErr error
	s.withCore(func(c *core.ControlPlane, now time.Time) { ackErr = c.AssignAcked(now, ack) })
	if ackErr != nil {
		// The task was forgotten meanwhile (evicted): nothing to do.
		s.log.Debug("assignment ack ignored", "agent_id", string(m.To), "task_id", string(ack.TaskID), "error", ackErr.Error())
	}
}

func leaseOf(m core.Outbound) (core.TaskID, int) {
	if m.Assign != nil {
		return m.Assign.TaskID, m.Assign.Attempt
	}
	if m.Cancel != nil {
		return m.Cancel.TaskID, m.Cancel.Attempt
	}
	return "", 0
}

// refusedForGood reports whether an agent's HTTP status means it will not
// take the assignment however often it is sent. Timeouts, throttling and
// server errors may be transient (and the agent may have started the task),
// so they are left to the core's AssignTimeout.
func refusedForGood(status int) bool {
	return status >= 400 && status < 500 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests
}
