package cp

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/fluxforge/fluxforge/core"
)

// Group commit. Heartbeats are the bulk of the log (10,000 agents at a 5s
// interval are 2,000 a second), so the inputs that arrive while an entry is
// being made durable wait together and go to the log as one entry: a
// version 2 batch (see logEntry), applied in order, each input at its own
// stamped time and with its own result. Nothing waits on a timer: an input
// that finds no entry in flight is proposed at once (alone, as a version 1
// entry); one that finds an entry in flight joins the next one, proposed
// as soon as the one in flight is done. So a batch is whatever was waiting,
// and an input waits at most for the entry in flight plus its own. The
// inputs of one batch submit (POST /v1/batch/tasks) are proposed as one
// group: always in the same entry, side by side.
//
// Every proposal of a Server goes through its batcher, so the log's order
// is the order in which inputs were stamped, and stamps never go back.

// Bounds on one batch entry: raft's own batching of concurrent appends
// takes up to 64 entries at a time; a batch entry is bounded by count and
// by bytes so that no entry grows without bound (a submission's body may be
// up to APIBodyBytesMax). The inputs of one batch submit are never split:
// a batch over these bounds (up to BatchTasksMax tasks, BatchBodyBytesMax
// bytes) is an entry of its own.
const (
	batchInputsMax = 512
	batchBytesMax  = 1 << 20
)

// call is one proposal waiting for its entry: one input, or the inputs of
// one batch submit, which go to the same entry side by side (a call is
// never split across entries nor interleaved with another's inputs).
type call struct {
	envs []core.Envelope
	size int
	res  []applied
	err  error
	done chan struct{}
}

// batcher groups the inputs proposed while an entry is in flight.
type batcher struct {
	s *Server

	wg       sync.WaitGroup // the run goroutine; Server.Close waits for it
	mu       sync.Mutex
	pending  []*call
	inFlight bool
	last     time.Time // the newest stamp given
	off      bool      // tests and benchmarks: one entry per proposal (a batch submit's inputs stay together), no batching
}

// proposeAll stamps ins, waits for their entry to be durable and applied,
// and returns their results. The context bounds the wait only: once
// queued, an input may still be applied after its caller gave up (as with
// any timed-out replicated write). The inputs go to the log together: all
// in one entry, one after the other with no other input between them,
// each stamped with the same time and with its own result, in order. A
// group larger than an entry's bounds takes an entry of its own.
func (b *batcher) proposeAll(ctx context.Context, ins []core.Input) ([]applied, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(ins) == 0 {
		return nil, nil
	}
	c := &call{envs: make([]core.Envelope, len(ins)), done: make(chan struct{})}
	for i, in := range ins {
		c.envs[i] = core.Wrap(time.Time{}, in)
		c.size += len(c.envs[i].Body) + len(c.envs[i].Kind) + 64
	}
	floor := b.s.fsm.stamp(b.s.clock.Now())
	b.mu.Lock()
	if floor.Before(b.last) {
		floor = b.last
	}
	b.last = floor
	for i := range c.envs {
		c.envs[i].At = floor
	}
	b.pending = append(b.pending, c)
	if !b.inFlight {
		b.inFlight = true
		b.wg.Add(1)
		go b.run()
	}
	b.mu.Unlock()
	select {
	case <-c.done:
		return c.res, c.err
	case <-ctx.Done():
		return nil, fmt.Errorf("cp: propose: %w", ctx.Err())
	}
}

// run proposes the waiting inputs, one entry at a time, until none wait.
func (b *batcher) run() {
	defer b.wg.Done()
	for {
		b.mu.Lock()
		batch := b.take()
		if len(batch) == 0 {
			b.inFlight = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		b.commit(batch)
	}
}

// take removes the next entry's calls from pending (b.mu held). The first
// call is always taken, whatever its size; the others while the entry
// stays within its bounds.
func (b *batcher) take() []*call {
	n, inputs, bytes := 0, 0, 0
	for n < len(b.pending) {
		c := b.pending[n]
		if b.off && n == 1 {
			break
		}
		if n > 0 && (inputs+len(c.envs) > batchInputsMax || bytes+c.size > batchBytesMax) {
			break
		}
		inputs += len(c.envs)
		bytes += c.size
		n++
	}
	batch := b.pending[:n:n]
	if n == len(b.pending) {
		b.pending = nil
	} else {
		b.pending = b.pending[n:]
	}
	return batch
}

// commit writes batch as one entry and hands each input its result.
func (b *batcher) commit(batch []*call) {
	var envs []core.Envelope
	for _, c := range batch {
		envs = append(envs, c.envs...)
	}
	results, err := b.s.commit(envs)
	off := 0
	for _, c := range batch {
		if err == nil {
			c.res = results[off : off+len(c.envs) : off+len(c.envs)]
		}
		off += len(c.envs)
		c.err = err
		close(c.done)
	}
}

// commit proposes envs as one log entry and returns one result per input.
// The error is the log's: none of them is acknowledged.
func (s *Server) commit(envs []core.Envelope) ([]applied, error) {
	entry, err := encodeBatch(envs)
	if err != nil {
		return nil, fmt.Errorf("cp: encode a log entry: %w", err)
	}
	start := time.Now()
	res, _, err := s.node.Propose(context.Background(), entry)
	s.metrics.proposal.Observe(time.Since(start).Seconds())
	s.metrics.batchInputs.Observe(float64(len(envs)))
	if err != nil {
		return nil, err
	}
	switch r := res.(type) {
	case applied:
		if len(envs) == 1 {
			return []applied{r}, nil
		}
		// The whole entry was refused (the state machine had stopped).
		out := make([]applied, len(envs))
		for i := range out {
			out[i] = r
		}
		return out, nil
	case []applied:
		if len(r) == len(envs) {
			return r, nil
		}
	}
	return nil, fmt.Errorf("cp: log entry result %T does not match its %d inputs", res, len(envs))
}
