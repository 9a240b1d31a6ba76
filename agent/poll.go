package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/fluxforge/fluxforge/core"
	fnet "github.com/fluxforge/fluxforge/net"
)

// Bounds on what the agent takes from the cp.
const taskIDMax = 256

// pollLoop long-polls the cp for the agent's assignments and cancels (the
// agent dials in; nothing connects to it): each poll carries the Inbox
// cursor and the acks of the assignments of the last batch; each new
// message goes to the core at once, the loop is woken, and the next poll
// follows at once. On error it backs off (100ms doubling up to the
// heartbeat interval) and polls again with the same cursor and acks.
func (d *Daemon) pollLoop(ctx context.Context) {
	var (
		in      fnet.Inbox
		acks    []core.AssignAck
		backoff time.Duration
	)
	for ctx.Err() == nil {
		wait := d.opts.PollWait
		pctx, cancel := context.WithTimeout(ctx, wait+pollSlack)
		reply, err := d.cp.Poll(pctx, fnet.PollRequest{AgentID: d.opts.ID, Incarnation: d.opts.Incarnation,
			Epoch: in.Epoch, After: in.After, Acks: acks, WaitMillis: wait.Milliseconds()})
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			d.pollFailed(err)
			d.mu.Lock()
			limit := d.core.HeartbeatInterval()
			d.mu.Unlock()
			backoff = min(max(2*backoff, pollBackoffMin), max(limit, pollBackoffMin))
			t := d.clock.Timer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		backoff = 0
		d.metrics.polls.WithLabelValues("ok").Inc()
		if d.pollFailing {
			d.pollFailing = false
			d.log.Info("poll reached the cp again", "cp", d.cp.CPs.Current())
		}
		if reply.Dropped > 0 {
			d.log.Warn("cp dropped messages for this agent: its mailbox was full", "dropped", reply.Dropped)
		}
		acks = d.take(in.Accept(*reply))
	}
}

// pollFailed counts and logs a failed poll as a heartbeat failure is
// logged: a warning once when the cp becomes unreachable, then quiet.
func (d *Daemon) pollFailed(err error) {
	d.metrics.polls.WithLabelValues("error").Inc()
	var se *fnet.StatusError
	switch {
	case errors.As(err, &se) && se.Status == http.StatusUnauthorized:
		d.log.Error("cp refused the agent token", "error", err)
	case !d.pollFailing:
		d.log.Warn("poll failed: cp unreachable", "error", err)
	default:
		d.log.Debug("poll failed", "error", err)
	}
	d.pollFailing = true
}

// take hands the cp's new messages to the core, in order, and returns the
// acks of the assignments among them for the next poll.
func (d *Daemon) take(msgs []fnet.PollMessage) []core.AssignAck {
	if len(msgs) == 0 {
		return nil
	}
	acks := make([]core.AssignAck, 0, len(msgs))
	now := d.clock.Now()
	d.mu.Lock()
	for _, m := range msgs {
		switch {
		case m.Assign != nil:
			if ack, ok := d.assign(now, *m.Assign); ok {
				acks = append(acks, ack)
			}
		case m.Cancel != nil:
			d.cancel(now, *m.Cancel)
		}
	}
	d.mu.Unlock()
	d.wake() // a deadline may be the next wake-up; a cancel makes a result
	return acks
}

// assign gives one assignment to the core and returns its ack; a malformed
// one (the cp never sends it) is logged and gets none. Caller holds d.mu.
func (d *Daemon) assign(now time.Time, as core.Assign) (core.AssignAck, bool) {
	if as.TaskID == "" || len(as.TaskID) > taskIDMax || as.Attempt < 1 {
		d.log.Warn("assignment ignored: malformed", "task_id", truncateID(as.TaskID), "attempt", as.Attempt,
			"want", fmt.Sprintf("task_id of 1-%d bytes and attempt >= 1", taskIDMax))
		return core.AssignAck{}, false
	}
	ack := d.core.Assign(now, as)
	if ack.Accepted {
		d.log.Debug("task assigned", "task_id", string(as.TaskID), "attempt", as.Attempt, "kind", as.Spec.Kind)
	} else {
		d.log.Info("assignment rejected", "task_id", string(as.TaskID), "attempt", as.Attempt, "reason", ack.Reason)
	}
	return ack, true
}

// cancel gives one cancel to the core. Caller holds d.mu.
func (d *Daemon) cancel(now time.Time, c core.CancelTask) {
	if c.TaskID == "" || len(c.TaskID) > taskIDMax || c.Attempt < 1 {
		d.log.Warn("cancel ignored: malformed", "task_id", truncateID(c.TaskID), "attempt", c.Attempt)
		return
	}
	d.core.Cancel(now, c)
	d.log.Info("task cancelled by cp", "task_id", string(c.TaskID), "attempt", c.Attempt, "reason", c.Reason)
}

func truncateID(id core.TaskID) string {
	if len(id) > taskIDMax {
		return string(id[:taskIDMax]) + "…"
	}
	return string(id)
}
