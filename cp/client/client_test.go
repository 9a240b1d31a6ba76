package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"go.uber.org/goleak"

	"github.com/fluxforge/fluxforge/core"
	"github.com/fluxforge/fluxforge/cp"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startCP serves a real control plane (mock clock, loops stopped) on
// loopback and returns a client of it.
func startCP(t *testing.T, adminToken string) (*cp.Server, string) {
	t.Helper()
	mock := clock.NewMock()
	mock.Set(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	s, err := cp.New(cp.Options{Clock: mock, Core: core.DefaultConfig(), AdminToken: adminToken})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return s, srv.URL
}

// serve answers every request with h and returns a client of it.
func serve(t *testing.T, h http.HandlerFunc) *Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c := New(srv.URL, "")
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func TestAgainstTheCP(t *testing.T) {
	_, url := startCP(t, "tok")
	c := New(url+"/", "tok") // a trailing slash is fine
	defer c.CloseIdleConnections()
	ctx := context.Background()

	sub, err := c.Submit(ctx, cp.SubmitRequest{Kind: core.KindSleep, DurationMS: 200, Domain: "zone-a", Priority: "high"}, "job-1")
	if err != nil {
		t.Fatal(err)
	}
	if sub.Status != http.StatusCreated || sub.Replayed() || sub.Value.ID != "t-000001" || sub.Value.State != core.TaskQueued ||
		sub.Value.Spec.Priority != core.PriorityHigh || sub.Value.Spec.DurationMS != 200 {
		t.Fatalf("submit: %d %+v", sub.Status, sub.Value)
	}
	if !strings.Contains(string(sub.Body), `"id":"t-000001"`) {
		t.Fatalf("raw body %s", sub.Body)
	}
	again, err := c.Submit(ctx, cp.SubmitRequest{Kind: core.KindSleep, DurationMS: 200, Domain: "zone-a", Priority: "high"}, "job-1")
	if err != nil || !again.Replayed() || again.Value.ID != sub.Value.ID {
		t.Fatalf("replay: %v %+v", err, again)
	}
	task, err := c.Task(ctx, sub.Value.ID)
	if err != nil || task.Value.IdempotencyKey != "job-1" || !strings.HasPrefix(task.Value.WaitingReason, core.DecisionNoCapacity) {
		t.Fatalf("task: %v %+v", err, task)
	}
	list, err := c.Tasks(ctx, TaskQuery{State: "QUEUED", Domain: "zone-a", Limit: 1})
	if err != nil || list.Value.Count != 1 || list.Value.NextAfter != "t-000001" {
		t.Fatalf("tasks: %v %+v", err, list)
	}
	snap, err := c.Snapshot(ctx)
	if err != nil || snap.Value.Mode != core.ModeNormal || snap.Value.QueueDepth != 1 {
		t.Fatalf("snapshot: %v %+v", err, snap)
	}
	mode, err := c.SetMode(ctx, cp.ModeRequest{Mode: "DRAINING", Reason: "upgrade"})
	if err != nil || mode.Value.Mode != core.ModeDraining || mode.Value.Reason != "upgrade" {
		t.Fatalf("set mode: %v %+v", err, mode)
	}
	if mode, err = c.Mode(ctx); err != nil || mode.Value.Mode != core.ModeDraining {
		t.Fatalf("mode: %v %+v", err, mode)
	}
	purged, err := c.Purge(ctx, cp.PurgeRequest{Domain: "zone-a", Reason: "test"})
	if err != nil || purged.Value.Purged != 1 || purged.Value.QueueDepth != 0 {
		t.Fatalf("purge: %v %+v", err, purged)
	}
	tl, err := c.Timeline(ctx, 0, 100)
	if err != nil || len(tl.Value.Events) == 0 || tl.Value.LastSeq != tl.Value.Events[len(tl.Value.Events)-1].Seq {
		t.Fatalf("timeline: %v %+v", err, tl)
	}
	if agents, err := c.Agents(ctx); err != nil || agents.Value.Count != 0 {
		t.Fatalf("agents: %v %+v", err, agents)
	}

	// Errors come back as *Error with the cp's code and message.
	var ae *Error
	if _, err := c.Agent(ctx, "nope"); !errors.As(err, &ae) || ae.Status != 404 || ae.Code != "not_found" || !strings.Contains(ae.Message, `"nope"`) {
		t.Fatalf("agent nope: %v", err)
	}
	if _, err := c.Cancel(ctx, sub.Value.ID, "again"); !errors.As(err, &ae) || ae.Status != 409 || ae.Code != "conflict" {
		t.Fatalf("cancel a purged task: %v", err)
	}
	if _, err := c.Quarantine(ctx, "nope", ""); !errors.As(err, &ae) || ae.Code != "not_found" {
		t.Fatalf("quarantine nope: %v", err)
	}
	_, err = c.Submit(ctx, cp.SubmitRequest{Kind: core.KindSleep}, "")
	if !errors.As(err, &ae) || ae.Status != 503 || ae.Code != "mode_refused" || ae.RetryAfter != "30" {
		t.Fatalf("submit while draining: %v", err)
	}
	if !strings.HasPrefix(err.Error(), "HTTP 503 mode_refused: ") || !strings.HasSuffix(err.Error(), " (retry after 30s)") {
		t.Fatalf("error text %q", err)
	}
	noToken := New(url, "")
	defer noToken.CloseIdleConnections()
	if _, err := noToken.Mode(ctx); !errors.As(err, &ae) || ae.Status != 401 || ae.Code != "unauthorized" {
		t.Fatalf("mode without the token: %v", err)
	}
	if _, err := noToken.Release(ctx, "x", ""); !errors.As(err, &ae) || ae.Status != 401 {
		t.Fatalf("release without the token: %v", err)
	}
}

func TestErrorBodies(t *testing.T) {
	tests := []struct {
		name              string
		status            int
		retryAfter, body  string
		wantCode, wantMsg string
		wantText          string
	}{
		{"the cp's JSON error", 429, "5", `{"error":"queue_full","message":"queue at capacity"}`,
			"queue_full", "queue at capacity", "HTTP 429 queue_full: queue at capacity (retry after 5s)"},
		{"plain text from a proxy", 502, "", "upstream connect error\n",
			"Bad Gateway", "upstream connect error", "HTTP 502 Bad Gateway: upstream connect error"},
		{"JSON without an error code", 500, "", `{"oops":true}`,
			"Internal Server Error", `{"oops":true}`, `HTTP 500 Internal Server Error: {"oops":true}`},
		{"empty body", 404, "", "", "Not Found", "", "HTTP 404 Not Found: "},
		{"HTML", 503, "", "<html><body>maintenance</body></html>",
			"Service Unavailable", "<html><body>maintenance</body></html>", "HTTP 503 Service Unavailable: <html><body>maintenance</body></html>"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := serve(t, func(w http.ResponseWriter, r *http.Request) {
				if tc.retryAfter != "" {
					w.Header().Set("Retry-After", tc.retryAfter)
				}
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			})
			_, err := c.Snapshot(context.Background())
			var ae *Error
			if !errors.As(err, &ae) {
				t.Fatalf("error %T %v, want *Error", err, err)
			}
			if ae.Status != tc.status || ae.Code != tc.wantCode || ae.Message != tc.wantMsg || ae.RetryAfter != tc.retryAfter {
				t.Errorf("got %+v", ae)
			}
			if err.Error() != tc.wantText {
				t.Errorf("text %q, want %q", err.Error(), tc.wantText)
			}
		})
	}
}

