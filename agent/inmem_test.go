package agent

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// handlerTransport is an http.RoundTripper that serves each request with a
// handler in the calling goroutine: no sockets, so a test can run in a
// testing/synctest bubble, where time is fake and synctest.Wait tells when
// every goroutine is idle.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	sr := r.Clone(r.Context())
	sr.RequestURI = r.URL.RequestURI()
	sr.RemoteAddr = "192.0.2.1:4321"
	if sr.Body == nil {
		sr.Body = http.NoBody
	}
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, sr)
	if err := r.Context().Err(); err != nil {
		return nil, err
	}
	return rec.Result(), nil
}

// startBubbleDaemon runs a daemon whose heartbeats go to cp in memory; call
// it inside synctest.Test. Its own API is reached with rd.request.
func startBubbleDaemon(t *testing.T, cp http.Handler, mutate func(*Options)) *runningDaemon {
	t.Helper()
	opts := Options{
		ID: "agent-1", Domain: "zone-a", Slots: 4, CPURL: "http://cp.test",
		Token: testToken, HeartbeatInterval: 20 * time.Millisecond, ShutdownGrace: 5 * time.Second, DrainTimeout: 5 * time.Second,
		HTTPClient: &http.Client{Transport: handlerTransport{cp}},
	}
	if mutate != nil {
		mutate(&opts)
	}
	d, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rd := &runningDaemon{Daemon: d, cancel: cancel, done: make(chan struct{}),
		base: "http://agent.test", client: &http.Client{Transport: handlerTransport{d.Handler()}}}
	go func() {
		defer close(rd.done)
		rd.err = d.Run(ctx)
	}()
	t.Cleanup(func() { rd.stop(t) })
	return rd
}
