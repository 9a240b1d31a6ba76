package cp

import (
	"bytes"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fluxforge/fluxforge/net/tlsconf"
	"github.com/fluxforge/fluxforge/net/tlsconf/tlstest"
)

// BenchmarkSubmitTLS compares submissions per second and their p99 over
// TLS with plain HTTP, in the same run: each round serves a fresh
// in-memory cp on a real loopback listener, plain then TLS (TLS 1.3, the
// cp's reloadable config), and 16 keep-alive clients submit 4,000 tasks.
// It reports the median rates and p99s and the median of the rounds'
// tls/plain (the goal: >= 0.8); on a shared machine give it rounds.
//
//	go test -run '^$' -bench SubmitTLS -benchtime 9x ./cp/
func BenchmarkSubmitTLS(b *testing.B) {
	const tasks, clients = 4000, 16
	dir := b.TempDir()
	ca := tlstest.NewCA(b, "bench-ca")
	certFile, keyFile := ca.Issue(b, "cp-1", tlstest.Opts{}).WriteCert(b, dir, "cp")
	srvTLS, err := tlsconf.NewServer(certFile, keyFile, "")
	if err != nil {
		b.Fatal(err)
	}
	round := func(useTLS bool) (perSec float64, p99 time.Duration) {
		tc := startCP(b, false, func(o *Options) {
			o.Core.QueueCapacity, o.Core.TasksMax = tasks, 2*tasks
			o.Logger = nil
		})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		url := "http://" + ln.Addr().String()
		tr := &http.Transport{MaxIdleConns: clients, MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients, DisableCompression: true}
		if useTLS {
			ln = tlsconf.Listen(ln, srvTLS.Config())
			url = "https://" + ln.Addr().String()
			tr.TLSClientConfig = &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}
		}
		srv := &http.Server{Handler: tc.s.Handler(), ErrorLog: log.New(io.Discard, "", 0)}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		defer tr.CloseIdleConnections()
		hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
		lat := make([]time.Duration, tasks)
		body := []byte(`{"kind":"sleep","duration_ms":0}`)
		start := time.Now()
		var wg sync.WaitGroup
		for c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := c; i < tasks; i += clients {
					t0 := time.Now()
					resp, err := hc.Post(url+"/v1/tasks", "application/json", bytes.NewReader(body))
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					lat[i] = time.Since(t0)
					if resp.StatusCode != http.StatusCreated {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			}()
		}
		wg.Wait()
		elapsed := time.Since(start)
		slices.Sort(lat)
		return tasks / elapsed.Seconds(), lat[tasks*99/100]
	}
	var plain, secure []float64
	var plainP99, secureP99 []time.Duration
	b.ResetTimer()
	for range b.N {
		r, p := round(false)
		plain, plainP99 = append(plain, r), append(plainP99, p)
		r, p = round(true)
		secure, secureP99 = append(secure, r), append(secureP99, p)
	}
	b.StopTimer()
	med := func(v []float64) float64 { v = slices.Clone(v); slices.Sort(v); return v[len(v)/2] }
	medD := func(v []time.Duration) time.Duration { v = slices.Clone(v); slices.Sort(v); return v[len(v)/2] }
	b.ReportMetric(med(plain), "plain-submits/s")
	b.ReportMetric(med(secure), "tls-submits/s")
	ratios := make([]float64, len(plain))
	for i := range plain {
		ratios[i] = secure[i] / plain[i] // the two halves of one round share the machine's load
	}
	b.ReportMetric(med(ratios), "tls/plain")
	b.ReportMetric(float64(medD(plainP99).Microseconds()), "plain-p99-µs")
	b.ReportMetric(float64(medD(secureP99).Microseconds()), "tls-p99-µs")
	b.ReportMetric(0, "ns/op")
}
