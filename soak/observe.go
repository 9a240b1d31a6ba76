package soak

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fluxforge/fluxforge/core"
	"github.com/fluxforge/fluxforge/cp"
)

// What a run observes from outside the cp: its timeline, its /metrics and
// this process's memory.

// timelineFollower polls GET /timeline and keeps every task event.
type timelineFollower struct {
	pollMu    sync.Mutex // one poll at a time: each reads and moves since
	mu        sync.Mutex
	since     uint64
	succeeded map[core.TaskID]int
	ended     map[core.TaskID]core.TaskState
	dropped   uint64
	// lastSucceeded is the cp's time of the latest SUCCEEDED event seen:
	// when a burn-down ended, to the cp's clock rather than to the poll.
	lastSucceeded time.Time
}

func (f *timelineFollower) poll(ctx context.Context, hc *http.Client, base string) error {
	f.pollMu.Lock()
	defer f.pollMu.Unlock()
	for {
		var page cp.TimelinePage
		if err := getJSON(ctx, hc, fmt.Sprintf("%s/timeline?since=%d&limit=10000", base, f.since), &page); err != nil {
			return err
		}
		f.mu.Lock()
		if len(page.Events) > 0 && page.Events[0].Seq > f.since+1 {
			f.dropped += page.Events[0].Seq - f.since - 1 // overwritten before this poll read them
		}
		for _, e := range page.Events {
			if e.Kind != core.EventTask {
				continue
			}
			st, err := core.ParseTaskState(e.To)
			if err != nil || !st.Terminal() {
				continue
			}
			f.ended[e.TaskID] = st
			if st == core.TaskSucceeded {
				f.succeeded[e.TaskID]++
				if e.Time.After(f.lastSucceeded) {
					f.lastSucceeded = e.Time
				}
			}
		}
		f.since = page.NextSince
		f.mu.Unlock()
		if len(page.Events) < 10000 {
			return nil
		}
	}
}

func getJSON(ctx context.Context, hc *http.Client, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// memSample is the process's heap after a GC and its goroutine count.
// With profile set, it writes the heap profile there too (go tool pprof
// -base start.pprof end.pprof shows what grew).
func memSample(profile string) (uint64, int, error) {
	runtime.GC()
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return 0, 0, err
		}
		err = pprof.Lookup("heap").WriteTo(f, 0)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return 0, 0, fmt.Errorf("soak: heap profile: %w", err)
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc, runtime.NumGoroutine(), nil
}

func getText(ctx context.Context, hc *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// histogramQuantile computes a quantile of a Prometheus histogram from its
// text exposition as histogram_quantile does (linear within a bucket), and
// returns it with the observation count.
func histogramQuantile(body, name string, q float64) (time.Duration, uint64) {
	type bucket struct{ le, n float64 }
	var bs []bucket
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name+`_bucket{le="`)
		if !ok {
			continue
		}
		leS, after, _ := strings.Cut(rest, `"}`)
		le, err1 := strconv.ParseFloat(leS, 64)
		n, err2 := strconv.ParseFloat(strings.TrimSpace(after), 64)
		if err1 == nil && err2 == nil {
			bs = append(bs, bucket{le, n})
		}
	}
	if len(bs) == 0 || bs[len(bs)-1].n == 0 {
		return 0, 0
	}
	total := bs[len(bs)-1].n
	rank := q * total
	prevLe, prevN := 0.0, 0.0
	for _, b := range bs {
		if b.n >= rank {
			if math.IsInf(b.le, 1) {
				return time.Duration(prevLe * float64(time.Second)), uint64(total)
			}
			frac := 0.0
			if b.n > prevN {
				frac = (rank - prevN) / (b.n - prevN)
			}
			return time.Duration((prevLe + frac*(b.le-prevLe)) * float64(time.Second)), uint64(total)
		}
		prevLe, prevN = b.le, b.n
	}
	return 0, uint64(total)
}

// counterByLabel sums a counter's samples by one label's value.
func counterByLabel(body, name, label string) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.HasPrefix(line, []byte(name+"{")) {
			continue
		}
		s := string(line)
		_, rest, _ := strings.Cut(s, label+`="`)
		val, _, _ := strings.Cut(rest, `"`)
		i := strings.LastIndexByte(s, ' ')
		n, err := strconv.ParseFloat(s[i+1:], 64)
		if err == nil {
			out[val] += n
		}
	}
	return out
}

// following is a timelineFollower polling every 200ms in the background.
type following struct {
	f    *timelineFollower
	stop context.CancelFunc
	done chan error // the poller's error, or nil once stopped
}

// followTimeline starts following the cp's timeline from the beginning.
func followTimeline(api *http.Client, cpURL string) *following {
	tl := &following{f: &timelineFollower{succeeded: map[core.TaskID]int{}, ended: map[core.TaskID]core.TaskState{}},
		done: make(chan error, 1)}
	ctx, stop := context.WithCancel(context.Background())
	tl.stop = stop
	go func() {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			if err := tl.f.poll(ctx, api, cpURL); err != nil && ctx.Err() == nil {
				tl.done <- err
				return
			}
			select {
			case <-ctx.Done():
				tl.done <- nil
				return
			case <-tick.C:
			}
		}
	}()
	return tl
}

// finish stops the poller and returns the error that stopped it early, if
// any.
func (tl *following) finish() error {
	tl.stop()
	return <-tl.done
}
