package cp

import (
	"bytes"
	"reflect"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/fluxforge/fluxforge/core"
	fnet "github.com/fluxforge/fluxforge/net"
)

func drawTime(t *rapid.T, label string) time.Time {
	if rapid.IntRange(0, 5).Draw(t, label+"-zero") == 0 {
		return time.Time{}
	}
	at := time.Unix(rapid.Int64Range(-62135596800, 253402300799).Draw(t, label+"-sec"), rapid.Int64Range(0, 999_999_999).Draw(t, label+"-nsec"))
	switch rapid.IntRange(0, 2).Draw(t, label+"-zone") {
	case 0:
		return at.UTC()
	case 1:
		return at.In(time.FixedZone("x", rapid.IntRange(-14*60, 14*60).Draw(t, label+"-offmin")*60))
	}
	return at
}

// TestAppendTaskViewMatchesEncode: the task view written by the fast path
// is byte for byte what fnet.Encode writes, for random tasks (any strings,
// states, priorities, times, attempts, decisions); a task it declines is
// one encoding/json cannot write either (a year outside 0-9999).
func TestAppendTaskViewMatchesEncode(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		v := drawTaskView(t)
		got, ok := appendTaskView(nil, v)
		checkSameAsEncode(t, "appendTaskView", got, ok, v)
	})
}

// TestAppendBatchResponseMatchesEncode: a batch submit's answer written by
// the fast path is byte for byte what fnet.Encode writes, for random
// results (created, replayed, refused; nil and empty lists).
func TestAppendBatchResponseMatchesEncode(t *testing.T) {
	if n := reflect.TypeFor[BatchResult]().NumField(); n != 4 {
		t.Fatalf("BatchResult has %d fields: teach appendBatchResponse the new ones, then this test", n)
	}
	rapid.Check(t, func(t *rapid.T) {
		var resp BatchResponse
		if !rapid.Bool().Draw(t, "nil") {
			resp.Results = []BatchResult{}
		}
		for range rapid.IntRange(0, 4).Draw(t, "results") {
			r := BatchResult{Status: rapid.SampledFrom([]int{200, 201, 400, 409, 413, 422, 429, 503, -1}).Draw(t, "status"),
				Error: anyString.Draw(t, "error"), Message: anyString.Draw(t, "message")}
			if rapid.Bool().Draw(t, "task") {
				v := drawTaskView(t)
				r.Task = &v
			}
			resp.Results = append(resp.Results, r)
		}
		got, ok := appendBatchResponse(nil, resp)
		checkSameAsEncode(t, "appendBatchResponse", got, ok, resp)
	})
}

// checkSameAsEncode fails t unless a fast path's bytes (got, ok) are
// fnet.Encode's of v, or both refuse v (a year outside 0-9999).
func checkSameAsEncode(t *rapid.T, what string, got []byte, ok bool, v any) {
	var want []byte
	func() {
		defer func() {
			if r := recover(); r != nil {
				want = nil // encoding/json cannot write it
			}
		}()
		want = fnet.Encode(v)
	}()
	switch {
	case ok && want == nil:
		t.Fatalf("%s wrote a value encoding/json refuses: %s", what, got)
	case ok && !bytes.Equal(got, want):
		t.Fatalf("%s:\n got %s\nwant %s", what, got, want)
	case !ok && want != nil:
		t.Fatalf("%s declined a value encoding/json writes: %s", what, want)
	}
}

// anyString draws any string, with the bytes JSON escapes often.
var anyString = rapid.OneOf(rapid.String(), rapid.StringMatching(`[a-z0-9.\-]{0,10}`),
	rapid.StringOf(rapid.RuneFrom([]rune{'"', '\\', '<', '>', '&', '\u2028', '\u2029', '\n', '\b', 0, 0x1f, 'é'})),
	rapid.Custom(func(t *rapid.T) string { return string(rapid.SliceOf(rapid.Byte()).Draw(t, "bytes")) }))

