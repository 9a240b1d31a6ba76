package core

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkSubmitLargeQueue measures applying one submission while every
// slot is busy and the queue already holds queued tasks: the per-submit
// cost must not grow with the queue (peerbench's enqueue runs at a queue
// of tens of thousands).
//
//	go test -run '^$' -bench SubmitLargeQueue ./core/
func BenchmarkSubmitLargeQueue(b *testing.B) {
	for _, queued := range []int{0, 10_000, 50_000} {
		b.Run(fmt.Sprintf("queued=%d", queued), func(b *testing.B) {
			t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			cfg := DefaultConfig()
			cfg.TasksMax, cfg.QueueCapacity = 2_000_000, 2_000_000
			cfg.TimelineEventsMax = 1000
			cp, err := NewControlPlane(cfg, t0)
			if err != nil {
				b.Fatal(err)
			}
			for i := range 4 {
				if _, err := cp.Apply(t0, HeartbeatInput{AgentID: AgentID(fmt.Sprintf("agent-%d", i)),
					Domain: fmt.Sprintf("zone-%d", i), Slots: 25, Incarnation: 1, Seq: 1}); err != nil {
					b.Fatal(err)
				}
			}
			spec := TaskSpec{Kind: KindSleep, TimeoutSeconds: 60, MaxAttempts: 3}
			for range 100 { // every slot busy
				if _, err := cp.Apply(t0, SubmitInput{Spec: spec}); err != nil {
					b.Fatal(err)
				}
			}
			cp.enqueueRaw(t0, queued, 0)
			now := t0
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				now = now.Add(time.Microsecond)
				if _, err := cp.Apply(now, SubmitInput{Spec: spec}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
