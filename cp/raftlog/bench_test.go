package raftlog

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countFSM counts entries; the benchmark measures the log, not the FSM.
type countFSM struct{ n atomic.Uint64 }

func (f *countFSM) Apply(uint64, []byte) any  { return f.n.Add(1) }
func (f *countFSM) Snapshot() ([]byte, error) { return fmt.Appendf(nil, "%d", f.n.Load()), nil }
func (f *countFSM) Restore(io.Reader) error   { return nil }

// BenchmarkPropose measures Propose with 300-byte entries, fsync on, on the
// disk of the test's temp dir, at 1, 16 and 64 concurrent proposers (raft
// commits concurrent proposals as one batch and one fsync). It reports
// proposals/s and the p50/p99 latency of one Propose. The store under test is
// whichever store_*.go this build has (see storeName); to measure the other
// one, see testdata/bench-boltdb.sh.
//
//	go test -run '^$' -bench Propose -benchtime 2000x ./cp/raftlog/
func BenchmarkPropose(b *testing.B) {
	entry := make([]byte, 300)
	for i := range entry {
		entry[i] = byte('a' + i%26)
	}
	for _, conc := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("store=%s/conc=%d", storeName, conc), func(b *testing.B) {
			n, err := Open(Options{FSM: &countFSM{}, Dir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			defer n.Close()
			latencies := make([]time.Duration, b.N)
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for range conc {
				wg.Go(func() {
					for {
						i := next.Add(1) - 1
						if i >= int64(b.N) {
							return
						}
						t0 := time.Now()
						if _, _, err := n.Propose(context.Background(), entry); err != nil {
							b.Error(err)
							return
						}
						latencies[i] = time.Since(t0)
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			slices.Sort(latencies)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "proposals/s")
			b.ReportMetric(float64(latencies[len(latencies)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(latencies[len(latencies)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}
