package cp

import (
	"testing"
	"time"

	"github.com/fluxforge/fluxforge/core"
	"github.com/fluxforge/fluxforge/cp/timelinestore"
)

// lockRecorder is an fsmObserver that sums the write lock's hold times.
type lockRecorder struct {
	writes int
	held   time.Duration
}

func (r *lockRecorder) snapshotTaken(time.Duration, int) {}
func (r *lockRecorder) lockHeld(write bool, d time.Duration) {
	if write {
		r.writes++
		r.held += d
	}
}

// BenchmarkFSMApplyBatch applies log entries of 16 submits each (a group
// commit under single submits) to an FSM with a timeline store on disk, as
// a durable cp's raft FSM goroutine does, and reports the write lock's
// mean hold per entry beside the time per entry.
func BenchmarkFSMApplyBatch(b *testing.B) {
	rec := &lockRecorder{}
	f := newFSM(nil, rec)
	f.store = timelinestore.New(timelinestore.Options{Dir: b.TempDir()})
	defer f.store.Close()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg := core.DefaultConfig()
	cfg.QueueCapacity, cfg.TasksMax = 1<<20, 1<<21
	init, err := encodeInit(at, cfg)
	if err != nil {
		b.Fatal(err)
	}
	if r, ok := f.Apply(1, init).(applied); !ok || r.Err != nil {
		b.Fatalf("init: %+v", r)
	}
	const perEntry = 16
	envs := make([]core.Envelope, perEntry)
	for i := range envs {
		envs[i] = core.Wrap(at.Add(time.Duration(i)), core.SubmitInput{Spec: core.TaskSpec{Kind: core.KindSleep}})
	}
	entry, err := encodeBatch(envs)
	if err != nil {
		b.Fatal(err)
	}
	rec.writes, rec.held = 0, 0
	b.ResetTimer()
	index := uint64(2)
	for b.Loop() {
		res, ok := f.Apply(index, entry).([]applied)
		if !ok || len(res) != perEntry || res[0].Err != nil {
			b.Fatalf("entry %d: %+v", index, res)
		}
		index++
	}
	b.ReportMetric(float64(rec.held.Nanoseconds())/float64(max(rec.writes, 1)), "ns-write-lock/entry")
}