func TestBadSuccessBody(t *testing.T) {
	c := serve(t, func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("not json")) })
	_, err := c.Snapshot(context.Background())
	var ae *Error
	if err == nil || errors.As(err, &ae) || !strings.HasPrefix(err.Error(), "decode response: ") {
		t.Fatalf("got %v, want a decode error", err)
	}
	// A 2xx with a value the cp's types refuse (an unknown task state).
	c = serve(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"id":"t-1","state":"EXPLODED"}`))
	})
	if _, err := c.Task(context.Background(), "t-1"); err == nil || !strings.Contains(err.Error(), "EXPLODED") {
		t.Fatalf("got %v, want a decode error naming the state", err)
	}
}

func TestRequestShape(t *testing.T) {
	type seen struct {
		method, path, query, auth, key, ctype, body string
	}
	got := make(chan seen, 1)
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, 1024)
		n, _ := r.Body.Read(b)
		got <- seen{r.Method, r.URL.EscapedPath(), r.URL.RawQuery, r.Header.Get("Authorization"), r.Header.Get(cp.HeaderIdempotencyKey),
			r.Header.Get("Content-Type"), string(b[:n])}
		w.Header().Set(cp.HeaderReplayed, "true")
		_, _ = w.Write([]byte(`{"id":"t-1","spec":{"kind":"exec","priority":"low"},"state":"QUEUED"}`))
	})
	c.Token = "secret"
	r, err := c.Submit(context.Background(), cp.SubmitRequest{Kind: core.KindExec, Argv: []string{"/bin/echo", "a && b"}, Priority: "low"}, "k-1")
	if err != nil || !r.Replayed() || r.Value.Spec.Priority != core.PriorityLow {
		t.Fatalf("%v %+v", err, r)
	}
	s := <-got
	want := seen{"POST", "/v1/tasks", "", "Bearer secret", "k-1", "application/json",
		`{"kind":"exec","argv":["/bin/echo","a \u0026\u0026 b"],"priority":"low"}`}
	if s != want {
		t.Fatalf("request\n got %+v\nwant %+v", s, want)
	}
	_, _ = c.Tasks(context.Background(), TaskQuery{State: "QUEUED", After: "t 1/2"})
	if s := <-got; s.method != "GET" || s.query != "after=t+1%2F2&state=QUEUED" || s.ctype != "" || s.body != "" {
		t.Fatalf("tasks request %+v", s)
	}
	_, _ = c.Agent(context.Background(), "a/b")
	if s := <-got; s.path != "/v1/agents/a%2Fb" {
		t.Fatalf("agent id not escaped: %+v", s)
	}
}

// hang answers nothing until the test ends (or the client gives up).
func hang(t *testing.T) http.HandlerFunc {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	return func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}
}

func TestTimeouts(t *testing.T) {
	t.Run("client timeout", func(t *testing.T) {
		c := serve(t, hang(t))
		c.HTTP.Timeout = 50 * time.Millisecond
		_, err := c.Snapshot(context.Background())
		var ne interface{ Timeout() bool }
		var ae *Error
		if err == nil || errors.As(err, &ae) || !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("got %v, want a timeout", err)
		}
	})
	t.Run("context deadline", func(t *testing.T) {
		c := serve(t, hang(t))
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if _, err := c.Timeline(ctx, 0, 10); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v, want context.DeadlineExceeded", err)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL
		srv.Close() // nothing listens there any more
		c := New(url, "")
		var ae *Error
		if _, err := c.Snapshot(context.Background()); err == nil || errors.As(err, &ae) {
			t.Fatalf("got %v, want a transport error", err)
		}
	})
}

func TestSubmitBatch(t *testing.T) {
	_, url := startCP(t, "tok")
	c := New(url, "tok")
	defer c.CloseIdleConnections()
	ctx := context.Background()
	sleep := cp.SubmitRequest{Kind: core.KindSleep, DurationMS: 5}
	r, err := c.SubmitBatch(ctx, []cp.BatchTask{
		{SubmitRequest: sleep, IdempotencyKey: "b-1"},
		{SubmitRequest: cp.SubmitRequest{Kind: "shell"}},
		{SubmitRequest: sleep, IdempotencyKey: "b-1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	res := r.Value.Results
	if len(res) != 3 || res[0].Status != http.StatusCreated || res[0].Task.ID != "t-000001" ||
		res[1].Status != http.StatusBadRequest || res[1].Error != "invalid" || res[1].Task != nil ||
		res[2].Status != http.StatusOK || res[2].Task.ID != res[0].Task.ID {
		t.Fatalf("results: %s", r.Body)
	}
	// A replay across the routes.
	again, err := c.Submit(ctx, sleep, "b-1")
	if err != nil || !again.Replayed() || again.Value.ID != "t-000001" {
		t.Fatalf("single submit of b-1: %v %+v", err, again)
	}
	// A whole-batch refusal is an *Error.
	_, err = c.SubmitBatch(ctx, nil)
	var e *Error
	if !errors.As(err, &e) || e.Status != http.StatusBadRequest || !strings.Contains(e.Message, "no tasks") {
		t.Fatalf("empty batch: %v", err)
	}
	if _, err := c.SetMode(ctx, cp.ModeRequest{Mode: "READ_ONLY"}); err != nil {
		t.Fatal(err)
	}
	_, err = c.SubmitBatch(ctx, []cp.BatchTask{{SubmitRequest: sleep}})
	if !errors.As(err, &e) || e.Status != http.StatusServiceUnavailable || e.Code != "mode_refused" || e.RetryAfter != "30" {
		t.Fatalf("READ_ONLY batch: %v", err)
	}
}
