package cp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/fluxforge/fluxforge/core"
	fnet "github.com/fluxforge/fluxforge/net"
)

// deliveryQueues hold the messages for agents: one FIFO per agent, drained
// by one sender goroutine per agent while it has messages, so messages to an
// agent keep their order (an assign before its cancel) and a slow or
// black-holed agent delays only its own messages. A semaphore of
// DeliveryWorkers bounds the sends in flight across all agents.
type deliveryQueues struct {
	mu      sync.Mutex
	ctx     context.Context // of Run; nil while not running
	wg      sync.WaitGroup  // sender goroutines
	total   int             // messages queued over all agents
	agents  map[core.AgentID]*agentQueue
	sending chan struct{} // semaphore: sends in flight
}

type agentQueue struct {
	msgs   []core.Outbound
	active bool // a sender goroutine drains it
}

func newDeliveryQueues(workers int) *deliveryQueues {
	return &deliveryQueues{agents: map[core.AgentID]*agentQueue{}, sending: make(chan struct{}, workers)}
}

// queued is how many messages wait, over all agents.
func (d *deliveryQueues) queued() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.total
}

// enqueue hands m to its agent's queue without blocking. Beyond
// DeliveryQueueMax messages in all, or DeliveryQueuePerAgentMax for the
// agent, the message is dropped and counted: an undelivered assignment is
// requeued by the core after AssignTimeout, and an undelivered cancel is
// repeated in the reply to the agent's next heartbeat that still reports the
// attempt.
func (s *Server) enqueue(m core.Outbound) {
	d := s.delivery
	d.mu.Lock()
	q := d.agents[m.To]
	if q == nil {
		q = &agentQueue{}
		d.agents[m.To] = q
	}
	if d.total >= s.opts.DeliveryQueueMax || len(q.msgs) >= s.opts.DeliveryQueuePerAgentMax {
		if len(q.msgs) == 0 && !q.active {
			delete(d.agents, m.To)
		}
		d.mu.Unlock()
		s.metrics.deliveryDropped.WithLabelValues(kindOf(m)).Inc()
		s.log.Warn("agent message dropped: delivery queue full", "agent_id", string(m.To), "kind", kindOf(m),
			"delivery_queue_max", s.opts.DeliveryQueueMax, "delivery_queue_per_agent_max", s.opts.DeliveryQueuePerAgentMax)
		return
	}
	q.msgs = append(q.msgs, m)
	d.total++
	ctx := d.ctx
	start := ctx != nil && !q.active
	if start {
		q.active = true
		d.wg.Add(1)
	}
	d.mu.Unlock()
	if start {
		go s.sendLoop(ctx, m.To)
	}
}

// startDelivery lets senders run under ctx and starts one for every agent
// with queued messages.
func (s *Server) startDelivery(ctx context.Context) {
	d := s.delivery
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ctx = ctx
	for id, q := range d.agents {
		if len(q.msgs) > 0 && !q.active {
			q.active = true
			d.wg.Add(1)
			go s.sendLoop(ctx, id)
		}
	}
}

// stopDelivery waits for the senders, which stop once ctx is done. Messages
// still queued stay queued for a later Run.
func (s *Server) stopDelivery() {
	d := s.delivery
	d.mu.Lock()
	d.ctx = nil // no new senders from here on
	d.mu.Unlock()
	d.wg.Wait()
}

// sendLoop drains agent id's queue in order, then exits.
func (s *Server) sendLoop(ctx context.Context, id core.AgentID) {
	d := s.delivery
	defer d.wg.Done()
	for {
		d.mu.Lock()
		q := d.agents[id]
		if ctx.Err() != nil || len(q.msgs) == 0 {
			q.active = false
			if len(q.msgs) == 0 {
				delete(d.agents, id)
			}
			d.mu.Unlock()
			return
		}
		m := q.msgs[0]
		q.msgs[0] = core.Outbound{}
		q.msgs = q.msgs[1:]
		d.total--
		d.mu.Unlock()
		select {
		case d.sending <- struct{}{}:
		case <-ctx.Done():
			continue // dropped with the rest at shutdown
		}
		s.deliver(ctx, m)
		<-d.sending
	}
}

func kindOf(m core.Outbound) string {
	if m.Assign != nil {
		return string(fnet.KindAssign)
	}
	return string(fnet.KindCancel)
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
			if _, err := s.propose(context.Background(), refusal); err != nil {
				s.log.Warn("assignment refusal not applied", "agent_id", string(m.To), "task_id", string(refusal.TaskID), "error", err.Error())
			}
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
	a, err := s.propose(context.Background(), ack)
	if err != nil {
		s.log.Warn("assignment ack not applied", "agent_id", string(m.To), "task_id", string(ack.TaskID), "error", err.Error())
		return
	}
	if ackErr := a.Err; ackErr != nil {
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
