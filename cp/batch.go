package cp

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/fluxforge/fluxforge/core"
	"github.com/fluxforge/fluxforge/cp/raftlog"
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
	then func([]applied, error) // see batcher.queue
}

// batcher groups the inputs proposed while an entry is in flight.
type batcher struct {
	s *Server

	wg      sync.WaitGroup // the run and complete goroutines; Server.Close waits for them
	mu      sync.Mutex
	cond    sync.Cond // L is &mu (set by New); signalled when an input waits or an entry is answered
	pending []*call
	flying  int       // entries proposed and not yet answered
	running bool      // the run goroutine is running
	last    time.Time // the newest stamp given
	off     bool      // tests and benchmarks: one entry per proposal (a batch submit's inputs stay together), no batching
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
	c := b.queue(ins, nil)
	if c == nil {
		return nil, nil
	}
	select {
	case <-c.done:
		return c.res, c.err
	case <-ctx.Done():
		return nil, fmt.Errorf("cp: propose: %w", ctx.Err())
	}
}

// queue stamps ins and queues them as one group for the next entry, and
// returns at once (nil for no inputs). then, when not nil, is called with
// their results (or the log's error) once the entry is answered, on the
// batcher's goroutine: it must not block.
func (b *batcher) queue(ins []core.Input, then func([]applied, error)) *call {
	if len(ins) == 0 {
		return nil
	}
	c := &call{envs: make([]core.Envelope, len(ins)), done: make(chan struct{}), then: then}
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
	if !b.running {
		b.running = true
		b.wg.Add(1)
		go b.run()
	} else {
		b.cond.Signal()
	}
	b.mu.Unlock()
	return c
}

// run proposes the waiting inputs until none wait and every entry it
// proposed is answered. At most entriesInFlightMax entries are in flight:
// one being made durable or applied (complete waits for it), the next
// queued in raft behind it, so applying one entry overlaps writing the
// next, and raft appends what queued together in one fsync. While the
// pipeline is full, arriving inputs wait together in pending and become
// the next entry.
func (b *batcher) run() {
	defer b.wg.Done()
	flights := make(chan flight, entriesInFlightMax)
	b.wg.Add(1)
	go b.complete(flights)
	defer close(flights)
	b.mu.Lock()
	for {
		switch {
		case len(b.pending) == 0 && b.flying == 0:
			b.running = false
			b.mu.Unlock()
			return
		case len(b.pending) == 0 || b.flying >= entriesInFlightMax:
			b.cond.Wait()
			continue
		}
		batch := b.take()
		b.flying++
		b.mu.Unlock()
		flights <- b.s.enqueueEntry(batch)
		b.mu.Lock()
	}
}

// entriesInFlightMax bounds the entries proposed and not yet answered.
const entriesInFlightMax = 2

// complete hands each entry's inputs their results, in the order the
// entries were proposed.
func (b *batcher) complete(flights <-chan flight) {
	defer b.wg.Done()
	for f := range flights {
		f.finish(b.s)
		b.mu.Lock()
		b.flying--
		b.cond.Signal()
		b.mu.Unlock()
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

// flight is one entry proposed and not yet answered: the calls whose
// inputs it carries, in order.
type flight struct {
	batch  []*call
	inputs int
	start  time.Time
	p      *raftlog.Pending
	err    error // the entry was not proposed
}

// enqueueEntry encodes batch as one log entry and hands it to raft.
func (s *Server) enqueueEntry(batch []*call) flight {
	var envs []core.Envelope
	for _, c := range batch {
		envs = append(envs, c.envs...)
	}
	f := flight{batch: batch, inputs: len(envs), start: time.Now()}
	entry, err := encodeBatch(envs)
	if err != nil {
		f.err = fmt.Errorf("cp: encode a log entry: %w", err)
		return f
	}
	f.p, f.err = s.node.Enqueue(context.Background(), entry)
	return f
}

// finish waits for the entry and hands each call its inputs' results.
func (f flight) finish(s *Server) {
	res, err := []applied(nil), f.err
	if err == nil {
		res, err = s.wait(f)
	}
	off := 0
	for _, c := range f.batch {
		if err == nil {
			c.res = res[off : off+len(c.envs) : off+len(c.envs)]
		}
		off += len(c.envs)
		c.err = err
		close(c.done)
		if c.then != nil {
			c.then(c.res, c.err)
		}
	}
}

// wait waits for the entry of f to be durable and applied and returns one
// result per input. The error is the log's: none of them is acknowledged.
func (s *Server) wait(f flight) ([]applied, error) {
	res, _, err := f.p.Wait(context.Background())
	s.metrics.proposal.Observe(time.Since(f.start).Seconds())
	s.metrics.batchInputs.Observe(float64(f.inputs))
	if err != nil {
		return nil, err
	}
	switch r := res.(type) {
	case applied:
		if f.inputs == 1 {
			return []applied{r}, nil
		}
		// The whole entry was refused (the state machine had stopped).
		out := make([]applied, f.inputs)
		for i := range out {
			out[i] = r
		}
		return out, nil
	case []applied:
		if len(r) == f.inputs {
			return r, nil
		}
	}
	return nil, fmt.Errorf("cp: log entry result %T does not match its %d inputs", res, f.inputs)
}
