package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// bench disk: how long the disk under a cp's -data-dir takes to make a small
// append durable, the way the cp's log does for every entry (write, then
// fsync; raft-wal appends to a segment file and syncs it). Every write the
// cp acknowledges waits for one such sync, and a sync that stalls holds
// every write for as long as it stalls, so the slowest syncs, not the
// typical one, decide the cp's tail latency: a disk whose p99 is over 10 ms
// (etcd's published bound for the same kind of log) or that stalls for
// more than 50 ms gives submit→SUCCEEDED tails at least that long, however
// fast the cp is.

// Thresholds of the verdict.
const (
	diskP99Slow   = 10 * time.Millisecond
	diskStallSlow = 50 * time.Millisecond
)

// diskOptions configure a disk run: N appends of Size bytes, each followed
// by an fsync, Rate a second (0: back to back), in a file of its own in Dir
// that is removed afterwards.
type diskOptions struct {
	Dir  string
	N    int
	Size int
	Rate int
}

// diskResult is what one disk run measured, with the options it ran.
type diskResult struct {
	diskOptions
	Elapsed    time.Duration
	P50, P99   time.Duration
	P999, Max  time.Duration
	Over10ms   int
	Over50ms   int
	StallTotal time.Duration // the time spent in syncs over 50 ms
}

// slowBecause says which thresholds the disk misses (none: it is ok).
func (r diskResult) slowBecause() []string {
	var why []string
	if r.P99 > diskP99Slow {
		why = append(why, fmt.Sprintf("p99 %v is over %v", r.P99.Round(time.Microsecond), diskP99Slow))
	}
	if r.Max > diskStallSlow {
		why = append(why, fmt.Sprintf("%d sync(s) over %v, the longest %v", r.Over50ms, diskStallSlow, r.Max.Round(time.Millisecond)))
	}
	return why
}

func (r diskResult) verdict() string {
	if len(r.slowBecause()) > 0 {
		return "slow"
	}
	return "ok"
}

func (r diskResult) String() string {
	rate := "back to back"
	if r.Rate > 0 {
		rate = fmt.Sprintf("%d/s", r.Rate)
	}
	s := fmt.Sprintf("%d appends of %d B + fsync in %s over %v (%s): latency p50 %v p99 %v p99.9 %v max %v; %d over 10ms, %d over 50ms (%v in those)",
		r.N, r.Size, r.Dir, r.Elapsed.Round(time.Millisecond), rate, r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond),
		r.P999.Round(time.Microsecond), r.Max.Round(time.Microsecond), r.Over10ms, r.Over50ms, r.StallTotal.Round(time.Millisecond))
	if why := r.slowBecause(); len(why) > 0 {
		return s + "\nverdict: slow: " + strings.Join(why, "; ") +
			"; every write the cp acknowledges waits for a sync like these, so its tail latency cannot be lower than this disk's stalls"
	}
	return s + fmt.Sprintf("\nverdict: ok: p99 within %v and no sync over %v", diskP99Slow, diskStallSlow)
}

// diskLatency runs opts. sleep paces the writes (never called with Rate 0).
func diskLatency(opts diskOptions, sleep func(time.Duration)) (res diskResult, err error) {
	f, err := os.CreateTemp(opts.Dir, ".fluxctl-bench-disk-*")
	if err != nil {
		return res, err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if rerr := os.Remove(f.Name()); err == nil {
			err = rerr
		}
	}()
	buf := make([]byte, opts.Size)
	for i := range buf {
		buf[i] = byte('a' + i%26)
	}
	lat := make([]time.Duration, 0, opts.N)
	var every time.Duration
	if opts.Rate > 0 {
		every = time.Second / time.Duration(opts.Rate)
	}
	start := time.Now()
	for i := range opts.N {
		if every > 0 {
			if d := time.Until(start.Add(time.Duration(i) * every)); d > 0 {
				sleep(d)
			}
		}
		t := time.Now()
		if _, err := f.Write(buf); err != nil {
			return res, err
		}
		if err := f.Sync(); err != nil {
			return res, err
		}
		lat = append(lat, time.Since(t))
	}
	res = diskResult{diskOptions: opts, Elapsed: time.Since(start)}
	slices.Sort(lat)
	res.P50, res.P99, res.P999, res.Max = quantile(lat, 0.50), quantile(lat, 0.99), quantile(lat, 0.999), lat[len(lat)-1]
	for _, d := range lat {
		if d > 10*time.Millisecond {
			res.Over10ms++
		}
		if d > diskStallSlow {
			res.Over50ms++
			res.StallTotal += d
		}
	}
	return res, nil
}

func (c *cli) benchDisk(args []string) error {
	fs := flag.NewFlagSet("bench disk", flag.ContinueOnError)
	dir := fs.String("dir", "fluxforge-data", "directory to test: the cp's -data-dir, whose default this is (a file of its own is written there and removed)")
	n := fs.Int("n", 15000, "appends, each followed by an fsync")
	size := fs.Int("size", 512, "bytes per append (a log entry of a few tasks)")
	rate := fs.Int("rate", 500, "appends a second, as a busy cp commits entries (0: back to back)")
	if _, err := c.parse(fs, args, 0); err != nil {
		return err
	}
	switch {
	case *n < 1 || *n > 10_000_000:
		return usagef("-n %d must be in [1,10000000]", *n)
	case *size < 1 || *size > 1<<20:
		return usagef("-size %d must be in [1,1048576]", *size)
	case *rate < 0 || *rate > 1_000_000:
		return usagef("-rate %d must be in [0,1000000]", *rate)
	}
	st, err := os.Stat(*dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return usagef("-dir %s does not exist", *dir)
	case err != nil:
		return err
	case !st.IsDir():
		return usagef("-dir %s is not a directory", *dir)
	}
	res, err := diskLatency(diskOptions{Dir: *dir, N: *n, Size: *size, Rate: *rate}, time.Sleep)
	if err != nil {
		return fmt.Errorf("bench disk in %s: %w", *dir, err)
	}
	if c.output == "json" {
		return writeJSON(c.stdout, map[string]any{
			"dir": res.Dir, "writes": res.N, "bytes_per_write": res.Size, "rate": res.Rate, "elapsed_seconds": res.Elapsed.Seconds(),
			"p50_ms": ms(res.P50), "p99_ms": ms(res.P99), "p999_ms": ms(res.P999), "max_ms": ms(res.Max),
			"over_10ms": res.Over10ms, "over_50ms": res.Over50ms, "stall_ms": ms(res.StallTotal), "verdict": res.verdict(),
		})
	}
	fmt.Fprintln(c.stdout, res)
	return nil
}