// drawTaskView draws a task view with any strings, states, priorities,
// times, attempts and decision.
func drawTaskView(t *rapid.T) TaskView {
	str := anyString
	task := core.Task{ID: core.TaskID(str.Draw(t, "id")), IdempotencyKey: str.Draw(t, "key"),
		Spec: core.TaskSpec{Kind: str.Draw(t, "kind"), Argv: rapid.SliceOfN(str, 0, 3).Draw(t, "argv"), DurationMS: rapid.Int64().Draw(t, "ms"),
			Domain: str.Draw(t, "domain"), Priority: core.Priority(rapid.IntRange(-1, 5).Draw(t, "prio")),
			TimeoutSeconds: rapid.Int().Draw(t, "timeout"), MaxAttempts: rapid.Int().Draw(t, "max")},
		State: core.TaskState(rapid.IntRange(-1, 12).Draw(t, "state")), Attempt: rapid.Int().Draw(t, "attempt"),
		Failures: rapid.Int().Draw(t, "failures"), AgentID: core.AgentID(str.Draw(t, "agent")),
		SubmittedAt: drawTime(t, "submitted"), EnqueuedAt: drawTime(t, "enqueued"), UpdatedAt: drawTime(t, "updated"),
		Reason: str.Draw(t, "reason"), Output: str.Draw(t, "output"), ExitCode: rapid.Int().Draw(t, "exit")}
	if rapid.Bool().Draw(t, "decision") {
		task.LastDecision = &core.Decision{Outcome: str.Draw(t, "outcome"), Reason: str.Draw(t, "dreason"), At: drawTime(t, "dat")}
	}
	for i := range rapid.IntRange(0, 3).Draw(t, "attempts") {
		task.Attempts = append(task.Attempts, core.AttemptRecord{Attempt: i + 1, AgentID: core.AgentID(str.Draw(t, "aagent")),
			Domain: str.Draw(t, "adomain"), AssignedAt: drawTime(t, "assigned"), EndedAt: drawTime(t, "ended"),
			Outcome: core.Outcome(str.Draw(t, "aoutcome")), Error: str.Draw(t, "aerror")})
	}
	return TaskView{Task: task, WaitingReason: str.Draw(t, "waiting")}
}

// TestAppendTaskViewTypical: a finished task with a decision and an
// attempt takes the fast path, with encoding/json's bytes.
func TestAppendTaskViewTypical(t *testing.T) {
	v := typicalTaskView()
	got, ok := appendTaskView(nil, v)
	if want := fnet.Encode(v); !ok || !bytes.Equal(got, want) {
		t.Fatalf("fast path (%v):\n got %s\nwant %s", ok, got, want)
	}
}

func typicalTaskView() TaskView {
	at := time.Date(2026, 1, 1, 0, 0, 0, 123456789, time.UTC)
	return TaskView{Task: core.Task{ID: "t-a5b7bc-020001", Spec: core.TaskSpec{Kind: core.KindSleep, TimeoutSeconds: 300, MaxAttempts: 3},
		State: core.TaskSucceeded, Attempt: 1, AgentID: "pb-1", SubmittedAt: at, EnqueuedAt: at, UpdatedAt: at,
		LastDecision: &core.Decision{Outcome: "assigned", At: at},
		Attempts:     []core.AttemptRecord{{Attempt: 1, AgentID: "pb-1", Domain: "zone-1", AssignedAt: at, EndedAt: at, Outcome: "succeeded"}}}}
}

// BenchmarkTaskView: a finished task's view, by the fast path and by
// fnet.Encode.
func BenchmarkTaskView(b *testing.B) {
	v := typicalTaskView()
	b.Run("fast", func(b *testing.B) {
		buf := make([]byte, 0, 512)
		for b.Loop() {
			buf, _ = appendTaskView(buf[:0], v)
		}
	})
	b.Run("json", func(b *testing.B) {
		for b.Loop() {
			_ = fnet.Encode(v)
		}
	})
}

// BenchmarkBatchResponse: the answer to a batch of 500 submissions, by the
// fast path and by fnet.Encode.
func BenchmarkBatchResponse(b *testing.B) {
	v := typicalTaskView()
	resp := BatchResponse{Results: make([]BatchResult, 500)}
	for i := range resp.Results {
		resp.Results[i] = BatchResult{Status: 201, Task: &v}
	}
	b.Run("fast", func(b *testing.B) {
		buf := make([]byte, 0, 1<<20)
		for b.Loop() {
			buf, _ = appendBatchResponse(buf[:0], resp)
		}
	})
	b.Run("json", func(b *testing.B) {
		for b.Loop() {
			_ = fnet.Encode(resp)
		}
	})
}
