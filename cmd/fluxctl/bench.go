package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// loadResult is what one load run measured.
type loadResult struct {
	Requests  int
	Status    map[int]int
	Errors    int // transport errors
	Elapsed   time.Duration
	PerSecond float64
	P50, P90  time.Duration
	P99, Max  time.Duration
}

// loadOptions configure a load run: N submissions of body over C
// concurrent keep-alive connections.
type loadOptions struct {
	URL         string
	Token       string
	N           int
	Concurrency int
	Body        []byte
	// Keys gives every submission its own Idempotency-Key (the cache is
	// exercised as it is in production).
	Keys bool
	// TLS is the client config for an https URL (nil: the defaults).
	TLS *tls.Config
}

// submitLoad fires opts.N submissions at opts.URL/v1/tasks and measures
// latency (per request, wall clock) and throughput.
func submitLoad(ctx context.Context, opts loadOptions) loadResult {
	tr := &http.Transport{MaxIdleConns: opts.Concurrency, MaxIdleConnsPerHost: opts.Concurrency, MaxConnsPerHost: opts.Concurrency,
		IdleConnTimeout: time.Minute, DisableCompression: true, TLSClientConfig: opts.TLS}
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	defer tr.CloseIdleConnections()
	url := strings.TrimRight(opts.URL, "/") + "/v1/tasks"
	lat := make([]time.Duration, opts.N)
	status := make([]int, opts.N)
	var next atomic.Int64
	var errs atomic.Int64
	runID := time.Now().UnixNano()
	start := time.Now()
	var wg sync.WaitGroup
	for range opts.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= opts.N || ctx.Err() != nil {
					return
				}
				req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(opts.Body))
				if err != nil {
					errs.Add(1)
					continue
				}
				req.Header.Set("Content-Type", "application/json")
				if opts.Token != "" {
					req.Header.Set("Authorization", "Bearer "+opts.Token)
				}
				if opts.Keys {
					req.Header.Set("Idempotency-Key", fmt.Sprintf("bench-%d-%d", runID, i))
				}
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					errs.Add(1)
					status[i] = -1
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				lat[i] = time.Since(t0)
				status[i] = resp.StatusCode
			}
		}()
	}
	wg.Wait()
	res := loadResult{Elapsed: time.Since(start), Status: map[int]int{}, Errors: int(errs.Load())}
	var ok []time.Duration
	for i, st := range status {
		if st == 0 { // never sent (cancelled)
			continue
		}
		res.Requests++
		if st > 0 {
			res.Status[st]++
			ok = append(ok, lat[i])
		}
	}
	if len(ok) > 0 {
		slices.Sort(ok)
		res.P50, res.P90, res.P99, res.Max = quantile(ok, 0.50), quantile(ok, 0.90), quantile(ok, 0.99), ok[len(ok)-1]
	}
	if res.Elapsed > 0 {
		res.PerSecond = float64(res.Requests) / res.Elapsed.Seconds()
	}
	return res
}

func (r loadResult) String() string {
	var codes []string
	keys := make([]int, 0, len(r.Status))
	for k := range r.Status {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		codes = append(codes, fmt.Sprintf("%d×%d", r.Status[k], k))
	}
	return fmt.Sprintf("%d submissions in %v: %.0f/s; latency p50 %v p90 %v p99 %v max %v; status %s; transport errors %d",
		r.Requests, r.Elapsed.Round(time.Millisecond), r.PerSecond, r.P50.Round(time.Microsecond), r.P90.Round(time.Microsecond),
		r.P99.Round(time.Microsecond), r.Max.Round(time.Microsecond), strings.Join(codes, " "), r.Errors)
}

func (c *cli) bench(args []string) error {
	if len(args) > 0 && args[0] == "disk" {
		return c.benchDisk(args[1:])
	}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	n := fs.Int("n", 10000, "submissions to send")
	conc := fs.Int("c", 16, "concurrent keep-alive connections")
	sleep := fs.Duration("sleep", 0, "each task sleeps this long")
	keys := fs.Bool("keys", false, "give every submission its own Idempotency-Key")
	priority := fs.String("priority", "normal", "priority of the submitted tasks")
	if _, err := c.parse(fs, args, 0); err != nil {
		return err
	}
	if *n < 1 || *conc < 1 || *conc > 4096 {
		return usagef("-n must be >= 1 and -c in [1,4096]")
	}
	body := fmt.Appendf(nil, `{"kind":"sleep","duration_ms":%d,"priority":%q}`, sleep.Milliseconds(), *priority)
	tlsCfg, err := c.tlsConfig()
	if err != nil {
		return err
	}
	res := submitLoad(context.Background(), loadOptions{URL: c.cpURL, Token: c.token, N: *n, Concurrency: *conc, Body: body, Keys: *keys, TLS: tlsCfg})
	if c.output == "json" {
		return writeJSON(c.stdout, map[string]any{
			"requests": res.Requests, "elapsed_seconds": res.Elapsed.Seconds(), "per_second": res.PerSecond,
			"p50_ms": ms(res.P50), "p90_ms": ms(res.P90), "p99_ms": ms(res.P99), "max_ms": ms(res.Max),
			"status": res.Status, "transport_errors": res.Errors,
		})
	}
	fmt.Fprintln(c.stdout, res)
	if res.Status[http.StatusTooManyRequests] > 0 {
		fmt.Fprintln(c.stdout, "note: 429s mean the queue filled (no or too few agents); raise -queue-capacity or run agents")
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// quantile is the q-quantile of sorted, which is not empty.
func quantile(sorted []time.Duration, q float64) time.Duration {
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}
