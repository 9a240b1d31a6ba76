package sim

import (
	"math/rand/v2"
	"testing"
	"time"
)

// BenchmarkEventQueue is the simulator's steady state: a few thousand
// events queued, one popped and one pushed a little later per op.
func BenchmarkEventQueue(b *testing.B) {
	var q eventQueue
	r := rand.New(rand.NewPCG(1, 2))
	var seq uint64
	for range 3000 {
		seq++
		q.push(event{at: time.Duration(r.Int64N(int64(5 * time.Second))), seq: seq})
	}
	for b.Loop() {
		e := q.pop()
		seq++
		q.push(event{at: e.at + time.Duration(r.Int64N(int64(5*time.Second))), seq: seq, kind: evDeliver})
	}
}
